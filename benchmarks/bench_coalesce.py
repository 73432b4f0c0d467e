#!/usr/bin/env python3
"""What ``tuntap.coalesce()`` costs per 1,400-byte segment, against the C floor.

What is measured
----------------
Batches of 64 TCP segments of 1,400 payload bytes (IPv4 + TCP with the timestamp option,
1,452-byte packets, as Linux sends them) are coalesced into a ``PacketBatch`` of 64 KB
slots, checksum verification included (``coalesce()`` checks the TCP checksum of every
packet it merges). Cases: one IPv4 flow in order, one IPv6 flow, four IPv4 flows
interleaved, one flow in reverse order, one UDP flow (``udp=True``), and 64 packets of 64
different flows (nothing merges: the pass-through cost). Methods:

- ``coalesce(PacketBatch)`` / ``coalesce(list)``: the Python call, input in a
  ``PacketBatch`` or as a list of ``bytes``;
- ``C tt_coalesce_core``: the same C function called once per batch from C
  (``cgro.c``, built with ``cc -O2`` into ``benchmarks/_build/``), so the difference to
  the Python call is the call and argument handling;
- ``C floor``: what any coalescer must do per packet: sum the segment once to verify its
  checksum (the same loop) and copy its payload once (``memcpy``);
- ``segment()`` of the result, per segment produced, for comparison.

Reported: nanoseconds per input segment, median of ``--rounds`` rounds (each ``--calls``
calls, timed with ``perf_counter_ns``), min-max, and the paired ratio to the C floor of the
same round. The process pins itself to one CPU (``--cpu``) and runs as ``SCHED_FIFO``
priority 1 (``--no-fifo`` to skip), so other busy processes cannot preempt a timed loop
(each round is a few ms; the kernel's RT throttling still leaves 5% of the CPU to others).
One JSON line per result; ``--markdown`` prints the table.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BUILD = os.path.join(HERE, "_build")
N, PAYLOAD = 64, 1400
TS_OPTION = b"\x01\x01\x08\x0a" + struct.pack("!II", 123456789, 987654321)


def _csum(data: bytes) -> int:
    import tuntap

    return tuntap.checksum(data)


def _pseudo(src: bytes, dst: bytes, proto: int, n: int) -> bytes:
    if len(src) == 4:
        return src + dst + struct.pack("!BBH", 0, proto, n)
    return src + dst + struct.pack("!IxxxB", n, proto)


def packet(fam: int, proto: int, seq: int, payload: bytes, sport: int = 40000) -> bytes:
    """One IPv4/IPv6 TCP (ACK, timestamps) or UDP packet with valid checksums."""
    if fam == 4:
        src, dst = socket.inet_aton("10.0.0.1"), socket.inet_aton("10.0.0.2")
    else:
        src = socket.inet_pton(socket.AF_INET6, "fd00::1")
        dst = socket.inet_pton(socket.AF_INET6, "fd00::2")
    if proto == 6:
        l4 = bytearray(struct.pack("!HHIIBBHHH", sport, 5201, seq & 0xFFFFFFFF, 1, 8 << 4, 0x10,
                                   512, 0, 0) + TS_OPTION + payload)
        at = 16
    else:
        l4 = bytearray(struct.pack("!HHHH", sport, 5201, 8 + len(payload), 0) + payload)
        at = 6
    struct.pack_into("!H", l4, at, _csum(_pseudo(src, dst, proto, len(l4)) + bytes(l4)) or 0xFFFF)
    if fam == 4:
        ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, 0x4000, 64, proto,
                                   0, src, dst))
        struct.pack_into("!H", ip, 10, _csum(bytes(ip)))
    else:
        ip = bytearray(struct.pack("!IHBB16s16s", 6 << 28, len(l4), proto, 64, src, dst))
    return bytes(ip + l4)


def cases() -> dict[str, tuple[list[bytes], bool]]:
    data = os.urandom(PAYLOAD)
    one4 = [packet(4, 6, i * PAYLOAD, data) for i in range(N)]
    four = [packet(4, 6, (i // 4) * PAYLOAD, data, sport=40000 + i % 4) for i in range(N)]
    return {
        "tcp4, 1 flow": (one4, False),
        "tcp6, 1 flow": ([packet(6, 6, i * PAYLOAD, data) for i in range(N)], False),
        "tcp4, 4 flows interleaved": (four, False),
        "tcp4, 1 flow reversed": (one4[::-1], False),
        "udp4, 1 flow": ([packet(4, 17, 0, data) for _ in range(N)], True),
        "tcp4, 64 flows (no merge)": ([packet(4, 6, 0, data, sport=1000 + i) for i in range(N)],
                                      False),
    }


def build_c() -> ctypes.CDLL:
    os.makedirs(BUILD, exist_ok=True)
    lib = os.path.join(BUILD, "cgro.so")
    subprocess.run(["cc", "-O2", "-Wall", "-shared", "-fPIC", "-I", os.path.join(ROOT, "src"),
                    "-o", lib, os.path.join(HERE, "cgro.c")], check=True, timeout=120)
    c = ctypes.CDLL(lib)
    for fn in (c.cgro_core, c.cgro_floor):
        fn.restype = ctypes.c_double
        fn.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.POINTER(ctypes.c_size_t),
                       ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_int]
    return c


def bench_case(c: ctypes.CDLL, name: str, pkts: list[bytes], udp: bool, rounds: int,
               calls: int) -> list[dict[str, object]]:
    """Every method on one case, interleaved round by round."""
    import tuntap

    stride = 65536 + 64
    arena = ctypes.create_string_buffer(N * stride)
    out = tuntap.PacketBatch(N, stride)
    back = tuntap.PacketBatch(N, 2048)
    batch = tuntap.PacketBatch(N, 2048)
    for pk in pkts:
        batch.append(pk)
    ptrs = (ctypes.c_char_p * N)(*pkts)
    lens = (ctypes.c_size_t * N)(*[len(pk) for pk in pkts])
    nout = tuntap.coalesce(batch, out, udp=udp)
    outs = [bytes(out[i]) for i in range(nout)]

    def t_batch() -> None:
        tuntap.coalesce(batch, out, udp=udp)

    def t_list() -> None:
        tuntap.coalesce(pkts, out, udp=udp)

    def t_segment() -> None:
        for o in outs:
            tuntap.segment(o, back)

    methods: dict[str, Callable[[], None]] = {"coalesce(PacketBatch)": t_batch,
                                              "coalesce(list)": t_list,
                                              "segment() of the result": t_segment}
    per: dict[str, list[float]] = {m: [] for m in ["C floor", "C tt_coalesce_core", *methods]}
    ratios: dict[str, list[float]] = {m: [] for m in per}
    for r in range(rounds + 1):  # round 0 warms up
        res = {"C floor": c.cgro_floor(ptrs, lens, N, arena, stride, calls) / N,
               "C tt_coalesce_core": c.cgro_core(ptrs, lens, N, arena, stride, calls) / N}
        for m, fn in methods.items():
            t0 = time.perf_counter_ns()
            for _ in range(calls):
                fn()
            res[m] = (time.perf_counter_ns() - t0) / calls / N
        if r:
            for m, v in res.items():
                per[m].append(v)
                ratios[m].append(v / res["C floor"])
    return [{"case": name, "method": m, "outputs": nout,
             "ns_per_segment": round(statistics.median(per[m]), 1),
             "min": round(min(per[m]), 1), "max": round(max(per[m]), 1),
             "ratio_to_floor": round(statistics.median(ratios[m]), 2)} for m in per]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--calls", type=int, default=2000, help="calls per timed round")
    p.add_argument("--cpu", type=int, default=None, help="pin to this CPU (default: the last)")
    p.add_argument("--no-fifo", action="store_true", help="do not switch to SCHED_FIFO")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)

    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {args.cpu if args.cpu is not None else cpus[-1]})
    c = build_c()
    fifo = False
    if not args.no_fifo:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(1))
            fifo = True
        except OSError:
            print("bench_coalesce: SCHED_FIFO refused, running as a normal process",
                  file=sys.stderr)
    meta = (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, "
            f"kernel {platform.release()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}, load {os.getloadavg()[0]:.2f}, "
            f"{'SCHED_FIFO' if fifo else 'SCHED_OTHER'}; "
            f"`python benchmarks/bench_coalesce.py {' '.join(argv or sys.argv[1:])}`")
    rows = []
    for name, (pkts, udp) in cases().items():
        for row in bench_case(c, name, pkts, udp, args.rounds, args.calls):
            rows.append(row)
            print(json.dumps(row), flush=True)
    if args.markdown:
        print(meta)
        print()
        print("| case | outputs | method | ns/segment (min-max) | x C floor |")
        print("|---|---:|---|---:|---:|")
        for row in rows:
            print(f"| {row['case']} | {row['outputs']} | {row['method']} | "
                  f"{row['ns_per_segment']:.1f} ({row['min']:.1f}-{row['max']:.1f}) | "
                  f"{row['ratio_to_floor']:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
