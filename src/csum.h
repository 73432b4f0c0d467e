/*
 * csum.h: the Internet checksum (RFC 1071) and big-endian field access.
 *
 * Pure C (no Python.h): shared by the packet-format units (gso.c) and by the
 * Python wrapper of tuntap.checksum(). Everything is static inline.
 */
#ifndef TT_CSUM_H
#define TT_CSUM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The unfolded ones' complement sum of n bytes at p, added to `sum`.
 * Sums native-order words; the ones' complement sum is byte-order independent,
 * so values read from memory and stored back with memcpy are correct on either
 * endianness. 64-bit words with end-around carry (counted separately,
 * 2^64 == 1 mod 0xffff), two accumulators to break the carry chain; memcpy
 * loads into scalars (not an array, which GCC spills). `sum` must be below
 * 2^63 (any result of this function or a handful of 16-bit values). */
static inline uint64_t
tt_csum_partial(const uint8_t *p, size_t n, uint64_t sum)
{
    uint64_t s0 = sum, s1 = 0, c0 = 0, c1 = 0, w0, w1, w2, w3, r;
    while (n >= 32) {
        memcpy(&w0, p, 8);
        memcpy(&w1, p + 8, 8);
        memcpy(&w2, p + 16, 8);
        memcpy(&w3, p + 24, 8);
        c0 += __builtin_add_overflow(s0, w0, &s0);
        c1 += __builtin_add_overflow(s1, w1, &s1);
        c0 += __builtin_add_overflow(s0, w2, &s0);
        c1 += __builtin_add_overflow(s1, w3, &s1);
        p += 32;
        n -= 32;
    }
    while (n >= 8) {
        memcpy(&w0, p, 8);
        c0 += __builtin_add_overflow(s0, w0, &s0);
        p += 8;
        n -= 8;
    }
    r = (s0 & 0xffffffffu) + (s0 >> 32) + (s1 & 0xffffffffu) + (s1 >> 32) + c0 + c1;
    while (n >= 2) { /* at most three times: n < 8 here */
        uint16_t h;
        memcpy(&h, p, 2);
        r += h;
        p += 2;
        n -= 2;
    }
    if (n) {
        /* odd tail: the byte is the first of a zero-padded 16-bit word */
        uint8_t tail[2] = {p[0], 0};
        uint16_t h;
        memcpy(&h, tail, 2);
        r += h;
    }
    return r;
}

/* Fold a tt_csum_partial() sum to 16 bits and complement it. The result is in
 * native order (as the words were read): store it with tt_put16(). */
static inline uint16_t
tt_csum_fold(uint64_t sum)
{
    sum = (sum & 0xffffffffu) + (sum >> 32);
    sum = (sum & 0xffffffffu) + (sum >> 32);
    sum = (sum & 0xffffu) + (sum >> 16);
    sum = (sum & 0xffffu) + (sum >> 16);
    return (uint16_t)~sum;
}

/* Store a native-order 16-bit value (a folded checksum) as it is. */
static inline void
tt_put16(uint8_t *p, uint16_t v_native)
{
    memcpy(p, &v_native, 2);
}

static inline uint16_t
tt_get_be16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static inline void
tt_put_be16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static inline uint32_t
tt_get_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void
tt_put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* The checksum of p[0..n) as a big-endian value (what a header field reads as),
 * 0 for data that holds a correct checksum. */
static inline uint16_t
tt_checksum_be(const uint8_t *p, size_t n)
{
    uint16_t c = tt_csum_fold(tt_csum_partial(p, n, 0));
    uint8_t b[2];
    memcpy(b, &c, 2);
    return (uint16_t)((b[0] << 8) | b[1]);
}

#endif /* TT_CSUM_H */
