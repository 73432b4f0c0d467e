/*
 * gso.h: GSO segmentation of virtio-net super-packets (tuntap.segment).
 *
 * Pure C (no Python.h), so it runs with the GIL released and libFuzzer drives it
 * directly (tests/fuzz/fuzz_gso.c). The Python wrapper is in packet.c.
 */
#ifndef TT_GSO_H
#define TT_GSO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* tt_segment_core() takes one packet as read from a VNET_HDR device (a
 * virtio_net_hdr of vnet_hdr_size bytes, then the IP packet) and writes the IP
 * packets it stands for (no vnet header) into batch slots: packet i starts at
 * arena + i*stride + headroom, its length goes to sizes[i].
 *  - gso_type TCPV4 / TCPV6 / UDP_L4 (| ECN): split the payload into gso_size
 *    chunks; fix IP total length / IPv6 payload length, IPv4 id (+1 per segment)
 *    and header checksum, TCP seq (+gso_size per segment), FIN/PSH only on the
 *    last segment, CWR only on the first, UDP length; full TCP/UDP checksums.
 *  - gso_type NONE with NEEDS_CSUM: complete the partial checksum.
 *  - anything else: copied as one packet.
 * Every check runs before the first byte is written, so on error (-1, *err_out
 * one of TT_SEG_E*) the batch is untouched. Plain C, no Python API: it runs
 * with the GIL released.
 * References: include/linux/virtio_net.h (virtio_net_hdr_to_skb),
 * net/ipv4/tcp_offload.c (tcp_gso_segment), net/ipv4/udp_offload.c
 * (__udp_gso_segment), net/ipv4/af_inet.c (inet_gso_segment), net/core/dev.c
 * (skb_checksum_help). */
enum {
    TT_SEG_OK = 0,
    TT_SEG_EHDRSIZE = 1,   /* vnet_hdr_size < 10 */
    TT_SEG_ETOOSHORT = 2,  /* packet shorter than the vnet header, or empty */
    TT_SEG_EGSOTYPE = 3,   /* gso_type not NONE/TCPV4/TCPV6/UDP_L4 (e.g. UFO) */
    TT_SEG_EGSOSIZE = 4,   /* GSO packet with gso_size == 0 */
    TT_SEG_EIPHDR = 5,     /* IP header malformed/truncated, wrong IP version
                              for gso_type, fragment, or IPv6 ext hdr chain bad */
    TT_SEG_EL4HDR = 6,     /* TCP/UDP header truncated/malformed, or the
                              L4 protocol does not match gso_type */
    TT_SEG_ECSUM = 7,      /* NEEDS_CSUM: csum_start/csum_offset outside packet */
    TT_SEG_ECAPACITY = 8,  /* more segments than capacity */
    TT_SEG_ESLOT = 9,      /* a segment (or the plain packet) > slot_size */
    TT_SEG_ELAYOUT = 10,   /* stride < headroom + slot_size */
    TT_SEG_ETOOBIG = 11,   /* a segment would exceed 65535 bytes of IP length */
};

/* sizeof(struct virtio_net_hdr): the smallest vnet header the kernel takes
 * (drivers/net/tun.c: TUNSETVNETHDRSZ refuses less). */
#define TT_VNET_MIN 10

ssize_t tt_segment_core(const uint8_t *pkt, size_t len, size_t vnet_hdr_size, uint8_t *arena,
                        size_t capacity, size_t stride, size_t headroom, size_t slot_size,
                        uint32_t *sizes, int *err_out);

/* A static English sentence for a TT_SEG_E* code. */
const char *tt_segment_strerror(int err);

#endif /* TT_GSO_H */
