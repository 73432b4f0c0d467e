/*
 * gro.c: write-side GRO in pure C (see gro.h for the contract and the rules).
 *
 * What the kernel's GRO does on the way into a NIC driver's receive path, done
 * here before packets are written to a VNET_HDR device: net/core/gro.c
 * (dev_gro_receive), net/ipv4/af_inet.c (inet_gro_receive),
 * net/ipv6/ip6_offload.c (ipv6_gro_receive), net/ipv4/tcp_offload.c
 * (tcp_gro_receive), net/ipv4/udp_offload.c (udp_gro_receive_segment). The
 * result is read back by include/linux/virtio_net.h (virtio_net_hdr_to_skb).
 *
 * Planning is three passes over the packets: classify each (candidate or not,
 * flow hash), put candidates into flows (open-addressing hash table, exact
 * header comparison), then cut each flow into runs (TCP in sequence order, UDP
 * in arrival order). Outputs are the runs in the order of their first packet.
 */
#define _GNU_SOURCE
#include "gro.h"

#include <string.h>

#include <arpa/inet.h>
#include <linux/virtio_net.h>

#include "csum.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define TT_GRO_AVX2 1
#endif

#ifndef VIRTIO_NET_HDR_GSO_UDP_L4
#define VIRTIO_NET_HDR_GSO_UDP_L4 5
#endif

#define TT_NONE UINT32_MAX
#define TT_TOMB UINT32_MAX /* a hash table slot whose flow was sealed by a barrier */
#define TT_TCP_PSH 0x08
#define TT_TCP_ACK 0x10

/* gro_info.st bits */
#define ST_PSH 1 /* TCP PSH set: the packet can only end a run */
#define ST_OK 2  /* TCP/UDP checksum verified good */
#define ST_BAD 4 /* ... verified bad: never merged */
#define ST_BARRIER 8 /* TCP of a flow that cannot merge (flags, no payload): seals it */

typedef struct {
    uint32_t seq;    /* TCP sequence number */
    uint32_t hash;   /* flow hash (candidates only) */
    uint32_t next;   /* next packet of the same flow, arrival order */
    uint32_t run;    /* the run it belongs to; TT_NONE: passed through alone */
    uint32_t rnext;  /* next member of the same run, stream order */
    uint16_t paylen; /* bytes after the headers */
    uint8_t kind;    /* TT_GRO_* or 0: not a candidate */
    uint8_t l4off;   /* 20 or 40 */
    uint8_t hdrs;    /* l4off + TCP/UDP header length */
    uint8_t st;      /* ST_* */
} gro_info;

typedef struct {
    uint32_t head, tail, count; /* packets, linked by gro_info.next */
} gro_flow;

typedef struct {
    uint32_t head, tail, count; /* members, linked by gro_info.rnext */
    uint32_t len;               /* IP length were it merged */
    uint32_t next_seq;          /* TCP: where the next member must start */
    uint16_t gso_size;          /* the first member's payload */
    uint8_t closed;             /* nothing may join: PSH, a shorter last, bad csum */
    uint8_t emitted;
} gro_run;

/* The scratch memory, carved by tt_gro_layout(). */
typedef struct {
    gro_info *info;
    gro_flow *flows;
    gro_run *runs;
    uint64_t *keys;
    uint32_t *table;
    size_t tsize;
    tt_gro_out *outs;
    uint32_t *members;
} gro_mem;

const char *
tt_gro_strerror(int err)
{
    switch (err) {
    case TT_GRO_OK: return "success";
    case TT_GRO_EHDRSIZE: return "vnet_hdr_size must be between 10 and 64";
    case TT_GRO_EEMPTY: return "an input packet is empty";
    case TT_GRO_ECAPACITY: return "more output packets than the batch capacity";
    case TT_GRO_ESLOT:
        return "a packet plus its virtio-net header does not fit in a batch slot "
               "(slot_size too small)";
    case TT_GRO_ELAYOUT: return "batch stride is smaller than headroom + slot_size";
    case TT_GRO_EARG: return "max_size must be 1..65535 and max_segments at least 1";
    default: return "unknown coalescing error";
    }
}

/* -- scratch layout ------------------------------------------------------- */

#define TT_ALIGN8(x) (((x) + 7u) & ~(size_t)7u)

