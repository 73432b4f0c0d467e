/*
 * libFuzzer harness for src/gso.c (tuntap.segment's pure-C core).
 *
 * Input: 4 parameter bytes, then the packet as read from a VNET_HDR device
 * (virtio-net header + IP packet). The parameters pick the vnet header size
 * (10 or 12, sometimes an invalid one), the batch capacity, slot size and
 * headroom, so the capacity/slot checks are reached too.
 *
 * Checked beyond memory safety (ASan/UBSan):
 * - a refused packet leaves every size untouched (the "checks before writes"
 *   promise), a successful one fills exactly the reported count of slots;
 * - every segment fits its slot and nothing is written past the slot;
 * - every IPv4 segment of a GSO packet has a valid header checksum, every TCP/UDP
 *   segment a valid checksum over its pseudo-header, and its IP length fields
 *   match the bytes produced.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "csum.h"
#include "gso.h"

#define CANARY 0xA5

static uint64_t
pseudo_sum(const uint8_t *ip, int v6, uint8_t proto, size_t l4len)
{
    uint8_t tail[4] = {0, proto, (uint8_t)(l4len >> 8), (uint8_t)l4len};
    uint64_t s = v6 ? tt_csum_partial(ip + 8, 32, 0) : tt_csum_partial(ip + 12, 8, 0);
    return tt_csum_partial(tail, 4, s);
}

/* Offset and protocol of the L4 header of a segment (the same walk gso.c does,
 * written again so the check does not trust the code under test). */
static int
l4_of(const uint8_t *ip, size_t n, size_t *off, uint8_t *proto)
{
    if (n >= 20 && ip[0] >> 4 == 4) {
        *off = (size_t)(ip[0] & 15) * 4;
        *proto = ip[9];
        return *off >= 20 && *off <= n;
    }
    if (n >= 40 && ip[0] >> 4 == 6) {
        size_t o = 40;
        uint8_t nh = ip[6];
        while (nh == 0 || nh == 43 || nh == 60) {
            if (o + 8 > n) {
                return 0;
            }
            nh = ip[o];
            o += ((size_t)ip[o + 1] + 1) * 8;
        }
        *off = o;
        *proto = nh;
        return o <= n;
    }
    return 0;
}

static void
check_segment(const uint8_t *ip, size_t n)
{
    size_t off;
    uint8_t proto;
    if (!l4_of(ip, n, &off, &proto)) {
        abort();
    }
    if (ip[0] >> 4 == 4) {
        if (tt_get_be16(ip + 2) != n || tt_checksum_be(ip, off) != 0) {
            abort();
        }
    }
    else if ((size_t)tt_get_be16(ip + 4) + 40 != n) {
        abort();
    }
    if (proto == 6 || proto == 17) {
        uint64_t s = pseudo_sum(ip, ip[0] >> 4 == 6, proto, n - off);
        if (tt_csum_fold(tt_csum_partial(ip + off, n - off, s)) != 0) {
            abort();
        }
        if (proto == 17 && tt_get_be16(ip + off + 4) != n - off) {
            abort();
        }
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t hdrs[4] = {10, 12, 10, 9};
    size_t vnet, capacity, slot, headroom, stride, i;
    uint8_t *arena, gso;
    uint32_t *sizes;
    ssize_t n;
    int err = -1;

    if (size < 4) {
        return 0;
    }
    vnet = hdrs[data[0] & 3];
    /* 64 KB slots (a whole super-packet in one) only with a few of them, so an
     * input costs microseconds, not a 4 MB arena. */
    capacity = (data[2] & 0x80) ? 1 + (data[1] & 3) : 1 + (data[1] & 63);
    slot = (data[2] & 0x80) ? 65536 : 64 + (size_t)(data[2] & 0x7f) * 16;
    headroom = data[3] & 31;
    data += 4;
    size -= 4;
    stride = headroom + slot + 8; /* 8 canary bytes after each slot */
    arena = malloc(capacity * stride);
    sizes = malloc(capacity * sizeof(*sizes));
    if (arena == NULL || sizes == NULL) {
        abort();
    }
    memset(arena, CANARY, capacity * stride);
    memset(sizes, 0xee, capacity * sizeof(*sizes));
    n = tt_segment_core(data, size, vnet, arena, capacity, stride, headroom, slot, sizes, &err);
    if (n < 0) {
        if (err == TT_SEG_OK || tt_segment_strerror(err) == NULL) {
            abort();
        }
        for (i = 0; i < capacity; i++) {
            if (sizes[i] != 0xeeeeeeeeu) {
                abort(); /* a refused packet must leave the batch untouched */
            }
        }
    }
    else {
        gso = size > 1 ? data[1] & 0x7f : 0;
        if (err != TT_SEG_OK || n < 1 || (size_t)n > capacity) {
            abort();
        }
        for (i = 0; i < (size_t)n; i++) {
            const uint8_t *seg = arena + i * stride + headroom;
            size_t k;
            if (sizes[i] > slot) {
                abort();
            }
            for (k = 0; k < 8; k++) {
                if (arena[i * stride + headroom + slot + k] != CANARY) {
                    abort(); /* written past the slot */
                }
            }
            if (gso != 0) {
                check_segment(seg, sizes[i]);
            }
        }
    }
    free(arena);
    free(sizes);
    return 0;
}
