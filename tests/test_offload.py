"""Offloads: ``vnet_hdr_size``, ``set_offload`` and GSO traffic on ``VNET_HDR`` devices.

(``VirtioNetHdr`` on its own is tested in test_vnet.py.) Two kinds of test:

- The device knobs (``vnet_hdr_size``, ``header_size``, ``set_offload``): values read back,
  exact exception types and messages, the kernel's answer where the library passes through.
- Real packets through the kernel on a ``VNET_HDR`` TUN in the session's private namespace:
  a UDP socket with ``UDP_SEGMENT`` and a TCP connection (the peer's SYN-ACK is written by
  the test) produce USO/TSO super-packets when the offloads are on and MTU-sized packets
  when they are off; ``tuntap.segment()`` turns the first into the second. In the other
  direction, GSO super-packets written into the device reach a local UDP socket as
  ``gso_size`` datagrams, and malformed writes get the kernel's EINVAL.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import select
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

import tuntap
from netutil import (
    CLOSED_MSG,
    IPPROTO_TCP,
    IPPROTO_UDP,
    PI_SIZE,
    WAIT,
    build_udp4,
    ip,
    unique_name,
    unique_net,
    unique_net6,
    wait_ipv6_routes,
    wait_readable,
)

# The I/O part of the suite: every test runs on both batch backends (conftest.io_backend).
pytestmark = pytest.mark.usefixtures("io_backend")

VNET = tuntap.VirtioNetHdr
HDR = VNET.SIZE  # the default vnet_hdr_size: every read and write starts with these bytes
MRG = VNET.SIZE_MRG_RXBUF  # the 12-byte form (with num_buffers)
Flags = tuntap.Flags
Offload = tuntap.Offload
checksum = tuntap.checksum

UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)  # <linux/udp.h>
TCP_SYN, TCP_ACK = 0x02, 0x10
PORT = 7801

TSO = Offload.CSUM | Offload.TSO4 | Offload.TSO6
USO = Offload.CSUM | Offload.USO4 | Offload.USO6


# ---------------------------------------------------------------------------------------
# vnet_hdr_size and header_size
# ---------------------------------------------------------------------------------------

VNET_TUN = Flags.TUN | Flags.NO_PI | Flags.VNET_HDR


@pytest.mark.needs_tun
def test_vnet_hdr_size_defaults_to_10_and_header_size_follows_it(
        open_device: Callable[..., Any]) -> None:
    dev = open_device(unique_name(), VNET_TUN)
    assert Flags.VNET_HDR in dev.flags
    assert dev.vnet_hdr_size == HDR
    assert dev.header_size == HDR
    dev.vnet_hdr_size = MRG
    assert (dev.vnet_hdr_size, dev.header_size) == (MRG, MRG)
    dev.vnet_hdr_size = 16
    assert (dev.vnet_hdr_size, dev.header_size) == (16, 16)
    dev.vnet_hdr_size = HDR
    assert (dev.vnet_hdr_size, dev.header_size) == (HDR, HDR)


@pytest.mark.needs_tun
def test_header_size_adds_4_for_packet_info(open_device: Callable[..., Any]) -> None:
    dev = open_device(unique_name(), Flags.TUN | Flags.VNET_HDR)
    assert (dev.vnet_hdr_size, dev.header_size) == (HDR, PI_SIZE + HDR)
    dev.vnet_hdr_size = MRG
    assert dev.header_size == PI_SIZE + MRG


@pytest.mark.needs_tun
@pytest.mark.parametrize("value, exc, msg", [
    (8, ValueError, f"vnet_hdr_size must be at least {HDR}, not 8"),
    (9, ValueError, f"vnet_hdr_size must be at least {HDR}, not 9"),
    (0, ValueError, f"vnet_hdr_size must be at least {HDR}, not 0"),
    (-1, ValueError, f"vnet_hdr_size must be at least {HDR}, not -1"),
    (True, ValueError, f"vnet_hdr_size must be at least {HDR}, not 1"),
    ("12", TypeError, "vnet_hdr_size must be int, not str"),
    (12.0, TypeError, "vnet_hdr_size must be int, not float"),
    (None, TypeError, "vnet_hdr_size must be int, not NoneType"),
    (1 << 40, OverflowError, "vnet_hdr_size is out of range"),
])
def test_vnet_hdr_size_refuses_bad_values_and_keeps_the_old_one(
        open_device: Callable[..., Any], value: object, exc: type[Exception],
        msg: str) -> None:
    dev = open_device(unique_name(), VNET_TUN)
    dev.vnet_hdr_size = 12
    with pytest.raises(exc, match=re.escape(msg)):
        dev.vnet_hdr_size = value
    assert (dev.vnet_hdr_size, dev.header_size) == (12, 12)


@pytest.mark.needs_tun
def test_vnet_hdr_size_cannot_be_deleted(open_device: Callable[..., Any]) -> None:
    dev = open_device(unique_name(), VNET_TUN)
    with pytest.raises(AttributeError):
        del dev.vnet_hdr_size
    assert dev.vnet_hdr_size == HDR


@pytest.mark.needs_tun
def test_vnet_knobs_on_a_closed_device_raise_valueerror(
        open_device: Callable[..., Any]) -> None:
    dev = open_device(unique_name(), VNET_TUN)
    dev.close()
    closed = f"^{re.escape(CLOSED_MSG)}$"
    with pytest.raises(ValueError, match=closed):
        dev.vnet_hdr_size  # noqa: B018
    with pytest.raises(ValueError, match=closed):
        dev.vnet_hdr_size = MRG
    with pytest.raises(ValueError, match=closed):
        dev.header_size  # noqa: B018
    with pytest.raises(ValueError, match=closed):
        dev.set_offload(Offload(0))
    with pytest.raises(ValueError, match=closed):
        dev.set_offload(TSO)


@pytest.mark.needs_tun
def test_vnet_hdr_size_on_a_plain_device_is_kept_by_the_kernel_but_unused(
        tun: Any) -> None:
    """TUNSETVNETHDRSZ works without VNET_HDR (the kernel keeps the value: docs/kernel.md,
    "The virtio-net header"), but packets carry no header until VNET_HDR is on:
    header_size stays 0."""
    dev = tun.dev
    assert (dev.vnet_hdr_size, dev.header_size) == (HDR, 0)
    dev.vnet_hdr_size = MRG
    assert (dev.vnet_hdr_size, dev.header_size) == (MRG, 0)
    pkt = _udp_round(dev, tun.local, tun.remote)
    assert pkt[0] == 0x45  # the IP header starts at byte 0


@pytest.mark.needs_tun
@pytest.mark.parametrize("hdr_size", [HDR, MRG])
def test_buffer_not_longer_than_the_vnet_header_is_refused_and_the_packet_kept(
        up_device: Callable[..., Any], hdr_size: int) -> None:
    """The kernel would answer EINVAL and drop the packet (drivers/net/tun.c:
    tun_put_user); the library refuses first, so the packet is still there."""
    t = up_device(VNET_TUN)
    t.dev.vnet_hdr_size = hdr_size
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"kept", (t.remote, PORT))
    wait_readable(t.dev.fileno())
    with pytest.raises(ValueError, match=re.escape(
            f"readinto() buffer must be longer than the {hdr_size}-byte packet header")):
        t.dev.readinto(bytearray(hdr_size))
    with pytest.raises(ValueError, match=re.escape(
            f"read() size {hdr_size} is too small (packet header: {hdr_size} bytes)")):
        t.dev.read(hdr_size)
    t.dev.setblocking(False)
    raw = t.dev.read()
    assert raw[:hdr_size] == bytes(hdr_size)  # GSO_NONE, checksum complete
    assert _l4_payload(raw[hdr_size:]) == b"kept"


def _udp_round(dev: Any, local: str, remote: str, payload: bytes = b"probe") -> bytes:
    """Send one datagram to ``remote`` (routed through ``dev``), return what ``dev`` reads."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((local, 0))
        s.sendto(payload, (remote, PORT))
        sport = s.getsockname()[1]
    (raw,) = collect(dev, lambda p: _is_flow(p, IPPROTO_UDP, sport, PORT), count=1, hdr=0)
    return raw


