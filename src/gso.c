/*
 * gso.c: GSO segmentation in pure C (see gso.h for the contract).
 *
 * What the kernel does on the way out of a device without offloads, done here for
 * packets read from a VNET_HDR device: include/linux/virtio_net.h
 * (virtio_net_hdr_to_skb), net/ipv4/tcp_offload.c (tcp_gso_segment),
 * net/ipv4/udp_offload.c (__udp_gso_segment), net/ipv4/af_inet.c
 * (inet_gso_segment), net/core/dev.c (skb_checksum_help).
 */
#define _GNU_SOURCE
#include "gso.h"

#include <string.h>

#include <arpa/inet.h>
#include <linux/virtio_net.h>

#include "csum.h"

/* Added in Linux 5.18 uapi (USO); older <linux/virtio_net.h> lack it. The
 * value is fixed by the virtio spec (VIRTIO_NET_HDR_GSO_UDP_L4 = 5). */
#ifndef VIRTIO_NET_HDR_GSO_UDP_L4
#define VIRTIO_NET_HDR_GSO_UDP_L4 5
#endif

#define TT_IPPROTO_TCP 6
#define TT_IPPROTO_UDP 17
#define TT_TCP_FIN 0x01
#define TT_TCP_PSH 0x08
#define TT_TCP_CWR 0x80
const char *
tt_segment_strerror(int err)
{
    switch (err) {
    case TT_SEG_OK: return "success";
    case TT_SEG_EHDRSIZE: return "vnet_hdr_size must be at least 10";
    case TT_SEG_ETOOSHORT: return "packet is shorter than its virtio-net header or empty";
    case TT_SEG_EGSOTYPE: return "unsupported gso_type (supported: NONE, TCPV4, TCPV6, UDP_L4)";
    case TT_SEG_EGSOSIZE: return "GSO packet has gso_size 0";
    case TT_SEG_EIPHDR:
        return "malformed or truncated IP header (or IP version does not match gso_type, "
               "or IP fragment)";
    case TT_SEG_EL4HDR:
        return "malformed or truncated TCP/UDP header, or L4 protocol does not match gso_type";
    case TT_SEG_ECSUM: return "csum_start/csum_offset point outside the packet";
    case TT_SEG_ECAPACITY: return "packet needs more segments than the batch capacity";
    case TT_SEG_ESLOT: return "segment does not fit in a batch slot (slot_size too small)";
    case TT_SEG_ELAYOUT: return "batch stride is smaller than headroom + slot_size";
    case TT_SEG_ETOOBIG: return "segment would exceed the maximum IP packet length";
    default: return "unknown segmentation error";
    }
}

/* What the parse step learns about a packet. */
typedef struct {
    const uint8_t *ip;   /* IP packet (after the vnet header) */
    size_t len;          /* its length (the buffer is the truth, not tot_len) */
    uint8_t flags, gso;  /* vnet flags, gso_type without the ECN bit */
    uint16_t gso_size, csum_start, csum_offset;
    int ipv6;
    size_t l4off;        /* offset of the TCP/UDP header (after IPv6 ext hdrs) */
    size_t hdrs;         /* l4off + TCP/UDP header length */
    size_t nseg;         /* packets that will be produced */
    size_t maxseg;       /* length of the largest one */
} tt_seg_info;

