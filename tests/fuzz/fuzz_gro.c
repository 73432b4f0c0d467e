/*
 * libFuzzer harness for src/gro.c (tuntap.coalesce's pure-C core).
 *
 * fuzz-link: gso
 * (run.sh links the units named on that line too: the round trip needs gso.c.)
 *
 * Input: 4 parameter bytes, then packets, each [fix][len_hi][len_lo][len bytes].
 * The parameters pick the merge kinds and vnet header size, max_segments,
 * max_size, and the out batch's capacity and slot size. The `fix` byte of a
 * packet asks the harness to repair its IP/UDP lengths (bit 0) and its IPv4
 * header and TCP/UDP checksums (bit 1) before the call, so the fuzzer gets past
 * the checksum checks and into the merge logic; bit 2 spoils the L4 checksum
 * again afterwards.
 *
 * Checked beyond memory safety (ASan/UBSan):
 * - a refused call leaves every size untouched; a successful one fills exactly
 *   the reported count of slots, and nothing is written past a slot;
 * - every input packet is in exactly one output; outputs come in the order of
 *   their first packet;
 * - a passed-through output is the input packet unchanged after an all-zero
 *   virtio-net header;
 * - a merge holds 2..max_segments packets of valid checksums and at most
 *   max_size bytes, and no TCP packet of its flow that cannot merge (a pure
 *   ACK, SYN/FIN/RST/URG/ECE/CWR) arrived between its first and last member, and tt_segment_core() (gso.c) splits it back into exactly
 *   its members, byte for byte except the IPv4 id and header checksum;
 * - the write path's pieces (tt_gro_header + tt_gro_piece, what writev() sends)
 *   are byte for byte what the copy path put in the slot.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>

#include "csum.h"
#include "gro.h"
#include "gso.h"

#define CANARY 0xA5
#define MAXPKTS 512

static uint8_t pktbuf[MAXPKTS * 2048];

static void
fail(void)
{
    abort();
}

/* Offset of the L4 header and its protocol for the shapes gro.c merges. */
static int
l4_of(const uint8_t *p, size_t n, size_t *off, uint8_t *proto)
{
    if (n >= 20 && p[0] == 0x45) {
        *off = 20;
        *proto = p[9];
        return 1;
    }
    if (n >= 40 && p[0] >> 4 == 6) {
        *off = 40;
        *proto = p[6];
        return 1;
    }
    return 0;
}

static uint64_t
pseudo(const uint8_t *p, size_t off, uint8_t proto, size_t l4len)
{
    uint8_t tail[4] = {0, proto, (uint8_t)(l4len >> 8), (uint8_t)l4len};
    uint64_t s = off == 20 ? tt_csum_partial(p + 12, 8, 0) : tt_csum_partial(p + 8, 32, 0);
    return tt_csum_partial(tail, 4, s);
}

static void
fixup(uint8_t *p, size_t n, uint8_t how)
{
    size_t off;
    uint8_t proto;
    if (!l4_of(p, n, &off, &proto))
        return;
    if (how & 1) {
        if (off == 20)
            tt_put_be16(p + 2, (uint16_t)n);
        else
            tt_put_be16(p + 4, (uint16_t)(n - 40));
        if (proto == 17 && n >= off + 8)
            tt_put_be16(p + off + 4, (uint16_t)(n - off));
    }
    if (how & 2) {
        if (off == 20) {
            p[10] = p[11] = 0;
            tt_put16(p + 10, tt_csum_fold(tt_csum_partial(p, 20, 0)));
        }
        size_t at = proto == 6 ? 16 : proto == 17 ? 6 : 0;
        if (at && n >= off + at + 2) {
            p[off + at] = p[off + at + 1] = 0;
            uint16_t c = tt_csum_fold(tt_csum_partial(p + off, n - off,
                                                      pseudo(p, off, proto, n - off)));
            tt_put16(p + off + at, (proto == 17 && c == 0) ? 0xffff : c);
        }
    }
    if ((how & 4) && proto == 6 && n >= off + 18)
        p[off + 17] ^= 0x5a;
}

/* A TCP packet of the same addresses, ports and ACK number as head that could
 * not merge: its flags are not ACK or ACK|PSH, or it has no payload. */