# ---------------------------------------------------------------------------------------
# set_offload
# ---------------------------------------------------------------------------------------

CSUM_NEEDED = "TSO and USO offloads require CSUM"
USO_PAIR = "USO4 and USO6 must be set together"
UFO_REFUSED = "UFO is not supported: the kernel silently ignores it"


@pytest.mark.needs_tun
@pytest.mark.parametrize("offload, msg", [
    (Offload.TSO4, CSUM_NEEDED),
    (Offload.TSO6, CSUM_NEEDED),
    (Offload.TSO_ECN, CSUM_NEEDED),
    (Offload.TSO4 | Offload.TSO6, CSUM_NEEDED),
    (Offload.USO4 | Offload.USO6, CSUM_NEEDED),
    (Offload.CSUM | Offload.USO4, USO_PAIR),
    (Offload.CSUM | Offload.USO6, USO_PAIR),
    (Offload.CSUM | Offload.TSO4 | Offload.USO6, USO_PAIR),
    (Offload.UFO, UFO_REFUSED),
    (Offload.CSUM | Offload.UFO, UFO_REFUSED),
    (TSO | USO | Offload.UFO, UFO_REFUSED),
    (0x1000, "unknown offload bits"),
    (0x80, "unknown offload bits"),
    (-1, "offload must be >= 0, not -1"),
    (Offload.CSUM | Offload.TSO_ECN, "TSO_ECN needs TSO4 or TSO6"),
])
def test_set_offload_refuses_invalid_masks_with_a_message(
        open_device: Callable[..., Any], offload: int, msg: str) -> None:
    dev = open_device(unique_name(), VNET_TUN)
    with pytest.raises(ValueError, match=re.escape(msg)):
        dev.set_offload(offload)


