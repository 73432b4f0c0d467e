"""The methods compared: ways of reading or writing K packets, and their timed loops.

A :class:`Method` opens its own device and moves ``k`` packets per run, returning the
elapsed nanoseconds of the timed loop only. This module defines the methods of
``python -m tuntap bench`` (the C floor, tuntap, plain ``os.read``/``os.write``);
``benchmarks/bench_io.py`` builds more (the published peers) from the same pieces.
"""

from __future__ import annotations

import os
import time
from itertools import repeat
from typing import Any, Callable

from tuntap import Device, PacketBatch

from .cfloor import CFloor, CFloorServer
from .env import open_plain_tun

__all__ = [
    "BATCH",
    "FLOOR_READ",
    "FLOOR_WRITE",
    "READ_BUFSIZE",
    "FdDev",
    "Method",
    "cfloor_methods",
    "inline_ctypes_methods",
    "loop0",
    "loop1",
    "loop2",
    "loop3",
    "loop_batch",
    "loop_write_batch",
    "tuntap_methods",
]

READ_BUFSIZE = 2048
BATCH = 64
FLOOR_READ = "C read()"
FLOOR_WRITE = "C write()"


# --------------------------------------------------------------------------- timed loops
# One small function per call shape, so every method pays the same Python loop overhead
# (itertools.repeat, the cheapest counted loop) and nothing else.
def loop0(fn: Callable[[], Any], k: int) -> int:
    t0 = time.perf_counter_ns()
    for _ in repeat(None, k):
        fn()
    return time.perf_counter_ns() - t0


def loop1(fn: Callable[[Any], Any], a: Any, k: int) -> int:
    t0 = time.perf_counter_ns()
    for _ in repeat(None, k):
        fn(a)
    return time.perf_counter_ns() - t0


def loop2(fn: Callable[[Any, Any], Any], a: Any, b: Any, k: int) -> int:
    t0 = time.perf_counter_ns()
    for _ in repeat(None, k):
        fn(a, b)
    return time.perf_counter_ns() - t0


def loop3(fn: Callable[[Any, Any, Any], Any], a: Any, b: Any, c: Any, k: int) -> int:
    t0 = time.perf_counter_ns()
    for _ in repeat(None, k):
        fn(a, b, c)
    return time.perf_counter_ns() - t0


def loop_batch(fn: Callable[[Any], int], batch: Any, k: int) -> int:
    """Call ``fn(batch)`` until it has returned ``k`` packets in all (``read_batch``).

    Meant for reads from a queue holding exactly ``k`` packets: a batched read takes
    only what is queued, so it never goes past ``k``.
    """
    n = 0
    t0 = time.perf_counter_ns()
    while n < k:
        n += fn(batch)
    return time.perf_counter_ns() - t0


