"""Single-packet I/O through a TUN device: real packets through the kernel's stack."""

from __future__ import annotations

import array
import errno
import os
import re
import socket
import struct

import pytest

import tuntap
from netutil import (
    ETH_P_IP,
    PI_SIZE,
    TUN_PKT_STRIP,
    WAIT,
    Responder,
    build_udp4,
    icmp_echo_reply_for,
    is_udp4_to,
    libc_read,
    parse_udp4,
    ping,
    read_matching,
    udp_socket,
    unique_name,
    wait_readable,
)

# The I/O part of the suite: every test runs on both batch backends (conftest.io_backend).
pytestmark = [pytest.mark.needs_tun, pytest.mark.usefixtures("io_backend")]


def send_udp(dst: str, dport: int, payload: bytes) -> tuple[str, int]:
    """Send one datagram; return the (source address, source port) the kernel chose."""
    with udp_socket() as s:
        s.connect((dst, dport))  # fixes the source address the kernel picks
        s.send(payload)
        return s.getsockname()


def test_udp_from_socket_arrives_at_readinto_byte_exact(tun):
    payload = bytes(range(256)) * 3 + b"end"
    src, sport = send_udp(tun.remote, 5555, payload)
    assert src == tun.local
    buf = bytearray(65536)
    tun.dev.settimeout(WAIT)
    n = tun.dev.readinto(buf)
    pkt = bytes(buf[:n])
    assert n == 20 + 8 + len(payload)
    ip4, udp = parse_udp4(pkt)
    assert (ip4.version, ip4.ihl, ip4.proto) == (4, 20, socket.IPPROTO_UDP)
    assert ip4.total_length == n
    assert ip4.header_ok
    assert (ip4.src, ip4.dst) == (tun.local, tun.remote)
    assert (udp.sport, udp.dport, udp.length) == (sport, 5555, 8 + len(payload))
    assert udp.checksum_ok
    assert udp.payload == payload
    # The rest of the buffer is untouched.
    assert buf[n:] == bytes(len(buf) - n)


def test_read_returns_the_packet_as_bytes(tun):
    send_udp(tun.remote, 5556, b"hello read()")
    tun.dev.settimeout(WAIT)
    pkt = tun.dev.read()
    assert isinstance(pkt, bytes)
    ip4, udp = parse_udp4(pkt)
    assert (ip4.dst, udp.dport, udp.payload) == (tun.remote, 5556, b"hello read()")


@pytest.mark.parametrize("kind", ["bytearray", "memoryview", "array", "memoryview-slice"])
def test_readinto_accepts_writable_buffers(tun, kind):
    raw = bytearray(4096)
    if kind == "bytearray":
        target = raw
    elif kind == "memoryview":
        target = memoryview(raw)
    elif kind == "memoryview-slice":
        target = memoryview(raw)[100:]
    else:
        target = array.array("B", bytes(4096))
    send_udp(tun.remote, 5557, b"x" * 33)
    tun.dev.settimeout(WAIT)
    n = tun.dev.readinto(target)
    assert n == 28 + 33
    data = bytes(target)[:n] if kind != "memoryview-slice" else bytes(raw[100:100 + n])
    assert parse_udp4(data)[1].payload == b"x" * 33
    if kind == "memoryview-slice":
        assert raw[:100] == bytes(100)


def test_packets_are_read_in_order_one_per_call(tun):
    count = 50
    with udp_socket() as s:
        for i in range(count):
            s.sendto(struct.pack("!I", i) * (i + 1), (tun.remote, 5558))
    tun.dev.settimeout(WAIT)
    buf = bytearray(2048)
    for i in range(count):
        n = tun.dev.readinto(buf)
        _ip, udp = parse_udp4(bytes(buf[:n]))
        assert udp.payload == struct.pack("!I", i) * (i + 1)
    tun.dev.setblocking(False)
    with pytest.raises(BlockingIOError):
        tun.dev.readinto(buf)


@pytest.mark.parametrize("wrap", [bytes, bytearray, memoryview])
def test_written_udp_packet_is_received_by_a_local_socket(tun, wrap):
    with udp_socket() as s:
        s.bind((tun.local, 0))
        port = s.getsockname()[1]
        payload = b"from userspace " + bytes(range(200))
        pkt = build_udp4(tun.remote, tun.local, 4321, port, payload)
        n = tun.dev.write(wrap(pkt))
        assert n == len(pkt)
        data, addr = s.recvfrom(4096)
    assert data == payload
    assert addr == (tun.remote, 4321)


def test_written_packet_with_bad_udp_checksum_is_dropped_by_the_stack(tun):
    # Proves the receive test above really depends on what we wrote.
    with udp_socket() as s:
        s.bind((tun.local, 0))
        port = s.getsockname()[1]
        bad = bytearray(build_udp4(tun.remote, tun.local, 4321, port, b"bad"))
        bad[26] ^= 0xFF  # UDP checksum
        tun.dev.write(bad)
        good = build_udp4(tun.remote, tun.local, 4321, port, b"good")
        tun.dev.write(good)
        data, _ = s.recvfrom(4096)
    assert data == b"good"


