#!/usr/bin/env python3
"""Per-packet cost of the asyncio layer on queued packets: ``await`` vs the sync calls.

What is measured (engine: ``tuntap._bench``, the same protocol as ``bench_io.py``): a UDP
socket queues exactly K datagrams on the device (untimed), then the method drains exactly
K packets (timed inside the coroutine, after the loop is running); the device's counters
must say K were read and the queue must end empty. Because the packets are queued
before the first call, this is the *try-first* path: what ``await`` costs on top of
the system call when no waiting is needed.

Methods, each on its own device, on the default asyncio loop and on uvloop:

- ``C read()``: the physical floor (one ``read()`` per packet, compiled with ``cc -O2``);
- ``sync readinto`` / ``sync read_batch(64)``: ``tuntap.Device`` without asyncio;
- ``await readinto`` / ``await read_batch(64)``: ``tuntap.asyncio.AsyncDevice``;
- ``endpoint``: ``create_endpoint``, ``packets_received(batch)`` per batch read (64);
- ``add_reader + os.read``: the loop users write today (asyncssh's TUN transport does
  this): ``loop.add_reader(fd, cb)`` where ``cb`` does one ``os.read`` (one ``bytes``)
  per readiness callback, i.e. one event-loop iteration per packet.

Every result carries its paired ratio to the C floor of the same round; the summary
adds the paired ratios the issue asks about: ``await X`` / ``sync X`` and the packets/s
of ``await read_batch`` and ``endpoint`` over the ``add_reader + os.read`` baseline.

    sudo python benchmarks/bench_asyncio.py -k 1024 -s 64 -r 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from itertools import repeat
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
try:
    from tuntap import _bench
except ImportError:  # a source tree without an installed tuntap
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))
    from tuntap import _bench

import tuntap  # noqa: E402
import tuntap.asyncio as ta  # noqa: E402
from tuntap._bench import READ_BUFSIZE, Method, loop1, loop_batch  # noqa: E402

BATCH = 64


def loop_factories() -> dict[str, Callable[[], asyncio.AbstractEventLoop] | str]:
    out: dict[str, Callable[[], asyncio.AbstractEventLoop] | str] = {
        "asyncio": asyncio.new_event_loop}
    try:
        import uvloop
    except ImportError as exc:
        out["uvloop"] = f"uvloop not installed ({exc}); pip install uvloop"
    else:
        out["uvloop"] = uvloop.new_event_loop
    return out


class _AsyncDev:
    """A device, its event loop and its AsyncDevice (bound to that loop)."""

    def __init__(self, ifname: str, new_loop: Callable[[], asyncio.AbstractEventLoop]) -> None:
        self.dev = tuntap.Device(ifname)
        self.name = self.dev.name
        self.loop = new_loop()
        self.adev = ta.AsyncDevice(self.dev)
        self.batch = tuntap.PacketBatch(BATCH, READ_BUFSIZE)
        memoryview(self.batch).cast("B")[:] = bytes(BATCH * READ_BUFSIZE)  # fault it in
        self.buf = bytearray(READ_BUFSIZE)

    def fileno(self) -> int:
        return self.dev.fileno()

    def run(self, coro: Any) -> int:
        return int(self.loop.run_until_complete(coro))

    def close(self) -> None:
        self.adev.close()
        self.loop.close()


async def _await_readinto(adev: ta.AsyncDevice, buf: bytearray, k: int) -> int:
    readinto = adev.readinto
    t0 = time.perf_counter_ns()
    for _ in repeat(None, k):
        await readinto(buf)
    return time.perf_counter_ns() - t0


async def _await_read_batch(adev: ta.AsyncDevice, batch: tuntap.PacketBatch, k: int) -> int:
    read_batch = adev.read_batch
    n = 0
    t0 = time.perf_counter_ns()
    while n < k:
        n += await read_batch(batch)
    return time.perf_counter_ns() - t0


class _Counter(ta.PacketProtocol):
    def __init__(self, k: int, done: asyncio.Future[int]) -> None:
        self.k, self.n, self.done = k, 0, done

    def packets_received(self, batch: tuntap.PacketBatch) -> None:
        self.n += len(batch)
        if self.n >= self.k and not self.done.done():
            self.done.set_result(time.perf_counter_ns())


async def _endpoint(dev: tuntap.Device, batch: tuntap.PacketBatch, k: int) -> int:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    t0 = time.perf_counter_ns()
    transport, _ = await ta.create_endpoint(lambda: _Counter(k, done), dev, batch)
    t1 = await done
    transport.pause_reading()  # keep the device: the transport would close it
    return t1 - t0


async def _add_reader_os_read(fd: int, k: int) -> int:
    """The loop users write today: one os.read (one bytes object) per readiness callback."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[int] = loop.create_future()
    count = [0]
    read = os.read

    def on_readable() -> None:
        read(fd, READ_BUFSIZE)
        count[0] += 1
        if count[0] == k:
            loop.remove_reader(fd)
            done.set_result(time.perf_counter_ns())

    t0 = time.perf_counter_ns()
    loop.add_reader(fd, on_readable)
    return await done - t0


