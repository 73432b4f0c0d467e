"""Regression tests for what a hostile (or just unlucky) user found: each one crashed,
hung, lied or accepted garbage before it was fixed (issue: reliability you can quote).

Whatever could crash the interpreter runs in a child process, so a segfault is a test
failure that shows the input instead of the end of the test session.
"""

from __future__ import annotations

import errno
import fcntl
import re
import struct
import subprocess
import sys
import textwrap
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest

import tuntap
from netutil import link_json, udp_socket, unique_name, unique_net


def run_child(code: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (inside the test namespace); fail on a crash."""
    r = subprocess.run([sys.executable, "-X", "faulthandler", "-c", textwrap.dedent(code),
                        *args], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"child died with {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r


# -- write_batch(list) while another thread mutates the list --------------------------

@pytest.mark.needs_tun
def test_write_batch_of_a_list_another_thread_shrinks_does_not_crash() -> None:
    """The GIL is released between 64-packet chunks; the list used to be read past its
    new end (SIGSEGV within 0.2 s). Now the call writes a snapshot of the list."""
    net = unique_net()
    r = run_child("""
        import sys, threading, time, tuntap
        d = tuntap.Device(sys.argv[1])
        d.add_address(sys.argv[2]); d.up()
        pkt = bytes([0x45]) + bytes(39)     # dropped by the stack, accepted by TUN
        lst = [pkt] * 300
        stop = threading.Event()
        def mutate():
            while not stop.is_set():
                lst.clear(); lst.extend([pkt] * 300)
        t = threading.Thread(target=mutate); t.start()
        calls, counts = 0, set()
        end = time.monotonic() + 1.0
        try:
            while time.monotonic() < end:
                counts.add(d.write_batch(lst))
                calls += 1
        finally:
            stop.set(); t.join()
        # every call wrote the whole list as it was when the call began
        assert counts <= {0, 300}, counts
        print(calls)
    """, unique_name(), net.cidr)
    assert int(r.stdout) > 10


# -- os.fork() while a thread is blocked reading -----------------------------------------

FORK_WITH_BLOCKED_READER = """
    import os, signal, socket, sys, threading, time, tuntap
    d = tuntap.Device(sys.argv[1])
    d.add_address(sys.argv[2]); d.up()
    remote = sys.argv[3]
    d.settimeout(10)
    got = []
    def reader():
        buf = bytearray(2048)
        try:
            got.append(d.readinto(buf))
        except BaseException as e:
            got.append(e)
    def sockets():
        out = set()
        for f in os.listdir("/proc/self/fd"):
            try:
                link = os.readlink(f"/proc/self/fd/{f}")
            except FileNotFoundError:
                continue
            if link.startswith("socket:"):
                out.add(link)
        return out
    t = threading.Thread(target=reader); t.start()
    time.sleep(0.2)                      # the reader is waiting in poll()
    parents = sockets()                  # the device's netlink control socket
    assert len(parents) == 1, parents
    pid = os.fork()
    if pid == 0:
        signal.alarm(5)                  # a hang is a failure, not a stuck test
        # the child got a control socket of its own (netlink replies are not shared)
        assert len(sockets()) == 1 and not sockets() & parents, (sockets(), parents)
        assert d.flags & tuntap.Flags.TUN
        t0 = time.monotonic()
        d.close()                        # used to wait for the parent's reader forever
        c = tuntap.Device(sys.argv[1][:13] + "c")  # the child makes its own, too
        c.close()
        os._exit(0 if time.monotonic() - t0 < 1 else 3)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
    time.sleep(0.2)
    # the parent's reader was not woken by the child's close ...
    assert t.is_alive() and not got, got
    assert not d.closed
    # ... and still reads the next packet
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"after the fork", (remote, 9))
    t.join(5)
    assert got and isinstance(got[0], int), got
    # later blocking reads wait again (they used to fail at once with ValueError)
    d.settimeout(0.2)
    t0 = time.monotonic()
    try:
        d.read()
    except TimeoutError:
        pass
    assert time.monotonic() - t0 >= 0.15
    d.close()
    print("ok")