static int
tt_seg_parse(const uint8_t *pkt, size_t len, size_t vnet_hdr_size, tt_seg_info *si)
{
    struct virtio_net_hdr vh;

    if (vnet_hdr_size < TT_VNET_MIN)
        return TT_SEG_EHDRSIZE;
    if (len <= vnet_hdr_size)
        return TT_SEG_ETOOSHORT;
    /* Fields are in host order for TUN on little-endian hosts and for legacy
     * (native-endian) virtio: drivers/net/tun.c tun_is_little_endian(). */
    memcpy(&vh, pkt, sizeof vh);
    si->ip = pkt + vnet_hdr_size;
    si->len = len - vnet_hdr_size;
    si->flags = vh.flags;
    si->gso = vh.gso_type & (uint8_t)~VIRTIO_NET_HDR_GSO_ECN;
    si->gso_size = vh.gso_size;
    si->csum_start = vh.csum_start;
    si->csum_offset = vh.csum_offset;
    si->nseg = 1;
    si->maxseg = si->len;

    if (si->gso == VIRTIO_NET_HDR_GSO_NONE) {
        if (si->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
            if ((size_t)si->csum_start + si->csum_offset + 2 > si->len)
                return TT_SEG_ECSUM;
        }
        return TT_SEG_OK;
    }
    if (si->gso != VIRTIO_NET_HDR_GSO_TCPV4 && si->gso != VIRTIO_NET_HDR_GSO_TCPV6 &&
        si->gso != VIRTIO_NET_HDR_GSO_UDP_L4)
        return TT_SEG_EGSOTYPE;
    if (si->gso_size == 0)
        return TT_SEG_EGSOSIZE;

    /* Headers come from the packet itself; hdr_len is only a hint (guests
     * and the kernel's own tun_put_user fill it inconsistently). */
    const uint8_t *ip = si->ip;
    size_t n = si->len;
    uint8_t proto;
    int ver = ip[0] >> 4;
    if (ver == 4) {
        if (si->gso == VIRTIO_NET_HDR_GSO_TCPV6 || n < 20)
            return TT_SEG_EIPHDR;
        size_t ihl = (size_t)(ip[0] & 0x0f) * 4;
        if (ihl < 20 || ihl > n)
            return TT_SEG_EIPHDR;
        if (tt_get_be16(ip + 6) & 0x3fff)  /* MF or fragment offset */
            return TT_SEG_EIPHDR;
        si->ipv6 = 0;
        si->l4off = ihl;
        proto = ip[9];
    }
    else if (ver == 6) {
        if (si->gso == VIRTIO_NET_HDR_GSO_TCPV4 || n < 40)
            return TT_SEG_EIPHDR;
        size_t off = 40;
        proto = ip[6];
        /* Walk the extension headers that may precede TCP/UDP (at most 8). */
        for (int k = 0; proto == 0 || proto == 43 || proto == 60; k++) {
            if (k == 8 || off + 8 > n)
                return TT_SEG_EIPHDR;
            size_t elen = ((size_t)ip[off + 1] + 1) * 8;
            if (off + elen > n)
                return TT_SEG_EIPHDR;
            proto = ip[off];
            off += elen;
        }
        if (proto == 44)  /* fragment header: cannot segment a fragment */
            return TT_SEG_EIPHDR;
        si->ipv6 = 1;
        si->l4off = off;
    }
    else {
        return TT_SEG_EIPHDR;
    }

    size_t l4 = si->l4off;
    if (si->gso == VIRTIO_NET_HDR_GSO_UDP_L4) {
        if (proto != TT_IPPROTO_UDP || l4 + 8 > n)
            return TT_SEG_EL4HDR;
        si->hdrs = l4 + 8;
    }
    else {
        if (proto != TT_IPPROTO_TCP || l4 + 20 > n)
            return TT_SEG_EL4HDR;
        size_t doff = (size_t)(ip[l4 + 12] >> 4) * 4;
        if (doff < 20 || l4 + doff > n)
            return TT_SEG_EL4HDR;
        si->hdrs = l4 + doff;
    }
    size_t payload = n - si->hdrs;
    si->nseg = payload ? (payload + si->gso_size - 1) / si->gso_size : 1;
    si->maxseg = si->hdrs + (payload < si->gso_size ? payload : si->gso_size);
    /* IPv4 total length / IPv6 payload length / UDP length are 16 bits. */
    if (si->maxseg - (si->ipv6 ? 40 : 0) > 0xffff)
        return TT_SEG_ETOOBIG;
    return TT_SEG_OK;
}