def methods(loops: dict[str, Callable[[], asyncio.AbstractEventLoop] | str]) -> list[Method]:
    def sync_opener(ifname: str) -> Any:
        return tuntap.Device(ifname)

    batches: dict[int, tuntap.PacketBatch] = {}

    def sync_readinto(dev: Any, k: int, packet: bytes) -> int:
        return loop1(dev.readinto, bytearray(READ_BUFSIZE), k)

    def sync_read_batch(dev: Any, k: int, packet: bytes) -> int:
        b = batches.get(id(dev))
        if b is None:
            b = batches[id(dev)] = tuntap.PacketBatch(BATCH, READ_BUFSIZE)
            memoryview(b).cast("B")[:] = bytes(BATCH * READ_BUFSIZE)
        return loop_batch(dev.read_batch, b, k)

    out = [Method("sync readinto", "read", sync_opener, sync_readinto),
           Method(f"sync read_batch({BATCH})", "read", sync_opener, sync_read_batch)]
    for lname, factory in loops.items():
        names = (f"{lname}: await readinto", f"{lname}: await read_batch({BATCH})",
                 f"{lname}: endpoint({BATCH})", f"{lname}: add_reader + os.read")
        if isinstance(factory, str):
            out += [Method(n, "read", missing=factory) for n in names]
            continue

        def opener(ifname: str, factory: Callable[[], asyncio.AbstractEventLoop] = factory
                   ) -> _AsyncDev:
            return _AsyncDev(ifname, factory)

        def await_readinto(d: _AsyncDev, k: int, packet: bytes) -> int:
            return d.run(_await_readinto(d.adev, d.buf, k))

        def await_read_batch(d: _AsyncDev, k: int, packet: bytes) -> int:
            return d.run(_await_read_batch(d.adev, d.batch, k))

        def endpoint(d: _AsyncDev, k: int, packet: bytes) -> int:
            return d.run(_endpoint(d.dev, d.batch, k))

        def add_reader(d: _AsyncDev, k: int, packet: bytes) -> int:
            return d.run(_add_reader_os_read(d.fileno(), k))

        out += [Method(names[0], "read", opener, await_readinto),
                Method(names[1], "read", opener, await_read_batch),
                Method(names[2], "read", opener, endpoint),
                Method(names[3], "read", opener, add_reader)]
    return out


def paired(a: _bench.Result, b: _bench.Result) -> float | None:
    """Median over rounds of (a's time / b's time) in the same round."""
    pairs = [t / b.by_round[j] for j, t in a.by_round.items() if j in b.by_round]
    return statistics.median(pairs) if pairs else None


def summary(results: list[_bench.Result], loops: list[str]) -> list[dict[str, Any]]:
    rows = []
    for k, p in sorted({(r.k, r.payload) for r in results}):
        by = {r.method: r for r in results if (r.k, r.payload) == (k, p) and r.per_packet}
        for lname in loops:
            checks = [
                ("time: await read_batch / sync read_batch", f"{lname}: await read_batch({BATCH})",
                 f"sync read_batch({BATCH})", "<=", 1.05),
                ("time: await readinto / sync readinto", f"{lname}: await readinto",
                 "sync readinto", "<=", 1.10),
                ("packets/s: await read_batch / add_reader+os.read",
                 f"{lname}: add_reader + os.read", f"{lname}: await read_batch({BATCH})",
                 ">=", 1.5),
                ("packets/s: await readinto / add_reader+os.read",
                 f"{lname}: add_reader + os.read", f"{lname}: await readinto", ">=", 1.5),
                ("packets/s: endpoint / add_reader+os.read",
                 f"{lname}: add_reader + os.read", f"{lname}: endpoint({BATCH})", ">=", 1.5),
            ]
            for what, a, b, op, target in checks:
                if a in by and b in by:
                    ratio = paired(by[a], by[b])
                    met = ratio is not None and (ratio <= target if op == "<=" else
                                                 ratio >= target)
                    rows.append({"summary": what, "loop": lname, "K": k, "payload": p,
                                 "ratio": None if ratio is None else round(ratio, 3),
                                 "target": f"{op} {target}", "met": met})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", "--packets", type=int, nargs="+", default=[1024])
    ap.add_argument("-s", "--payload", type=int, nargs="+", default=[64])
    ap.add_argument("-r", "--rounds", type=int, default=15)
    ap.add_argument("--cpu", type=int, default=None)
    ap.add_argument("--no-fifo", action="store_true")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        _bench.check_tun()
        _bench.enter_private_netns()
    except _bench.BenchError as exc:
        print(f"bench_asyncio: {exc}", file=sys.stderr)
        return 1
    cpu = _bench.pin_cpu(args.cpu)
    fifo = False if args.no_fifo else _bench.set_realtime()
    floor = _bench.compile_cfloor(os.path.join(HERE, "_build"))
    loops = loop_factories()
    ms = [_bench.cfloor_methods(floor)[0], *methods(loops)]
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(json.dumps({"meta": {"cpu": cpu, "sched": "SCHED_FIFO 1" if fifo else "SCHED_OTHER",
                               "loadavg": load, "python": sys.version.split()[0],
                               "command": "python benchmarks/bench_asyncio.py " + " ".join(
                                   argv if argv is not None else sys.argv[1:])}}), flush=True)
    results = _bench.run_bench(ms, args.packets, args.payload, args.rounds,
                               progress=None if args.no_progress else sys.stderr,
                               emit=lambda d: print(json.dumps(d), flush=True))
    rows = summary(results, [n for n, f in loops.items() if not isinstance(f, str)])
    for row in rows:
        print(json.dumps(row), flush=True)
    print("\n" + _bench.format_table(results, "read") + "\n")
    print("| ratio (paired median) | loop | K | payload | measured | target |")
    print("|---|---|---:|---:|---:|---|")
    for r in rows:
        mark = "met" if r["met"] else "missed"
        print(f"| {r['summary']} | {r['loop']} | {r['K']} | {r['payload']} | "
              f"{r['ratio']:.3f} | {r['target']} ({mark}) |")
    return 3 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