"""


@pytest.mark.needs_tun
def test_fork_with_a_reader_blocked_child_close_returns_and_parent_keeps_reading() -> None:
    net = unique_net()
    r = run_child(FORK_WITH_BLOCKED_READER, unique_name(), net.cidr, net.remote)
    assert r.stdout.strip() == "ok"


@pytest.mark.needs_tun
def test_a_foreign_signal_on_the_wakeup_eventfd_is_ignored_by_an_open_device() -> None:
    """Whoever else writes to the device's eventfd (a child forked behind Python's back
    shares it) does not make a blocked read report a close that did not happen."""
    net = unique_net()
    r = run_child("""
        import os, socket, struct, sys, threading, time, tuntap
        d = tuntap.Device(sys.argv[1])
        d.add_address(sys.argv[2]); d.up()
        d.settimeout(10)
        got = []
        t = threading.Thread(target=lambda: got.append(d.read()))
        t.start()
        time.sleep(0.2)
        def link(f):
            try:
                return os.readlink(f"/proc/self/fd/{f}")
            except FileNotFoundError:      # the fd of listdir itself
                return ""
        # the device's eventfd is the fd whose link says anon_inode:[eventfd]
        efd = [int(f) for f in os.listdir("/proc/self/fd")
               if link(f) == "anon_inode:[eventfd]"]
        assert len(efd) == 1, efd
        os.write(efd[0], struct.pack("=Q", 1))
        time.sleep(0.2)
        assert t.is_alive() and not got, got
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"x", (sys.argv[3], 9))
        t.join(5)
        assert got and isinstance(got[0], bytes)
        d.close()
        print("ok")
    """, unique_name(), net.cidr, net.remote)
    assert r.stdout.strip() == "ok"


# -- vnet_hdr_size bounds -------------------------------------------------------------

VNET_TUN = tuntap.Flags.TUN | tuntap.Flags.NO_PI | tuntap.Flags.VNET_HDR
TUNSETVNETHDRSZ = 0x400454D8  # _IOW('T', 216, int)


@pytest.mark.needs_tun
@pytest.mark.parametrize("value", [257, 2**31 - 2, 2**31 - 1])
def test_vnet_hdr_size_above_256_is_refused_and_header_size_never_overflows(
        open_device: Callable[..., Any], value: int) -> None:
    dev = open_device(unique_name(), VNET_TUN)
    with pytest.raises(ValueError, match=re.escape(
            f"vnet_hdr_size must be at most 256 (10 and 12 are the real headers), "
            f"not {value}")):
        dev.vnet_hdr_size = value
    assert (dev.vnet_hdr_size, dev.header_size) == (10, 10)
    dev.vnet_hdr_size = 256                     # the largest padding tuntap takes
    assert (dev.vnet_hdr_size, dev.header_size) == (256, 256)
    with pytest.raises(ValueError, match="longer than the 256-byte packet header"):
        dev.readinto(bytearray(256))            # checked before the syscall


@pytest.mark.needs_tun
def test_a_huge_vnet_header_set_by_another_program_is_refused_on_attach(
        open_device: Callable[..., Any]) -> None:
    """The kernel takes any int >= 10; a device configured that way elsewhere is
    refused with the size named, instead of a negative header_size."""
    dev = open_device(unique_name(), VNET_TUN)
    fcntl.ioctl(dev.fileno(), TUNSETVNETHDRSZ, struct.pack("i", 2**31 - 2))
    with pytest.raises(ValueError, match=re.escape(
            f"'{dev.name}' has a 2147483646-byte vnet header; tuntap handles 10 to 256")):
        tuntap.Device.fromfd(dev.fileno())


def test_segment_vnet_hdr_size_has_the_same_bounds() -> None:
    batch = tuntap.PacketBatch(4, 2048)
    with pytest.raises(ValueError, match="vnet_hdr_size must be at most 256, not 257"):
        tuntap.segment(bytes(300), batch, vnet_hdr_size=257)


# -- allocations: the size asked for is said, and a read never needs more than a packet --

@pytest.mark.parametrize("capacity, slot_size", [(2**31 - 2, 2048), (2**20, 2**31 - 1)])
def test_packet_batch_too_large_says_how_many_bytes_were_asked_for(
        capacity: int, slot_size: int) -> None:
    with pytest.raises(MemoryError) as ei:
        tuntap.PacketBatch(capacity, slot_size)
    assert str(ei.value) == (
        f"PacketBatch(capacity={capacity}, slot_size={slot_size}, headroom=0) asks for "
        f"{capacity * slot_size} bytes (capacity x (slot_size + headroom)): not enough "
        f"memory")


def test_packet_batch_beyond_the_address_space_is_overflow_error() -> None:
    with pytest.raises(OverflowError, match=re.escape(
            "PacketBatch(capacity=9223372036854775807, slot_size=2048, headroom=16) asks "
            f"for {(2**63 - 1) * 2064} bytes (capacity x (slot_size + headroom))")):
        tuntap.PacketBatch(2**63 - 1, 2048, headroom=16)


@pytest.mark.needs_tun
@pytest.mark.parametrize("size", [2**40, 2**62, 2**20])
def test_read_of_a_huge_size_allocates_one_packet_and_returns_it(tun: Any, size: int) -> None:
    with udp_socket() as s:
        s.sendto(b"y" * 1400, (tun.remote, 9))
    tracemalloc.start()
    try:
        got = tun.dev.read(size)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got[0] == 0x45 and got.endswith(b"y" * 1400)
    assert peak < 65536 + 256 + 4096, peak      # one capped buffer, not `size` bytes


# -- owner and group: -1 cannot clear ----------------------------------------------------

TUNSETOWNER = 0x400454CC  # _IOW('T', 204, int)
TUNSETGROUP = 0x400454CE  # _IOW('T', 206, int)


@pytest.mark.needs_tun
@pytest.mark.parametrize("req", [TUNSETOWNER, TUNSETGROUP], ids=["owner", "group"])
def test_the_kernel_refuses_minus_one_as_owner_or_group(
        open_device: Callable[..., Any], req: int) -> None:
    """Why set_owner(-1) used to raise EINVAL: TUNSETOWNER/TUNSETGROUP map the id with
    make_kuid/make_kgid and refuse INVALID_UID, (uid_t)-1 (drivers/net/tun.c)."""
    dev = open_device(unique_name())
    with pytest.raises(OSError) as ei:
        fcntl.ioctl(dev.fileno(), req, -1)  # the int argument is (uid_t)-1
    assert ei.value.errno == errno.EINVAL


@pytest.mark.needs_tun
@pytest.mark.parametrize("method, what", [("set_owner", "uid"), ("set_group", "gid")])
@pytest.mark.parametrize("value", [-1, 2**32 - 1])
def test_set_owner_or_group_minus_one_says_the_kernel_cannot_clear(
        open_device: Callable[..., Any], method: str, what: str, value: int) -> None:
    dev = open_device(unique_name())
    with pytest.raises(ValueError, match=re.escape(
            f"{what} -1 cannot be set: the kernel refuses ({what}_t)-1 and has no way to "
            f"clear an owner or group once set (delete and recreate the device)")):
        getattr(dev, method)(value)
    assert link_json(dev.name)["linkinfo"]["info_data"].get(
        "user" if what == "uid" else "group") is None


@pytest.mark.needs_tun
@pytest.mark.parametrize("method, what", [("set_owner", "uid"), ("set_group", "gid")])
@pytest.mark.parametrize("value", [-2, 2**32, 2**40])
def test_set_owner_or_group_out_of_range_is_value_error(
        open_device: Callable[..., Any], method: str, what: str, value: int) -> None:
    dev = open_device(unique_name())
    with pytest.raises(ValueError, match=re.escape(
            f"{what} must be between 0 and 4294967294, not {value}")):
        getattr(dev, method)(value)


@pytest.mark.needs_tun
def test_set_owner_and_group_take_the_largest_valid_id(open_device: Callable[..., Any]) -> None:
    dev = open_device(unique_name())
    dev.set_owner(2**32 - 2)
    dev.set_group(2**32 - 2)
    data = link_json(dev.name)["linkinfo"]["info_data"]
    assert str(data["user"]) == str(2**32 - 2) and str(data["group"]) == str(2**32 - 2)


# -- hwaddr with an embedded NUL ---------------------------------------------------------

@pytest.mark.needs_tun
@pytest.mark.parametrize("value", ["02:00:00:00:00:01\x00garbage", "02:00:00:00:00:01\x00",
                                   "02:00:00:00\x0000:01"])
def test_hwaddr_with_an_embedded_nul_is_refused(open_device: Callable[..., Any],
                                                value: str) -> None:
    dev = open_device(unique_name(), tuntap.Flags.TAP | tuntap.Flags.NO_PI)
    before = dev.hwaddr
    with pytest.raises(ValueError, match="hwaddr must look like 'aa:bb:cc:dd:ee:ff', not "):
        dev.hwaddr = value
    assert dev.hwaddr == before


# -- VirtioNetHdr sizes that are not ints ---------------------------------------------

VNET = tuntap.VirtioNetHdr


@pytest.mark.parametrize("size", [float("nan"), float("inf"), 12.0, "12", None, 10j])
@pytest.mark.parametrize("call", ["parse", "pack", "pack_into"])
def test_virtio_net_hdr_size_must_be_an_int(size: object, call: str) -> None:
    with pytest.raises(TypeError, match="vnet header size must be int, not "):
        if call == "parse":
            VNET.parse(bytes(64), size=size)  # type: ignore[arg-type]
        elif call == "pack":
            VNET().pack(size)  # type: ignore[arg-type]
        else:
            VNET().pack_into(bytearray(64), 0, size)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [257, 2**31, 10**12])
def test_virtio_net_hdr_size_has_the_device_bound(size: int) -> None:
    msg = f"vnet header size must be at most 256, not {size}"
    with pytest.raises(ValueError, match=msg):
        VNET.parse(bytes(64), size=size)
    with pytest.raises(ValueError, match=msg):
        VNET().pack(size)           # used to allocate `size` bytes first
    assert len(VNET().pack(256)) == 256


def test_virtio_net_hdr_pack_into_offset_must_be_an_int() -> None:
    with pytest.raises(TypeError, match="offset must be int, not float"):
        VNET().pack_into(bytearray(64), float("nan"))  # type: ignore[arg-type]
