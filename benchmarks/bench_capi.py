#!/usr/bin/env python3
"""Per-packet work at C speed through the C API: Cython nogil loop vs Python loop vs C.

What is measured
----------------
The work is the one of ``examples/cython/ttl_forward.pyx``: for every IPv4 packet,
TTL - 1 and the header checksum recomputed over the whole header (RFC 1071), packets
that are not IPv4 or whose TTL would expire dropped.

* ``forward``: a TUN device ``src`` (10.79.Q.1, peer .2, in a private namespace) is filled
  (untimed) with exactly K UDP packets of 64-byte payload by sockets in that namespace; the
  method then drains exactly K packets, rewrites each and writes it into a TUN device
  ``dst`` that lives in a second private namespace with the address 10.79.Q.2, where a UDP
  sink socket (one per queue) receives it (timed: from the first read to the last write).
  After every run the sinks must have received exactly K datagrams, with TTL 63 (the
  senders use 64), so every checksum was right (the kernel drops IPv4 packets with a bad
  header checksum). Per packet that is one ``read()`` and one ``write()`` system call for
  every method; a write into ``dst`` runs the kernel's receive path (IP, UDP, socket
  enqueue), as in ``bench_io.py``'s write test.
* ``rewrite``: the work alone, on a ``PacketBatch`` of 64 packets in memory (no I/O):
  ``--passes`` passes over the batch, ns per packet.
* ``scaling``: ``forward`` with a ``MULTI_QUEUE`` src and dst of 1 and of 2 queues, one
  forwarder thread per queue pinned to its own CPU; the K packets come from 32 flows per
  queue whose source ports were chosen by probing the kernel's flow hash, so each queue
  gets exactly K / queues. Aggregate packets/s = K / (time until the last thread ends).

Methods:

* ``C``: ``cttl.c`` (compiled into ``_build/`` with ``cc -O2``), called through ctypes
  with the GIL released: ``read()`` up to 64 packets until EAGAIN, rewrite, ``write()``
  each; plain system calls, no tuntap.
* ``C API (C)``: ``examples/capi/tuntap_capi_demo.c`` ``forward()``: the same loop over the
  C API from a C extension (tuntap_read_batch / tuntap_write_batch, batches of 64).
* ``Cython``: ``examples/cython`` ``ttl_forward.forward()`` (built into ``_build/`` with
  ``pip install --no-build-isolation``): the loop in ``with nogil:``, batches of 64.
* ``Python``: a Python loop over ``Device.read_batch`` / ``Device.write_batch`` (batches
  of 64) doing the same work per packet on the zero-copy ``batch[i]`` views, the header
  checksum with ``tuntap.checksum`` (C).

One warm-up round, then ``--rounds`` rounds, methods interleaved and rotated each round;
per method the median, min and max over rounds and the paired ratio (median over rounds of
method / C in the same round). One JSON line per result; ``--markdown`` prints tables.
Run as root: it unshares two network namespaces (gone when it exits). Nothing is pinned
or made real-time unless asked (``--pin`` for the single-thread runs, ``--fifo`` for
SCHED_FIFO); the scaling runs always pin one thread per CPU.

    sudo python benchmarks/bench_capi.py --markdown
    sudo python benchmarks/bench_capi.py -k 8192 -r 15 --only forward,scaling
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import importlib.util
import json
import os
import platform
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.path.join(HERE, "_build")
try:
    import tuntap
    from tuntap import _bench
except ImportError:  # a source tree with the extension built in place
    sys.path.insert(0, os.path.join(ROOT, "src"))
    import tuntap
    from tuntap import _bench

BATCH = 64
PAYLOAD = b"x" * 64
PORT = 9
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)
CLONE_NEWNET = 0x40000000
FLOWS_PER_QUEUE = 32


# --------------------------------------------------------------------------------------
# Building the three implementations
# --------------------------------------------------------------------------------------
def _run(cmd: list[str], timeout: float = 300) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stdout}{r.stderr}")


def _load(path: str, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build() -> tuple[ctypes.CDLL, ModuleType, ModuleType]:
    os.makedirs(BUILD, exist_ok=True)
    lib = os.path.join(BUILD, "libcttl.so")
    _run(["cc", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", "-Werror", "-o", lib,
          os.path.join(HERE, "cttl.c")])
    cttl = ctypes.CDLL(lib)
    cttl.cttl_forward.restype = ctypes.c_long
    cttl.cttl_forward.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_int]
    cttl.cttl_rewrite.restype = ctypes.c_long
    cttl.cttl_rewrite.argtypes = [ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_long] * 4

    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    demo_so = os.path.join(BUILD, "tuntap_capi_demo" + suffix)
    _run(["cc", "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared",
          "-I" + sysconfig.get_paths()["include"], "-I" + tuntap.get_include(),
          os.path.join(ROOT, "examples", "capi", "tuntap_capi_demo.c"), "-o", demo_so])
    demo = _load(demo_so, "tuntap_capi_demo")

    src = os.path.join(BUILD, "cython-src")
    site = os.path.join(BUILD, "cython-site")
    shutil.rmtree(src, ignore_errors=True)
    shutil.rmtree(site, ignore_errors=True)
    shutil.copytree(os.path.join(ROOT, "examples", "cython"), src,
                    ignore=shutil.ignore_patterns("build", "*.so", "*.c", "*.egg-info"))
    _run([sys.executable, "-m", "pip", "install", "-q", "--no-build-isolation", "--no-deps",
          "--disable-pip-version-check", "--target", site, src])
    (so,) = [f for f in os.listdir(site) if f.startswith("ttl_forward") and f.endswith(".so")]
    cython = _load(os.path.join(site, so), "ttl_forward")
    return cttl, demo, cython


# --------------------------------------------------------------------------------------
# The Python loop (the same work per packet)
# --------------------------------------------------------------------------------------
def py_rewrite(batch: tuntap.PacketBatch, n: int,
               checksum: Callable[[Any], int]) -> list[int] | None:
    """Rewrite packets 0..n-1 in place. None if all are kept, else the kept indices."""
    dropped: list[int] | None = None
    for i in range(n):
        p = batch[i]
        v = p[0]
        ihl = (v & 15) * 4
        if v >> 4 != 4 or ihl < 20 or ihl > len(p) or p[8] <= 1:
            dropped = [] if dropped is None else dropped
            dropped.append(i)
            continue
        p[8] -= 1
        p[10] = p[11] = 0
        c = checksum(p[:ihl])
        p[10] = c >> 8
        p[11] = c & 0xFF
    if dropped is None:
        return None
    return [i for i in range(n) if i not in dropped]


def py_forward(src: tuntap.Device, dst: tuntap.Device, batch: tuntap.PacketBatch,
               count: int) -> int:
    read_batch, write_batch, checksum = src.read_batch, dst.write_batch, tuntap.checksum
    got = 0
    while got < count:
        n = read_batch(batch)
        kept = py_rewrite(batch, n, checksum)
        if kept is None:
            write_batch(batch)
        elif kept:
            write_batch([batch[i] for i in kept])
        got += n
    return got


# --------------------------------------------------------------------------------------
# Topology: src queues here, dst queues + sink in a second namespace
# --------------------------------------------------------------------------------------
class Topo:
    def __init__(self, queues: int, k: int, index: int) -> None:
        self.queues = queues
        self.k = k
        self.local = f"10.79.{index}.1"
        self.remote = f"10.79.{index}.2"
        flags = tuntap.Flags.TUN | tuntap.Flags.NO_PI | tuntap.Flags.MULTI_QUEUE
        name_s, name_d = f"tcs{index}", f"tcd{index}"
        self.src = [tuntap.Device(name_s, flags) for _ in range(queues)]
        self.ns_fd, self.sinks = _second_netns(queues)
        self.dst = [tuntap.Device(name_d, flags, netns=self.ns_fd) for _ in range(queues)]
        for d, addr in ((self.src[0], self.local), (self.dst[0], self.remote)):
            d.add_address(f"{addr}/24")
            d.txqueuelen = k + 1024
            d.up()
        for d in self.src:
            d.settimeout(2.0)
        for d in self.dst:
            d.settimeout(2.0)
        for i, sink in enumerate(self.sinks):  # queue i's flows go to port PORT + i
            sink.bind((self.remote, PORT + i))
        self.flows = self._pick_flows()

    def _pick_flows(self) -> list[list[socket.socket]]:
        """FLOWS_PER_QUEUE sockets per queue; those of queue i send to PORT + i and the
        kernel's flow hash puts them on queue i."""
        per: list[list[socket.socket]] = [[] for _ in range(self.queues)]
        probe = tuntap.PacketBatch(BATCH, 2048)
        for port in range(20000, 20000 + 64 * FLOWS_PER_QUEUE * self.queues):  # bounded
            if all(len(p) == FLOWS_PER_QUEUE for p in per):
                break
            want = min(i for i in range(self.queues) if len(per[i]) < FLOWS_PER_QUEUE)
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((self.local, port))
            s.sendto(PAYLOAD, (self.remote, PORT + want))
            q = -1
            for i, d in enumerate(self.src):
                d.setblocking(False)
                try:
                    if d.read_batch(probe):
                        q = i
                except BlockingIOError:
                    pass
                d.settimeout(2.0)
            if q == want:
                per[q].append(s)
            else:
                s.close()
        if not all(len(p) == FLOWS_PER_QUEUE for p in per):
            raise SystemExit(f"could not find {FLOWS_PER_QUEUE} flows per queue")
        return per

    def fill(self) -> None:
        """Queue exactly k / queues packets on every src queue (untimed)."""
        each = self.k // self.queues
        for i, flows in enumerate(self.flows):
            for j in range(each):
                flows[j % len(flows)].sendto(PAYLOAD, (self.remote, PORT + i))

    def check_sink(self) -> None:
        """Every sink received exactly k / queues datagrams, the first with TTL 63."""
        buf = bytearray(2048)
        for sink in self.sinks:
            sink.settimeout(2.0)
            data, anc, _f, _a = sink.recvmsg(2048, socket.CMSG_SPACE(4))
            ttl = [struct.unpack("i", d[:4])[0] for lvl, typ, d in anc
                   if lvl == socket.IPPROTO_IP and typ == socket.IP_TTL]
            if data != PAYLOAD or ttl != [63]:
                raise SystemExit(f"sink got {data[:16]!r} with TTL {ttl}, wanted TTL 63")
            got = 1
            sink.settimeout(0.2)  # everything was written before this runs
            try:
                while got <= self.k:  # one more than expected must time out
                    sink.recv_into(buf)
                    got += 1
            except socket.timeout:
                pass
            if got != self.k // self.queues:
                raise SystemExit(f"a sink received {got} of {self.k // self.queues}")

    def close(self) -> None:
        for f in self.flows:
            for s in f:
                s.close()
        for d in self.src + self.dst:
            d.close()
        for sink in self.sinks:
            sink.close()
        os.close(self.ns_fd)