static size_t
tt_gro_layout(size_t n, void *base, gro_mem *m)
{
    size_t tsize = 16, off = 0;
    char *b = base;
    while (tsize < 2 * n)
        tsize <<= 1;
#define TT_CARVE(field, type, count)                                                     \
    do {                                                                                 \
        if (m)                                                                           \
            m->field = (type *)(void *)(b + off);                                        \
        off += TT_ALIGN8(sizeof(type) * (count));                                        \
    } while (0)
    TT_CARVE(info, gro_info, n);
    TT_CARVE(flows, gro_flow, n);
    TT_CARVE(runs, gro_run, n);
    TT_CARVE(keys, uint64_t, n);
    TT_CARVE(table, uint32_t, tsize);
    TT_CARVE(outs, tt_gro_out, n);
    TT_CARVE(members, uint32_t, n);
#undef TT_CARVE
    if (m)
        m->tsize = tsize;
    return off;
}

size_t
tt_gro_scratch_size(size_t n)
{
    if (n > ((size_t)1 << 30))
        return 0;
    return tt_gro_layout(n, NULL, NULL);
}

/* -- classification ------------------------------------------------------- */

static inline uint32_t
tt_mix(uint32_t h, const uint8_t *p)
{
    uint32_t w;
    memcpy(&w, p, 4);
    h = (h ^ w) * 0x9e3779b1u;
    return h ^ (h >> 15);
}

/* Is p a candidate of one of `kinds`? Fills in the fields; kind 0 if not. */
static void
tt_gro_classify(const uint8_t *d, size_t len, unsigned kinds, gro_info *in)
{
    size_t l4;
    uint8_t proto;
    int v6;

    in->kind = 0;
    in->st = 0;
    in->seq = in->hash = 0;
    in->next = in->run = in->rnext = TT_NONE;
    if (len < 20 || len > TT_GRO_MAX_SIZE)
        return;
    if (d[0] == 0x45) {
        /* IPv4, no options: the length must be the buffer's (no padding), no
         * fragment (MF or offset), a valid header checksum (inet_gro_receive
         * checks it too). */
        if (tt_get_be16(d + 2) != len || (tt_get_be16(d + 6) & 0x3fff))
            return;
        if (tt_csum_fold(tt_csum_partial(d, 20, 0)) != 0)
            return;
        l4 = 20;
        proto = d[9];
        v6 = 0;
    }
    else if ((d[0] >> 4) == 6) {
        /* IPv6: next header must be TCP/UDP itself, so no extension header. */
        if (len < 40 || tt_get_be16(d + 4) != len - 40)
            return;
        l4 = 40;
        proto = d[6];
        v6 = 1;
    }
    else {
        return;
    }
    if (proto == 6) {
        unsigned k = v6 ? TT_GRO_TCP6 : TT_GRO_TCP4;
        size_t doff;
        if (!(kinds & k) || len < l4 + 20)
            return;
        doff = (size_t)(d[l4 + 12] >> 4) * 4;
        if (doff < 20 || len < l4 + doff)
            return;
        /* Only ACK or ACK|PSH with payload merge. A packet of the flow with other
         * flags (SYN/FIN/RST/URG/ECE/CWR) or none (a pure ACK) passes through
         * and is a barrier, as a flush is in the kernel: nothing that came after
         * it merges with anything that came before it. */
        if (len == l4 + doff ||
            (d[l4 + 13] != TT_TCP_ACK && d[l4 + 13] != (TT_TCP_ACK | TT_TCP_PSH)))
            in->st = ST_BARRIER;
        in->seq = tt_get_be32(d + l4 + 4);
        in->st |= (d[l4 + 13] & TT_TCP_PSH) ? ST_PSH : 0;
        in->hdrs = (uint8_t)(l4 + doff);
        in->kind = (uint8_t)k;
    }
    else if (proto == 17) {
        unsigned k = v6 ? TT_GRO_UDP6 : TT_GRO_UDP4;
        if (!(kinds & k) || len < l4 + 8)
            return;
        /* A datagram of the flow that cannot merge (no payload, a UDP length
         * that is not the buffer's, no checksum: IPv4 lets the sender skip it,
         * and a merge would make one) still belongs to it: it ends the flow's
         * run, so no later datagram passes it. */
        if (len == l4 + 8 || tt_get_be16(d + l4 + 4) != len - l4 ||
            (d[l4 + 6] == 0 && d[l4 + 7] == 0))
            in->st = ST_BAD;
        in->hdrs = (uint8_t)(l4 + 8);
        in->kind = (uint8_t)k;
    }
    else {
        return;
    }
    in->l4off = (uint8_t)l4;
    in->paylen = (uint16_t)(len - in->hdrs);

    /* Flow hash: addresses, ports, TCP ACK number, kind. */
    uint32_t h = 0x811c9dc5u ^ in->kind;
    const uint8_t *a = d + (v6 ? 8 : 12);
    for (size_t i = 0; i < (v6 ? 32u : 8u); i += 4)
        h = tt_mix(h, a + i);
    h = tt_mix(h, d + l4);
    if (proto == 6)
        h = tt_mix(h, d + l4 + 8);
    in->hash = h;
}

