"""Packet builders and checkers for the coalescing tests (plain ``struct``, no library code).

``Flow`` builds IPv4/IPv6 TCP/UDP packets with correct checksums; ``Flow.packet(..., bad=True)``
spoils the TCP/UDP checksum. ``outputs(out)`` splits a ``PacketBatch`` filled by
``tuntap.coalesce()`` into (vnet header fields, IP packet) pairs and ``check_superpacket``
verifies a merged one field by field, independently of ``tuntap.segment()``.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

FIN, SYN, RST, PSH, ACK, URG = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
TCP, UDP = 6, 17
NEEDS_CSUM = 1
GSO_NONE, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4 = 0, 1, 4, 5


def fold(s: int) -> int:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def sum16(data: bytes) -> int:
    """Folded ones' complement sum of the big-endian 16-bit words (odd tail padded)."""
    if len(data) % 2:
        data += b"\0"
    return fold(sum(struct.unpack(f"!{len(data) // 2}H", data)))


def checksum(data: bytes) -> int:
    return ~sum16(data) & 0xFFFF


def pseudo(pkt: bytes, proto: int, l4len: int) -> int:
    """Folded pseudo-header sum of an IPv4/IPv6 packet for a TCP/UDP length."""
    addrs = pkt[12:20] if pkt[0] >> 4 == 4 else pkt[8:40]
    return fold(sum16(addrs) + proto + l4len)


def l4_ok(pkt: bytes) -> bool:
    """The TCP/UDP checksum of an IPv4 (no options) or IPv6 (no ext headers) packet holds."""
    off = 20 if pkt[0] >> 4 == 4 else 40
    proto = pkt[9] if off == 20 else pkt[6]
    return fold(pseudo(pkt, proto, len(pkt) - off) + sum16(pkt[off:])) == 0xFFFF


@dataclass(frozen=True)
class Flow:
    fam: int = 4
    proto: int = TCP
    src: str = ""
    dst: str = ""
    sport: int = 40000
    dport: int = 5201
    ack: int = 1000
    window: int = 502
    options: bytes = b""
    tos: int = 0
    ttl: int = 64
    df: bool = True
    tc: int = 0
    label: int = 0
    hlim: int = 64
    urg_ptr: int = 0

    def __post_init__(self) -> None:
        if not self.src:
            object.__setattr__(self, "src", "10.1.0.1" if self.fam == 4 else "fd00:1::1")
        if not self.dst:
            object.__setattr__(self, "dst", "10.1.0.2" if self.fam == 4 else "fd00:1::2")

    def but(self, **kw: Any) -> Flow:
        return replace(self, **kw)

    @property
    def key(self) -> tuple[Any, ...]:
        return (self.fam, self.proto, self.src, self.dst, self.sport, self.dport)

    def l4(self, seq: int, payload: bytes, flags: int) -> bytes:
        if self.proto == TCP:
            assert len(self.options) % 4 == 0
            doff = (20 + len(self.options)) // 4
            return struct.pack("!HHIIBBHHH", self.sport, self.dport, seq & 0xFFFFFFFF,
                               self.ack & 0xFFFFFFFF, doff << 4, flags, self.window, 0,
                               self.urg_ptr) + self.options + payload
        return struct.pack("!HHHH", self.sport, self.dport, 8 + len(payload), 0) + payload

    def packet(self, seq: int, payload: bytes, *, flags: int = ACK, ident: int = 0,
               mf: bool = False, frag: int = 0, bad: bool = False) -> bytes:
        """One packet; for UDP ``seq`` is ignored. ``bad`` spoils the L4 checksum."""
        l4 = bytearray(self.l4(seq, payload, flags))
        if self.fam == 4:
            fl = (0x4000 if self.df else 0) | (0x2000 if mf else 0) | frag
            ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, self.tos, 20 + len(l4), ident,
                                       fl, self.ttl, self.proto, 0,
                                       socket.inet_aton(self.src), socket.inet_aton(self.dst)))
            struct.pack_into("!H", ip, 10, checksum(bytes(ip)))
        else:
            first = (6 << 28) | (self.tc << 20) | self.label
            ip = bytearray(struct.pack("!IHBB16s16s", first, len(l4), self.proto, self.hlim,
                                       socket.inet_pton(socket.AF_INET6, self.src),
                                       socket.inet_pton(socket.AF_INET6, self.dst)))
        at = 16 if self.proto == TCP else 6
        c = ~fold(pseudo(bytes(ip), self.proto, len(l4)) + sum16(bytes(l4))) & 0xFFFF
        if self.proto == UDP and c == 0:
            c = 0xFFFF
        if bad:
            c ^= 0x0101
        struct.pack_into("!H", l4, at, c)
        return bytes(ip + l4)

    def stream(self, seq: int, sizes: list[int], data: bytes | None = None, *,
               psh_last: bool = False, ident: int = 0) -> list[bytes]:
        """Consecutive segments of these payload sizes from ``seq`` (ids ident, ident+1...)."""
        data = data if data is not None else bytes((seq + i) & 0xFF for i in range(sum(sizes)))
        out, off = [], 0
        for i, n in enumerate(sizes):
            flags = ACK | (PSH if psh_last and i == len(sizes) - 1 else 0)
            out.append(self.packet(seq + off, data[off:off + n], flags=flags,
                                   ident=(ident + i) & 0xFFFF))
            off += n
        return out