@pytest.mark.needs_tun
@pytest.mark.parametrize("bits", [0x1000, 0x80])
def test_set_offload_unknown_bits_message_names_the_bits(
        open_device: Callable[..., Any], bits: int) -> None:
    dev = open_device(unique_name(), VNET_TUN)
    with pytest.raises(ValueError, match=f"^unknown offload bits {bits:#x}$"):
        dev.set_offload(bits | Offload.CSUM)


@pytest.mark.needs_tun
@pytest.mark.parametrize("value, exc", [("1", TypeError), (1.0, TypeError),
                                        (None, TypeError), (1 << 70, OverflowError)])
def test_set_offload_wrong_types(open_device: Callable[..., Any], value: object,
                                 exc: type[Exception]) -> None:
    dev = open_device(unique_name(), VNET_TUN)
    with pytest.raises(exc):
        dev.set_offload(value)


@pytest.mark.needs_tun
@pytest.mark.parametrize("offload", [
    Offload(0), 0, Offload.CSUM, Offload.CSUM | Offload.TSO4, Offload.CSUM | Offload.TSO6,
    TSO, TSO | Offload.TSO_ECN, USO, TSO | USO | Offload.TSO_ECN,
], ids=str)
def test_set_offload_accepts_valid_masks(open_device: Callable[..., Any],
                                         offload: int) -> None:
    dev = open_device(unique_name(), VNET_TUN)
    assert dev.set_offload(offload) is None
    assert dev.set_offload(Offload(0)) is None