/* Bytes of a and b that differ, among those selected by mask (8 bytes each). */
static inline uint64_t
tt_diff8(const uint8_t *a, const uint8_t *b, const uint8_t *mask)
{
    uint64_t x, y, m;
    memcpy(&x, a, 8);
    memcpy(&y, b, 8);
    memcpy(&m, mask, 8); /* a byte mask: the same on either endianness */
    return (x ^ y) & m;
}

static inline uint64_t
tt_diff4(const uint8_t *a, const uint8_t *b)
{
    uint32_t x, y;
    memcpy(&x, a, 4);
    memcpy(&y, b, 4);
    return x ^ y;
}

#define X 0xff
/* IPv4 bytes 0-7: version/IHL, ToS; flags/fragment (DF, reserved; MF and the
 * offset are 0); 8-15: TTL, protocol, addresses (not length, id, checksum). */
static const uint8_t tt_mask_ip4[2][8] = {{X, X, 0, 0, 0, 0, X, X}, {X, X, 0, 0, X, X, X, X}};
/* IPv6 bytes 0-7: version, traffic class, flow label, next header, hop limit
 * (not the payload length). */
static const uint8_t tt_mask_ip6[8] = {X, X, X, X, 0, 0, X, X};
static const uint8_t tt_mask_all[8] = {X, X, X, X, X, X, X, X};
/* TCP bytes 8-15: ACK number, data offset and reserved bits, window (not the
 * flags: ACK or ACK|PSH, checked by classify). */
static const uint8_t tt_mask_tcp8[8] = {X, X, X, X, X, 0, X, X};
#undef X

/* Are a and b (both candidates) of one flow: the same kind, addresses, ports
 * and, for TCP, ACK number (the flow hash covers the same fields)? */
static int
tt_gro_same_flow(const uint8_t *a, const uint8_t *b, const gro_info *ia, const gro_info *ib)
{
    size_t l4 = ia->l4off;
    uint64_t d;
    if (ia->kind != ib->kind)
        return 0;
    if (l4 == 20) {
        d = tt_diff8(a + 12, b + 12, tt_mask_all);
    }
    else {
        d = 0;
        for (size_t i = 8; i < 40; i += 8)
            d |= tt_diff8(a + i, b + i, tt_mask_all);
    }
    d |= tt_diff4(a + l4, b + l4);
    if (ia->kind & TT_GRO_TCP)
        d |= tt_diff4(a + l4 + 8, b + l4 + 8);
    return d == 0;
}

/* Could packets a and b of one flow be merged, headers-wise? Every IP and L4
 * header byte must be equal except those a merge rewrites or that vary per
 * segment: IPv4 total length, id, header checksum; IPv6 payload length; TCP
 * sequence number, flags, checksum; UDP length and checksum. So also the window,
 * urgent pointer and options (the words tcp_gro_receive compares), ToS/TTL/DF,
 * traffic class/flow label/hop limit. */
static int
tt_gro_same_hdrs(const uint8_t *a, const uint8_t *b, const gro_info *ia, const gro_info *ib)
{
    size_t l4 = ia->l4off;
    uint64_t d;
    if (ia->hdrs != ib->hdrs)
        return 0;
    if (l4 == 20) {
        d = tt_diff8(a, b, tt_mask_ip4[0]) | tt_diff8(a + 8, b + 8, tt_mask_ip4[1]);
    }
    else {
        d = tt_diff8(a, b, tt_mask_ip6);
    }
    if (ia->kind & TT_GRO_TCP) {
        a += l4;
        b += l4;
        uint16_t ua, ub;
        d |= tt_diff8(a + 8, b + 8, tt_mask_tcp8);
        memcpy(&ua, a + 18, 2);
        memcpy(&ub, b + 18, 2);
        d |= (uint64_t)(ua ^ ub);
        for (size_t i = 20; i < (size_t)ia->hdrs - l4; i += 4)
            d |= tt_diff4(a + i, b + i);
    }
    return d == 0;
}

