"""Hot-path cost per packet of readinto(), write() and write_batch(list of 64) (ns).

Used for the abi3 decision in docs/packaging.md: run it once against a full-API build and
once against a Py_LIMITED_API build of the same C file (PYTHONPATH picks the build).

Runs in a private network namespace it makes for itself (unshare(CLONE_NEWNET)); the
host's interfaces are never touched. Per round it queues --packets UDP datagrams to a
peer address routed into the TUN device (txqueuelen raised to hold them all), then times
a loop of that many readinto() calls into one preallocated buffer. Also times fileno()
(a METH_NOARGS call that does nothing) as the pure call overhead, then write() and
write_batch() of a 64-item list of one UDP packet to a never-read local sink socket (the
sequence access in write_batch is where the limited API differs). Prints one JSON line.

    python tools/bench_readinto.py [--packets 20000] [--rounds 7] [--nonblocking]
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
import sys
import time

import tuntap
import tuntap._tuntap as _c

CLONE_NEWNET = 0x40000000


def unshare_net() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")


def udp_packet(payload: bytes) -> bytes:
    """An IPv4 UDP packet 10.77.0.2:9 -> 10.77.0.1:9 (UDP checksum 0: not computed)."""
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), 0, 0, 64, 17, 0,
                                socket.inet_aton("10.77.0.2"), socket.inet_aton("10.77.0.1")))
    struct.pack_into("!H", hdr, 10, tuntap.checksum(hdr))
    return bytes(hdr) + struct.pack("!HHHH", 9, 9, 8 + len(payload), 0) + payload


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packets", type=int, default=20000, help="packets per round")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--payload", type=int, default=64, help="UDP payload bytes")
    ap.add_argument("--nonblocking", action="store_true", help="setblocking(False) first")
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    if not 1 <= args.packets <= 100_000 or not 1 <= args.rounds <= 50:
        ap.error("--packets 1..100000, --rounds 1..50")

    unshare_net()
    dev = tuntap.Device("bench%d")
    try:
        dev.txqueuelen = args.packets + 1000
        dev.add_address("10.77.0.1/24")
        dev.up()
        dev.setblocking(not args.nonblocking)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        payload = b"x" * args.payload
        buf = bytearray(2048)
        readinto, fileno = dev.readinto, dev.fileno
        per_read: list[float] = []
        per_call: list[float] = []
        per_write: list[float] = []
        per_wbatch: list[float] = []
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # never read: it just drops
        sink.bind(("10.77.0.1", 9))
        pkt = udp_packet(payload)
        batch64 = [pkt] * 64
        write, write_batch = dev.write, dev.write_batch
        time.sleep(0.2)  # let IPv6 autoconf chatter arrive, then drain it
        dev.setblocking(False)
        try:
            while True:
                readinto(buf)
        except BlockingIOError:
            pass
        dev.setblocking(not args.nonblocking)
        for _ in range(args.rounds):
            for _ in range(args.packets):
                sock.sendto(payload, ("10.77.0.2", 9))
            n = args.packets
            t0 = time.perf_counter_ns()
            for _ in range(n):
                readinto(buf)
            t1 = time.perf_counter_ns()
            per_read.append((t1 - t0) / n)
            t0 = time.perf_counter_ns()
            for _ in range(n):
                fileno()
            t1 = time.perf_counter_ns()
            per_call.append((t1 - t0) / n)
            t0 = time.perf_counter_ns()
            for _ in range(n):
                write(pkt)
            t1 = time.perf_counter_ns()
            per_write.append((t1 - t0) / n)
            nb = max(1, n // 64)
            t0 = time.perf_counter_ns()
            for _ in range(nb):
                write_batch(batch64)
            t1 = time.perf_counter_ns()
            per_wbatch.append((t1 - t0) / (nb * 64))
        sock.close()
        sink.close()
    finally:
        dev.close()
    print(json.dumps({
        "label": args.label,
        "python": platform.python_version(),
        "module": os.path.basename(_c.__file__ or ""),
        "blocking": not args.nonblocking,
        "packets": args.packets,
        "rounds": args.rounds,
        "readinto_ns_median": round(statistics.median(per_read), 1),
        "readinto_ns_min": round(min(per_read), 1),
        "fileno_ns_median": round(statistics.median(per_call), 1),
        "write_ns_median": round(statistics.median(per_write), 1),
        "write_batch_list64_ns_median": round(statistics.median(per_wbatch), 1),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