@pytest.mark.needs_tun
def test_set_offload_on_a_plain_device_is_refused_and_checksums_stay_complete(
        tun: Any) -> None:
    """The kernel would accept TUNSETOFFLOAD without VNET_HDR and then hand the reader
    packets whose UDP checksum is only the pseudo-header sum (CHECKSUM_PARTIAL) with no
    header to say so: the library refuses, and the device keeps complete checksums."""
    dev = tun.dev
    with pytest.raises(ValueError, match=re.escape(
            f"offloads need a VNET_HDR device: '{dev.name}' has no virtio-net header")):
        dev.set_offload(Offload.CSUM)
    dev.set_offload(Offload(0))  # nothing to turn off: allowed
    pkt = _udp_round(dev, tun.local, tun.remote, b"complete")
    assert _l4_payload(pkt) == b"complete"
    assert _l4_checksum_ok(pkt)


# ---------------------------------------------------------------------------------------
# Packet helpers (plain struct; IPv6 packets here carry no extension headers)
# ---------------------------------------------------------------------------------------


def _l4_offset(pkt: bytes) -> int:
    return (pkt[0] & 15) * 4 if pkt[0] >> 4 == 4 else 40


def _proto(pkt: bytes) -> int:
    return pkt[9] if pkt[0] >> 4 == 4 else pkt[6]


def _pseudo(pkt: bytes, proto: int, length: int) -> bytes:
    if pkt[0] >> 4 == 4:
        return pkt[12:20] + struct.pack("!BBH", 0, proto, length)
    return pkt[8:40] + struct.pack("!IxxxB", length, proto)


def _l4_checksum_ok(pkt: bytes) -> bool:
    off = _l4_offset(pkt)
    seg = pkt[off:]
    return checksum(_pseudo(pkt, _proto(pkt), len(seg)) + seg) == 0


def _l4_payload(pkt: bytes) -> bytes:
    off = _l4_offset(pkt)
    if _proto(pkt) == IPPROTO_UDP:
        return pkt[off + 8:]
    return pkt[off + (pkt[off + 12] >> 4) * 4:]


def _ports(pkt: bytes) -> tuple[int, int]:
    off = _l4_offset(pkt)
    sport, dport = struct.unpack("!HH", pkt[off:off + 4])
    return sport, dport


def _is_flow(pkt: bytes, proto: int, sport: int, dport: int) -> bool:
    return (len(pkt) >= 28 and pkt[0] >> 4 in (4, 6) and _proto(pkt) == proto
            and _ports(pkt) == (sport, dport))


def _tcp_seq_flags(pkt: bytes) -> tuple[int, int]:
    off = _l4_offset(pkt)
    return struct.unpack("!I", pkt[off + 4:off + 8])[0], pkt[off + 13]


def _ip_packet(src: str, dst: str, proto: int, l4: bytes) -> bytes:
    if ":" not in src:
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0x4321, 0x4000, 64, proto,
                          0, socket.inet_aton(src), socket.inet_aton(dst))
        return hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:] + l4
    return (struct.pack("!IHBB", 6 << 28, len(l4), proto, 64)
            + socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
            + l4)


def _udp_packet(src: str, dst: str, sport: int, dport: int, payload: bytes, *,
                partial: bool = False) -> bytes:
    """IPv4/IPv6 UDP packet; ``partial``: the checksum field holds the pseudo-header sum
    (what a NEEDS_CSUM packet carries), else the complete checksum."""
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    pkt = bytearray(_ip_packet(src, dst, IPPROTO_UDP, udp))
    off = _l4_offset(bytes(pkt))
    pseudo = _pseudo(bytes(pkt), IPPROTO_UDP, len(udp))
    csum = (~checksum(pseudo)) & 0xFFFF if partial else (checksum(pseudo + udp) or 0xFFFF)
    struct.pack_into("!H", pkt, off + 6, csum)
    return bytes(pkt)


