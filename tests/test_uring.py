"""The io_uring backend (``Device(io=...)``): choosing it, falling back, and what only it does.

The rest of the I/O suite runs on both backends through ``conftest.io_backend``; this file
covers the argument, ``Device.io``, ``TUNTAP_IO``, the forced fallback (io_uring taken away
by a seccomp filter, as Docker's default profile does), the 8-packet switch on a partly
filled queue, batches larger than one ring (a refill), writes from other threads, fork(),
and the leak loop on the ring path.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

import tuntap
from conftest import _probe_io_uring
from netutil import (
    WAIT,
    build_udp4,
    is_udp4_to,
    link_exists,
    parse_udp4,
    udp_socket,
    unique_name,
    unique_net,
)
from tuntap import _tuntap

URING_REASON = _probe_io_uring()
needs_uring = pytest.mark.skipif(URING_REASON is not None, reason=URING_REASON or "")
pytestmark = pytest.mark.needs_tun


@pytest.fixture(autouse=True)
def _default_tuning(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests choose the backend themselves and run with the default 8-packet switch."""
    monkeypatch.delenv("TUNTAP_IO", raising=False)
    monkeypatch.delenv("TUNTAP_URING_MIN", raising=False)


def _fill(dst: str, port: int, tags: range) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in tags:
            s.sendto(b"p%05d" % i, (dst, port))


def _drain(dev: Any, batch: tuntap.PacketBatch, dst: str, port: int) -> tuple[int, list[int]]:
    """One read_batch: the packet count and the tags of the datagrams to (dst, port)."""
    n = dev.read_batch(batch)
    tags = [int(parse_udp4(bytes(p))[1].payload[1:])
            for p in batch if is_udp4_to(bytes(p), dst, port)]
    return n, tags


def _sink(net: Any, size: int) -> socket.socket:
    """A UDP socket on net.local with room for `size` bytes of datagrams."""
    s = udp_socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, 33, size)  # SO_RCVBUFFORCE (root)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    s.bind((net.local, 0))
    return s


def _up(open_device: Any, **kw: Any) -> tuple[Any, Any]:
    """A non-blocking device with net.local/24 on it, up; net.remote routes through it."""
    net = unique_net()
    dev = open_device(unique_name("tu"), **kw)
    dev.add_address(net.cidr)
    dev.up()
    dev.setblocking(False)
    return dev, net


# --- the argument and Device.io ------------------------------------------------------


@pytest.mark.parametrize(("io", "exc", "msg"), [
    ("bogus", ValueError, "io must be 'auto', 'uring' or 'syscall', not 'bogus'"),
    ("", ValueError, "io must be 'auto', 'uring' or 'syscall', not ''"),
    ("URING", ValueError, "not 'URING'"),
    (1, TypeError, "io must be str, not int"),
    (None, TypeError, "io must be str, not NoneType"),
    (b"uring", TypeError, "io must be str, not bytes"),
])
def test_bad_io_argument_raises_before_any_syscall(io: Any, exc: type, msg: str) -> None:
    name = unique_name("tb")
    with pytest.raises(exc, match=msg):
        tuntap.Device(name, io=io)
    assert not link_exists(name)


def test_io_syscall_is_the_syscall_backend(open_device: Any) -> None:
    dev = open_device(unique_name(), io="syscall")
    assert dev.io == "syscall"
    assert dev._uring_stats is None


@needs_uring
def test_io_uring_is_the_uring_backend_and_stays_reported_after_close(open_device: Any) -> None:
    dev = open_device(unique_name(), io="uring")
    assert dev.io == "uring"
    assert dev._uring_stats == {"enters": 0, "sqes": 0, "declined": 0, "adopted": 0,
                                "broken": 0, "min": 8}
    dev.close()
    assert dev.io == "uring"
    assert dev._uring_stats is None


def test_auto_follows_the_measured_choice(open_device: Any) -> None:
    probe = _tuntap._io_uring_probe()
    assert set(probe) == {"available", "errno", "syscall_ns", "uring_ns", "threshold", "choice"}
    assert open_device(unique_name()).io == probe["choice"]
    assert open_device(unique_name(), io="auto").io == probe["choice"]
    if probe["available"]:
        assert probe["errno"] == 0 and probe["syscall_ns"] > 0 and probe["uring_ns"] > 0
        faster = probe["uring_ns"] < probe["threshold"] * probe["syscall_ns"]
        assert probe["choice"] == ("uring" if faster else "syscall")
    else:
        assert probe["choice"] == "syscall" and probe["errno"] > 0