@pytest.mark.needs_tool("ping")
def test_ping_answered_by_userspace_responder(tun):
    with Responder(tun.dev, icmp_echo_reply_for) as r:
        res = ping(tun.remote, count=3)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 received" in res.stdout, res.stdout
    assert r.answered == 3


@pytest.mark.needs_tool("ping")
def test_ping_without_responder_fails(tun):
    # The responder test above is meaningful only if nothing else answers.
    res = ping(tun.remote, count=1, wait=0.3, deadline=1)
    assert res.returncode != 0


def test_short_buffer_gets_truncated_packet_and_next_packet_is_intact(tun):
    first = bytes(range(100))
    second = bytes(reversed(range(150)))
    with udp_socket() as s:
        s.sendto(first, (tun.remote, 6000))
        s.sendto(second, (tun.remote, 6001))
    tun.dev.settimeout(WAIT)
    backing = bytearray(b"\xaa" * 64)
    n = tun.dev.readinto(memoryview(backing)[:40])
    assert n == 40  # the kernel copied what fit and discarded the rest (docs/kernel.md)
    assert backing[40:] == b"\xaa" * 24  # never overrun
    assert backing[0] >> 4 == 4 and backing[9] == socket.IPPROTO_UDP
    assert struct.unpack("!H", backing[2:4])[0] == 28 + len(first)  # total length of #1
    assert backing[28:40] == first[:12]
    buf = bytearray(2048)
    n = tun.dev.readinto(buf)
    assert n == 28 + len(second)
    ip4, udp = parse_udp4(bytes(buf[:n]))
    assert udp.dport == 6001 and udp.payload == second


def test_read_with_small_size_truncates(tun):
    send_udp(tun.remote, 6002, b"z" * 500)
    send_udp(tun.remote, 6003, b"y" * 10)
    tun.dev.settimeout(WAIT)
    pkt = tun.dev.read(30)
    assert len(pkt) == 30
    assert struct.unpack("!H", pkt[22:24])[0] == 6002
    pkt = tun.dev.read()
    assert parse_udp4(pkt)[1].payload == b"y" * 10


def test_zero_byte_read_returns_0_and_leaves_the_packet_queued(tun):
    """read(fd, buf, 0) is 0 and takes nothing (drivers/net/tun.c: tun_do_read); the
    library refuses an empty buffer instead of returning a 0 that looks like a packet."""
    send_udp(tun.remote, 6005, b"still here")
    wait_readable(tun.dev.fileno())
    assert libc_read(tun.dev.fileno(), 0) == b""
    tun.dev.setblocking(False)
    assert parse_udp4(tun.dev.read())[1].payload == b"still here"


def test_packets_queued_before_down_are_still_read(tun):
    """Bringing the link down stops new packets, not the ones already queued."""
    for i in range(3):
        send_udp(tun.remote, 6006, b"queued %d" % i)
    wait_readable(tun.dev.fileno())
    tun.dev.down()
    assert not tun.dev.is_up
    tun.dev.setblocking(False)
    assert [parse_udp4(tun.dev.read())[1].payload for _ in range(3)] == [
        b"queued 0", b"queued 1", b"queued 2"]
    with pytest.raises(BlockingIOError):
        tun.dev.read()


def test_write_is_not_limited_by_the_mtu(tun):
    """The kernel does not check writes against the MTU: a 4000-byte datagram written
    into a 1280-MTU device reaches the local socket whole."""
    tun.dev.mtu = 1280
    payload = bytes(i % 253 for i in range(4000 - 28))
    with udp_socket() as s:
        s.bind((tun.local, 0))
        pkt = build_udp4(tun.remote, tun.local, 4322, s.getsockname()[1], payload)
        assert tun.dev.write(pkt) == 4000
        data, addr = s.recvfrom(8192)
    assert (data, addr) == (payload, (tun.remote, 4322))


def test_write_of_1_mb_is_accepted_and_10_mb_is_enobufs(tun):
    # Not a valid IP packet (the stack drops it): only the size limit of the write matters.
    assert tun.dev.write(b"\x45" + bytes((1 << 20) - 1)) == 1 << 20
    with pytest.raises(OSError) as ei:
        tun.dev.write(b"\x45" + bytes((10 << 20) - 1))
    assert type(ei.value) is OSError and ei.value.errno == errno.ENOBUFS
    assert f"write() on '{tun.name}'" in str(ei.value)


def test_large_packet_up_to_mtu_round_trips(tun):
    payload = bytes(i % 251 for i in range(1500 - 28))
    send_udp(tun.remote, 6004, payload)
    tun.dev.settimeout(WAIT)
    pkt = tun.dev.read()
    assert len(pkt) == 1500
    assert parse_udp4(pkt)[1].payload == payload


