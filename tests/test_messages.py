"""Errors a user can act on where the kernel gives only an errno.

Every case keeps the kernel's errno and exception class (the errors table of the public API) and
adds what is wrong: what the existing interface is (rtnetlink: IFLA_INFO_KIND,
IFLA_TUN_TYPE, IFLA_TUN_MULTI_QUEUE), the MTU range (IFLA_MIN_MTU/IFLA_MAX_MTU), the
bytes a PacketBatch asked for, and which direction a non-blocking call was refused.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

import tuntap
from netutil import (
    ETH_P_IP,
    build_eth,
    build_udp4,
    ip,
    link_exists,
    mac_bytes,
    udp_socket,
    unique_name,
    unique_net,
)

Flags = tuntap.Flags


@pytest.mark.needs_tun
def test_device_on_a_non_tun_interface_says_so() -> None:
    with pytest.raises(OSError) as ei:
        tuntap.Device("lo")
    assert type(ei.value) is OSError and ei.value.errno == errno.EINVAL
    assert str(ei.value) == ("[Errno 22] Invalid argument: ioctl(TUNSETIFF) on 'lo' ('lo' "
                             "is an existing interface, not a TUN/TAP device)")


@pytest.mark.needs_tun
def test_device_on_a_bridge_names_its_kind() -> None:
    name = unique_name("ttb")
    ip("link", "add", name, "type", "bridge")
    try:
        with pytest.raises(OSError, match=re.escape(
                f"on '{name}' ('{name}' is a 'bridge' interface, not a TUN/TAP device)")):
            tuntap.Device(name, Flags.TAP | Flags.NO_PI)
    finally:
        ip("link", "del", "dev", name, check=False)


@pytest.mark.needs_tun
@pytest.mark.parametrize("have, ask", [
    (Flags.TUN, Flags.TAP),
    (Flags.TAP, Flags.TUN),
], ids=["tun-as-tap", "tap-as-tun"])
def test_opening_a_device_as_the_other_type_says_which_it_is(
        open_device: Callable[..., Any], have: Flags, ask: Flags) -> None:
    dev = open_device(unique_name(), have | Flags.NO_PI)
    with pytest.raises(OSError) as ei:
        tuntap.Device(dev.name, ask | Flags.NO_PI)
    assert type(ei.value) is OSError and ei.value.errno == errno.EINVAL
    h, a = have.name, ask.name
    assert str(ei.value) == (f"[Errno 22] Invalid argument: ioctl(TUNSETIFF) on "
                             f"'{dev.name}' ('{dev.name}' is a {h} device, not {a}: open "
                             f"it with Flags.{h})")


@pytest.mark.needs_tun
def test_open_queues_on_an_existing_single_queue_device_says_so(
        open_device: Callable[..., Any]) -> None:
    dev = open_device(unique_name())
    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(OSError) as ei:
        tuntap.open_queues(dev.name, 2)
    assert type(ei.value) is OSError and ei.value.errno == errno.EINVAL
    assert str(ei.value) == (f"[Errno 22] Invalid argument: ioctl(TUNSETIFF) on "
                             f"'{dev.name}' ('{dev.name}' is a single-queue device: "
                             "open_queues() and MULTI_QUEUE need one created with "
                             "MULTI_QUEUE)")
    assert set(os.listdir("/proc/self/fd")) <= before


@pytest.mark.needs_tun
def test_a_single_queue_open_of_a_multi_queue_device_says_so() -> None:
    (q,) = tuntap.open_queues(unique_name(), 1)
    try:
        with pytest.raises(OSError, match=re.escape(
                f"('{q.name}' is a MULTI_QUEUE device: open it with Flags.MULTI_QUEUE or "
                "open_queues())")) as ei:
            tuntap.Device(q.name)
        assert ei.value.errno == errno.EINVAL
    finally:
        q.close()


@pytest.mark.needs_tun
def test_a_second_fd_on_a_single_queue_device_says_why(
        open_device: Callable[..., Any]) -> None:
    dev = open_device(unique_name())
    with pytest.raises(OSError) as ei:
        tuntap.Device(dev.name)
    assert ei.value.errno == errno.EBUSY
    assert str(ei.value).endswith(f"on '{dev.name}' (already attached by another file "
                                  "descriptor: only a MULTI_QUEUE device takes more than "
                                  "one)")


@pytest.mark.needs_tun
@pytest.mark.parametrize("flags, mtu, lo, hi", [
    (Flags.TUN | Flags.NO_PI, 65536, 68, 65535),
    (Flags.TUN | Flags.NO_PI, 67, 68, 65535),
    (Flags.TUN | Flags.NO_PI, 0, 68, 65535),
    (Flags.TAP | Flags.NO_PI, 65522, 68, 65521),
], ids=["tun-high", "tun-low", "tun-zero", "tap-high"])
def test_mtu_out_of_range_says_the_range(open_device: Callable[..., Any], flags: Flags,
                                         mtu: int, lo: int, hi: int) -> None:
    dev = open_device(unique_name(), flags)
    with pytest.raises(OSError) as ei:
        dev.mtu = mtu
    assert type(ei.value) is OSError and ei.value.errno == errno.EINVAL
    assert str(ei.value) == (f"[Errno 22] Invalid argument: ioctl(SIOCSIFMTU) on "
                             f"'{dev.name}' (MTU {mtu} is out of range: {lo}..{hi})")
    dev.mtu = hi  # the ends of the range are accepted
    dev.mtu = lo
    assert dev.mtu == lo


@pytest.mark.needs_tun
def test_negative_mtu_is_value_error_before_any_syscall(
        open_device: Callable[..., Any]) -> None:
    dev = open_device(unique_name())
    with pytest.raises(ValueError, match="^mtu must be >= 0, not -1$"):
        dev.mtu = -1


def test_packetbatch_too_large_for_a_size_says_how_many_bytes() -> None:
    with pytest.raises(OverflowError) as ei:
        tuntap.PacketBatch(1 << 62, 1 << 23)
    assert str(ei.value) == (
        "PacketBatch(capacity=4611686018427387904, slot_size=8388608, headroom=0) asks "
        f"for {(1 << 62) * (1 << 23)} bytes (capacity x (slot_size + headroom))")


@pytest.mark.skipif("asan" in os.environ.get("LD_PRELOAD", ""),
                    reason="AddressSanitizer aborts on a 128 TiB allocation")
def test_packetbatch_too_large_for_memory_says_how_many_bytes() -> None:
    # 2**47 bytes: more than a 47-bit user address space, so it fails everywhere.
    with pytest.raises(MemoryError) as ei:
        tuntap.PacketBatch(1 << 24, (1 << 23) - 64, headroom=64)
    assert str(ei.value) == (
        "PacketBatch(capacity=16777216, slot_size=8388544, headroom=64) asks for "
        f"{1 << 47} bytes (capacity x (slot_size + headroom)): not enough memory")


@pytest.mark.needs_tun
@pytest.mark.skipif(shutil.which("tc") is None, reason="tc (iproute2) is not installed")
def test_nonblocking_write_refused_says_the_send_buffer_is_full(
        open_device: Callable[..., Any]) -> None:
    """A write waits for room in the queue's send buffer (drivers/net/tun.c:
    tun_alloc_skb, TUNSETSNDBUF). Frames stay charged to it while a qdisc holds them:
    here a TAP bridged to another whose tbf qdisc sends 1 byte/s, a 1-byte buffer and
    5 KB frames (large enough to be allocated against the socket)."""
    src = open_device(unique_name("tts"), Flags.TAP | Flags.NO_PI)
    dst = open_device(unique_name("ttd"), Flags.TAP | Flags.NO_PI)
    br = unique_name("ttr")
    ip("link", "add", br, "type", "bridge")
    try:
        for name in (src.name, dst.name, br):
            ip("link", "set", name, "mtu", "9000")
        for name in (src.name, dst.name):
            ip("link", "set", name, "master", br)
        subprocess.run(["tc", "qdisc", "add", "dev", dst.name, "root", "tbf", "rate", "8bit",
                        "burst", "6000", "mtu", "9100", "limit", "100000"], check=True,
                       capture_output=True, timeout=10)
        for name in (src.name, dst.name, br):
            ip("link", "set", name, "up")
        src.sndbuf = 1
        frame = (mac_bytes("02:00:5e:00:00:02") + mac_bytes("02:00:5e:00:00:01")
                 + b"\x88\xb5" + bytes(5000))
        src.setblocking(False)
        with pytest.raises(BlockingIOError) as ei:
            for _ in range(4):  # the first passes the bucket, the second waits in tbf
                src.write(frame)
        assert ei.value.errno == errno.EAGAIN
        assert str(ei.value) == (f"[Errno 11] Resource temporarily unavailable: write() "
                                 f"on '{src.name}' (send buffer full, non-blocking mode)")
        with pytest.raises(BlockingIOError,
                           match=re.escape("(send buffer full, non-blocking mode)")):
            src.write_batch([frame, frame])
        with pytest.raises(BlockingIOError) as ei:
            src.read()
        assert str(ei.value).endswith("(nothing queued, non-blocking mode)")
        src.settimeout(0.05)
        with pytest.raises(TimeoutError,
                           match=re.escape(f"write() on '{src.name}' timed out")):
            src.write(frame)
    finally:
        ip("link", "del", "dev", br, check=False)


@pytest.mark.parametrize("flags", [
    Flags.TAP | Flags.NAPI_FRAGS,
    Flags.TUN | Flags.NAPI | Flags.NAPI_FRAGS,
], ids=["without-napi", "on-tun"])
def test_napi_frags_needs_napi_and_tap_before_any_syscall(flags: Flags) -> None:
    with pytest.raises(ValueError, match="^NAPI_FRAGS needs NAPI and TAP$"):
        tuntap.Device(unique_name(), flags, path="/nonexistent-dir/net/tun")


@pytest.mark.needs_tun
def test_napi_tun_delivers_written_packets(open_device: Callable[..., Any]) -> None:
    dev = open_device(unique_name(), Flags.TUN | Flags.NO_PI | Flags.NAPI)
    assert Flags.NAPI in dev.flags
    net = unique_net()
    dev.add_address(net.cidr)
    dev.up()
    with udp_socket() as s:
        s.bind((net.local, 0))
        pkt = build_udp4(net.remote, net.local, 4242, s.getsockname()[1], b"via napi")
        assert dev.write(pkt) == len(pkt)
        assert s.recvfrom(100) == (b"via napi", (net.remote, 4242))


@pytest.mark.needs_tun
def test_napi_frags_tap_delivers_written_frames(open_device: Callable[..., Any]) -> None:
    dev = open_device(unique_name(), Flags.TAP | Flags.NO_PI | Flags.NAPI | Flags.NAPI_FRAGS)
    assert Flags.NAPI_FRAGS in dev.flags
    net = unique_net()
    dev.add_address(net.cidr)
    dev.up()
    with udp_socket() as s:
        s.bind((net.local, 0))
        pkt = build_udp4(net.remote, net.local, 4243, s.getsockname()[1], b"via frags")
        frame = build_eth(mac_bytes(dev.hwaddr), mac_bytes("02:00:5e:00:00:01"), ETH_P_IP,
                          pkt)
        assert dev.write(frame) == len(frame)
        assert s.recvfrom(100) == (b"via frags", (net.remote, 4243))


@pytest.mark.needs_tun
def test_a_name_the_kernel_refuses_keeps_the_bare_einval() -> None:
    with pytest.raises(OSError) as ei:
        tuntap.Device("a%db%d")
    assert ei.value.errno == errno.EINVAL
    assert str(ei.value) == "[Errno 22] Invalid argument: ioctl(TUNSETIFF) on 'a%db%d'"
    assert not link_exists("a0b0")
    socket.if_nameindex()  # nothing else changed
