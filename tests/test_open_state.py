"""What a freshly opened fd receives: the device-wide state is settled at open.

The kernel keeps the offload mask, the vnet header size and the framing flags per
device, not per fd (drivers/net/tun.c: tun_set_iff). Without help, an fd opened on a
persistent device inherits the offloads the previous owner set (TSO/USO super-packets
and partial checksums, with no vnet header to mark them), and a queue joining a
multi-queue device gets the device's packet info / VNET_HDR, not the ones it asked for.
These tests send real traffic through the kernel and check what each fd really reads.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest

import tuntap
from netutil import WAIT, ip, parse_udp4, unique_name, unique_net

pytestmark = pytest.mark.needs_tun

Flags = tuntap.Flags
Offload = tuntap.Offload
VNET = tuntap.VirtioNetHdr

SOL_UDP = 17
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)
PORT = 7811
EVERY_OFFLOAD = (Offload.CSUM | Offload.TSO4 | Offload.TSO6 | Offload.USO4
                 | Offload.USO6)
PLAIN = Flags.TUN | Flags.NO_PI
VNET_TUN = PLAIN | Flags.VNET_HDR


def _configure(dev: Any) -> tuple[str, str]:
    """Give ``dev`` a point-to-point address pair and bring it up."""
    ip("link", "set", dev.name, "addrgenmode", "none")
    dev.up()
    net = unique_net()
    dev.add_address(f"{net.local}/32", peer=net.remote)
    return net.local, net.remote


def _drain(devs: list[Any], want: Callable[[bytes], bool], hdr: int, *,
           count: int, quiet: float = 0.15) -> list[bytes]:
    """Read every queue in ``devs`` (non-blocking) until ``count`` reads matched and then
    ``quiet`` seconds passed without one; returns the matching reads whole."""
    got: list[bytes] = []
    buf = bytearray(65536 + 64)
    for d in devs:
        d.setblocking(False)
    deadline = time.monotonic() + WAIT
    last = time.monotonic()
    for _ in range(100000):
        now = time.monotonic()
        if now > deadline or (len(got) >= count and now - last > quiet):
            break
        progressed = False
        for d in devs:
            try:
                n = d.readinto(buf)
            except BlockingIOError:
                continue
            progressed = True
            if want(bytes(buf[hdr:n])):
                got.append(bytes(buf[:n]))
                last = time.monotonic()
        if not progressed:
            time.sleep(0.002)
    for d in devs:
        d.setblocking(True)
    return got


def _udp_flow(sport: int) -> Callable[[bytes], bool]:
    def match(pkt: bytes) -> bool:
        return (len(pkt) >= 28 and pkt[0] == 0x45 and pkt[9] == 17
                and struct.unpack("!HH", pkt[20:24]) == (sport, PORT))
    return match


def _send(local: str, remote: str, payload: bytes, gso_size: int = 0) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        if gso_size:
            s.setsockopt(SOL_UDP, UDP_SEGMENT, gso_size)
        s.bind((local, 0))
        s.sendto(payload, (remote, PORT))
        return int(s.getsockname()[1])


def _persistent_with_offloads(cleanup_links: list[str], flags: int) -> str:
    name = unique_name("tos")
    cleanup_links.append(name)
    with tuntap.Device(name, flags | Flags.VNET_HDR) as dev:
        dev.persist()
        dev.set_offload(EVERY_OFFLOAD)
        dev.vnet_hdr_size = 12
    return name


@pytest.mark.parametrize("mq", [False, True], ids=["single-queue", "multi-queue"])
def test_reopen_without_vnet_hdr_clears_the_offloads_the_last_owner_left(
        cleanup_links: list[str], mq: bool) -> None:
    """The bug: without VNET_HDR nothing marks a super-packet or a partial checksum, so
    the fd must start with no offloads: checksums verify, no read exceeds the MTU."""
    extra = Flags.MULTI_QUEUE if mq else Flags(0)
    name = _persistent_with_offloads(cleanup_links, PLAIN | extra)
    with tuntap.Device(name, PLAIN | extra) as dev:
        assert Flags.VNET_HDR not in dev.flags and dev.header_size == 0
        local, remote = _configure(dev)
        sport = _send(local, remote, b"complete checksum please")
        (pkt,) = _drain([dev], _udp_flow(sport), 0, count=1)
        ip4, udp = parse_udp4(pkt)
        assert udp.payload == b"complete checksum please"
        assert udp.checksum_ok, "partial (pseudo-header) checksum: offloads were left on"

        payload = os.urandom(8000)
        sport = _send(local, remote, payload, gso_size=1000)
        reads = _drain([dev], _udp_flow(sport), 0, count=8)
        assert [len(r) for r in reads] == [1028] * 8, "super-packet on a plain fd"
        assert all(len(r) <= dev.mtu for r in reads)
        assert all(parse_udp4(r)[1].checksum_ok for r in reads)
        assert b"".join(parse_udp4(r)[1].payload for r in reads) == payload


@pytest.mark.parametrize("mq", [False, True], ids=["single-queue", "multi-queue"])
def test_reopen_with_vnet_hdr_starts_from_the_defaults(cleanup_links: list[str],
                                                       mq: bool) -> None:
    """With VNET_HDR the first fd starts with no offloads and a 10-byte header, whatever
    the last owner set: plain MTU-sized packets with complete checksums."""
    extra = Flags.MULTI_QUEUE if mq else Flags(0)
    name = _persistent_with_offloads(cleanup_links, PLAIN | extra)
    with tuntap.Device(name, VNET_TUN | extra) as dev:
        assert (dev.vnet_hdr_size, dev.header_size) == (10, 10)
        local, remote = _configure(dev)
        payload = os.urandom(3000)
        sport = _send(local, remote, payload, gso_size=1000)
        reads = _drain([dev], _udp_flow(sport), 10, count=3)
        assert len(reads) == 3, "USO super-packet: offloads were left on"
        for raw in reads:
            assert VNET.parse(raw) == VNET()  # GSO_NONE, checksum complete
            assert parse_udp4(raw[10:])[1].checksum_ok
        # The offloads work again once this owner asks for them.
        dev.set_offload(Offload.CSUM | Offload.USO4 | Offload.USO6)
        sport = _send(local, remote, payload, gso_size=1000)
        (big,) = _drain([dev], _udp_flow(sport), 10, count=1)
        assert VNET.parse(big).gso_type == VNET.GSO_UDP_L4


@pytest.mark.parametrize("first, second", [
    (VNET_TUN, PLAIN),                       # VNET_HDR dropped
    (PLAIN, VNET_TUN),                       # VNET_HDR added
    (PLAIN, Flags.TUN),                      # packet info turned on
    (Flags.TUN, PLAIN),                      # packet info turned off
    (Flags.TAP | Flags.NO_PI, Flags.TAP | Flags.NO_PI | Flags.VNET_HDR),
], ids=["drop-vnet", "add-vnet", "add-pi", "drop-pi", "tap-add-vnet"])
def test_a_queue_asking_for_other_framing_than_the_open_queues_is_refused(
        first: int, second: int) -> None:
    name = unique_name("tom")
    (q0,) = tuntap.open_queues(name, 1, first)
    try:
        with pytest.raises(OSError) as ei:
            tuntap.Device(name, second | Flags.MULTI_QUEUE)
        assert type(ei.value) is OSError and ei.value.errno == errno.EINVAL
        msg = str(ei.value)
        assert f"ioctl(TUNSETIFF) on '{name}'" in msg
        assert "a new queue gets the device's flags, not the ones it asks for" in msg
        no_pi = "on" if first & Flags.NO_PI else "off"
        vnet = "on" if first & Flags.VNET_HDR else "off"
        assert f"have NO_PI {no_pi} and VNET_HDR {vnet}" in msg
        # The refused fd left nothing attached; the first queue is unchanged.
        (info,) = [i for i in tuntap.list_devices() if i.name == name]
        assert (info.queues, info.disabled_queues) == (1, 0)
        assert q0.flags & (Flags.NO_PI | Flags.VNET_HDR) == first & (Flags.NO_PI
                                                                   | Flags.VNET_HDR)
        # ... and a queue with the same framing joins.
        with tuntap.Device(name, first | Flags.MULTI_QUEUE) as q1:
            assert q1.header_size == q0.header_size
    finally:
        q0.close()


def test_a_joining_queue_keeps_the_offloads_the_open_queues_set() -> None:
    """Offloads are device-wide: a queue joining later must not reset them under the
    queues already open (they would silently lose their super-packets)."""
    name = unique_name("tok")
    (q0,) = tuntap.open_queues(name, 1, VNET_TUN)
    try:
        q0.set_offload(Offload.CSUM)
        with tuntap.Device(name, VNET_TUN | Flags.MULTI_QUEUE) as q1:
            local, remote = _configure(q0)
            sport = _send(local, remote, b"partial on purpose")
            (raw,) = _drain([q0, q1], _udp_flow(sport), 10, count=1)
            assert VNET.parse(raw).needs_csum, "the join reset the offloads"
    finally:
        q0.close()


def test_a_plain_queue_joining_a_plain_device_also_has_no_offloads(
        open_device: Callable[..., Any]) -> None:
    name = unique_name("toj")
    queues = tuntap.open_queues(name, 2, PLAIN)
    try:
        local, remote = _configure(queues[0])
        for i in range(4):
            sport = _send(local, remote, b"plain %d" % i)
            (pkt,) = _drain(queues, _udp_flow(sport), 0, count=1)
            assert parse_udp4(pkt)[1].checksum_ok
    finally:
        for q in queues:
            q.close()
