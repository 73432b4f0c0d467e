"""Races: another thread closes, detaches or (re-)attaches the queue of a device while a
thread is blocked in readinto, read_batch or write (with a full send buffer); fd reuse;
fork; the interface deleted under a blocked reader.

Each of the randomized iterations (1,000 by default, 20,000 under tools/soak.sh) picks an
operation, an action and a delay of 0-2 ms: close/detach must end the blocked call within
100 ms with ValueError("I/O operation on closed device"); detach_queue/attach_queue must
leave it blocked (nothing to read, the send buffer still full) until the close that
follows. The seed is printed on failure (TUNTAP_RACE_SEED=<n> replays a run).

A blocked write needs a send buffer the kernel keeps full: the device's ingress redirects
every packet written to it (tc mirred) into a second TUN device whose 8 bit/s tbf qdisc
holds them, so they stay charged to the writer's socket (TUNSETSNDBUF 4096).
"""

from __future__ import annotations

import errno
import fcntl
import os
import random
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

import tuntap
from netutil import ip, unique_name, unique_net
from soakutil import budget, record

pytestmark = pytest.mark.needs_tun

ITERATIONS = budget(1_000, 20_000)
TUNSETSNDBUF = 0x400454D4  # _IOW('T', 212, int)
MQ = tuntap.Flags.TUN | tuntap.Flags.NO_PI | tuntap.Flags.MULTI_QUEUE
CLOSED = "I/O operation on closed device"
PACKET = bytes([0x45]) + bytes(59)