ssize_t
tt_segment_core(const uint8_t *pkt, size_t len, size_t vnet_hdr_size, uint8_t *arena,
                size_t capacity, size_t stride, size_t headroom, size_t slot_size,
                uint32_t *sizes, int *err_out)
{
    tt_seg_info si = {0};
    int err = tt_seg_parse(pkt, len, vnet_hdr_size, &si);
    if (err)
        goto fail;
    if (stride < headroom || stride - headroom < slot_size) {
        err = TT_SEG_ELAYOUT;
        goto fail;
    }
    if (si.nseg > capacity) {
        err = TT_SEG_ECAPACITY;
        goto fail;
    }
    if (si.maxseg > slot_size) {
        err = TT_SEG_ESLOT;
        goto fail;
    }

    const uint8_t *ip = si.ip;
    if (si.gso == VIRTIO_NET_HDR_GSO_NONE) {
        uint8_t *dst = arena + headroom;
        memcpy(dst, ip, si.len);
        if (si.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
            /* The field holds the folded pseudo-header sum (CHECKSUM_PARTIAL):
             * sum from csum_start to the end and store the complement, as
             * skb_checksum_help() does (0 is sent as 0xffff, CSUM_MANGLED_0). */
            uint8_t *at = dst + si.csum_start + si.csum_offset;
            uint16_t c = tt_csum_fold(tt_csum_partial(dst + si.csum_start,
                                                      si.len - si.csum_start, 0));
            tt_put16(at, c ? c : 0xffff);
        }
        sizes[0] = (uint32_t)si.len;
        *err_out = TT_SEG_OK;
        return 1;
    }

    const size_t l4 = si.l4off, hdrs = si.hdrs, gso_size = si.gso_size;
    const size_t payload = si.len - hdrs;
    const int tcp = si.gso != VIRTIO_NET_HDR_GSO_UDP_L4;
    const uint8_t proto = tcp ? TT_IPPROTO_TCP : TT_IPPROTO_UDP;
    const size_t csum_at = l4 + (tcp ? 16 : 6);
    /* Pseudo-header: addresses once; protocol and length per segment. */
    uint64_t pseudo = si.ipv6 ? tt_csum_partial(ip + 8, 32, 0)
                              : tt_csum_partial(ip + 12, 8, 0);
    pseudo += htons(proto);
    const uint16_t id0 = si.ipv6 ? 0 : tt_get_be16(ip + 4);
    const uint32_t seq0 = tcp ? tt_get_be32(ip + l4 + 4) : 0;
    const uint8_t tcpflags = tcp ? ip[l4 + 13] : 0;

    size_t off = 0;
    for (size_t i = 0; i < si.nseg; i++) {
        uint8_t *dst = arena + i * stride + headroom;
        size_t chunk = payload - off < gso_size ? payload - off : gso_size;
        size_t seglen = hdrs + chunk;
        size_t l4len = seglen - l4;
        int last = i + 1 == si.nseg;

        memcpy(dst, ip, hdrs);
        memcpy(dst + hdrs, ip + hdrs + off, chunk);

        if (si.ipv6) {
            tt_put_be16(dst + 4, (uint16_t)(seglen - 40));
        }
        else {
            tt_put_be16(dst + 2, (uint16_t)seglen);
            tt_put_be16(dst + 4, (uint16_t)(id0 + i));
            dst[10] = dst[11] = 0;
            tt_put16(dst + 10, tt_csum_fold(tt_csum_partial(dst, l4, 0)));
        }
        if (tcp) {
            uint8_t f = tcpflags;
            if (!last)
                f &= (uint8_t)~(TT_TCP_FIN | TT_TCP_PSH);
            if (i)
                f &= (uint8_t)~TT_TCP_CWR;
            tt_put_be32(dst + l4 + 4, seq0 + (uint32_t)off);
            dst[l4 + 13] = f;
        }
        else {
            tt_put_be16(dst + l4 + 4, (uint16_t)l4len);
        }
        dst[csum_at] = dst[csum_at + 1] = 0;
        uint64_t sum = tt_csum_partial(dst + l4, l4len, pseudo + htons((uint16_t)l4len));
        uint16_t c = tt_csum_fold(sum);
        if (!tcp && c == 0)
            c = 0xffff;  /* RFC 768: a computed 0 is sent as all ones */
        tt_put16(dst + csum_at, c);
        sizes[i] = (uint32_t)seglen;
        off += chunk;
    }
    *err_out = TT_SEG_OK;
    return (ssize_t)si.nseg;

fail:
    *err_out = err;
    return -1;
}