# --- packet information header (NO_PI off) ----------------------------------------


def test_packet_info_header_when_no_pi_is_off(up_device):
    t = up_device(tuntap.Flags.TUN)
    assert tuntap.Flags.NO_PI not in t.dev.flags
    assert tuntap.Flags.TUN in t.dev.flags
    send_udp(t.remote, 6100, b"with pi")
    pkt = read_matching(t.dev, lambda p: len(p) > PI_SIZE
                        and is_udp4_to(p[PI_SIZE:], t.remote, 6100))
    flags, proto = struct.unpack("!HH", pkt[:PI_SIZE])
    assert flags == 0
    assert proto == ETH_P_IP
    assert parse_udp4(pkt[PI_SIZE:])[1].payload == b"with pi"


def test_no_pi_device_has_no_header_and_reports_no_pi(tun):
    assert tuntap.Flags.NO_PI in tun.dev.flags
    send_udp(tun.remote, 6101, b"no pi")
    pkt = read_matching(tun.dev, lambda p: is_udp4_to(p, tun.remote, 6101))
    assert pkt[0] == 0x45


def test_write_with_packet_info_header(up_device):
    t = up_device(tuntap.Flags.TUN)
    with udp_socket() as s:
        s.bind((t.local, 0))
        port = s.getsockname()[1]
        pkt = build_udp4(t.remote, t.local, 999, port, b"pi write")
        assert t.dev.write(struct.pack("!HH", 0, ETH_P_IP) + pkt) == PI_SIZE + len(pkt)
        data, addr = s.recvfrom(100)
    assert (data, addr) == (b"pi write", (t.remote, 999))


def test_refused_short_pi_buffer_leaves_the_packet_queued(up_device):
    t = up_device(tuntap.Flags.TUN)
    send_udp(t.remote, 6102, b"kept")
    wait_readable(t.dev.fileno())
    with pytest.raises(ValueError, match="packet header"):
        t.dev.readinto(bytearray(PI_SIZE))
    t.dev.setblocking(False)
    pkt = t.dev.read()
    assert parse_udp4(pkt[PI_SIZE:])[1].payload == b"kept"


def test_kernel_drops_the_packet_on_a_read_shorter_than_the_pi_header(up_device):
    """Why the library refuses such buffers: the kernel answers EINVAL and the packet is
    gone (drivers/net/tun.c: tun_put_user, then tun_do_read frees it)."""
    t = up_device(tuntap.Flags.TUN)
    send_udp(t.remote, 6103, b"lost")
    wait_readable(t.dev.fileno())
    with pytest.raises(OSError) as ei:
        os.read(t.dev.fileno(), PI_SIZE - 1)
    assert ei.value.errno == errno.EINVAL
    t.dev.setblocking(False)
    with pytest.raises(BlockingIOError):
        t.dev.read()


def test_truncated_read_with_packet_info_sets_tun_pkt_strip(up_device):
    """With packet info on, the kernel flags a read that did not take the whole packet
    (drivers/net/tun.c: tun_put_user sets TUN_PKT_STRIP): truncation can be detected."""
    t = up_device(tuntap.Flags.TUN)
    send_udp(t.remote, 6104, b"x" * 100)
    wait_readable(t.dev.fileno())
    cut = t.dev.read(PI_SIZE + 20)
    # struct tun_pi: flags in host order, proto in network order
    assert struct.unpack("=H", cut[:2])[0] == TUN_PKT_STRIP
    assert struct.unpack("!H", cut[2:PI_SIZE])[0] == ETH_P_IP
    assert struct.unpack("!H", cut[PI_SIZE + 2:PI_SIZE + 4])[0] == 20 + 8 + 100
    send_udp(t.remote, 6104, b"fits")
    t.dev.settimeout(WAIT)
    whole = t.dev.read()
    assert struct.unpack("!HH", whole[:PI_SIZE]) == (0, ETH_P_IP)
    assert parse_udp4(whole[PI_SIZE:])[1].payload == b"fits"


def test_write_shorter_than_the_pi_header_is_einval(up_device):
    t = up_device(tuntap.Flags.TUN)
    with pytest.raises(OSError) as ei:
        t.dev.write(b"\0" * (PI_SIZE - 1))
    assert type(ei.value) is OSError and ei.value.errno == errno.EINVAL
    assert f"write() on '{t.name}'" in str(ei.value)


def test_pi_readinto_buffer_not_longer_than_header_is_refused(open_device):
    dev = open_device(unique_name(), tuntap.Flags.TUN)
    with pytest.raises(ValueError, match=re.escape(
            f"readinto() buffer must be longer than the {PI_SIZE}-byte packet header")):
        dev.readinto(bytearray(3))
    with pytest.raises(ValueError, match=re.escape(
            f"read() size 3 is too small (packet header: {PI_SIZE} bytes)")):
        dev.read(3)