/* tt_csum_partial() for the payload pass, the one cost per merged packet that
 * grows with its size: with AVX2 (checked at run time; wheels target baseline
 * x86-64) 32-bit words are summed into 64-bit lanes, 64 bytes a step, about
 * twice the speed of the scalar loop (15 vs 35 ns for 1,432 bytes here). */
#ifdef TT_GRO_AVX2
__attribute__((target("avx2"))) static uint64_t
tt_csum_avx2(const uint8_t *p, size_t n, uint64_t sum)
{
    const __m256i z = _mm256_setzero_si256();
    __m256i a0 = z, a1 = z;
    uint64_t lane[4];
    for (; n >= 64; p += 64, n -= 64) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(const void *)p);
        __m256i w = _mm256_loadu_si256((const __m256i *)(const void *)(p + 32));
        a0 = _mm256_add_epi64(a0, _mm256_unpacklo_epi32(v, z));
        a1 = _mm256_add_epi64(a1, _mm256_unpackhi_epi32(v, z));
        a0 = _mm256_add_epi64(a0, _mm256_unpacklo_epi32(w, z));
        a1 = _mm256_add_epi64(a1, _mm256_unpackhi_epi32(w, z));
    }
    _mm256_storeu_si256((__m256i *)(void *)lane, _mm256_add_epi64(a0, a1));
    for (int i = 0; i < 4; i++)
        sum += (lane[i] & 0xffffffffu) + (lane[i] >> 32);
    return tt_csum_partial(p, n, sum);
}
#endif

static inline uint64_t
tt_gro_sum(const uint8_t *p, size_t n, uint64_t sum)
{
#ifdef TT_GRO_AVX2
    /* each 64-bit lane takes at most 2^32 words: far beyond 64 KB */
    if (n >= 256 && __builtin_cpu_supports("avx2"))
        return tt_csum_avx2(p, n, sum);
#endif
    return tt_csum_partial(p, n, sum);
}

/* The TCP/UDP checksum over the pseudo-header verifies. */
static int
tt_gro_csum_ok(const uint8_t *d, size_t len, const gro_info *in)
{
    size_t l4 = in->l4off;
    uint64_t s = l4 == 20 ? tt_csum_partial(d + 12, 8, 0) : tt_csum_partial(d + 8, 32, 0);
    s += htons((uint16_t)((in->kind & TT_GRO_TCP) ? 6 : 17));
    s += htons((uint16_t)(len - l4));
    s = tt_gro_sum(d + l4, len - l4, s);
    return tt_csum_fold(s) == 0;
}

/* -- runs ------------------------------------------------------------------ */

static uint32_t
tt_run_new(gro_mem *m, uint32_t *nruns, uint32_t x)
{
    gro_info *in = &m->info[x];
    uint32_t r = (*nruns)++;
    gro_run *run = &m->runs[r];
    run->head = run->tail = x;
    run->count = 1;
    run->len = (uint32_t)in->hdrs + in->paylen;
    run->next_seq = in->seq + in->paylen;
    run->gso_size = in->paylen;
    run->closed = (in->st & (ST_PSH | ST_BAD)) != 0;
    run->emitted = 0;
    in->run = r;
    in->rnext = TT_NONE;
    return r;
}

enum { JOINED, NOJOIN, HEADBAD, PKTBAD };