class Out(NamedTuple):
    flags: int
    gso_type: int
    hdr_len: int
    gso_size: int
    csum_start: int
    csum_offset: int
    ip: bytes

    @property
    def merged(self) -> bool:
        return self.gso_type != GSO_NONE


def outputs(out: Any, vnet_hdr_size: int = 10) -> list[Out]:
    res = []
    for i in range(len(out)):
        b = bytes(out[i])
        assert b[10:vnet_hdr_size] == bytes(vnet_hdr_size - 10)
        res.append(Out(*struct.unpack("=BBHHHH", b[:10]), b[vnet_hdr_size:]))
    return res


def l4_offset(pkt: bytes) -> int:
    return 20 if pkt[0] >> 4 == 4 else 40


def payload_of(pkt: bytes) -> bytes:
    off = l4_offset(pkt)
    proto = pkt[9] if off == 20 else pkt[6]
    return pkt[off + ((pkt[off + 12] >> 4) * 4 if proto == TCP else 8):]


def tcp_seq(pkt: bytes) -> int:
    return int(struct.unpack_from("!I", pkt, l4_offset(pkt) + 4)[0])


def tcp_flags(pkt: bytes) -> int:
    return pkt[l4_offset(pkt) + 13]


def check_superpacket(o: Out, members: list[bytes]) -> None:
    """o is the merge of members (in stream order), checked field by field."""
    head = members[0]
    off = l4_offset(head)
    proto = head[9] if off == 20 else head[6]
    hl = off + ((head[off + 12] >> 4) * 4 if proto == TCP else 8)
    ip = o.ip
    assert o.flags == NEEDS_CSUM
    assert o.gso_type == (GSO_UDP_L4 if proto == UDP else GSO_TCPV4 if off == 20
                          else GSO_TCPV6)
    assert (o.hdr_len, o.csum_start) == (hl, off)
    assert o.csum_offset == (16 if proto == TCP else 6)
    sizes = [len(m) - hl for m in members]
    assert o.gso_size == sizes[0] and all(s == sizes[0] for s in sizes[:-1])
    assert 0 < sizes[-1] <= sizes[0]
    assert ip[hl:] == b"".join(m[hl:] for m in members)
    assert len(ip) == hl + sum(sizes)
    if off == 20:
        assert struct.unpack_from("!H", ip, 2)[0] == len(ip)
        assert checksum(ip[:20]) == 0, "IPv4 header checksum"
        # everything else of the IP header is the head's
        assert ip[:2] + ip[4:10] + ip[12:20] == head[:2] + head[4:10] + head[12:20]
    else:
        assert struct.unpack_from("!H", ip, 4)[0] == len(ip) - 40
        assert ip[:4] + ip[6:40] == head[:4] + head[6:40]
    # the pseudo-header sum (not complemented) in the checksum field
    assert struct.unpack_from("!H", ip, off + o.csum_offset)[0] == pseudo(ip, proto, len(ip) - off)
    if proto == TCP:
        want = head[off + 13] | (members[-1][off + 13] & PSH)
        assert ip[off + 13] == want
        assert ip[off:off + 13] + ip[off + 14:off + 16] + ip[off + 18:hl] == \
            head[off:off + 13] + head[off + 14:off + 16] + head[off + 18:hl]
    else:
        assert struct.unpack_from("!H", ip, off + 4)[0] == len(ip) - off
        assert ip[off:off + 4] == head[off:off + 4]
