"""tuntap.segment(): GSO super-packets split into MTU-sized IP packets, partial checksums.

Two kinds of test:

- hand-built packets (scapy) for every branch: TCPv4, TCPv6 (with extension headers),
  UDP USO over IPv4/IPv6, flags (FIN/PSH only on the last segment, CWR only on the
  first), the ECN bit, IPv4 options, id and sequence wrap-around, NEEDS_CSUM completion
  on non-GSO packets, plain copies, every error. Each segment is re-parsed by scapy with
  its lengths and checksums deleted and rebuilt: the bytes must come out identical.
- the kernel's own TCP stack: super-packets read from an offload device are segmented and
  written to a plain device in a second namespace, and a TCP transfer completes byte-exact.
"""

from __future__ import annotations

import hashlib
import os
import random
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import tuntap
from netutil import ip, tcp_transfer, unique_name

scapy_inet = pytest.importorskip("scapy.layers.inet")
scapy_inet6 = pytest.importorskip("scapy.layers.inet6")
from scapy.layers.inet import IP, TCP, UDP  # noqa: E402
from scapy.layers.inet6 import (  # noqa: E402
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.packet import Packet, Raw  # noqa: E402

HDR, MRG = tuntap.VirtioNetHdr.SIZE, tuntap.VirtioNetHdr.SIZE_MRG_RXBUF  # 10, 12
NEEDS_CSUM, DATA_VALID = 1, 2
GSO_NONE, GSO_TCPV4, GSO_UDP, GSO_TCPV6, GSO_UDP_L4, GSO_ECN = 0, 1, 3, 4, 5, 0x80
_rnd = random.Random(1234)


def payload(n: int) -> bytes:
    return _rnd.randbytes(n)


def vnet(flags: int = 0, gso_type: int = 0, hdr_len: int = 0, gso_size: int = 0,
         csum_start: int = 0, csum_offset: int = 0, size: int = HDR) -> bytes:
    h = struct.pack("=BBHHHH", flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)
    return h + bytes(size - HDR)


def l4_offset(pkt: bytes) -> tuple[int, int]:
    """Offset and protocol of the transport header (walking IPv6 extension headers)."""
    if pkt[0] >> 4 == 4:
        return (pkt[0] & 15) * 4, pkt[9]
    off, nh = 40, pkt[6]
    while nh in (0, 43, 60):
        nh, off = pkt[off], off + (pkt[off + 1] + 1) * 8
    return off, nh


def pseudo_sum(pkt: bytes, proto: int, l4len: int) -> int:
    """The folded ones' complement sum of the pseudo-header (not complemented): what a
    CHECKSUM_PARTIAL packet carries in its checksum field."""
    addrs = pkt[12:20] if pkt[0] >> 4 == 4 else pkt[8:40]
    return 0xFFFF ^ tuntap.checksum(addrs + struct.pack("!HH", proto, l4len))


def rebuild(p: Packet) -> Packet:
    return p.__class__(bytes(p))


def partial(pkt: Packet, gso_type: int, gso_size: int, *, size: int = HDR,
            flags: int = NEEDS_CSUM, ecn: bool = False, hdr_len: int | None = None) -> bytes:
    """vnet header + packet as the kernel hands it out: the L4 checksum holds the
    pseudo-header sum (CHECKSUM_PARTIAL), csum_start/offset point at it."""
    raw = bytearray(bytes(pkt))
    off, proto = l4_offset(bytes(raw))
    csum_off = {6: 16, 17: 6, 58: 2}[proto]
    struct.pack_into("!H", raw, off + csum_off, pseudo_sum(bytes(raw), proto, len(raw) - off))
    hl = off + ((raw[off + 12] >> 4) * 4 if proto == 6 else 8)
    gt = gso_type | (GSO_ECN if ecn else 0)
    h = vnet(flags, gt, hl if hdr_len is None else hdr_len, gso_size, off, csum_off, size)
    return h + bytes(raw)


def segment(data: bytes, *, capacity: int = 64, slot_size: int = 2048, headroom: int = 0,
            vnet_hdr_size: int = HDR) -> list[bytes]:
    batch = tuntap.PacketBatch(capacity, slot_size, headroom=headroom)
    n = tuntap.segment(data, batch, vnet_hdr_size=vnet_hdr_size)
    assert n == len(batch)
    return [bytes(batch[i]) for i in range(n)]


def check_segments(orig: Packet, segs: list[bytes], gso_size: int) -> None:
    """Every segment: scapy-recomputed lengths/checksums equal ours, fields per segment."""
    raw = bytes(orig)
    v4 = raw[0] >> 4 == 4
    off, proto = l4_offset(raw)
    hl = off + ((raw[off + 12] >> 4) * 4 if proto == 6 else 8)
    data = raw[hl:]
    assert len(segs) == max(1, -(-len(data) // gso_size))
    assert b"".join(s[hl:] for s in segs) == data
    for i, seg in enumerate(segs):
        last = i == len(segs) - 1
        assert len(seg) == hl + len(data[i * gso_size:(i + 1) * gso_size])
        p = IP(seg) if v4 else IPv6(seg)
        q = p.copy()
        if v4:
            del q.len, q.chksum
            assert p.id == (IP(raw).id + i) & 0xFFFF
            assert p.len == len(seg)
        else:
            del q.plen
            assert p.plen == len(seg) - 40
        if proto == 6:
            del q[TCP].chksum
            o = (IP(raw) if v4 else IPv6(raw))[TCP]
            t = p[TCP]
            assert t.seq == (o.seq + i * gso_size) & 0xFFFFFFFF
            want = int(o.flags)
            if not last:
                want &= ~0x09  # FIN, PSH
            if i:
                want &= ~0x80  # CWR
            assert int(t.flags) == want
            assert (t.ack, t.window, t.options) == (o.ack, o.window, o.options)
        else:
            del q[UDP].chksum, q[UDP].len
            assert p[UDP].len == len(seg) - off
        assert bytes(q.__class__(bytes(q))) == seg, f"segment {i}: scapy disagrees"
        # every header byte segment() does not own is the original's
        owned = {2, 3, 4, 5, 10, 11} if v4 else {4, 5}
        owned |= {off + k for k in ((4, 5, 6, 7, 13, 16, 17) if proto == 6 else (4, 5, 6, 7))}
        assert [b for k, b in enumerate(seg[:hl]) if k not in owned] == \
            [b for k, b in enumerate(raw[:hl]) if k not in owned]


# ---------------------------------------------------------------------------------------
# Hand-built packets
# ---------------------------------------------------------------------------------------

V4 = dict(src="10.1.2.3", dst="10.9.8.7")
V6 = dict(src="fd00::1", dst="fd00:1:2::abcd")


@pytest.mark.parametrize("fam", [4, 6])
@pytest.mark.parametrize("n, gso", [(1, 1448), (1447, 1448), (1448, 1448), (1449, 1448),
                                    (60000, 1448), (3000, 7), (9001, 536), (200, 1)])
@pytest.mark.parametrize("flags", ["A", "FPA", "CEPA", "FUA"])
def test_tcp_gso_splits_with_lengths_seq_flags_and_checksums(fam: int, n: int, gso: int,
                                                             flags: str) -> None:
    ipl = IP(id=_rnd.randrange(65536), flags="DF", **V4) if fam == 4 else IPv6(**V6)
    pkt = rebuild(ipl / TCP(sport=40000, dport=5201, seq=_rnd.getrandbits(32), ack=77,
                            flags=flags, window=501) / Raw(payload(n)))
    gt = GSO_TCPV4 if fam == 4 else GSO_TCPV6
    segs = segment(partial(pkt, gt, gso, ecn="C" in flags), capacity=max(1, -(-n // gso)))
    check_segments(pkt, segs, gso)


@pytest.mark.parametrize("fam", [4, 6])
def test_tcp_options_are_copied_to_every_segment(fam: int) -> None:
    opts = [("NOP", None), ("NOP", None), ("Timestamp", (123456, 654321))]
    ipl = IP(**V4) if fam == 4 else IPv6(**V6)
    pkt = rebuild(ipl / TCP(flags="PA", options=opts) / Raw(payload(5000)))
    segs = segment(partial(pkt, GSO_TCPV4 if fam == 4 else GSO_TCPV6, 1436))
    check_segments(pkt, segs, 1436)
    assert all(TCP(s[20 if fam == 4 else 40:]).options == pkt[TCP].options for s in segs)


def test_ipv4_options_and_id_wraparound() -> None:
    pkt = rebuild(IP(id=65534, options=b"\x01\x01\x01\x00" * 2, **V4)
                  / TCP(flags="FPA", seq=0xFFFFF000) / Raw(payload(7000)))
    segs = segment(partial(pkt, GSO_TCPV4, 1000))
    check_segments(pkt, segs, 1000)
    assert [IP(s).id for s in segs[:4]] == [65534, 65535, 0, 1]
    assert TCP(segs[5][28:]).seq == (0xFFFFF000 + 5000) & 0xFFFFFFFF  # sequence wrapped


@pytest.mark.parametrize("ext", ["hbh", "dst", "hbh+dst", "rt"])
@pytest.mark.parametrize("l4", ["tcp", "udp"])
def test_ipv6_extension_headers_are_walked(ext: str, l4: str) -> None:
    hdrs = {"hbh": IPv6ExtHdrHopByHop(), "dst": IPv6ExtHdrDestOpt(),
            "hbh+dst": IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt(),
            "rt": IPv6ExtHdrRouting(addresses=[])}[ext]
    l4p = TCP(flags="PA") if l4 == "tcp" else UDP(sport=1, dport=2)
    pkt = rebuild(IPv6(**V6) / hdrs / l4p / Raw(payload(5000)))
    segs = segment(partial(pkt, GSO_TCPV6 if l4 == "tcp" else GSO_UDP_L4, 1200))
    check_segments(pkt, segs, 1200)


@pytest.mark.parametrize("fam", [4, 6])
@pytest.mark.parametrize("n, gso", [(1, 1400), (1400, 1400), (1401, 1400), (30000, 1472),
                                    (999, 10)])
def test_udp_uso_splits_into_datagrams(fam: int, n: int, gso: int) -> None:
    ipl = IP(id=7, **V4) if fam == 4 else IPv6(**V6)
    pkt = rebuild(ipl / UDP(sport=4000, dport=53) / Raw(payload(n)))
    segs = segment(partial(pkt, GSO_UDP_L4, gso), capacity=max(1, -(-n // gso)))
    check_segments(pkt, segs, gso)


def test_udp_checksum_zero_is_sent_as_ffff() -> None:
    base = IP(src="10.0.0.1", dst="10.0.0.2", id=1) / UDP(sport=1, dport=2)
    # With a zero word the checksum is c0 = ~sum0; putting c0 in that word makes the
    # ones' complement sum 0xffff, so the computed checksum is 0 (sent as 0xffff).
    c0 = rebuild(base / Raw(bytes(8)))[UDP].chksum
    pkt = rebuild(base / Raw(struct.pack("!H", c0) + bytes(6)))
    assert pkt[UDP].chksum == 0xFFFF  # scapy also sends a computed 0 as 0xffff
    (seg,) = segment(partial(pkt, GSO_UDP_L4, 100))
    assert seg[26:28] == b"\xff\xff"
    assert seg == bytes(pkt)


@pytest.mark.parametrize("size", [HDR, MRG, 20])
def test_vnet_hdr_size_is_honoured(size: int) -> None:
    pkt = rebuild(IP(**V4) / TCP(flags="PA") / Raw(payload(3000)))
    segs = segment(partial(pkt, GSO_TCPV4, 1000, size=size), vnet_hdr_size=size)
    check_segments(pkt, segs, 1000)


def test_hdr_len_is_ignored_headers_come_from_the_packet() -> None:
    pkt = rebuild(IP(**V4) / TCP(flags="PA") / Raw(payload(3000)))
    for bogus in (0, 7, 2000):
        check_segments(pkt, segment(partial(pkt, GSO_TCPV4, 1000, hdr_len=bogus)), 1000)


def test_gso_without_needs_csum_flag_still_gets_full_checksums() -> None:
    pkt = rebuild(IP(**V4) / TCP(flags="PA") / Raw(payload(3000)))
    check_segments(pkt, segment(partial(pkt, GSO_TCPV4, 1000, flags=0)), 1000)


def test_headroom_is_left_free_and_segments_follow_it() -> None:
    pkt = rebuild(IP(**V4) / TCP(flags="PA") / Raw(payload(3000)))
    batch = tuntap.PacketBatch(8, 1100, headroom=12)
    n = tuntap.segment(partial(pkt, GSO_TCPV4, 1000), batch)
    assert n == 3 == len(batch)
    for i in range(n):
        assert bytes(batch.slot(i)[:12]) == bytes(12)
        assert bytes(batch.slot(i)[12:12 + len(batch[i])]) == bytes(batch[i])
    check_segments(pkt, [bytes(batch[i]) for i in range(n)], 1000)


def test_exact_fit_capacity_and_slot() -> None:
    pkt = rebuild(IP(**V4) / TCP(flags="PA") / Raw(payload(4000)))
    check_segments(pkt, segment(partial(pkt, GSO_TCPV4, 1000), capacity=4, slot_size=1040),
                   1000)


def test_segment_replaces_previous_batch_contents() -> None:
    batch = tuntap.PacketBatch(8, 2048)
    for _ in range(5):
        batch.append(b"\x45" + bytes(40))
    pkt = rebuild(IP(**V4) / TCP(flags="PA") / Raw(payload(1500)))
    assert tuntap.segment(partial(pkt, GSO_TCPV4, 1000), batch) == 2
    assert len(batch) == 2


@pytest.mark.parametrize("pkt", [
    IP(**V4) / TCP(flags="S", options=[("MSS", 1460)]),
    IP(**V4) / TCP(flags="PA") / Raw(b"x" * 1001),
    IP(**V4) / UDP(sport=9, dport=9) / Raw(b"y" * 333),
    IPv6(**V6) / TCP(flags="PA") / Raw(b"z" * 1440),
    IPv6(**V6) / UDP() / Raw(b"1"),
    IPv6(**V6) / IPv6ExtHdrDestOpt() / UDP() / Raw(b"q" * 50),
    IPv6(**V6) / ICMPv6EchoRequest(data=b"p" * 57),
], ids=["tcp4-syn", "tcp4", "udp4", "tcp6", "udp6-odd", "udp6-ext", "icmpv6"])
@pytest.mark.parametrize("size", [HDR, MRG])
def test_needs_csum_is_completed_on_a_plain_packet(pkt: Packet, size: int) -> None:
    pkt = rebuild(pkt)
    (seg,) = segment(partial(pkt, GSO_NONE, 0, size=size), vnet_hdr_size=size)
    assert seg == bytes(pkt)  # scapy computed the full checksum when it built pkt


@pytest.mark.parametrize("flags", [0, DATA_VALID])
@pytest.mark.parametrize("size", [HDR, MRG])
def test_plain_packet_is_copied_unchanged(flags: int, size: int) -> None:
    raw = bytes(IP(**V4) / UDP() / Raw(payload(1400)))
    assert segment(vnet(flags, size=size) + raw, vnet_hdr_size=size) == [raw]
    odd = b"\x45" + payload(30)  # not even a valid packet: copied, not parsed
    assert segment(vnet(flags, size=size) + odd, vnet_hdr_size=size) == [odd]


def _t4(n: int = 3000) -> Packet:
    return rebuild(IP(**V4) / TCP() / Raw(payload(n)))


def _errors() -> Iterator[Any]:
    t4, u4 = _t4(), rebuild(IP(**V4) / UDP() / Raw(payload(3000)))
    t6 = rebuild(IPv6(**V6) / TCP() / Raw(payload(3000)))
    g4 = partial(t4, GSO_TCPV4, 1000)
    frag6 = IPv6(bytes(IPv6(nh=44, **V6) / Raw(b"\x06" + bytes(7) + bytes(TCP()) + payload(900))))
    yield "vnet_hdr_size 9", g4, dict(vnet_hdr_size=9), "vnet_hdr_size"
    yield "header only", g4[:HDR], {}, "shorter"
    yield "truncated header", g4[:7], {}, "shorter"
    yield "UFO", partial(u4, GSO_UDP, 1000), {}, "gso_type"
    yield "gso_type 2", partial(u4, 2, 1000), {}, "gso_type"
    yield "gso_size 0", partial(t4, GSO_TCPV4, 0), {}, "gso_size"
    yield "TCPV4 on IPv6", partial(t6, GSO_TCPV4, 1000), {}, "IP header"
    yield "TCPV6 on IPv4", partial(t4, GSO_TCPV6, 1000), {}, "IP header"
    yield "IP version 5", g4[:HDR] + b"\x55" + g4[HDR + 1:], {}, "IP header"
    yield "IHL 4", g4[:HDR] + b"\x44" + g4[HDR + 1:], {}, "IP header"
    yield "IPv4 truncated", g4[:25], {}, "IP header"
    yield "IPv4 fragment", g4[:16] + b"\x20\x00" + g4[18:], {}, "IP header"
    yield "IPv6 fragment header", vnet(NEEDS_CSUM, GSO_TCPV6, 0, 500) + bytes(frag6), {}, \
        "IP header"
    yield "TCP truncated", g4[:HDR + 20 + 19], {}, "TCP/UDP header"
    yield "TCP doff 4", g4[:42] + b"\x40" + g4[43:], {}, "TCP/UDP header"
    yield "TSO on UDP", partial(u4, GSO_TCPV4, 1000), {}, "TCP/UDP header"
    yield "USO on TCP", partial(t4, GSO_UDP_L4, 1000), {}, "TCP/UDP header"
    yield "csum outside", vnet(NEEDS_CSUM, 0, 0, 0, 20, 100) + bytes(t4)[:100], {}, "csum"
    yield "capacity", g4, dict(capacity=2), "capacity"
    yield "slot_size", g4, dict(slot_size=1039), "slot"
    yield "plain slot_size", vnet() + bytes(t4), dict(slot_size=2048), "slot"


@pytest.mark.parametrize("name, data, kw, words", list(_errors()),
                         ids=[e[0] for e in _errors()])
def test_malformed_input_raises_valueerror(name: str, data: bytes, kw: dict[str, int],
                                           words: str) -> None:
    with pytest.raises(ValueError, match=words):
        segment(data, **kw)


def test_wrong_types_raise_typeerror() -> None:
    batch = tuntap.PacketBatch(4, 2048)
    with pytest.raises(TypeError):
        tuntap.segment("not bytes", batch)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        tuntap.segment(vnet() + bytes(_t4()), [])  # type: ignore[arg-type]


def test_accepts_any_bytes_like_including_batch_views() -> None:
    pkt = rebuild(IP(**V4) / TCP(flags="PA") / Raw(payload(3000)))
    data = partial(pkt, GSO_TCPV4, 1000)
    src = tuntap.PacketBatch(1, 4096)
    src.append(data)
    for obj in (data, bytearray(data), memoryview(data), src[0]):
        check_segments(pkt, segment(obj), 1000)


# ---------------------------------------------------------------------------------------
# Against the kernel: TSO super-packets -> segment() -> a plain device -> TCP byte-exact
# ---------------------------------------------------------------------------------------

def _pump_segment(src: Any, dst: Any, stop: threading.Event, stats: dict[str, int]) -> None:
    """Offload device -> plain device, segmenting every super-packet."""
    inb = tuntap.PacketBatch(16, 65536 + 64)
    out = tuntap.PacketBatch(64, 2048)
    src.settimeout(0.1)
    while not stop.is_set():
        try:
            n = src.read_batch(inb)
        except TimeoutError:
            continue
        for i in range(n):
            pkt = inb[i]
            if pkt[1] & 0x7F:  # gso_type
                stats["gso"] += 1
            k = tuntap.segment(pkt, out, vnet_hdr_size=HDR)
            stats["max_segments"] = max(stats["max_segments"], k)
            dst.write_batch(out)


def _pump_plain_to_vnet(src: Any, dst: Any, stop: threading.Event) -> None:
    """Plain device -> offload device: prepend an all-zero vnet header (headroom)."""
    b = tuntap.PacketBatch(64, 2048, headroom=HDR)
    src.settimeout(0.1)
    while not stop.is_set():
        try:
            n = src.read_batch(b)
        except TimeoutError:
            continue
        dst.write_batch([b.slot(i)[:HDR + len(b[i])] for i in range(n)])


@pytest.mark.needs_tun
@pytest.mark.usefixtures("io_backend")  # a forwarder: both batch backends
@pytest.mark.parametrize("fam", [4, 6])
def test_tso_superpackets_segmented_carry_a_tcp_transfer_byte_exact(
        fam: int, named_netns: str) -> None:
    """A TCP stream A -> B: A's kernel emits TSO super-packets into an offload device,
    segment() splits them, B's kernel (plain device, no offloads) must accept every
    segment (it drops any with a bad checksum) and deliver the bytes in order."""
    if fam == 4:
        a_addr, b_addr, plen = "10.201.0.1", "10.201.0.2", 32
    else:
        a_addr, b_addr, plen = "fd00:201::1", "fd00:201::2", 128
    nsb = named_netns
    name_a, name_b = unique_name("sga"), unique_name("sgb")
    flags = tuntap.Flags.TUN | tuntap.Flags.NO_PI
    dev_a = tuntap.Device(name_a, flags | tuntap.Flags.VNET_HDR)
    dev_b = tuntap.Device(name_b, flags, netns=nsb)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        dev_a.set_offload(tuntap.Offload.CSUM | tuntap.Offload.TSO4 | tuntap.Offload.TSO6)
        dev_b.set_offload(tuntap.Offload(0))
        for dev, ns in ((dev_a, None), (dev_b, nsb)):
            if fam == 6:
                ip("link", "set", dev.name, "addrgenmode", "none", netns=ns)
        # Up first: an IPv6 peer address added while the link is down gets no route
        # to the peer when the link comes up (Linux 6.18).
        dev_a.up()
        dev_b.up()
        if fam == 6:
            ip("addr", "add", f"{a_addr}/{plen}", "peer", f"{b_addr}/{plen}", "dev", name_a,
               "nodad")
            ip("addr", "add", f"{b_addr}/{plen}", "peer", f"{a_addr}/{plen}", "dev", name_b,
               "nodad", netns=nsb)
        else:
            dev_a.add_address(f"{a_addr}/{plen}", peer=b_addr)
            dev_b.add_address(f"{b_addr}/{plen}", peer=a_addr)
        stats = {"gso": 0, "max_segments": 0}
        threads = [
            threading.Thread(target=_pump_segment, args=(dev_a, dev_b, stop, stats)),
            threading.Thread(target=_pump_plain_to_vnet, args=(dev_b, dev_a, stop)),
        ]
        for t in threads:
            t.start()
        family = socket.AF_INET if fam == 4 else socket.AF_INET6
        data = os.urandom(8 << 20)
        got = tcp_transfer(family, b_addr, f"/var/run/netns/{nsb}", data)
        assert got["n"] == len(data)
        assert got["sha"] == hashlib.sha256(data).hexdigest()
        assert stats["gso"] > 0, "the kernel sent no TSO super-packet"
        assert stats["max_segments"] > 1
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        dev_a.close()
        dev_b.close()


def test_packet_inside_the_destination_batch_is_refused_and_batch_untouched() -> None:
    pkt = rebuild(IP(**V4) / TCP(flags="PA") / Raw(payload(3000)))
    batch = tuntap.PacketBatch(8, 4096)
    batch.append(partial(pkt, GSO_TCPV4, 1000))
    before = bytes(batch[0])
    with pytest.raises(ValueError, match="inside the destination batch"):
        tuntap.segment(batch[0], batch)
    with pytest.raises(ValueError, match="inside the destination batch"):
        tuntap.segment(memoryview(batch)[-4096:], batch)  # the last slot overlaps too
    assert len(batch) == 1 and bytes(batch[0]) == before


@pytest.mark.parametrize("size", [-1, 0, 9])
def test_vnet_hdr_size_below_10_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match=f"vnet_hdr_size must be at least {HDR}, not {size}"):
        tuntap.segment(vnet() + bytes(_t4()), tuntap.PacketBatch(4, 2048), vnet_hdr_size=size)


def test_vnet_hdr_size_is_keyword_only_and_typed() -> None:
    batch = tuntap.PacketBatch(4, 2048)
    with pytest.raises(TypeError):
        tuntap.segment(vnet() + bytes(_t4()), batch, HDR)  # type: ignore[misc]
    with pytest.raises(TypeError):
        tuntap.segment(vnet() + bytes(_t4()), batch, vnet_hdr_size="10")  # type: ignore[arg-type]


def test_failed_segment_leaves_the_batch_as_it_was() -> None:
    batch = tuntap.PacketBatch(2, 2048)
    batch.append(b"\x45" + bytes(40))
    with pytest.raises(ValueError, match="capacity"):
        tuntap.segment(partial(_t4(), GSO_TCPV4, 1000), batch)
    assert len(batch) == 1 and bytes(batch[0]) == b"\x45" + bytes(40)