/* Try to append packet x to run r. */
static int
tt_run_join(gro_mem *m, const tt_gro_pkt *pkts, uint32_t r, uint32_t x, size_t max_size,
            size_t max_segments)
{
    gro_run *run = &m->runs[r];
    gro_info *in = &m->info[x], *hd = &m->info[run->head];
    if (run->closed || run->count >= max_segments || in->paylen > run->gso_size ||
        run->len + in->paylen > max_size)
        return NOJOIN;
    if ((in->kind & TT_GRO_TCP) && in->seq != run->next_seq)
        return NOJOIN;
    if (!tt_gro_same_hdrs(pkts[x].data, pkts[run->head].data, in, hd))
        return NOJOIN;
    /* Both checksums, only now that a merge would happen (a merged packet goes
     * up as CHECKSUM_PARTIAL: nobody would check them later). */
    if (run->count == 1 && !(hd->st & ST_OK)) {
        if (!tt_gro_csum_ok(pkts[run->head].data, pkts[run->head].len, hd)) {
            hd->st |= ST_BAD;
            run->closed = 1;
            return HEADBAD;
        }
        hd->st |= ST_OK;
    }
    if (!(in->st & (ST_OK | ST_BAD))) {
        in->st |= tt_gro_csum_ok(pkts[x].data, pkts[x].len, in) ? ST_OK : ST_BAD;
    }
    if (in->st & ST_BAD)
        return PKTBAD;
    m->info[run->tail].rnext = x;
    in->rnext = TT_NONE;
    in->run = r;
    run->tail = x;
    run->count++;
    run->len += in->paylen;
    run->next_seq = in->seq + in->paylen;
    if ((in->st & ST_PSH) || in->paylen < run->gso_size)
        run->closed = 1; /* nothing after a PSH or a shorter segment */
    return JOINED;
}

/* Sort keys[0..k) ascending (they are unique): nothing to do for the usual
 * in-order flow, insertion sort for a few reordered packets, heapsort beyond
 * 256 so a hostile order stays O(k log k). */
static void
tt_sort_keys(uint64_t *a, size_t k)
{
    size_t sorted = 1;
    while (sorted < k && a[sorted - 1] < a[sorted])
        sorted++;
    if (sorted >= k)
        return;
    if (k <= 256) {
        for (size_t i = sorted; i < k; i++) {
            uint64_t v = a[i];
            size_t j = i;
            for (; j > 0 && a[j - 1] > v; j--)
                a[j] = a[j - 1];
            a[j] = v;
        }
        return;
    }
    for (size_t start = k / 2; start-- > 0;) {
        for (size_t root = start, child; (child = 2 * root + 1) < k; root = child) {
            if (child + 1 < k && a[child + 1] > a[child])
                child++;
            if (a[root] >= a[child])
                break;
            uint64_t t = a[root];
            a[root] = a[child];
            a[child] = t;
        }
    }
    for (size_t end = k - 1; end > 0; end--) {
        uint64_t t = a[0];
        a[0] = a[end];
        a[end] = t;
        for (size_t root = 0, child; (child = 2 * root + 1) < end; root = child) {
            if (child + 1 < end && a[child + 1] > a[child])
                child++;
            if (a[root] >= a[child])
                break;
            t = a[root];
            a[root] = a[child];
            a[child] = t;
        }
    }
}

/* Cut one flow (>= 2 packets) into runs. */
static void
tt_flow_runs(gro_mem *m, const tt_gro_pkt *pkts, const gro_flow *f, uint32_t *nruns,
             size_t max_size, size_t max_segments)
{
    int tcp = (m->info[f->head].kind & TT_GRO_TCP) != 0;
    uint32_t cur = TT_NONE;
    size_t k = 0;

    /* TCP in sequence order relative to the first packet (wrap-around safe:
     * the signed distance, biased to sort as unsigned), arrival index as the
     * tie-break; UDP in arrival order. */
    uint32_t base = m->info[f->head].seq;
    for (uint32_t x = f->head; x != TT_NONE; x = m->info[x].next) {
        uint64_t rel = tcp ? (uint64_t)((m->info[x].seq - base) ^ 0x80000000u) : 0;
        m->keys[k++] = (rel << 32) | x;
    }
    if (tcp)
        tt_sort_keys(m->keys, k);
    for (size_t i = 0; i < k; i++) {
        uint32_t x = (uint32_t)m->keys[i];
        int res = cur == TT_NONE ? NOJOIN : tt_run_join(m, pkts, cur, x, max_size,
                                                        max_segments);
        if (res == JOINED)
            continue;
        if (res == PKTBAD) {
            uint32_t r = tt_run_new(m, nruns, x); /* alone, closed */
            if (!tcp)
                cur = r; /* UDP: later datagrams must not pass it */
            continue;
        }
        cur = tt_run_new(m, nruns, x);
    }
}

