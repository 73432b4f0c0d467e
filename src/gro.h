/*
 * gro.h: GRO on the write side (tuntap.coalesce, Device.write_batch(coalesce=True)):
 * consecutive TCP segments (and UDP datagrams) of one flow become one virtio-net
 * super-packet.
 *
 * Pure C (no Python.h), so it runs with the GIL released and libFuzzer drives it
 * directly (tests/fuzz/fuzz_gro.c). The Python wrappers are in packet.c
 * (coalesce) and batch.c (write_batch).
 *
 * Two steps, so one plan serves both a copy into a batch and a zero-copy writev():
 *   1. tt_gro_plan_make() reads the input packets (never writes them) and groups
 *      them into outputs: a merged super-packet of count >= 2 members in stream
 *      order, or one packet passed through unchanged.
 *   2. tt_gro_header() writes an output's virtio-net header and, for a merged
 *      one, its rewritten IP + TCP/UDP headers; the payload of member k is
 *      tt_gro_piece(). tt_gro_emit() copies whole outputs into batch slots.
 *
 * The rules (docs/gro.md says where they differ from the kernel's and from
 * wireguard-go's, and why):
 *  - candidates: IPv4 without options, not fragmented, header checksum valid,
 *    total length == buffer; IPv6 with TCP/UDP as next header (no extension
 *    headers), payload length == buffer - 40; TCP with flags exactly ACK or
 *    ACK|PSH and >= 1 byte of payload; UDP (only when asked) with length ==
 *    buffer - header and a non-zero checksum. Anything else passes through; a TCP
 *    packet of a flow that cannot merge (a pure ACK, SYN/FIN/RST/URG/ECE/CWR) is
 *    a barrier, as a flush is in the kernel: nothing after it merges with
 *    anything before it.
 *  - same flow: every IP and TCP/UDP header byte equal except the IP length, the
 *    IPv4 id and header checksum, the TCP sequence number, PSH and checksum, the
 *    UDP length and checksum. So addresses, ports, ACK number, window, TCP
 *    options, ToS/TTL/DF, traffic class/flow label/hop limit must all match.
 *  - TCP: the flow's packets are put in sequence order (wrap-around safe), and a
 *    run grows while the next one starts where the run ends, is no longer than
 *    the first (gso_size), the run has no shorter packet and no PSH yet; UDP: a
 *    datagram joins only the flow's last run (no reordering), same size rules.
 *  - both checksums (TCP/UDP with the pseudo-header) are verified before a
 *    merge; a packet with a bad one never merges and passes through.
 *  - at most max_size bytes of IP length and max_segments members per merge.
 *  - outputs come in the order of the first input packet each contains.
 * References: net/ipv4/tcp_offload.c (tcp_gro_receive), net/core/gro.c
 * (dev_gro_receive, skb_gro_receive), net/ipv4/af_inet.c (inet_gro_receive),
 * net/ipv6/ip6_offload.c (ipv6_gro_receive), net/ipv4/udp_offload.c
 * (udp_gro_receive_segment), include/linux/virtio_net.h (virtio_net_hdr_to_skb).
 */
#ifndef TT_GRO_H
#define TT_GRO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Kinds of merge (the `kinds` mask of tt_gro_plan_make, tt_gro_out.kind). */
#define TT_GRO_TCP4 1u
#define TT_GRO_TCP6 2u
#define TT_GRO_UDP4 4u
#define TT_GRO_UDP6 8u
#define TT_GRO_TCP (TT_GRO_TCP4 | TT_GRO_TCP6)
#define TT_GRO_UDP (TT_GRO_UDP4 | TT_GRO_UDP6)

/* Largest IP + TCP header of a merge (IPv6 40 + TCP 60); vnet headers up to
 * TT_GRO_VNET_MAX bytes go in front of it in tt_gro_header(). */
#define TT_GRO_HDR_MAX 100
#define TT_GRO_VNET_MAX 64
#define TT_GRO_MAX_SIZE 65535
/* The kernel refuses (EINVAL) a UDP_L4 super-packet of more segments than
 * UDP_MAX_SEGMENTS (virtio_net_hdr_to_skb): 64 on older kernels, 128 on newer
 * ones (measured on 6.18). 64 is safe everywhere; TCP has no such limit. */
#define TT_GRO_DEFAULT_SEGMENTS 64

