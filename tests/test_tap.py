"""TAP devices: Ethernet frames, ARP and ICMP answered in userspace."""

from __future__ import annotations

import json
import re
import struct

import pytest

import tuntap
from netutil import (
    ETH_P_IP,
    WAIT,
    Responder,
    arp_reply_for,
    eth_icmp_echo_reply_for,
    ip,
    link_json,
    mac_bytes,
    parse_udp4,
    ping,
    read_matching,
    udp_socket,
)

# The I/O part of the suite: every test runs on both batch backends (conftest.io_backend).
pytestmark = [pytest.mark.needs_tun, pytest.mark.usefixtures("io_backend")]

PEER_MAC = mac_bytes("02:00:5e:10:20:30")


def responder_for(peer_ip: str):
    def handle(frame: bytes) -> bytes | None:
        return arp_reply_for(frame, peer_ip, PEER_MAC) or eth_icmp_echo_reply_for(
            frame, PEER_MAC)
    return handle


def test_tap_flags_and_default_name(open_device):
    dev = open_device("", tuntap.Flags.TAP | tuntap.Flags.NO_PI)
    assert re.fullmatch(r"tap\d+", dev.name)
    assert tuntap.Flags.TAP in dev.flags
    assert tuntap.Flags.TUN not in dev.flags
    assert link_json(dev.name)["link_type"] == "ether"


@pytest.mark.needs_tool("ping")
def test_tap_ping_with_arp_answered_in_userspace(tap):
    dev = tap.dev
    with Responder(dev, responder_for(tap.remote)) as r:
        res = ping(tap.remote, count=3)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 received" in res.stdout
    assert r.answered >= 4  # at least one ARP reply and three echo replies
    neigh = json.loads(ip("-j", "neigh", "show", "dev", dev.name).stdout)
    assert [(n["dst"], n.get("lladdr")) for n in neigh if n["dst"] == tap.remote] == [
        (tap.remote, "02:00:5e:10:20:30")]


@pytest.mark.needs_tool("ping")
def test_tap_udp_frame_is_addressed_to_the_mac_learned_by_arp(tap):
    dev = tap.dev
    with Responder(dev, responder_for(tap.remote)):
        assert ping(tap.remote, count=1).returncode == 0  # fills the neighbour cache
    with udp_socket() as s:
        s.sendto(b"over ethernet", (tap.remote, 7000))

    def is_ours(f: bytes) -> bool:
        return (len(f) > 14 + 28 and struct.unpack("!H", f[12:14])[0] == ETH_P_IP
                and f[14 + 9] == 17 and struct.unpack("!H", f[14 + 22:14 + 24])[0] == 7000)

    frame = read_matching(dev, is_ours)
    assert frame[:6] == PEER_MAC
    assert frame[6:12] == mac_bytes(dev.hwaddr)
    ip4, udp = parse_udp4(frame[14:])
    assert (ip4.src, ip4.dst, udp.payload) == (tap.local, tap.remote, b"over ethernet")


def test_tap_written_frame_reaches_a_local_socket(tap):
    from netutil import build_eth, build_udp4

    dev = tap.dev
    with udp_socket() as s:
        s.bind((tap.local, 0))
        port = s.getsockname()[1]
        pkt = build_udp4(tap.remote, tap.local, 1234, port, b"frame in")
        frame = build_eth(mac_bytes(dev.hwaddr), PEER_MAC, ETH_P_IP, pkt)
        assert dev.write(frame) == len(frame)
        data, addr = s.recvfrom(100)
    assert (data, addr) == (b"frame in", (tap.remote, 1234))


def test_tap_hwaddr_get_and_set(tap):
    dev = tap.dev
    assert re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", dev.hwaddr)
    assert dev.hwaddr == link_json(dev.name)["address"]
    dev.hwaddr = "02:11:22:33:44:55"
    assert dev.hwaddr == "02:11:22:33:44:55"
    assert link_json(dev.name)["address"] == "02:11:22:33:44:55"


def test_tap_short_frame_write_is_einval(tap):
    import errno

    dev = tap.dev
    with pytest.raises(OSError) as ei:
        dev.write(b"\x00" * 13)
    assert ei.value.errno == errno.EINVAL
    assert dev.name in str(ei.value)


def test_tap_read_timeout_bounded(tap):
    import time

    dev = tap.dev
    dev.settimeout(0.1)
    # Drain whatever housekeeping frames exist, then expect a timeout.
    t_end = time.monotonic() + WAIT
    with pytest.raises(TimeoutError):
        while time.monotonic() < t_end:
            dev.read()