int
tt_gro_plan_make(const tt_gro_pkt *pkts, size_t n, unsigned kinds, size_t max_size,
                 size_t max_segments, void *scratch, tt_gro_plan *plan)
{
    gro_mem m;
    uint32_t nflows = 0, nruns = 0;
    size_t mask, j = 0, mi = 0;

    plan->nouts = plan->merged = plan->nmerges = 0;
    if (max_size < 1 || max_size > TT_GRO_MAX_SIZE || max_segments < 1)
        return TT_GRO_EARG;
    for (size_t i = 0; i < n; i++) {
        if (pkts[i].len == 0)
            return TT_GRO_EEMPTY;
    }
    tt_gro_layout(n, scratch, &m);
    plan->outs = m.outs;
    plan->members = m.members;
    if (max_segments < 2)
        kinds = 0;
    memset(m.table, 0, m.tsize * sizeof(uint32_t));
    mask = m.tsize - 1;

    /* 1-2: classify, and put candidates into flows. */
    for (uint32_t i = 0; i < n; i++) {
        gro_info *in = &m.info[i];
        tt_gro_classify(pkts[i].data, pkts[i].len, kinds, in);
        if (!in->kind)
            continue;
        /* The flow's open entry. A barrier seals it: its slot becomes a tombstone
         * (reused by the next insertion), so a flow cut by many barriers never
         * makes a long probe chain. */
        size_t tomb = SIZE_MAX;
        for (size_t s = in->hash & mask;; s = (s + 1) & mask) {
            uint32_t slot = m.table[s];
            if (slot == TT_TOMB) {
                if (tomb == SIZE_MAX)
                    tomb = s;
                continue;
            }
            if (slot == 0) {
                if (in->st & ST_BARRIER)
                    break; /* nothing before it to seal */
                gro_flow *f = &m.flows[nflows];
                f->head = f->tail = i;
                f->count = 1;
                m.table[tomb == SIZE_MAX ? s : tomb] = ++nflows;
                break;
            }
            gro_flow *f = &m.flows[slot - 1];
            gro_info *hd = &m.info[f->head];
            if (hd->hash != in->hash ||
                !tt_gro_same_flow(pkts[i].data, pkts[f->head].data, in, hd))
                continue;
            if (in->st & ST_BARRIER) {
                m.table[s] = TT_TOMB;
                break;
            }
            m.info[f->tail].next = i;
            f->tail = i;
            f->count++;
            break;
        }
        if (in->st & ST_BARRIER)
            in->kind = 0; /* passes through alone */
    }
    /* 3: runs. A flow of one packet makes none: it passes through. */
    for (uint32_t f = 0; f < nflows; f++) {
        if (m.flows[f].count > 1)
            tt_flow_runs(&m, pkts, &m.flows[f], &nruns, max_size, max_segments);
    }
    /* Outputs in the order of their first packet. */
    for (uint32_t i = 0; i < n; i++) {
        uint32_t r = m.info[i].run;
        tt_gro_out *o;
        if (r != TT_NONE && m.runs[r].emitted)
            continue;
        o = &m.outs[j++];
        o->first = (uint32_t)mi;
        if (r == TT_NONE || m.runs[r].count == 1) {
            o->count = 1;
            o->len = (uint32_t)pkts[i].len;
            o->gso_size = 0;
            o->kind = o->hdrs = o->l4off = o->psh = 0;
            m.members[mi++] = i;
            if (r != TT_NONE)
                m.runs[r].emitted = 1;
            continue;
        }
        gro_run *run = &m.runs[r];
        const gro_info *hd = &m.info[run->head];
        run->emitted = 1;
        o->count = run->count;
        o->len = run->len;
        o->gso_size = run->gso_size;
        o->kind = hd->kind;
        o->hdrs = hd->hdrs;
        o->l4off = hd->l4off;
        o->psh = (m.info[run->tail].st & ST_PSH) != 0;
        for (uint32_t x = run->head; x != TT_NONE; x = m.info[x].rnext)
            m.members[mi++] = x;
        plan->merged += run->count;
        plan->nmerges++;
    }
    plan->nouts = j;
    return TT_GRO_OK;
}