static int
is_barrier_for(const uint8_t *p, size_t n, const uint8_t *head)
{
    size_t off, hoff, doff;
    uint8_t proto, hproto;
    if (!l4_of(p, n, &off, &proto) || !l4_of(head, 60, &hoff, &hproto) || proto != 6 ||
        off != hoff || n < off + 20)
        return 0;
    if ((off == 20 && (tt_get_be16(p + 2) != n || (tt_get_be16(p + 6) & 0x3fff) ||
                       tt_csum_fold(tt_csum_partial(p, 20, 0)) != 0)) ||
        (off == 40 && (size_t)tt_get_be16(p + 4) + 40 != n))
        return 0; /* not a packet gro.c parses as TCP */
    doff = (size_t)(p[off + 12] >> 4) * 4;
    if (doff < 20 || n < off + doff)
        return 0;
    if (off == 20 ? memcmp(p + 12, head + 12, 8) : memcmp(p + 8, head + 8, 32))
        return 0;
    if (memcmp(p + off, head + off, 4) || memcmp(p + off + 8, head + off + 8, 4))
        return 0;
    return n == off + doff || (p[off + 13] != 0x10 && p[off + 13] != 0x18);
}

static int
l4_valid(const uint8_t *p, size_t n)
{
    size_t off;
    uint8_t proto;
    if (!l4_of(p, n, &off, &proto))
        return 0;
    return tt_csum_fold(tt_csum_partial(p + off, n - off, pseudo(p, off, proto, n - off))) == 0;
}

/* Segment a (from gso.c) is original b: equal except the IPv4 id (4-5) and
 * header checksum (10-11), and a TCP checksum may be the other zero (0x0000 and
 * 0xffff both verify; gso.c stores the computed one). */