def _syn_ack(syn: bytes, mss: int, isn: int = 1000) -> bytes:
    """The peer's answer to ``syn``: SYN-ACK with only an MSS option (so no timestamps
    and the data segments carry exactly ``mss`` payload bytes), window 65535."""
    v4 = syn[0] >> 4 == 4
    src, dst = (syn[12:16], syn[16:20]) if v4 else (syn[8:24], syn[24:40])
    sport, dport = _ports(syn)
    seq, _flags = _tcp_seq_flags(syn)
    tcp = bytearray(struct.pack("!HHIIBBHHHBBH", dport, sport, isn, (seq + 1) & 0xFFFFFFFF,
                                6 << 4, TCP_SYN | TCP_ACK, 65535, 0, 0, 2, 4, mss))
    fam = socket.AF_INET if v4 else socket.AF_INET6
    pkt = bytearray(_ip_packet(socket.inet_ntop(fam, dst), socket.inet_ntop(fam, src),
                               IPPROTO_TCP, bytes(tcp)))
    off = _l4_offset(bytes(pkt))
    struct.pack_into("!H", pkt, off + 16,
                     checksum(_pseudo(bytes(pkt), IPPROTO_TCP, len(tcp)) + bytes(tcp)))
    return bytes(pkt)


def collect(dev: Any, match: Callable[[bytes], bool], *, count: int, hdr: int = HDR,
            quiet: float = 0.1, timeout: float = WAIT) -> list[bytes]:
    """Read from ``dev`` until ``count`` packets satisfy ``match`` (waiting up to
    ``timeout``), then go on until ``quiet`` seconds pass without a packet, so extra ones
    are caught too. Returns the matching reads whole (``hdr`` bytes of header + packet);
    ``match`` sees the packet after the header."""
    buf = bytearray(65536 + 64)
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    old = dev.gettimeout()
    try:
        for _ in range(2000):
            now = time.monotonic()
            wait = quiet if len(got) >= count else deadline - now
            if wait <= 0 or now > deadline + 2:
                break
            dev.settimeout(wait)
            try:
                n = dev.readinto(buf)
            except TimeoutError:
                break
            if match(bytes(buf[hdr:n])):
                got.append(bytes(buf[:n]))
    finally:
        dev.settimeout(old)
    return got


def segments(raw: bytes, vnet_hdr_size: int = HDR) -> list[bytes]:
    batch = tuntap.PacketBatch(64, 2048)
    n = tuntap.segment(raw, batch, vnet_hdr_size=vnet_hdr_size)
    return [bytes(batch[i]) for i in range(n)]


# ---------------------------------------------------------------------------------------
# Super-packets read from the device
# ---------------------------------------------------------------------------------------


@dataclass
class VnetTun:
    """A VNET_HDR TUN, up, with ``local`` and a point-to-point ``remote`` through it."""

    dev: Any
    fam: int
    af: int
    local: str
    remote: str
    iphl: int  # IP header length of the packets the kernel sends


def _vnet_tun(open_device: Callable[..., Any], fam: int) -> VnetTun:
    dev = open_device(unique_name("tof"), VNET_TUN)
    ip("link", "set", dev.name, "addrgenmode", "none")
    # Up first: an IPv6 peer address added while the link is down gets no peer route.
    dev.up()
    if fam == 4:
        net = unique_net()
        local, remote = net.local, net.remote
        dev.add_address(f"{local}/32", peer=remote)
        return VnetTun(dev, 4, socket.AF_INET, local, remote, 20)
    local, remote = unique_net6()
    ip("addr", "add", f"{local}/128", "peer", f"{remote}/128", "dev", dev.name, "nodad")
    wait_ipv6_routes(dev.name, local, remote)
    return VnetTun(dev, 6, socket.AF_INET6, local, remote, 40)


@pytest.fixture(params=[4, 6], ids=["ipv4", "ipv6"])
def vtun(request: pytest.FixtureRequest, open_device: Callable[..., Any]) -> VnetTun:
    return _vnet_tun(open_device, request.param)


def _udp_gso_send(t: VnetTun, s: socket.socket, payload: bytes, count: int) -> list[bytes]:
    s.sendto(payload, (t.remote, PORT))
    sport = s.getsockname()[1]
    return collect(t.dev, lambda p: _is_flow(p, IPPROTO_UDP, sport, PORT), count=count)