def loop_write_batch(fn: Callable[[Any], int], full: Any, tail: Any, k: int) -> int:
    """Write exactly ``k`` packets: ``k // len(full)`` calls ``fn(full)``, then ``fn(tail)``.

    ``tail`` holds the remaining ``k % len(full)`` packets (it may be empty).

    Raises
    ------
    ValueError
        ``tail`` does not hold ``k % len(full)`` packets.
    RuntimeError
        A call wrote fewer packets than it was given (``write_batch`` returns the count
        written when a later write in the batch fails).
    """
    size, rest = len(full), len(tail)
    if size < 1 or rest != k % size:
        raise ValueError(f"need a non-empty full batch and a tail of {k} % {size} packets, "
                         f"got {size} and {rest}")
    n = 0
    t0 = time.perf_counter_ns()
    for _ in repeat(None, k // size):
        n += fn(full)
    if rest:
        n += fn(tail)
    ns = time.perf_counter_ns() - t0
    if n != k:
        raise RuntimeError(f"write_batch wrote {n} of {k} packets")
    return ns


# --------------------------------------------------------------------------- Method
class Method:
    """One way of reading or writing packets.

    Parameters
    ----------
    name
        Shown in the tables and the JSON (``"tuntap readinto"``).
    kind
        ``"read"`` or ``"write"``.
    opener
        ``opener(ifname)`` creates the device object (attached to interface ``ifname``).
    runner
        ``runner(dev, k, packet)`` moves ``k`` packets (``packet`` is the one to write,
        empty for reads) and returns the elapsed ns of its timed loop.
    closer, fileno
        How to close the device and get its fd; default ``dev.close()``/``dev.fileno()``.
    missing
        Why this method cannot run here (its library is absent, ...); it is then listed
        with that reason instead of a number.
    """

    def __init__(
        self,
        name: str,
        kind: str,
        opener: Callable[[str], Any] | None = None,
        runner: Callable[[Any, int, bytes], int] | None = None,
        closer: Callable[[Any], None] | None = None,
        fileno: Callable[[Any], int] | None = None,
        missing: str | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.missing = missing
        self._opener = opener
        self._runner = runner
        self._closer = closer
        self._fileno = fileno
        self.dev: Any = None
        self.ifname = ""

    def open(self, ifname: str) -> None:
        """Create the device; ``self.ifname`` is the name the kernel gave it."""
        assert self._opener is not None
        self.dev = self._opener(ifname)
        name = getattr(self.dev, "name", None)
        self.ifname = name if isinstance(name, str) and name else ifname

    def run(self, k: int, packet: bytes) -> int:
        assert self._runner is not None
        return self._runner(self.dev, k, packet)

    def fileno(self) -> int:
        if self._fileno is not None:
            return self._fileno(self.dev)
        return int(self.dev.fileno())

    def close(self) -> None:
        if self.dev is not None:
            if self._closer is not None:
                self._closer(self.dev)
            else:
                self.dev.close()
            self.dev = None


class FdDev:
    """A bare TUN fd with close() and fileno(), for the floor and the os.read version."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# --------------------------------------------------------------------------- the methods
def _plain_opener(ifname: str) -> FdDev:
    return FdDev(open_plain_tun(ifname))


def cfloor_methods(floor: CFloor | None, own_process: bool = False) -> list[Method]:
    """The C reference loops (reported as missing without a compiler).

    ``C read()`` / ``C write()`` run in this process through ctypes (one call per run);
    with ``own_process`` the same loops also run in a separate ``cfloor serve`` process.
    """
    if floor is None:
        why = "no C compiler (cc) found"
        return [Method(FLOOR_READ, "read", missing=why), Method(FLOOR_WRITE, "write", missing=why)]

    def run_read(dev: FdDev, k: int, packet: bytes) -> int:
        return floor.run(dev.fd, None, k, READ_BUFSIZE)

    def run_write(dev: FdDev, k: int, packet: bytes) -> int:
        return floor.run(dev.fd, packet, k, len(packet))

    methods = [Method(FLOOR_READ, "read", _plain_opener, run_read),
               Method(FLOOR_WRITE, "write", _plain_opener, run_write)]
    if own_process:
        def proc_opener(ifname: str) -> CFloorServer:
            return CFloorServer(floor.exe, ifname)

        def proc_read(dev: CFloorServer, k: int, packet: bytes) -> int:
            return dev.run(b"r %d %d\n" % (k, READ_BUFSIZE))

        def proc_write(dev: CFloorServer, k: int, packet: bytes) -> int:
            return dev.run(b"w %d %d\n" % (k, len(packet)) + packet)

        methods[1:1] = [Method(FLOOR_READ + " [own process]", "read", proc_opener, proc_read)]
        methods.append(Method(FLOOR_WRITE + " [own process]", "write", proc_opener, proc_write))
    return methods


def inline_ctypes_methods() -> list[Method]:
    """The pure-Python version most users write: os.open + fcntl.ioctl, os.read/os.write."""

    def run_read(dev: FdDev, k: int, packet: bytes) -> int:
        return loop2(os.read, dev.fd, READ_BUFSIZE, k)

    def run_write(dev: FdDev, k: int, packet: bytes) -> int:
        return loop2(os.write, dev.fd, packet, k)

    return [
        Method("ctypes os.read", "read", _plain_opener, run_read),
        Method("ctypes os.write", "write", _plain_opener, run_write),
    ]


def tuntap_methods(module: Any = None, label: str = "tuntap") -> list[Method]:
    """tuntap's per-packet methods and its batched ones (batches of :data:`BATCH`).

    ``module`` is another build of the C extension (``benchmarks/bench_io.py
    --baseline``) whose ``Device``/``PacketBatch`` are measured under ``label``.
    """
    device_type: Any = Device if module is None else module.Device
    batch_type: Any = PacketBatch if module is None else module.PacketBatch

    def opener(ifname: str) -> Any:
        return device_type(ifname)

    def run_readinto(dev: Device, k: int, packet: bytes) -> int:
        return loop1(dev.readinto, bytearray(READ_BUFSIZE), k)

    # One read batch per device, reused like real code does: a fresh arena would put its
    # first-touch page faults inside the timed loop.
    read_batches: dict[int, PacketBatch] = {}

    def run_read_batch(dev: Device, k: int, packet: bytes) -> int:
        batch = read_batches.get(id(dev))
        if batch is None:
            batch = read_batches[id(dev)] = batch_type(BATCH, READ_BUFSIZE)
            memoryview(batch).cast("B")[:] = bytes(BATCH * READ_BUFSIZE)
        return loop_batch(dev.read_batch, batch, k)

    def run_write(dev: Device, k: int, packet: bytes) -> int:
        return loop1(dev.write, packet, k)

    def run_write_batch(dev: Device, k: int, packet: bytes) -> int:
        # Filled before the clock starts (append touches every page it uses).
        full = batch_type(BATCH, READ_BUFSIZE)
        for _ in range(BATCH):
            full.append(packet)
        tail = batch_type(max(k % BATCH, 1), READ_BUFSIZE)
        for _ in range(k % BATCH):
            tail.append(packet)
        return loop_write_batch(dev.write_batch, full, tail, k)

    return [
        Method(f"{label} readinto", "read", opener, run_readinto),
        Method(f"{label} read_batch({BATCH})", "read", opener, run_read_batch),
        Method(f"{label} write", "write", opener, run_write),
        Method(f"{label} write_batch({BATCH})", "write", opener, run_write_batch),
    ]