static int
same_packet(const uint8_t *a, const uint8_t *b, size_t n)
{
    size_t off, at;
    uint8_t proto;
    if (!l4_of(b, n, &off, &proto))
        return 0;
    at = off + (proto == 6 ? 16 : 6);
    if (at + 2 > n)
        return 0;
    if (memcmp(a + at + 2, b + at + 2, n - at - 2) || memcmp(a + off, b + off, at - off))
        return 0;
    uint16_t ca = tt_get_be16(a + at), cb = tt_get_be16(b + at);
    if (ca != cb && !((ca == 0 || ca == 0xffff) && (cb == 0 || cb == 0xffff)))
        return 0;
    if (off == 20)
        return !memcmp(a, b, 4) && !memcmp(a + 6, b + 6, 4) && !memcmp(a + 12, b + 12, 8);
    return !memcmp(a, b, 40);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t vnets[4] = {10, 12, 10, 20};
    static const size_t max_sizes[4] = {65535, 3000, 200, 1};
    tt_gro_pkt pkts[MAXPKTS];
    size_t n = 0, used = 0;

    if (size < 4)
        return 0;
    unsigned kinds = data[0] & 15;
    size_t vnet = vnets[(data[0] >> 4) & 3];
    size_t max_segments = 1 + data[1];
    size_t max_size = max_sizes[data[2] & 3];
    size_t capacity = 1 + (data[3] & 63);
    size_t slot = (data[3] & 0x80) ? 65600 : 64 + (size_t)(data[2] >> 2) * 64;
    if (data[3] & 0x80)
        capacity = 1 + (data[3] & 3);
    data += 4;
    size -= 4;
    while (size >= 3 && n < MAXPKTS) {
        uint8_t how = data[0];
        size_t len = ((size_t)data[1] << 8 | data[2]) & 2047;
        data += 3;
        size -= 3;
        if (len > size)
            len = size;
        if (len == 0)
            continue; /* empty packets are refused up front: covered by the tests */
        memcpy(pktbuf + used, data, len);
        fixup(pktbuf + used, len, how);
        pkts[n].data = pktbuf + used;
        pkts[n].len = len;
        used += len;
        n++;
        data += len;
        size -= len;
    }

    size_t stride = slot + 8; /* 8 canary bytes after each slot */
    uint8_t *arena = malloc(capacity * stride);
    uint32_t *sizes = malloc(capacity * sizeof(*sizes));
    void *scratch = malloc(tt_gro_scratch_size(n) + 8);
    uint32_t *seen = calloc(n + 1, sizeof(*seen));
    uint8_t *seg = malloc(1024 * 2048);
    uint32_t *segsizes = malloc(1024 * sizeof(uint32_t));
    if (!arena || !sizes || !scratch || !seen || !seg || !segsizes)
        fail();
    memset(arena, CANARY, capacity * stride);
    memset(sizes, 0xee, capacity * sizeof(*sizes));
    tt_gro_plan plan;
    int err = -1;
    ssize_t nout = tt_coalesce_core(pkts, n, kinds, max_size, max_segments, vnet, arena,
                                    capacity, stride, 0, slot, sizes, scratch, &plan, &err);
    if (nout < 0) {
        if (err == TT_GRO_OK || tt_gro_strerror(err) == NULL)
            fail();
        if (err != TT_GRO_ECAPACITY && err != TT_GRO_ESLOT && err != TT_GRO_EHDRSIZE)
            fail();
        for (size_t i = 0; i < capacity; i++) {
            if (sizes[i] != 0xeeeeeeeeu)
                fail(); /* a refused call must leave the batch untouched */
        }
        goto done;
    }
    if (err != TT_GRO_OK || (size_t)nout != plan.nouts || plan.nouts > capacity)
        fail();
    size_t merged = 0, prev_first = 0;
    for (size_t j = 0; j < plan.nouts; j++) {
        const tt_gro_out *o = &plan.outs[j];
        const uint8_t *s = arena + j * stride;
        uint8_t hdr[TT_GRO_VNET_MAX + TT_GRO_HDR_MAX];
        size_t at, k;

        for (k = 0; k < 8; k++) {
            if (s[slot + k] != CANARY)
                fail(); /* written past the slot */
        }
        if (sizes[j] > slot || o->count < 1)
            fail();
        /* order of first packets */
        uint32_t first = plan.members[o->first];
        for (k = 1; k < o->count; k++) {
            if (plan.members[o->first + k] < first)
                first = plan.members[o->first + k];
        }
        if (j && first <= prev_first)
            fail();
        prev_first = first;
        for (k = 0; k < o->count; k++) {
            uint32_t m = plan.members[o->first + k];
            if (m >= n || seen[m]++)
                fail(); /* every input exactly once */
        }
        /* the write path sends the same bytes */
        at = tt_gro_header(pkts, &plan, o, vnet, hdr);
        if (at > sizes[j] || memcmp(hdr, s, at))
            fail();
        for (k = 0; k < o->count; k++) {
            size_t len;
            const uint8_t *piece = tt_gro_piece(pkts, &plan, o, k, &len);
            if (at + len > sizes[j] || memcmp(piece, s + at, len))
                fail();
            at += len;
        }
        if (at != sizes[j])
            fail();
        if (!o->kind) {
            const tt_gro_pkt *p = &pkts[plan.members[o->first]];
            for (k = 0; k < vnet; k++) {
                if (s[k])
                    fail();
            }
            if (o->count != 1 || sizes[j] != vnet + p->len || memcmp(s + vnet, p->data, p->len))
                fail();
            continue;
        }
        /* a merge: caps, checksums of the members, and segment() gives them back */
        merged += o->count;
        if (o->count < 2 || o->count > max_segments || o->len > max_size ||
            o->len + vnet != sizes[j] || !(kinds & o->kind))
            fail();
        uint32_t lo = UINT32_MAX, hi = 0;
        for (k = 0; k < o->count; k++) {
            uint32_t m = plan.members[o->first + k];
            const tt_gro_pkt *p = &pkts[m];
            if (!l4_valid(p->data, p->len))
                fail();
            lo = m < lo ? m : lo;
            hi = m > hi ? m : hi;
        }
        if (o->kind & TT_GRO_TCP) {
            const uint8_t *head = pkts[plan.members[o->first]].data;
            for (uint32_t b = lo + 1; b < hi; b++) {
                if (is_barrier_for(pkts[b].data, pkts[b].len, head))
                    fail(); /* merged across a barrier */
            }
        }
        int serr = -1;
        ssize_t ns = tt_segment_core(s, sizes[j], vnet, seg, 1024, 2048, 0, 2048, segsizes,
                                     &serr);
        if (ns != (ssize_t)o->count)
            fail();
        for (k = 0; k < o->count; k++) {
            const tt_gro_pkt *p = &pkts[plan.members[o->first + k]];
            if (segsizes[k] != p->len || !same_packet(seg + k * 2048, p->data, p->len))
                fail();
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (seen[i] != 1)
            fail();
    }
    if (merged != plan.merged)
        fail();
done:
    free(arena);
    free(sizes);
    free(scratch);
    free(seen);
    free(seg);
    free(segsizes);
    return 0;
}