def _second_netns(n: int) -> tuple[int, list[socket.socket]]:
    """A fresh network namespace (an fd to it) and n UDP sink sockets made inside it."""
    out: list[Any] = []

    def body() -> None:
        try:
            os.unshare(CLONE_NEWNET) if hasattr(os, "unshare") else _libc_unshare()
            for key in ("default", "all"):
                with open(f"/proc/sys/net/ipv6/conf/{key}/disable_ipv6", "w") as f:
                    f.write("1")
            out.append(os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC))
            for _ in range(n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                out.append(s)
                s.setsockopt(socket.SOL_SOCKET, 33, 256 << 20)  # SO_RCVBUFFORCE: hold K
                s.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        except BaseException as exc:  # reported by the caller
            out.append(exc)

    t = threading.Thread(target=body)  # the thread's namespace dies with it; fd keeps it
    t.start()
    t.join(30)
    if len(out) != n + 1 or isinstance(out[-1], BaseException):
        raise SystemExit(f"cannot make the second namespace: {out}")
    return out[0], out[1:]


def _libc_unshare() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare")


# --------------------------------------------------------------------------------------
# Runs
# --------------------------------------------------------------------------------------
def forwarders(cttl: ctypes.CDLL, demo: ModuleType,
               cython: ModuleType) -> dict[str, Callable[..., int]]:
    def c(src: tuntap.Device, dst: tuntap.Device, b: tuntap.PacketBatch, n: int) -> int:
        return int(cttl.cttl_forward(src.fileno(), dst.fileno(), n, BATCH))

    def capi_c(src: tuntap.Device, dst: tuntap.Device, b: tuntap.PacketBatch, n: int) -> int:
        fwd, dropped = demo.forward(src, dst, b, n, 2_000_000_000)
        return int(fwd + dropped)

    def cy(src: tuntap.Device, dst: tuntap.Device, b: tuntap.PacketBatch, n: int) -> int:
        fwd, dropped = cython.forward(src, dst, b, n, 2.0)
        return int(fwd + dropped)

    return {"C": c, "C API (C)": capi_c, "Cython": cy, "Python": py_forward}


def run_forward(topo: Topo, fn: Callable[..., int], cpus: list[int] | None) -> float:
    """Fill, then one thread per queue forwards its share; seconds until the last ends."""
    topo.fill()
    each = topo.k // topo.queues
    got = [0] * topo.queues
    ends = [0.0] * topo.queues
    errors: list[BaseException] = []
    barrier = threading.Barrier(topo.queues + 1)

    def worker(i: int) -> None:
        try:
            if cpus is not None:  # one forwarder per CPU (pid 0: this thread)
                os.sched_setaffinity(0, {cpus[i % len(cpus)]})
            batch = tuntap.PacketBatch(BATCH, 2048)
            barrier.wait(30)
            got[i] = fn(topo.src[i], topo.dst[i], batch, each)
            ends[i] = time.perf_counter()
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(topo.queues)]
    for t in threads:
        t.start()
    barrier.wait(30)
    t0 = time.perf_counter()
    for t in threads:
        t.join(60)
    if errors:
        raise errors[0]
    if got != [each] * topo.queues:
        raise SystemExit(f"forwarded {got}, wanted {each} per queue")
    topo.check_sink()
    return max(ends) - t0