@pytest.mark.needs_tun
def test_udp_segment_send_is_one_uso_superpacket_with_offload_and_mtu_packets_without(
        vtun: VnetTun) -> None:
    t = vtun
    payload = os.urandom(10_240)
    with socket.socket(t.af, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_UDP, UDP_SEGMENT, 1000)
        s.bind((t.local, 0))
        t.dev.set_offload(USO)
        big = _udp_gso_send(t, s, payload, 1)
        t.dev.set_offload(Offload(0))
        plain = _udp_gso_send(t, s, payload, 11)

    assert len(big) == 1, f"{len(big)} packets with USO on"
    h = VNET.parse(big[0])
    assert h == VNET(flags=VNET.F_NEEDS_CSUM, gso_type=VNET.GSO_UDP_L4, hdr_len=t.iphl + 8,
                     gso_size=1000, csum_start=t.iphl, csum_offset=6)
    assert h.is_gso and h.needs_csum
    sp = big[0][HDR:]
    assert len(sp) == t.iphl + 8 + len(payload) > t.dev.mtu
    assert _l4_payload(sp) == payload

    assert len(plain) == 11, f"{len(plain)} packets with offloads off"
    for raw in plain:
        assert raw[:HDR] == bytes(HDR)  # GSO_NONE, checksum complete
        assert len(raw) - HDR <= t.dev.mtu
        assert _l4_checksum_ok(raw[HDR:])
    assert [len(_l4_payload(r[HDR:])) for r in plain] == [1000] * 10 + [240]
    assert b"".join(_l4_payload(r[HDR:]) for r in plain) == payload

    # segment() turns the super-packet into what the kernel sends without offloads.
    segs = segments(big[0])
    assert len(segs) == 11
    for seg, raw in zip(segs, plain):
        want = raw[HDR:]
        assert _l4_checksum_ok(seg)
        if t.fam == 6:
            assert seg == want
        else:  # the IPv4 id (and so the header checksum) differs from send to send
            assert checksum(seg[:20]) == 0
            assert seg[:4] + seg[6:10] + seg[12:] == want[:4] + want[6:10] + want[12:]
    if t.fam == 4:  # ... but both number their segments consecutively
        ids = [struct.unpack("!H", p[4:6])[0] for p in segs]
        want_ids = [struct.unpack("!H", r[14:16])[0] for r in plain]
        for got in (ids, want_ids):
            assert [(i - got[0]) & 0xFFFF for i in got] == list(range(11))