size_t
tt_gro_header(const tt_gro_pkt *pkts, const tt_gro_plan *plan, const tt_gro_out *o,
              size_t vnet_hdr_size, uint8_t *dst)
{
    struct virtio_net_hdr vh;
    memset(dst, 0, vnet_hdr_size);
    if (!o->kind)
        return vnet_hdr_size;

    const uint8_t *src = pkts[plan->members[o->first]].data;
    const size_t l4 = o->l4off, l4len = o->len - l4;
    const int tcp = (o->kind & TT_GRO_TCP) != 0;
    const size_t csum_at = l4 + (tcp ? 16 : 6);
    uint8_t *ip = dst + vnet_hdr_size;
    uint64_t pseudo;

    memset(&vh, 0, sizeof vh);
    vh.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM;
    vh.gso_type = o->kind == TT_GRO_TCP4   ? VIRTIO_NET_HDR_GSO_TCPV4
                  : o->kind == TT_GRO_TCP6 ? VIRTIO_NET_HDR_GSO_TCPV6
                                           : VIRTIO_NET_HDR_GSO_UDP_L4;
    vh.hdr_len = o->hdrs;
    vh.gso_size = o->gso_size;
    vh.csum_start = (uint16_t)l4;
    vh.csum_offset = (uint16_t)(csum_at - l4);
    memcpy(dst, &vh, sizeof vh); /* host order, as tun_vnet_hdr_get reads it */

    memcpy(ip, src, o->hdrs);
    if (l4 == 20) {
        tt_put_be16(ip + 2, (uint16_t)o->len);
        ip[10] = ip[11] = 0;
        tt_put16(ip + 10, tt_csum_fold(tt_csum_partial(ip, 20, 0)));
        pseudo = tt_csum_partial(ip + 12, 8, 0);
    }
    else {
        tt_put_be16(ip + 4, (uint16_t)(o->len - 40));
        pseudo = tt_csum_partial(ip + 8, 32, 0);
    }
    pseudo += htons((uint16_t)(tcp ? 6 : 17));
    pseudo += htons((uint16_t)l4len);
    if (tcp) {
        if (o->psh)
            ip[l4 + 13] |= TT_TCP_PSH;
    }
    else {
        tt_put_be16(ip + l4 + 4, (uint16_t)l4len);
    }
    /* CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum, not
     * complemented (what tcp_v4_send_check leaves for the device). */
    tt_put16(ip + csum_at, (uint16_t)~tt_csum_fold(pseudo));
    return vnet_hdr_size + o->hdrs;
}

ssize_t
tt_coalesce_core(const tt_gro_pkt *pkts, size_t n, unsigned kinds, size_t max_size,
                 size_t max_segments, size_t vnet_hdr_size, uint8_t *arena, size_t capacity,
                 size_t stride, size_t headroom, size_t slot_size, uint32_t *sizes,
                 void *scratch, tt_gro_plan *plan, int *err_out)
{
    int err;
    size_t j;

    if (vnet_hdr_size < 10 || vnet_hdr_size > TT_GRO_VNET_MAX) {
        err = TT_GRO_EHDRSIZE;
        goto fail;
    }
    if (stride < headroom || stride - headroom < slot_size) {
        err = TT_GRO_ELAYOUT;
        goto fail;
    }
    if (max_size < 1 || max_size > TT_GRO_MAX_SIZE || max_segments < 1) {
        err = TT_GRO_EARG;
        goto fail;
    }
    /* Merges must fit a slot too. */
    if (slot_size <= vnet_hdr_size)
        kinds = 0;
    else if (max_size > slot_size - vnet_hdr_size)
        max_size = slot_size - vnet_hdr_size;
    err = tt_gro_plan_make(pkts, n, kinds, max_size, max_segments, scratch, plan);
    if (err)
        goto fail;
    if (plan->nouts > capacity) {
        err = TT_GRO_ECAPACITY;
        goto fail;
    }
    for (j = 0; j < plan->nouts; j++) {
        /* the buffer's length: a passed-through one may be any size */
        size_t len = plan->outs[j].kind ? plan->outs[j].len
                                        : pkts[plan->members[plan->outs[j].first]].len;
        if (len > slot_size || slot_size - len < vnet_hdr_size) {
            err = TT_GRO_ESLOT;
            goto fail;
        }
    }
    for (j = 0; j < plan->nouts; j++) {
        const tt_gro_out *o = &plan->outs[j];
        uint8_t *dst = arena + j * stride + headroom;
        size_t at = tt_gro_header(pkts, plan, o, vnet_hdr_size, dst);
        for (size_t k = 0; k < o->count; k++) {
            size_t len;
            const uint8_t *p = tt_gro_piece(pkts, plan, o, k, &len);
            memcpy(dst + at, p, len);
            at += len;
        }
        sizes[j] = (uint32_t)at;
    }
    *err_out = TT_GRO_OK;
    return (ssize_t)plan->nouts;

fail:
    *err_out = err;
    return -1;
}