def rewrite_methods(cttl: ctypes.CDLL, cython: ModuleType,
                    passes: int) -> dict[str, Callable[[tuntap.PacketBatch], float]]:
    def c(b: tuntap.PacketBatch) -> float:
        arena = (ctypes.c_char * (b.capacity * b.stride)).from_buffer(b)
        sizes = (ctypes.c_uint32 * len(b)).from_buffer_copy(b.sizes)
        t0 = time.perf_counter()
        kept = cttl.cttl_rewrite(arena, sizes, len(b), b.stride, b.headroom, passes)
        dt = time.perf_counter() - t0
        del arena
        assert kept == len(b)
        return dt / (passes * len(b))

    def cy(b: tuntap.PacketBatch) -> float:
        rewrite, n = cython.rewrite, len(b)
        t0 = time.perf_counter()
        for _ in range(passes):
            rewrite(b)
        dt = time.perf_counter() - t0
        assert len(b) == n
        return dt / (passes * n)

    def py(b: tuntap.PacketBatch) -> float:
        n, cs, p = len(b), tuntap.checksum, max(1, passes // 10)
        t0 = time.perf_counter()
        for _ in range(p):
            assert py_rewrite(b, n, cs) is None
        return (time.perf_counter() - t0) / (p * n)

    return {"C": c, "Cython": cy, "Python": py}


def fresh_batch() -> tuntap.PacketBatch:
    b = tuntap.PacketBatch(BATCH, 2048)
    for i in range(BATCH):
        b.append(_bench.udp4_packet("10.79.9.1", "10.79.9.2", 20000 + i, PORT, PAYLOAD))
    for i in range(BATCH):  # TTL 255 so that many passes never drop a packet
        p = b[i]
        p[8] = 255
        p[10] = p[11] = 0
        c = tuntap.checksum(p[:20])
        p[10], p[11] = c >> 8, c & 0xFF
    return b


def summarize(bench: str, times: dict[str, list[float]], extra: dict[str, Any],
              per: float) -> list[dict[str, Any]]:
    rows = []
    ref = times.get("C")
    for name, ts in times.items():
        ts = ts[1:]  # drop the warm-up round
        row: dict[str, Any] = {"bench": bench, "method": name, **extra,
                               "ns_per_packet": round(statistics.median(ts) * per, 1),
                               "min": round(min(ts) * per, 1), "max": round(max(ts) * per, 1)}
        if ref is not None:
            row["ratio_to_c"] = round(statistics.median(
                t / r for t, r in zip(ts, ref[1:])), 3)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-k", type=int, default=8192, help="packets per forward run")
    ap.add_argument("-r", "--rounds", type=int, default=11)
    ap.add_argument("--passes", type=int, default=200, help="rewrite passes per round")
    ap.add_argument("--only", default="forward,rewrite,scaling")
    ap.add_argument("--pin", action="store_true", help="pin the single-thread runs to a CPU")
    ap.add_argument("--fifo", action="store_true",
                    help="run as SCHED_FIFO priority 1 (other busy processes cannot preempt "
                         "a timed loop; every loop is bounded)")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args(argv)
    only = set(args.only.split(","))
    k = args.k - args.k % (2 * BATCH)
    if k < 2 * BATCH or args.rounds < 1:
        ap.error("need -k >= 128 and --rounds >= 1")

    cttl, demo, cython = build()
    load0 = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)
    _bench.check_tun()
    _bench.enter_private_netns()
    cpus = sorted(os.sched_getaffinity(0))
    fifo = args.fifo and _bench.set_realtime(1)
    single_cpu = [cpus[-1]] if args.pin else None
    rows: list[dict[str, Any]] = []
    fwd = forwarders(cttl, demo, cython)

    topos = {q: Topo(q, k, q) for q in (1, 2) if q == 1 or "scaling" in only}
    try:
        if "forward" in only:
            times: dict[str, list[float]] = {m: [] for m in fwd}
            names = list(fwd)
            for r in range(args.rounds + 1):
                for name in names[r % len(names):] + names[:r % len(names)]:
                    times[name].append(run_forward(topos[1], fwd[name], single_cpu))
            rows += summarize("forward", times, {"k": k, "queues": 1}, 1e9 / k)
        if "rewrite" in only:
            methods = rewrite_methods(cttl, cython, args.passes)
            wtimes: dict[str, list[float]] = {m: [] for m in methods}
            for r in range(args.rounds + 1):
                for name in list(methods)[r % 3:] + list(methods)[:r % 3]:
                    wtimes[name].append(methods[name](fresh_batch()))
            rows += summarize("rewrite", wtimes, {"passes": args.passes}, 1e9)
        if "scaling" in only:
            for name in ("C", "Cython", "Python"):
                pps: dict[int, list[float]] = {1: [], 2: []}
                for _r in range(args.rounds + 1):
                    for q in (1, 2):
                        pps[q].append(k / run_forward(topos[q], fwd[name], cpus))
                m1, m2 = (statistics.median(pps[q][1:]) for q in (1, 2))
                rows.append({"bench": "scaling", "method": name, "k": k,
                             "pps_1q": round(m1), "pps_2q": round(m2),
                             "speedup": round(m2 / m1, 2),
                             "pps_1q_range": [round(min(pps[1][1:])), round(max(pps[1][1:]))],
                             "pps_2q_range": [round(min(pps[2][1:])), round(max(pps[2][1:]))]})
    finally:
        for t in topos.values():
            t.close()
    meta = {"bench": "meta", "date": started.strftime("%Y-%m-%d %H:%M UTC"),
            "python": platform.python_version(), "cpus": len(cpus), "k": k,
            "rounds": args.rounds, "fifo": fifo, "pinned": args.pin,
            "loadavg_start": load0, "loadavg_end": os.getloadavg()}
    for row in [meta, *rows]:
        print(json.dumps(row), flush=True)
    if args.markdown:
        print(markdown(rows))
    return 0


def markdown(rows: list[dict[str, Any]]) -> str:
    out = []
    fwd = [r for r in rows if r["bench"] == "forward"]
    if fwd:
        out += ["", "| forward: ns/packet (min-max) | x C |", "|---|---:|"]
        out += [f"| {r['method']} | {r['ns_per_packet']:,.0f} ({r['min']:,.0f}-{r['max']:,.0f})"
                f" | {r['ratio_to_c']:.2f}x |" for r in fwd]
    rw = [r for r in rows if r["bench"] == "rewrite"]
    if rw:
        out += ["", "| rewrite only: ns/packet (min-max) | x C |", "|---|---:|"]
        out += [f"| {r['method']} | {r['ns_per_packet']:,.1f} ({r['min']:,.1f}-{r['max']:,.1f})"
                f" | {r['ratio_to_c']:.2f}x |" for r in rw]
    sc = [r for r in rows if r["bench"] == "scaling"]
    if sc:
        out += ["", "| scaling | 1 queue pkt/s | 2 queues pkt/s | 2q / 1q |",
                "|---|---:|---:|---:|"]
        out += [f"| {r['method']} | {r['pps_1q']:,} | {r['pps_2q']:,} | {r['speedup']:.2f}x |"
                for r in sc]
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