def _tcp_first_flight(t: VnetTun, data: bytes) -> list[bytes]:
    """Connect to ``remote`` (this test writes the peer's SYN-ACK), send ``data`` and
    return the data packets of the first flight (vnet header + packet), in sequence
    order, retransmissions dropped. Nobody ACKs them, so the flight is the initial
    congestion window: several MSS, enough for super-packets."""
    mss = t.dev.mtu - t.iphl - 20
    with socket.socket(t.af, socket.SOCK_STREAM) as s:
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect((t.remote, PORT))
        sport = s.getsockname()[1]
        flow = lambda p: _is_flow(p, IPPROTO_TCP, sport, PORT)  # noqa: E731
        syn = collect(t.dev, lambda p: flow(p) and _tcp_seq_flags(p)[1] == TCP_SYN,
                      count=1, quiet=0.0)
        assert len(syn) == 1, "no SYN"
        t.dev.write(bytes(HDR) + _syn_ack(syn[0][HDR:], mss))
        _, w, _ = select.select([], [s], [], WAIT)
        assert w and s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0, "no connection"
        sent = s.send(data)
        assert sent > 4 * mss
        reads = collect(t.dev, lambda p: flow(p) and len(_l4_payload(p)) > 0, count=1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    isn = _tcp_seq_flags(syn[0][HDR:])[0]
    flight, nxt = [], (isn + 1) & 0xFFFFFFFF
    for raw in sorted(reads, key=lambda r: (_tcp_seq_flags(r[HDR:])[0] - isn) & 0xFFFFFFFF):
        seq = _tcp_seq_flags(raw[HDR:])[0]
        if seq == nxt:
            flight.append(raw)
            nxt = (nxt + len(_l4_payload(raw[HDR:]))) & 0xFFFFFFFF
    return flight


@pytest.mark.needs_tun
def test_tcp_with_tso_arrives_as_superpackets_with_gso_size_mss(vtun: VnetTun) -> None:
    t = vtun
    t.dev.set_offload(TSO)
    data = os.urandom(64 << 10)
    flight = _tcp_first_flight(t, data)
    mss = t.dev.mtu - t.iphl - 20
    gso_type = VNET.GSO_TCPV4 if t.fam == 4 else VNET.GSO_TCPV6
    supers = [r for r in flight if VNET.parse(r).is_gso]
    assert supers, "no TSO super-packet in the first flight"
    for raw in flight:
        h = VNET.parse(raw)
        # With CSUM on, every packet (GSO or not) leaves its TCP checksum to userspace.
        assert h.flags == VNET.F_NEEDS_CSUM
        assert (h.csum_start, h.csum_offset) == (t.iphl, 16)
        if h.is_gso:
            assert h.gso_type == gso_type
            assert h.gso_size == mss
            assert 0 < h.gso_size <= t.dev.mtu - 40
            assert t.dev.mtu < len(raw) - HDR <= 65535 + (40 if t.fam == 6 else 0)
            assert t.iphl + 20 <= h.hdr_len <= len(raw) - HDR
        else:
            assert len(raw) - HDR <= t.dev.mtu
    # segment() yields MSS-sized, checksummed packets carrying the stream in order.
    stream = b""
    for raw in flight:
        for seg in segments(raw):
            assert len(seg) <= t.dev.mtu
            assert len(_l4_payload(seg)) <= mss
            assert _l4_checksum_ok(seg)
            stream += _l4_payload(seg)
    assert len(stream) >= 4 * mss
    assert stream == data[:len(stream)]


@pytest.mark.needs_tun
def test_tcp_without_offload_on_a_vnet_device_arrives_as_plain_mtu_packets(
        vtun: VnetTun) -> None:
    t = vtun
    t.dev.set_offload(Offload(0))
    data = os.urandom(64 << 10)
    flight = _tcp_first_flight(t, data)
    mss = t.dev.mtu - t.iphl - 20
    assert len(flight) >= 4
    for raw in flight:
        assert raw[:HDR] == bytes(HDR)  # GSO_NONE, no NEEDS_CSUM
        assert len(raw) - HDR <= t.dev.mtu
        assert len(_l4_payload(raw[HDR:])) == mss
        assert _l4_checksum_ok(raw[HDR:])
    stream = b"".join(_l4_payload(r[HDR:]) for r in flight)
    assert stream == data[:len(stream)]


# ---------------------------------------------------------------------------------------
# Writing into a VNET_HDR device
# ---------------------------------------------------------------------------------------


def _bound_udp(t: VnetTun) -> socket.socket:
    s = socket.socket(t.af, socket.SOCK_DGRAM)
    s.settimeout(WAIT)
    s.bind((t.local, 0))
    return s


def _recv_all(s: socket.socket, count: int) -> list[tuple[bytes, Any]]:
    got: list[tuple[bytes, Any]] = []
    s.settimeout(WAIT)
    for _ in range(count + 5):
        try:
            got.append(s.recvfrom(70000))
        except (TimeoutError, socket.timeout):
            break
        s.settimeout(0.1 if len(got) >= count else WAIT)
    return got


@pytest.mark.needs_tun
@pytest.mark.parametrize("size, gso_size", [(10_240, 1000), (3000, 1000), (1400, 1400),
                                            (7777, 100)])
def test_written_uso_superpacket_reaches_a_socket_as_gso_size_datagrams(
        vtun: VnetTun, size: int, gso_size: int) -> None:
    t = vtun
    t.dev.set_offload(TSO | USO)
    payload = os.urandom(size)
    with _bound_udp(t) as s:
        port = s.getsockname()[1]
        pkt = _udp_packet(t.remote, t.local, 4444, port, payload, partial=True)
        h = VNET(VNET.F_NEEDS_CSUM, VNET.GSO_UDP_L4, t.iphl + 8, gso_size, t.iphl, 6)
        assert t.dev.write(h.pack() + pkt) == HDR + len(pkt)
        got = _recv_all(s, -(-size // gso_size))
    sizes = [len(d) for d, _ in got]
    assert sizes == [gso_size] * (size // gso_size) + ([size % gso_size] if size % gso_size
                                                       else [])
    assert b"".join(d for d, _ in got) == payload
    assert {(a[0], a[1]) for _, a in got} == {(t.remote, 4444)}


@pytest.mark.needs_tun
@pytest.mark.parametrize("hdr_size", [HDR, MRG])
@pytest.mark.parametrize("partial", [False, True], ids=["complete", "needs_csum"])
def test_written_plain_packet_with_vnet_header_is_delivered(
        vtun: VnetTun, hdr_size: int, partial: bool) -> None:
    t = vtun
    t.dev.vnet_hdr_size = hdr_size
    with _bound_udp(t) as s:
        port = s.getsockname()[1]
        pkt = _udp_packet(t.remote, t.local, 4445, port, b"with vnet header", partial=partial)
        h = VNET(VNET.F_NEEDS_CSUM, 0, 0, 0, t.iphl, 6) if partial else VNET()
        if not partial:
            assert h.pack(hdr_size) == bytes(hdr_size)
        assert t.dev.write(h.pack(hdr_size) + pkt) == hdr_size + len(pkt)
        data, addr = s.recvfrom(100)
    assert data == b"with vnet header"
    assert addr[:2] == (t.remote, 4445)


@pytest.mark.needs_tun
@pytest.mark.parametrize("hdr_size, n", [(HDR, 1), (HDR, 5), (HDR, HDR - 1), (HDR, HDR),
                                         (MRG, MRG - 1), (MRG, MRG)])
def test_write_not_longer_than_the_vnet_header_is_einval(
        open_device: Callable[..., Any], hdr_size: int, n: int) -> None:
    dev = open_device(unique_name(), VNET_TUN)
    dev.up()
    dev.vnet_hdr_size = hdr_size
    with pytest.raises(OSError) as ei:
        dev.write(bytes(n))
    assert ei.value.errno == errno.EINVAL
    assert "write()" in str(ei.value) and dev.name in str(ei.value)


@pytest.mark.needs_tun
@pytest.mark.parametrize("name, hdr", [
    ("hdr_len past the end", VNET(hdr_len=5000)),
    ("csum_start past the end", VNET(flags=1, csum_start=4000, csum_offset=6)),
    ("csum_offset past the end", VNET(flags=1, csum_start=20, csum_offset=3020)),
    ("gso without needs_csum", VNET(gso_type=5, gso_size=1000, hdr_len=28)),
    ("gso_size 0", VNET(flags=1, gso_type=5, hdr_len=28, csum_start=20, csum_offset=6)),
    ("unknown gso_type", VNET(flags=1, gso_type=7, gso_size=1000, hdr_len=28,
                              csum_start=20, csum_offset=6)),
], ids=lambda v: v if isinstance(v, str) else None)
def test_write_with_a_bad_vnet_header_is_einval(up_device: Callable[..., Any], name: str,
                                                hdr: VNET) -> None:
    dev = up_device(VNET_TUN).dev
    pkt = build_udp4("10.9.9.2", "10.9.9.1", 1, 2, bytes(3000))
    with pytest.raises(OSError) as ei:
        dev.write(hdr.pack() + pkt)
    assert ei.value.errno == errno.EINVAL, name
    # The same packet with a good header goes through.
    assert dev.write(VNET().pack() + pkt) == HDR + len(pkt)