enum {
    TT_GRO_OK = 0,
    TT_GRO_EHDRSIZE = 1,  /* vnet_hdr_size < 10 or > TT_GRO_VNET_MAX */
    TT_GRO_EEMPTY = 2,    /* an input packet of 0 bytes */
    TT_GRO_ECAPACITY = 3, /* more outputs than the batch has slots */
    TT_GRO_ESLOT = 4,     /* a passed-through packet + vnet header > slot_size */
    TT_GRO_ELAYOUT = 5,   /* stride < headroom + slot_size */
    TT_GRO_EARG = 6,      /* max_size not in 1..65535 or max_segments < 1 */
};

/* One input packet: an IP packet without any header in front. */
typedef struct {
    const uint8_t *data;
    size_t len;
} tt_gro_pkt;

/* One output packet. Members are plan->members[first .. first + count). */
typedef struct {
    uint32_t first, count;
    uint32_t len;       /* IP length of the output (sum for a merge) */
    uint16_t gso_size;  /* payload bytes of every member but a shorter last */
    uint8_t kind;       /* TT_GRO_* of a merge; 0: one packet, passed through */
    uint8_t hdrs;       /* IP + TCP/UDP header bytes of a merge; 0 passed through */
    uint8_t l4off;      /* offset of the TCP/UDP header of a merge */
    uint8_t psh;        /* the last member has PSH (merged TCP) */
} tt_gro_out;

typedef struct {
    tt_gro_out *outs;
    size_t nouts;
    uint32_t *members;  /* input indices, every input exactly once */
    size_t merged;      /* inputs that went into merged outputs */
    size_t nmerges;     /* merged outputs */
} tt_gro_plan;

/* Bytes of scratch memory tt_gro_plan_make() needs for n packets (the plan's
 * arrays live in it too); 0 if n is too large to plan (> 2^30). */
size_t tt_gro_scratch_size(size_t n);

/* Plan the coalescing of pkts[0..n). kinds: the TT_GRO_* merges allowed.
 * max_size: largest IP length of a merge (1..65535); max_segments: most members
 * per merge (>= 1). scratch: tt_gro_scratch_size(n) bytes, aligned for uint64_t;
 * the plan points into it. Reads the packets, never writes them. Returns
 * TT_GRO_OK, TT_GRO_EEMPTY or TT_GRO_EARG. No allocation, no Python API. */
int tt_gro_plan_make(const tt_gro_pkt *pkts, size_t n, unsigned kinds, size_t max_size,
                     size_t max_segments, void *scratch, tt_gro_plan *plan);

/* Write output o's virtio-net header (vnet_hdr_size bytes, 10..TT_GRO_VNET_MAX)
 * and, for a merge, its IP + TCP/UDP headers after it into dst (at least
 * vnet_hdr_size + TT_GRO_HDR_MAX bytes). Returns the bytes written. A merge gets
 * NEEDS_CSUM, GSO_TCPV4/TCPV6/UDP_L4, gso_size, hdr_len, csum_start/offset, the
 * pseudo-header sum in the checksum field, the new IP (and UDP) length, the
 * IPv4 header checksum and PSH if its last member had it; a passed-through
 * packet gets an all-zero header (its own checksums stand). */
size_t tt_gro_header(const tt_gro_pkt *pkts, const tt_gro_plan *plan, const tt_gro_out *o,
                     size_t vnet_hdr_size, uint8_t *dst);

/* Member k of output o after the output's header: its payload for a merge, the
 * whole packet when passed through. */
static inline const uint8_t *
tt_gro_piece(const tt_gro_pkt *pkts, const tt_gro_plan *plan, const tt_gro_out *o, size_t k,
             size_t *len)
{
    const tt_gro_pkt *p = &pkts[plan->members[o->first + k]];
    *len = p->len - o->hdrs;
    return p->data + o->hdrs;
}

/* Plan and copy the outputs into batch slots (packet j at arena + j*stride +
 * headroom, vnet header first, its length in sizes[j]). Merges are kept to
 * slot_size - vnet_hdr_size bytes. Every check runs before the first byte is
 * written: on error (-1, *err_out one of TT_GRO_E*) the batch is untouched.
 * Returns the number of outputs. scratch as for tt_gro_plan_make(). */
ssize_t tt_coalesce_core(const tt_gro_pkt *pkts, size_t n, unsigned kinds, size_t max_size,
                         size_t max_segments, size_t vnet_hdr_size, uint8_t *arena,
                         size_t capacity, size_t stride, size_t headroom, size_t slot_size,
                         uint32_t *sizes, void *scratch, tt_gro_plan *plan, int *err_out);

/* A static English sentence for a TT_GRO_E* code. */
const char *tt_gro_strerror(int err);

#endif /* TT_GRO_H */
