"""Per-packet kernel filters: eBPF steering and filtering, classic BPF, the MAC filter.

Each is checked with real packets the kernel sends to the device (UDP datagrams from
local sockets, routed through it) on multi-queue TUN devices and on TAP devices with
static neighbours. The eBPF programs are assembled and loaded by the tests themselves
(tests/bpfprog.py, the bpf() syscall, no toolchain).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import re
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import bpfprog
import tuntap
from netutil import WAIT, ip, is_udp4_to, mac_bytes, parse_udp4, unique_name, unique_net

pytestmark = pytest.mark.needs_tun

Flags = tuntap.Flags
STEERED, OTHER, DROPPED, KEPT = 7821, 7822, 7823, 7824
CLOSED = re.escape("I/O operation on closed device")
TUNATTACHFILTER = 0x401054D5  # _IOW('T', 213, struct sock_fprog)


@pytest.fixture
def prog() -> Iterator[Callable[..., int]]:
    """Factory: ``prog(insns)`` loads an eBPF program; its fd is closed at teardown."""
    fds: list[int] = []

    def load(insns: bytes, prog_type: int = bpfprog.BPF_PROG_TYPE_SOCKET_FILTER) -> int:
        fd = bpfprog.load(insns, prog_type)
        fds.append(fd)
        return fd

    yield load
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


@dataclass
class Queues:
    qs: list[Any]
    local: str
    remote: str


@pytest.fixture
def mq() -> Iterator[Queues]:
    """A 2-queue TUN, up, with remote routed through it."""
    net = unique_net()
    qs = tuntap.open_queues(unique_name("tfq"), 2)
    try:
        ip("link", "set", qs[0].name, "addrgenmode", "none")
        qs[0].add_address(net.cidr)
        qs[0].up()
        yield Queues(qs, net.local, net.remote)
    finally:
        for q in qs:
            q.close()


def send_flows(dst: str, port: int, nflows: int, per_flow: int = 2,
               src: str = "") -> list[int]:
    """One socket (one source port, so one flow hash) per flow; the source ports."""
    ports = []
    for _ in range(nflows):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((src, 0))
            ports.append(s.getsockname()[1])
            for i in range(per_flow):
                s.sendto(b"flow %d" % i, (dst, port))
    return ports


def drain(qs: list[Any], match: Callable[[bytes], bool], *, expected: int,
          quiet: float = 0.15, hdr: int = 0) -> list[list[bytes]]:
    """The matching packets read from each queue (non-blocking reads) until ``expected``
    arrived and then ``quiet`` seconds passed without another, or WAIT ran out."""
    got: list[list[bytes]] = [[] for _ in qs]
    for q in qs:
        q.setblocking(False)
    deadline = time.monotonic() + WAIT
    last = time.monotonic()
    for _ in range(100000):
        now = time.monotonic()
        total = sum(len(g) for g in got)
        if now > deadline or (total >= expected and now - last > quiet):
            break
        progressed = False
        for i, q in enumerate(qs):
            try:
                pkt = q.read()
            except BlockingIOError:
                continue
            progressed = True
            if match(pkt[hdr:]):
                got[i].append(pkt)
                last = time.monotonic()
        if not progressed:
            time.sleep(0.002)
    for q in qs:
        q.setblocking(True)
    return got


def to_port(dst: str, port: int) -> Callable[[bytes], bool]:
    return lambda p: is_udp4_to(p, dst, port)


def sports(pkts: list[bytes], hdr: int = 0) -> set[int]:
    return {parse_udp4(p[hdr:])[1].sport for p in pkts}


# ---------------------------------------------------------------------------------------
# eBPF steering
# ---------------------------------------------------------------------------------------


def test_steering_program_sends_one_port_to_queue_1_and_the_rest_to_queue_0(
        mq: Queues, prog: Callable[..., int]) -> None:
    fd = prog(bpfprog.steer_udp_port(STEERED, 1))
    mq.qs[0].set_steering_program(fd)
    os.close(fd)  # the kernel holds its own reference

    steered = send_flows(mq.remote, STEERED, 16)
    other = send_flows(mq.remote, OTHER, 16)
    q0s, q1s = drain(mq.qs, lambda p: is_udp4_to(p, mq.remote, STEERED)
                     or is_udp4_to(p, mq.remote, OTHER), expected=64)
    assert len(q0s) + len(q1s) == 64
    assert all(is_udp4_to(p, mq.remote, STEERED) for p in q1s)
    assert all(is_udp4_to(p, mq.remote, OTHER) for p in q0s)
    assert (sports(q1s), sports(q0s)) == (set(steered), set(other))

    # Detached: flows are hashed over both queues again.
    mq.qs[1].set_steering_program(None)
    again = send_flows(mq.remote, OTHER, 24, per_flow=1)
    q0s, q1s = drain(mq.qs, to_port(mq.remote, OTHER), expected=24)
    assert sports(q0s) | sports(q1s) == set(again)
    assert q1s, "after detaching, no flow was hashed to queue 1"


def test_steering_return_value_is_taken_modulo_the_queue_count(
        mq: Queues, prog: Callable[..., int]) -> None:
    mq.qs[0].set_steering_program(prog(bpfprog.return_constant(3)))  # 3 % 2 == 1
    ports = send_flows(mq.remote, OTHER, 8, per_flow=1)
    q0s, q1s = drain(mq.qs, to_port(mq.remote, OTHER), expected=8)
    assert (q0s, sports(q1s)) == ([], set(ports))


# ---------------------------------------------------------------------------------------
# eBPF filter
# ---------------------------------------------------------------------------------------


def test_filter_program_drops_one_port_on_every_queue(mq: Queues,
                                                       prog: Callable[..., int]) -> None:
    mq.qs[1].set_filter_program(prog(bpfprog.drop_udp_port(DROPPED)))
    wanted = lambda p: (is_udp4_to(p, mq.remote, DROPPED)  # noqa: E731
                        or is_udp4_to(p, mq.remote, KEPT))
    # 16 flows: all of them hashing to one of the 2 queues has odds of 2**-15.
    kept = send_flows(mq.remote, KEPT, 16)
    send_flows(mq.remote, DROPPED, 8)
    got = drain(mq.qs, wanted, expected=32)
    every = got[0] + got[1]
    assert all(is_udp4_to(p, mq.remote, KEPT) for p in every), "a dropped port arrived"
    assert len(every) == 32 and sports(every) == set(kept)
    assert got[0] and got[1], "the flows did not cover both queues"
    assert all(parse_udp4(p)[1].payload.startswith(b"flow ") for p in every)  # whole

    mq.qs[0].set_filter_program(None)
    back = send_flows(mq.remote, DROPPED, 4, per_flow=1)
    got = drain(mq.qs, to_port(mq.remote, DROPPED), expected=4)
    assert sports(got[0] + got[1]) == set(back)


def test_filter_program_return_value_truncates(mq: Queues,
                                               prog: Callable[..., int]) -> None:
    mq.qs[0].set_filter_program(prog(bpfprog.return_constant(28)))  # IPv4 + UDP headers
    send_flows(mq.remote, KEPT, 2, per_flow=1)
    got = drain(mq.qs, to_port(mq.remote, KEPT), expected=2)
    assert [len(p) for p in got[0] + got[1]] == [28, 28]


# ---------------------------------------------------------------------------------------
# eBPF: errors
# ---------------------------------------------------------------------------------------

EBPF_SETTERS = ["set_steering_program", "set_filter_program"]
EBPF_IOCTLS = {"set_steering_program": "TUNSETSTEERINGEBPF",
               "set_filter_program": "TUNSETFILTEREBPF"}


@pytest.mark.parametrize("method", EBPF_SETTERS)
def test_ebpf_setter_refuses_an_fd_that_is_no_bpf_program(
        open_device: Callable[..., Any], method: str) -> None:
    dev = open_device(unique_name())
    r, w = os.pipe()
    try:
        with pytest.raises(OSError) as ei:
            getattr(dev, method)(r)
    finally:
        os.close(r)
        os.close(w)
    assert type(ei.value) is OSError and ei.value.errno == errno.EINVAL
    assert str(ei.value) == (
        f"[Errno 22] Invalid argument: ioctl({EBPF_IOCTLS[method]}) on '{dev.name}' "
        f"(fd {r} is not a BPF_PROG_TYPE_SOCKET_FILTER program)")


@pytest.mark.parametrize("method", EBPF_SETTERS)
def test_ebpf_setter_refuses_a_program_of_another_type(
        open_device: Callable[..., Any], prog: Callable[..., int], method: str) -> None:
    dev = open_device(unique_name())
    fd = prog(bpfprog.return_constant(0), bpfprog.BPF_PROG_TYPE_SCHED_CLS)
    with pytest.raises(OSError, match="is not a BPF_PROG_TYPE_SOCKET_FILTER program") as ei:
        getattr(dev, method)(fd)
    assert ei.value.errno == errno.EINVAL


@pytest.mark.parametrize("method", EBPF_SETTERS)
def test_ebpf_setter_on_a_closed_fd_number_is_ebadf(open_device: Callable[..., Any],
                                                    method: str) -> None:
    dev = open_device(unique_name())
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError, match=re.escape(f"(fd {r} is not open)")) as ei:
        getattr(dev, method)(r)
    assert ei.value.errno == errno.EBADF


@pytest.mark.parametrize("method", EBPF_SETTERS)
@pytest.mark.parametrize("value, exc, msg", [
    (-1, ValueError, "program fd must be >= 0 (or None to detach), not -1"),
    ("3", TypeError, "program must be a file descriptor (int) or None, not str"),
    (3.0, TypeError, "program must be a file descriptor (int) or None, not float"),
    (True, TypeError, "program must be a file descriptor (int) or None, not bool"),
    (1 << 40, OverflowError, "program fd is out of range"),
])
def test_ebpf_setter_bad_arguments(open_device: Callable[..., Any], method: str,
                                   value: object, exc: type[Exception], msg: str) -> None:
    dev = open_device(unique_name())
    with pytest.raises(exc, match=f"^{re.escape(msg)}$"):
        getattr(dev, method)(value)


@pytest.mark.parametrize("method", EBPF_SETTERS)
def test_ebpf_setter_on_a_closed_device(open_device: Callable[..., Any],
                                        method: str) -> None:
    dev = open_device(unique_name())
    dev.close()
    with pytest.raises(ValueError, match=CLOSED):
        getattr(dev, method)(None)


# ---------------------------------------------------------------------------------------
# TAP devices with static neighbours
# ---------------------------------------------------------------------------------------

MAC_A = "02:00:5e:00:00:0a"
MAC_B = "02:00:5e:00:00:0b"


@dataclass
class Tap:
    dev: Any
    local: str
    a: str      # a neighbour at MAC_A
    b: str      # a neighbour at MAC_B
    bcast: str  # the subnet's broadcast address


@pytest.fixture
def tap(open_device: Callable[..., Any]) -> Tap:
    net = unique_net()
    dev = open_device(unique_name("tft"), Flags.TAP | Flags.NO_PI)
    ip("link", "set", dev.name, "addrgenmode", "none")
    dev.add_address(net.cidr)
    dev.up()
    for addr, mac in ((net.remote, MAC_A), (net.other, MAC_B)):
        ip("neigh", "add", addr, "lladdr", mac, "dev", dev.name, "nud", "permanent")
    return Tap(dev, net.local, net.remote, net.other, net.local.rsplit(".", 1)[0] + ".255")


def frame_to(dst: str, port: int) -> Callable[[bytes], bool]:
    return lambda f: (len(f) > 14 and struct.unpack("!H", f[12:14])[0] == 0x0800
                      and is_udp4_to(f[14:], dst, port))


def send_broadcast(t: Tap, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.bind((t.local, 0))
        s.sendto(b"to everyone", (t.bcast, port))


# ---------------------------------------------------------------------------------------
# classic BPF
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["tuples", "bytes"])
def test_classic_filter_drops_one_port_on_a_tap(tap: Tap, form: str) -> None:
    insns = bpfprog.cbpf_drop_udp_port(DROPPED)
    tap.dev.attach_filter(insns if form == "tuples" else bpfprog.cbpf(*insns))
    kept = send_flows(tap.a, KEPT, 4, per_flow=1, src=tap.local)
    send_flows(tap.a, DROPPED, 4, per_flow=1, src=tap.local)
    (got,) = drain([tap.dev], lambda f: frame_to(tap.a, KEPT)(f)
                   or frame_to(tap.a, DROPPED)(f), expected=4)
    assert all(frame_to(tap.a, KEPT)(f) for f in got), "a dropped port arrived"
    assert sports(got, hdr=14) == set(kept)

    tap.dev.detach_filter()
    back = send_flows(tap.a, DROPPED, 2, per_flow=1, src=tap.local)
    (got,) = drain([tap.dev], frame_to(tap.a, DROPPED), expected=2)
    assert sports(got, hdr=14) == set(back)
    tap.dev.detach_filter()  # twice: nothing to do, no error


def test_classic_filter_return_value_truncates_the_frame(tap: Tap) -> None:
    tap.dev.attach_filter([(0x06, 0, 0, 42)])  # ret #42: Ethernet + IPv4 + UDP headers
    send_flows(tap.a, KEPT, 2, per_flow=1, src=tap.local)
    (got,) = drain([tap.dev], frame_to(tap.a, KEPT), expected=2)
    assert [len(f) for f in got] == [42, 42]


@pytest.mark.parametrize("call", [
    lambda d: d.attach_filter([(0x06, 0, 0, 0)]),
    lambda d: d.detach_filter(),
], ids=["attach", "detach"])
def test_classic_filter_on_tun_is_value_error(open_device: Callable[..., Any],
                                              call: Callable[[Any], None]) -> None:
    dev = open_device(unique_name())
    with pytest.raises(ValueError, match=re.escape(
            f"() is TAP only and '{dev.name}' is a TUN device")):
        call(dev)


@pytest.mark.parametrize("program, exc, msg", [
    (b"", ValueError, "a filter program has 1 to 4096 instructions, not 0"),
    ([], ValueError, "a filter program has 1 to 4096 instructions, not 0"),
    pytest.param(bytes(8 * 4097), ValueError,
                 "a filter program has 1 to 4096 instructions, not 4097", id="4097-insns"),
    (b"1234567", ValueError,
     "a filter program is a whole number of 8-byte instructions, not 7 bytes"),
    ([(6, 0, 0)], ValueError, "filter instruction 0 has 3 fields, not 4 (code, jt, jf, k)"),
    ([(6, 0, 0, 0), 6], TypeError,
     "filter instruction 1 must be a (code, jt, jf, k) tuple, not int"),
    ([(6, 0, 0, "0")], TypeError, "filter instruction 0: fields must be int, not str"),
    ([(1 << 16, 0, 0, 0)], ValueError, "filter instruction 0: code must be between 0 and 65535"),
    ([(6, 256, 0, 0)], ValueError, "filter instruction 0: jt must be between 0 and 255"),
    ([(6, 0, -1, 0)], ValueError, "filter instruction 0: jf must be between 0 and 255"),
    ([(6, 0, 0, 1 << 32)], ValueError,
     "filter instruction 0: k must be between 0 and 4294967295"),
    (None, TypeError, "program must be a bytes-like object or a sequence of (code, jt, jf, "
                      "k) tuples, not NoneType"),
])
def test_attach_filter_bad_programs(tap: Tap, program: object, exc: type[Exception],
                                    msg: str) -> None:
    with pytest.raises(exc, match=f"^{re.escape(msg)}$"):
        tap.dev.attach_filter(program)


def test_attach_filter_the_kernel_refuses_is_einval(tap: Tap) -> None:
    with pytest.raises(OSError) as ei:
        tap.dev.attach_filter([(0x00, 0, 0, 0)])  # ld #0 with no ret
    assert type(ei.value) is OSError and ei.value.errno == errno.EINVAL
    assert str(ei.value) == (
        f"[Errno 22] Invalid argument: ioctl(TUNATTACHFILTER) on '{tap.dev.name}' "
        "(the kernel's classic BPF checker refused the program)")


def test_classic_filter_on_a_closed_device(tap: Tap) -> None:
    tap.dev.close()
    with pytest.raises(ValueError, match=CLOSED):
        tap.dev.attach_filter([(6, 0, 0, 0)])
    with pytest.raises(ValueError, match=CLOSED):
        tap.dev.detach_filter()


@pytest.mark.parametrize("pi", [False, True], ids=["no-pi", "pi"])
def test_queues_opened_after_a_classic_filter_attach_without_it(pi: bool) -> None:
    """The filter covers the queues attached when it is set. drivers/net/tun.c:
    tun_attach re-reads it from user memory for a queue opened later (without
    NO_PI, which is IFF_NOFILTER) and returns early if the read works, leaving the fd
    unattached; the library makes that read fault, so the queue attaches, unfiltered,
    until attach_filter() is called again."""
    net = unique_net()
    flags = Flags.TAP | Flags.MULTI_QUEUE | (Flags(0) if pi else Flags.NO_PI)
    hdr = 4 if pi else 0
    (q0,) = tuntap.open_queues(unique_name("tfc"), 1, flags)
    qs = [q0]
    try:
        ip("link", "set", q0.name, "addrgenmode", "none")
        q0.add_address(net.cidr)
        q0.up()
        ip("neigh", "add", net.remote, "lladdr", MAC_A, "dev", q0.name, "nud", "permanent")
        q0.attach_filter([(0x06, 0, 0, 0)])  # drop every frame
        qs.append(tuntap.Device(q0.name, flags))
        qs[1].detach_queue()
        qs[1].attach_queue()  # the same re-read: no error, attached
        ours = frame_to(net.remote, KEPT)
        send_flows(net.remote, KEPT, 16, per_flow=1, src=net.local)
        on0, on1 = drain(qs, ours, expected=1, hdr=hdr)
        assert on0 == [], "the filter did not cover queue 0"
        assert on1, "queue 1 is not attached, or got the filter"

        q0.attach_filter([(0x06, 0, 0, 0)])  # again: now every attached queue has it
        send_flows(net.remote, KEPT, 16, per_flow=1, src=net.local)
        assert drain(qs, ours, expected=0, quiet=0.3, hdr=hdr) == [[], []]
    finally:
        for q in qs:
            q.close()


def test_a_queue_the_kernel_leaves_unattached_is_reported() -> None:
    """When the re-read works (here: a filter attached with a raw ioctl whose program
    stays in memory), TUNSETIFF succeeds but the fd is not attached: the library
    raises instead of returning a device that cannot read."""
    name = unique_name("tfu")
    flags = Flags.TAP | Flags.MULTI_QUEUE
    (q0,) = tuntap.open_queues(name, 1, flags)
    program = ctypes.create_string_buffer(bpfprog.cbpf((0x06, 0, 0, 0xFFFFFFFF)), 8)
    fprog = struct.pack("HxxxxxxQ", 1, ctypes.addressof(program))
    try:
        fcntl.ioctl(q0.fileno(), TUNATTACHFILTER, fprog)
        with pytest.raises(OSError) as ei:
            tuntap.Device(name, flags)
        assert type(ei.value) is OSError and ei.value.errno == errno.EBADFD
        assert str(ei.value) == (
            f"[Errno 77] File descriptor in bad state: ioctl(TUNGETIFF) on '{name}' (the "
            "kernel accepted TUNSETIFF but left this queue unattached: a classic filter "
            f"(attach_filter()) is set on '{name}'; detach_filter() first, or open with "
            "NO_PI)")
        (info,) = [i for i in tuntap.list_devices() if i.name == name]
        assert info.queues == 1
        q0.detach_filter()
        with tuntap.Device(name, flags) as q1:
            assert Flags.TAP in q1.flags
    finally:
        q0.close()


# ---------------------------------------------------------------------------------------
# the MAC filter
# ---------------------------------------------------------------------------------------


def test_mac_filter_delivers_only_frames_to_the_listed_addresses(tap: Tap) -> None:
    tap.dev.set_mac_filter([MAC_A])
    to_a = send_flows(tap.a, KEPT, 3, per_flow=1, src=tap.local)
    send_flows(tap.b, KEPT, 3, per_flow=1, src=tap.local)
    send_broadcast(tap, KEPT)
    wanted = lambda f: any(frame_to(d, KEPT)(f) for d in (tap.a, tap.b, tap.bcast))  # noqa: E731
    (got,) = drain([tap.dev], wanted, expected=3)
    assert [f[:6] for f in got] == [mac_bytes(MAC_A)] * 3
    assert sports(got, hdr=14) == set(to_a)

    # multicast=True also lets broadcast frames through.
    tap.dev.set_mac_filter([MAC_A], multicast=True)
    send_flows(tap.b, KEPT, 2, per_flow=1, src=tap.local)
    send_broadcast(tap, KEPT)
    (got,) = drain([tap.dev], wanted, expected=1)
    assert [f[:6] for f in got] == [b"\xff" * 6]

    # A 6-byte object works as an address; an empty list removes the filter.
    tap.dev.set_mac_filter([mac_bytes(MAC_B)])
    send_flows(tap.a, KEPT, 1, per_flow=1, src=tap.local)
    to_b = send_flows(tap.b, KEPT, 1, per_flow=1, src=tap.local)
    (got,) = drain([tap.dev], wanted, expected=1)
    assert sports(got, hdr=14) == set(to_b)
    tap.dev.set_mac_filter([])
    send_flows(tap.a, KEPT, 1, per_flow=1, src=tap.local)
    send_flows(tap.b, KEPT, 1, per_flow=1, src=tap.local)
    (got,) = drain([tap.dev], wanted, expected=2)
    assert sorted(f[:6] for f in got) == [mac_bytes(MAC_A), mac_bytes(MAC_B)]


def test_mac_filter_takes_8_unicast_and_more_multicast_addresses(tap: Tap) -> None:
    unicast = [f"02:00:5e:00:01:{i:02x}" for i in range(7)] + [MAC_A]
    multicast = [f"01:00:5e:00:00:{i:02x}" for i in range(12)]
    tap.dev.set_mac_filter(multicast[:6] + unicast + multicast[6:])  # any order
    to_a = send_flows(tap.a, KEPT, 2, per_flow=1, src=tap.local)
    send_flows(tap.b, KEPT, 2, per_flow=1, src=tap.local)
    (got,) = drain([tap.dev], lambda f: frame_to(tap.a, KEPT)(f) or frame_to(tap.b, KEPT)(f),
                   expected=2)
    assert sports(got, hdr=14) == set(to_a), "the filter was turned off"


@pytest.mark.parametrize("macs, kw, exc, msg", [
    ([f"02:00:00:00:00:{i:02x}" for i in range(9)], {}, ValueError,
     "at most 8 unicast MAC addresses (the kernel's exact table), not 9"),
    pytest.param(["02:00:00:00:00:01"] * 4097, {}, ValueError,
                 "at most 4096 MAC addresses, not 4097", id="4097-macs"),
    ([], {"multicast": True}, ValueError,
     "multicast=True needs at least one address: an empty list removes the filter"),
    (["02:00:00:00:00"], {}, ValueError,
     "MAC address 0 must look like 'aa:bb:cc:dd:ee:ff', not '02:00:00:00:00'"),
    ([MAC_A, "02-00-00-00-00-01"], {}, ValueError,
     "MAC address 1 must look like 'aa:bb:cc:dd:ee:ff', not '02-00-00-00-00-01'"),
    (["02:00:00:00:00:1\0"], {}, ValueError, "MAC address 0 must look like"),
    (["+2:00:00:00:00:01"], {}, ValueError, "MAC address 0 must look like"),
    ([b"\x02\x00\x00\x00\x00"], {}, ValueError, "MAC address 0 must be 6 bytes"),
    ([42], {}, TypeError, "MAC address 0 must be str or 6 bytes, not int"),
    (MAC_A, {}, TypeError, "macs must be a sequence of MAC addresses, not str"),
    (None, {}, TypeError, "macs must be a sequence of MAC addresses, not NoneType"),
])
def test_set_mac_filter_bad_arguments(tap: Tap, macs: object, kw: dict[str, Any],
                                      exc: type[Exception], msg: str) -> None:
    with pytest.raises(exc, match=f"^{re.escape(msg)}"):
        tap.dev.set_mac_filter(macs, **kw)


def test_set_mac_filter_on_tun_and_closed(open_device: Callable[..., Any]) -> None:
    dev = open_device(unique_name())
    with pytest.raises(ValueError, match=re.escape(
            f"set_mac_filter() is TAP only and '{dev.name}' is a TUN device")):
        dev.set_mac_filter([MAC_A])
    dev.close()
    with pytest.raises(ValueError, match=CLOSED):
        dev.set_mac_filter([MAC_A])