def test_probe_rerun_measures_again() -> None:
    first = _tuntap._io_uring_probe()
    again = _tuntap._io_uring_probe(True)
    assert again["available"] == first["available"]
    assert _tuntap._io_uring_probe() == again  # the new result is the one kept
    with pytest.raises(TypeError):
        _tuntap._io_uring_probe(True, True)  # type: ignore[call-arg]


@needs_uring
def test_tuntap_io_overrides_auto_only(open_device: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TUNTAP_IO", "uring")
    assert open_device(unique_name()).io == "uring"
    assert open_device(unique_name(), io="syscall").io == "syscall"
    monkeypatch.setenv("TUNTAP_IO", "syscall")
    assert open_device(unique_name()).io == "syscall"
    assert open_device(unique_name(), io="uring").io == "uring"
    fd = os.dup(open_device(unique_name()).fileno())
    monkeypatch.setenv("TUNTAP_IO", "uring")
    try:
        with tuntap.Device.fromfd(fd) as dup:
            assert dup.io == "uring"
    finally:
        os.close(fd)


@pytest.mark.parametrize(("var", "value", "msg"), [
    ("TUNTAP_IO", "fast", "TUNTAP_IO must be 'auto', 'uring' or 'syscall', not 'fast'"),
    ("TUNTAP_URING_MIN", "0", "TUNTAP_URING_MIN must be 1 to 64, not '0'"),
    ("TUNTAP_URING_MIN", "65", "TUNTAP_URING_MIN must be 1 to 64, not '65'"),
    ("TUNTAP_URING_MIN", "8x", "TUNTAP_URING_MIN must be 1 to 64, not '8x'"),
])
@needs_uring
def test_bad_tuning_variables_raise_value_error(monkeypatch: pytest.MonkeyPatch, var: str,
                                                value: str, msg: str) -> None:
    if var == "TUNTAP_URING_MIN":
        monkeypatch.setenv("TUNTAP_IO", "uring")
    monkeypatch.setenv(var, value)
    name = unique_name("tv")
    with pytest.raises(ValueError, match=msg):
        tuntap.Device(name)
    assert not link_exists(name)  # the device opened for it was closed again


@needs_uring
def test_open_queues_passes_io_to_every_queue() -> None:
    queues = tuntap.open_queues(unique_name("tq"), 3, io="uring")
    try:
        assert [q.io for q in queues] == ["uring"] * 3
    finally:
        for q in queues:
            q.close()


# --- io_uring taken away: the fallback ------------------------------------------------

# A child process whose io_uring_setup() fails with the given errno, the way Docker's
# default seccomp profile (EPERM) or a kernel without io_uring (ENOSYS) refuses it.
_SECCOMP_CHILD = r"""
import ctypes, errno, json, os, struct, sys, warnings
warnings.simplefilter("error")
err = getattr(errno, sys.argv[1])
libc = ctypes.CDLL(None, use_errno=True)
insns = [
    (0x20, 0, 0, 0),                      # ld  [0]          (seccomp_data.nr)
    (0x15, 0, 1, 425),                    # jeq #__NR_io_uring_setup
    (0x06, 0, 0, 0x00050000 | err),       # ret ERRNO(err)
    (0x06, 0, 0, 0x7FFF0000),             # ret ALLOW
]
code = b"".join(struct.pack("HBBI", *i) for i in insns)
buf = ctypes.create_string_buffer(code, len(code))
prog = struct.pack("HxxxxxxQ", len(insns), ctypes.addressof(buf))
assert libc.prctl(38, 1, 0, 0, 0) == 0          # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, prog) == 0             # PR_SET_SECCOMP, SECCOMP_MODE_FILTER
import tuntap
from tuntap import _tuntap
out = {"probe": _tuntap._io_uring_probe()}
with tuntap.Device(sys.argv[2] + "a") as dev:
    out["auto"] = dev.io
    out["auto_stats"] = dev._uring_stats
with tuntap.Device(sys.argv[2] + "s", io="syscall") as dev:
    out["syscall"] = dev.io
try:
    tuntap.Device(sys.argv[2] + "u", io="uring")
    out["uring"] = "opened"
except OSError as e:
    out["uring"] = [type(e).__name__, e.errno, str(e)]
os.environ["TUNTAP_IO"] = "uring"
try:
    tuntap.Device(sys.argv[2] + "e")
    out["env"] = "opened"
except OSError as e:
    out["env"] = [type(e).__name__, e.errno]
print(json.dumps(out))
"""


@pytest.mark.parametrize(("errname", "exc"), [("EPERM", "PermissionError"),
                                              ("ENOSYS", "OSError")])
def test_io_uring_refused_means_syscall_for_auto_and_an_error_for_uring(errname: str,
                                                                        exc: str) -> None:
    import errno
    import json

    name = unique_name("tf")[:12]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNTAP_")}
    proc = subprocess.run([sys.executable, "-c", _SECCOMP_CHILD, errname, name],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    err = getattr(errno, errname)
    assert out["probe"]["available"] is False
    assert out["probe"]["errno"] == err and out["probe"]["choice"] == "syscall"
    assert out["auto"] == "syscall" and out["auto_stats"] is None  # silently, no warning
    assert out["syscall"] == "syscall"
    kind, code, text = out["uring"]
    assert (kind, code) == (exc, err)
    assert f"io_uring_setup() on '{name}u'" in text
    assert ("seccomp" in text) if errname == "EPERM" else ("no io_uring" in text)
    assert out["env"] == [exc, err]  # TUNTAP_IO=uring is io="uring": an error too
    for suffix in "asue":
        assert not link_exists(name + suffix)


# --- what only the ring path does ----------------------------------------------------


@needs_uring
def test_partly_filled_queue_switches_at_eight_packets_and_keeps_order(open_device: Any) -> None:
    """Below 8 packets a call uses read() only; after a call of 8 or more, the next one
    reads through the ring (at most 16 SQEs in its first round) whatever is queued."""
    dev, net = _up(open_device, io="uring")
    batch = tuntap.PacketBatch(64, 256)
    port, seq = 4100, 0

    def call(q: int) -> tuple[int, dict[str, int]]:
        nonlocal seq
        _fill(net.remote, port, range(seq, seq + q))
        n, tags = _drain(dev, batch, net.remote, port)
        assert (n, tags) == (q, list(range(seq, seq + q)))
        seq += q
        return n, dev._uring_stats

    assert call(3)[1]["enters"] == 0         # first call: read() only
    assert call(20)[1]["enters"] == 0        # after 3: read() only, takes all 20
    stats = call(5)[1]                       # after 20: the ring, 16 SQEs, 4 reads succeed
    assert (stats["enters"], stats["sqes"]) == (1, 16)
    assert call(4)[1]["sqes"] == 16          # after 5: read() again
    stats = call(30)[1]                      # after 4: read() only
    assert stats["sqes"] == 16
    stats = call(1)[1]                       # after 30: one round of 16, 15 say EAGAIN
    assert (stats["enters"], stats["sqes"]) == (2, 32)
    with pytest.raises(BlockingIOError):
        dev.read_batch(batch)
    assert len(batch) == 0


@needs_uring
def test_read_batch_spanning_several_ring_refills_is_complete_and_in_order(
        open_device: Any) -> None:
    dev, net = _up(open_device, io="uring")
    dev.txqueuelen = 1000
    batch = tuntap.PacketBatch(300, 256)
    port = 4101
    _fill(net.remote, port, range(10))
    assert _drain(dev, batch, net.remote, port) == (10, list(range(10)))
    _fill(net.remote, port, range(10, 320))
    # one call: read() for the first, then rounds of 10, 20, 40, 64, 64, 64, 37 SQEs:
    # more than the 64-entry ring holds, so it is refilled six times
    assert _drain(dev, batch, net.remote, port) == (300, list(range(10, 310)))
    stats = dev._uring_stats
    assert (stats["enters"], stats["sqes"]) == (7, 299)
    # after a full batch the next call takes one round of 64 (9 reads find a packet)
    assert _drain(dev, batch, net.remote, port) == (10, list(range(310, 320)))
    assert dev._uring_stats["sqes"] == 299 + 64
    with pytest.raises(BlockingIOError):  # an empty queue: the next call starts on read()
        dev.read_batch(batch)
    _fill(net.remote, port, range(320, 330))
    assert _drain(dev, batch, net.remote, port) == (10, list(range(320, 330)))
    assert dev._uring_stats["sqes"] == 299 + 64


@needs_uring
def test_write_batch_spanning_several_rounds_arrives_complete_and_in_order(
        open_device: Any) -> None:
    dev, net = _up(open_device, io="uring")
    with _sink(net, 4 << 20) as sink:
        port = sink.getsockname()[1]
        out = tuntap.PacketBatch(200, 256)
        for i in range(200):
            out.append(build_udp4(net.remote, net.local, 999, port, b"w%03d" % i))
        assert dev.write_batch(out) == 200
        assert [sink.recv(64) for _ in range(200)] == [b"w%03d" % i for i in range(200)]
        assert dev._uring_stats["enters"] == 4  # 64 + 64 + 64 + 8
        assert dev.write_batch(list(out)[:7]) == 7  # under 8: write()
        assert [sink.recv(64) for _ in range(7)] == [b"w%03d" % i for i in range(7)]
        assert dev._uring_stats["enters"] == 4


@needs_uring
def test_no_read_stays_pending_after_a_call(open_device: Any) -> None:
    """A READ SQE on an empty queue must complete with EAGAIN (RWF_NOWAIT), not wait in
    the kernel and swallow the next packet after read_batch returned."""
    dev, net = _up(open_device, io="uring")
    batch = tuntap.PacketBatch(64, 256)
    port = 4102
    _fill(net.remote, port, range(40))
    assert _drain(dev, batch, net.remote, port)[0] == 40
    _fill(net.remote, port, range(40, 42))   # next call: 16 SQEs for 1 packet left after read()
    assert _drain(dev, batch, net.remote, port) == (2, [40, 41])
    _fill(net.remote, port, range(42, 43))
    buf = bytearray(256)
    n = dev.readinto(buf)                    # read() still finds it in the kernel queue
    assert parse_udp4(bytes(buf[:n]))[1].payload == b"p00042"
    assert dev._uring_stats["broken"] == 0   # and not thanks to the cancel safety net


@needs_uring
def test_write_batch_from_another_thread_falls_back_then_adopts_the_ring(
        open_device: Any) -> None:
    dev, net = _up(open_device, io="uring")
    with _sink(net, 4 << 20) as sink:
        port = sink.getsockname()[1]
        out = tuntap.PacketBatch(8, 256)
        for i in range(8):
            out.append(build_udp4(net.remote, net.local, 999, port, b"t%d" % i))
        assert dev.write_batch(out) == 8              # this thread enables the ring
        assert dev._uring_stats["enters"] == 1
        results: list[Any] = []

        def other() -> None:
            try:
                results.append([dev.write_batch(out) for _ in range(70)])
                results.append(dict(dev._uring_stats))
            except BaseException as e:  # noqa: BLE001 - reported below
                results.append(e)

        t = threading.Thread(target=other)
        t.start()
        t.join(WAIT * 5)
        assert not t.is_alive()
        counts, stats = results
        assert counts == [8] * 70
        # 63 calls on write(), the 64th gets a ring of its own, 7 more use it
        assert stats["declined"] == 63 and stats["adopted"] == 1
        assert stats["enters"] == 1 + 7
        assert dev.write_batch(out) == 8              # the first thread lost it: write()
        assert dev._uring_stats["declined"] == 64
        got = [sink.recv(64) for _ in range(8 * 72)]
        assert got == [b"t%d" % i for i in range(8)] * 72


@needs_uring
def test_concurrent_write_batch_on_one_device_loses_nothing(open_device: Any) -> None:
    dev, net = _up(open_device, io="uring")
    rounds, threads = 100, 3
    with _sink(net, 16 << 20) as sink:
        port = sink.getsockname()[1]
        errors: list[BaseException] = []

        def writer(tag: int) -> None:
            pkts = [build_udp4(net.remote, net.local, 999, port, b"%d-%d" % (tag, i))
                    for i in range(16)]
            try:
                for _ in range(rounds):
                    assert dev.write_batch(pkts) == 16
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        ts = [threading.Thread(target=writer, args=(k,)) for k in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        assert not errors and not any(t.is_alive() for t in ts)
        got: dict[bytes, int] = {}
        for _ in range(rounds * threads * 16):
            p = sink.recv(64)
            got[p] = got.get(p, 0) + 1
        assert got == {b"%d-%d" % (k, i): rounds for k in range(threads) for i in range(16)}


_FORK_CHILD = r"""
import os, socket, sys
import tuntap
sys.path.insert(0, sys.argv[2])
from netutil import is_udp4_to, parse_udp4
dev = tuntap.Device(sys.argv[1], io="uring")
local, remote = sys.argv[3], sys.argv[4]
dev.add_address(local + "/24"); dev.up(); dev.setblocking(False)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
b = tuntap.PacketBatch(64, 256)
def roundtrip(tag):
    for i in range(20):
        s.sendto(b"%s%02d" % (tag, i), (remote, 4200))
    n = dev.read_batch(b)
    got = [parse_udp4(bytes(p))[1].payload for p in b if is_udp4_to(bytes(p), remote, 4200)]
    assert got == [b"%s%02d" % (tag, i) for i in range(20)], got
roundtrip(b"a"); roundtrip(b"b")        # the second call goes through the parent's ring
enters = dev._uring_stats["enters"]
assert enters >= 1
pid = os.fork()
if pid == 0:
    try:
        roundtrip(b"c")                 # the child must not touch the parent's ring
        os._exit(0)
    except BaseException as e:
        print("child:", repr(e), file=sys.stderr)
        os._exit(1)
_, status = os.waitpid(pid, 0)
assert os.waitstatus_to_exitcode(status) == 0
roundtrip(b"d")
assert dev._uring_stats["enters"] > enters and dev._uring_stats["broken"] == 0
print("ok")
"""


@needs_uring
def test_a_forked_child_uses_its_own_ring_and_the_parent_keeps_its_own() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TUNTAP_")}
    env["TUNTAP_URING_MIN"] = "1"
    here = os.path.dirname(os.path.abspath(__file__))
    net = unique_net()
    proc = subprocess.run([sys.executable, "-c", _FORK_CHILD, unique_name("tk"), here,
                           net.local, net.remote],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


@needs_uring
def test_blocked_uring_read_batch_is_woken_by_close_from_another_thread(
        open_device: Any) -> None:
    dev, net = _up(open_device, io="uring")
    dev.setblocking(True)
    batch = tuntap.PacketBatch(64, 256)
    _fill(net.remote, 4103, range(20))
    assert dev.read_batch(batch) == 20                 # the next call would use the ring
    caught: list[BaseException] = []

    def reader() -> None:
        try:
            dev.read_batch(batch)
        except BaseException as e:  # noqa: BLE001 - checked below
            caught.append(e)

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.1)
    dev.close()
    t.join(WAIT)
    assert not t.is_alive()
    assert len(caught) == 1 and isinstance(caught[0], ValueError)
    assert str(caught[0]) == "I/O operation on closed device"


# --- the leak loop on the new path ----------------------------------------------------


@needs_uring
def test_uring_devices_leave_no_fd_no_memory_and_no_interface_behind() -> None:
    import tracemalloc

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    name = unique_name("tl")
    net = unique_net()
    # not for this host and not forwarded: the stack drops it without an ICMP reply
    stray = build_udp4(net.remote, net.other, 999, 9, b"x")
    base = fds()
    for _ in range(100):
        with tuntap.Device(name, io="uring") as dev:
            dev.up()
            assert dev.write_batch([stray] * 8) == 8  # makes and enables the write ring
            assert dev._uring_stats["enters"] == 1
        assert not link_exists(name)  # the rings held no reference to the device
    assert fds() == base

    dev = tuntap.Device(name, io="uring")
    try:
        dev.add_address(net.cidr)
        dev.up()
        dev.setblocking(False)
        batch = tuntap.PacketBatch(64, 256)
        out = tuntap.PacketBatch(16, 256)
        for _ in range(16):
            out.append(stray)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            tracemalloc.start()
            for rnd in range(2000):
                if rnd == 100:
                    start = tracemalloc.get_traced_memory()[0]
                for _ in range(16):
                    sender.sendto(b"x", (net.remote, 9))
                assert dev.read_batch(batch) == 16
                assert dev.write_batch(out) == 16
            grown = tracemalloc.get_traced_memory()[0] - start
            tracemalloc.stop()
        finally:
            sender.close()
        stats = dev._uring_stats
        assert stats["enters"] >= 2 * 1900 and stats["broken"] == 0
        assert grown < 4096, f"{grown} bytes more after 1,900 rounds"
    finally:
        dev.close()
    assert fds() == base