def tc(*args: str) -> None:
    r = subprocess.run(["tc", *args], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        pytest.fail(f"tc {' '.join(args)}: {r.stderr.strip()}", pytrace=False)


class Stage:
    """A multi-queue device kept alive by one queue, whose written packets are held."""

    def __init__(self) -> None:
        self.name = unique_name("rc")
        self.keeper = tuntap.Device(self.name, MQ)
        self.keeper.up()
        self.sink = tuntap.Device(unique_name("rs"))
        self.sink.up()
        tc("qdisc", "add", "dev", self.sink.name, "root", "handle", "1:", "tbf", "rate",
           "8bit", "burst", "1600", "limit", "2000000")
        tc("qdisc", "add", "dev", self.name, "ingress")
        tc("filter", "add", "dev", self.name, "parent", "ffff:", "protocol", "all", "u32",
           "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev",
           self.sink.name)
        fcntl.ioctl(self.keeper.fileno(), TUNSETSNDBUF, struct.pack("i", 4096))

    def flush(self) -> None:
        """Drop what the tbf qdisc holds (it would fill up over many iterations)."""
        tc("qdisc", "replace", "dev", self.sink.name, "root", "handle", "1:", "tbf", "rate",
           "8bit", "burst", "1600", "limit", "2000000")

    def queue(self) -> tuntap.Device:
        q = tuntap.Device(self.name, MQ)
        # a queue that attaches later keeps the default sk_sndbuf: set it on each
        fcntl.ioctl(q.fileno(), TUNSETSNDBUF, struct.pack("i", 4096))
        return q

    def close(self) -> None:
        self.keeper.close()
        self.sink.close()


@pytest.fixture
def stage() -> Iterator[Stage]:
    s = Stage()
    yield s
    s.close()


def fill_send_buffer(q: tuntap.Device) -> int:
    q.setblocking(False)
    for n in range(10_000):
        try:
            q.write(PACKET)
        except BlockingIOError as e:
            assert "send buffer full" in str(e)
            return n
    raise AssertionError("the send buffer never filled")


def blocked_call(q: tuntap.Device, op: str, out: list[Any]) -> threading.Thread:
    def run() -> None:
        try:
            if op == "readinto":
                q.readinto(bytearray(2048))
            elif op == "read_batch":
                q.read_batch(tuntap.PacketBatch(8, 2048))
            else:
                q.write(PACKET)
            out.append((time.monotonic(), None))
        except BaseException as e:  # judged by the test
            out.append((time.monotonic(), e))
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_randomized_close_detach_and_queue_changes_during_blocked_calls(stage: Stage) -> None:
    seed = int(os.environ.get("TUNTAP_RACE_SEED", time.time_ns() % 2**32))
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    latencies: list[float] = []
    reused = 0
    t_start = time.monotonic()
    for i in range(ITERATIONS):
        op = rng.choice(["readinto", "read_batch", "write"])
        action = rng.choice(["close", "detach", "detach_queue", "attach_queue"])
        where = f"seed {seed}, iteration {i}: {op} + {action}"
        if i % 200 == 199:
            stage.flush()
        q = stage.queue()
        fd = q.fileno()
        if action == "attach_queue":
            q.detach_queue()
        if op == "write":
            fill_send_buffer(q)
        q.settimeout(5)                      # a safety net far beyond what is allowed
        out: list[Any] = []
        t = blocked_call(q, op, out)
        time.sleep(rng.uniform(0, 0.002))
        if action in ("detach_queue", "attach_queue"):
            getattr(q, action)()
            time.sleep(0.001)
            assert t.is_alive() and not out, f"{where}: the call ended: {out}"
        t0 = time.monotonic()
        if action == "detach":
            os.close(q.detach())
        else:
            q.close()
        t.join(1)
        assert not t.is_alive(), f"{where}: still blocked 1 s after {action}"
        ended, exc = out[0]
        assert isinstance(exc, ValueError) and str(exc) == CLOSED, f"{where}: {exc!r}"
        latencies.append(ended - t0)
        assert ended - t0 < 0.1, f"{where}: took {ended - t0:.3f} s"
        outcomes[f"{op}+{action}"] += 1
        # the fd number is free again: whoever gets it, the old object never uses it
        nxt = stage.queue()
        if nxt.fileno() == fd:
            reused += 1
        with pytest.raises(ValueError, match=CLOSED):
            q.fileno()
        with pytest.raises(ValueError, match=CLOSED):
            q.write(PACKET)
        nxt.close()
    latencies.sort()
    record("races blocked calls", iterations=ITERATIONS, seed=seed,
           fd_reused=reused, max_ms=round(latencies[-1] * 1000, 3),
           p99_ms=round(latencies[int(len(latencies) * 0.99)] * 1000, 3),
           median_ms=round(latencies[len(latencies) // 2] * 1000, 3),
           seconds=round(time.monotonic() - t_start, 1), outcomes=dict(sorted(outcomes.items())))
    assert len(outcomes) == 12                 # every operation met every action
    assert reused > ITERATIONS // 2            # the fd-reuse case really happened


def test_fd_number_reused_by_a_new_device_is_never_touched_through_the_old_object(
        open_device: Any) -> None:
    net = unique_net()
    old = open_device(unique_name())
    fd = old.fileno()
    old.close()
    new = open_device(unique_name())
    assert new.fileno() == fd                  # the lowest free number: the same
    new.add_address(net.cidr)
    new.up()
    for call in (lambda: old.write(PACKET), lambda: old.readinto(bytearray(100)),
                 lambda: old.read_batch(tuntap.PacketBatch(2, 100)), old.fileno,
                 old.detach, lambda: old.settimeout(1), lambda: old.mtu):
        with pytest.raises(ValueError, match=CLOSED):
            call()
    old.close()                                # idempotent: does not close `fd`
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"for the new device", (net.remote, 9))
    new.settimeout(2)
    assert new.read().endswith(b"for the new device")
    assert os.readlink(f"/proc/self/fd/{fd}") == "/dev/net/tun"   # still the new one's


def test_interface_deleted_under_a_blocked_reader_ends_it_with_the_documented_error(
        open_device: Any) -> None:
    dev = open_device(unique_name())
    dev.up()
    dev.settimeout(5)
    out: list[Any] = []
    t = blocked_call(dev, "readinto", out)
    time.sleep(0.05)
    t0 = time.monotonic()
    ip("link", "del", "dev", dev.name)
    t.join(2)
    assert not t.is_alive()
    ended, exc = out[0]
    assert ended - t0 < 0.1, ended - t0
    assert isinstance(exc, OSError) and exc.errno in (errno.EFAULT, errno.EBADFD), exc
    assert "the interface was deleted" in str(exc) and dev.name in str(exc)
    with pytest.raises(OSError) as ei:         # and every later call says so too
        dev.readinto(bytearray(100))
    assert ei.value.errno == errno.EBADFD and "deleted" in str(ei.value)
    dev.close()
    assert dev.closed


FORK_AFTER_OPEN = """
    import os, signal, subprocess, sys, time, tuntap
    d = tuntap.Device(sys.argv[1])
    d.settimeout(0.01)
    try:
        d.read()                             # makes the wake-up eventfd too
    except TimeoutError:
        pass
    def fds():
        out = {}
        for f in os.listdir("/proc/self/fd"):
            try:
                out[int(f)] = os.readlink(f"/proc/self/fd/{f}")
            except FileNotFoundError:
                pass
        return out
    mine = {n: l for n, l in fds().items()
            if l in ("/dev/net/tun", "anon_inode:[eventfd]") or l.startswith("socket:")}
    assert len(mine) == 3, mine              # device, eventfd, netlink socket
    # O_CLOEXEC: an exec'd child, even with close_fds=False, has none of them
    code = ("import os; [print(os.readlink('/proc/self/fd/' + f)) for f in "
            "os.listdir('/proc/self/fd') if os.path.exists('/proc/self/fd/' + f)]")
    seen = subprocess.run([sys.executable, "-c", code], close_fds=False,
                          capture_output=True, text=True, check=True).stdout.split()
    assert not set(mine.values()) & set(seen), (mine, seen)
    pid = os.fork()
    if pid == 0:
        signal.alarm(5)
        d.close()
        os._exit(0 if d.closed else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, status
    assert not d.closed and d.name == sys.argv[1]
    assert d.flags & tuntap.Flags.TUN        # the parent's device still works
    signal.alarm(5)
    d.close()
    print("ok")
"""


def test_fork_after_open_close_in_both_no_hang_and_fds_are_cloexec() -> None:
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(FORK_AFTER_OPEN),
                        unique_name()], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr
