#!/usr/bin/env python3
"""A userspace tunnel between two TUN devices in two network namespaces.

Namespace A holds ``tunA`` (10.77.0.1, peer 10.77.0.2), namespace B holds ``tunB``
(10.77.0.2, peer 10.77.0.1). Every packet A's kernel sends into ``tunA`` is read by this
process and written to ``tunB``, where B's kernel receives it, and back. The forwarder
holds both devices' fds (``tuntap.Device(..., netns=...)``); no veth is involved.

Run as root::

    python examples/forward.py                    # ping A -> B through the tunnel
    python examples/forward.py --offload --iperf 5  # TCP with TSO super-packets
    python examples/forward.py --coalesce --iperf 5 # A plain, B gets 64 KiB super-packets

With ``--offload`` both devices are opened with ``Flags.VNET_HDR`` and
``set_offload(CSUM | TSO4 | TSO6)``: the kernel hands over 64 KiB TCP super-packets with a
virtio-net header, and since the other device takes the same header, they pass through
unchanged (no segmentation, no checksum work in userspace): one read and one write per
~45 MTU-sized packets.

``--coalesce`` is the receive side of a VPN: ``tunA`` stays a plain MTU-1500 device (it
stands for the network, where packets arrive MTU-sized) and only ``tunB`` has
``VNET_HDR`` and TSO. A -> B, each batch read from A is written with
``write_batch(batch, coalesce=True)``: consecutive TCP segments of a flow become one
super-packet, so B's kernel runs its receive path once per ~45 segments. B -> A (the
ACKs), ``tuntap.segment()`` strips the virtio-net header (and would split a super-packet).
``--napi`` opens ``tunB`` with ``Flags.NAPI`` instead (plain writes, the kernel's own GRO
on them), ``--napi-threaded`` also switches B to threaded NAPI.

Two loop designs (``--mode``): ``epoll`` (the default), one thread polling both devices
and draining a ready one batch by batch, or ``threads``, one thread per direction (per
queue with ``--queues``) blocked in ``read_batch`` (the GIL is released while it waits and
reads). ``epoll`` costs less CPU per byte: a blocking ``read_batch`` that finds the queue
empty makes a ``read`` (EAGAIN), a ``poll`` and the ``read`` again, and each wake-up of a
thread also hands the GIL over. Both move up to ``--batch`` packets per call with
``read_batch``/``write_batch`` and a preallocated ``PacketBatch`` (no allocation per packet).

By default the script makes the namespaces (``ip netns add``, unique names) and deletes
them by exact name when it ends. With ``--ns-a/--ns-b`` it uses existing namespaces and only
forwards (this is how ``benchmarks/bench_forward.py`` runs it): it prints ``ready`` once the
devices are up and one JSON line of counters when it stops (``--seconds`` or SIGTERM).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import tuntap

ADDR_A, ADDR_B = "10.77.0.1", "10.77.0.2"
OFFLOADS = ("CSUM", "TSO4", "TSO6")


class Counters:
    """Per-direction counters: read calls, packets, write errors (dropped packets)."""

    __slots__ = ("reads", "packets", "dropped")

    def __init__(self) -> None:
        self.reads = self.packets = self.dropped = 0

    def as_dict(self) -> dict[str, int]:
        return {"reads": self.reads, "packets": self.packets, "dropped": self.dropped}


def open_pair(ns_a: str, ns_b: str, name_a: str, name_b: str, *, offload: bool,
              blocking: bool, queues: int = 1, coalesce: bool = False, napi: bool = False,
              napi_threaded: bool = False) -> tuple[list[tuntap.Device], list[tuntap.Device]]:
    """Create one device in each namespace (``queues`` fds each), configured and up.

    ``offload``: both with VNET_HDR and TSO; ``coalesce``: only B; ``napi``: B with
    ``Flags.NAPI`` (``napi_threaded``: and threaded NAPI)."""
    base = tuntap.Flags.TUN | tuntap.Flags.NO_PI
    if queues > 1:
        base |= tuntap.Flags.MULTI_QUEUE
    sides: list[list[tuntap.Device]] = []
    try:
        ends = ((ns_a, name_a, ADDR_A, ADDR_B, offload),
                (ns_b, name_b, ADDR_B, ADDR_A, offload or coalesce))
        for ns, name, addr, peer, vnet in ends:
            flags = base | (tuntap.Flags.VNET_HDR if vnet else 0)
            if napi and ns == ns_b:
                flags |= tuntap.Flags.NAPI
            devs: list[tuntap.Device] = []
            sides.append(devs)
            for _ in range(queues):
                devs.append(tuntap.Device(name, flags, blocking=blocking, netns=ns))
            dev = devs[0]
            # The offload mask is device-wide state left by the previous owner: always set it.
            mask = tuntap.Offload(0)
            if vnet:
                for bit in OFFLOADS:
                    mask |= tuntap.Offload[bit]
            dev.set_offload(mask)
            dev.add_address(f"{addr}/32", peer=peer)
            dev.up()
            if napi_threaded and ns == ns_b:
                # /sys/class/net shows the namespace that mounted sysfs: ip netns exec
                # mounts B's.
                subprocess.run(["ip", "netns", "exec", ns, "sh", "-c",
                                f"echo 1 > /sys/class/net/{name}/threaded"], check=True,
                               timeout=10)
    except BaseException:
        for devs in sides:
            for d in devs:
                d.close()
        raise
    return sides[0], sides[1]


def slot_size(src: tuntap.Device) -> int:
    # A GSO super-packet is up to 64 KiB plus the virtio-net header; plain packets fit
    # the MTU (1500) with room to spare.
    return 65536 + 64 if src.header_size else 2048


Writer = Callable[[tuntap.PacketBatch], int]


def writer(src: tuntap.Device, dst: tuntap.Device) -> Writer:
    """What writes a batch read from src to dst: write_batch as it is between devices
    of the same kind, write_batch(coalesce=True) from a plain device to a VNET_HDR one,
    segment() from a VNET_HDR device to a plain one. Returns packets written."""
    write_batch = dst.write_batch
    if not src.header_size and dst.header_size:
        return lambda batch: write_batch(batch, coalesce=True)
    if src.header_size and not dst.header_size:
        out = tuntap.PacketBatch(64, 2048)
        segment = tuntap.segment

        def split(batch: tuntap.PacketBatch) -> int:
            done = 0
            for pkt in batch:
                k = segment(pkt, out)
                done += write_batch(out) == k
            return done
        return split
    return write_batch


def pump(src: tuntap.Device, dst: tuntap.Device, stop: threading.Event, batch_size: int,
         counters: Counters) -> None:
    """One direction, one thread: read a batch, write it, until ``stop`` is set."""
    batch = tuntap.PacketBatch(batch_size, slot_size(src))
    read_batch, write_batch, is_set = src.read_batch, writer(src, dst), stop.is_set
    reads = packets = dropped = 0
    src.settimeout(0.2)  # wake up now and then to look at the stop flag
    try:
        while not is_set():
            try:
                n = read_batch(batch)
            except TimeoutError:
                continue
            reads += 1
            packets += n
            try:
                w = write_batch(batch)
            except OSError:  # e.g. EIO while the far side is down: a tunnel drops
                w = 0
            dropped += n - w
    except (ValueError, OSError):
        if not is_set():  # device closed or deleted under us
            raise
    finally:
        counters.reads, counters.packets, counters.dropped = reads, packets, dropped


def run_threads(pairs: list[tuple[tuntap.Device, tuntap.Device]], stop: threading.Event,
                batch_size: int) -> list[Counters]:
    counters = [Counters() for _ in pairs]
    threads = [threading.Thread(target=pump, args=(s, d, stop, batch_size, c),
                                name=f"fwd-{s.name}", daemon=True)
               for (s, d), c in zip(pairs, counters)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads) and not stop.wait(0.2):
        pass
    stop.set()
    for t in threads:
        t.join(5)
    return counters


def run_epoll(pairs: list[tuple[tuntap.Device, tuntap.Device]], stop: threading.Event,
              batch_size: int) -> list[Counters]:
    """One thread, all devices non-blocking, epoll; drain a ready device batch by batch."""
    counters = [Counters() for _ in pairs]
    batches = {size: tuntap.PacketBatch(batch_size, size) for size in (2048, 65536 + 64)}
    ep = select.epoll()
    route = {}
    for i, (src, dst) in enumerate(pairs):
        src.setblocking(False)
        ep.register(src.fileno(), select.EPOLLIN)
        route[src.fileno()] = (src.read_batch, writer(src, dst), counters[i],
                               batches[slot_size(src)])
    poll, is_set = ep.poll, stop.is_set
    try:
        while not is_set():
            for fd, _ in poll(0.2):
                read_batch, write_batch, c, batch = route[fd]
                # Drain a ready device, but at most 16 batches before looking at the other
                # one: the reverse direction carries the ACKs that keep TCP sending. With
                # offloads a wake-up finds 1-2 super-packets, so this loop body is the
                # per-wake-up Python cost: keep it to the two calls and two additions.
                for _ in range(16):
                    try:
                        n = read_batch(batch)
                    except BlockingIOError:
                        break
                    c.reads += 1
                    c.packets += n
                    try:
                        w = write_batch(batch)
                    except OSError:
                        w = 0
                    if w != n:
                        c.dropped += n - w
                    if n < batch_size:  # queue drained: back to epoll
                        break
    finally:
        ep.close()
    return counters


def netns_add(name: str) -> None:
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)


def netns_del(name: str) -> None:
    subprocess.run(["ip", "netns", "del", name], check=False, timeout=10)


def in_ns(ns: str, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True,
                              text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(e.cmd, -1, "", f"timed out after {timeout} s")


def traffic(ns_a: str, ns_b: str, iperf_seconds: float) -> None:
    """The demo: ping A -> B, then optionally an iperf3 TCP run A -> B."""
    r = in_ns(ns_a, "ping", "-c", "3", "-i", "0.2", "-W", "2", ADDR_B, timeout=20)
    print(r.stdout.strip().splitlines()[-2] if r.stdout else r.stderr.strip())
    if iperf_seconds > 0:
        srv = subprocess.Popen(["ip", "netns", "exec", ns_b, "iperf3", "-s", "-1", "-B", ADDR_B],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            r = in_ns(ns_a, "iperf3", "-c", ADDR_B, "-t", str(iperf_seconds), "-J",
                      timeout=iperf_seconds + 30)
            if r.returncode == 0:
                end = json.loads(r.stdout)["end"]
                print(f"iperf3 A -> B: {end['sum_received']['bits_per_second'] / 1e9:.2f} Gbps, "
                      f"{end['sum_sent'].get('retransmits', 0)} retransmits")
            else:
                print("iperf3 failed:", r.stdout[-500:], r.stderr[-500:])
        finally:
            srv.kill()
            srv.wait(5)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--offload", action="store_true",
                   help="VNET_HDR + set_offload(CSUM|TSO4|TSO6) on both devices")
    p.add_argument("--coalesce", action="store_true",
                   help="A plain, B VNET_HDR + TSO; A -> B written with coalesce=True")
    p.add_argument("--napi", action="store_true", help="B opened with Flags.NAPI")
    p.add_argument("--napi-threaded", action="store_true",
                   help="B opened with Flags.NAPI and switched to threaded NAPI")
    p.add_argument("--mode", choices=("threads", "epoll"), default="epoll",
                   help="one epoll thread for all devices (default) or one thread per direction")
    p.add_argument("--batch", type=int, default=64, help="packets per read_batch (default 64)")
    p.add_argument("--queues", type=int, default=1,
                   help="MULTI_QUEUE fds per device; threads mode runs one thread per queue")
    p.add_argument("--seconds", type=float, default=0,
                   help="stop after this long (default: when the demo traffic ends; "
                        "with --ns-a/--ns-b: 60)")
    p.add_argument("--iperf", type=float, default=0, metavar="SECONDS",
                   help="also run iperf3 TCP A -> B for this long")
    p.add_argument("--ns-a", help="use this existing namespace for A (no demo traffic)")
    p.add_argument("--ns-b", help="use this existing namespace for B")
    p.add_argument("--dev-a", default="tunA")
    p.add_argument("--dev-b", default="tunB")
    args = p.parse_args(argv)
    if bool(args.ns_a) != bool(args.ns_b):
        p.error("--ns-a and --ns-b go together")
    external = bool(args.ns_a)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    made: list[str] = []
    try:
        if external:
            ns_a, ns_b = args.ns_a, args.ns_b
        else:
            tag = f"{os.getpid()}-{time.monotonic_ns() % 100000}"
            ns_a, ns_b = f"ttfwd-a-{tag}", f"ttfwd-b-{tag}"
            for ns in (ns_a, ns_b):
                netns_add(ns)
                made.append(ns)
                subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True, timeout=10)
        side_a, side_b = open_pair(ns_a, ns_b, args.dev_a, args.dev_b, offload=args.offload,
                                   blocking=args.mode == "threads", queues=args.queues,
                                   coalesce=args.coalesce,
                                   napi=args.napi or args.napi_threaded,
                                   napi_threaded=args.napi_threaded)
        devices = side_a + side_b
        try:
            pairs = list(zip(side_a, side_b)) + list(zip(side_b, side_a))
            run = run_threads if args.mode == "threads" else run_epoll
            seconds = args.seconds or (60 if external else 0)
            if external:
                print("ready", flush=True)
                if seconds:
                    signal.signal(signal.SIGALRM, lambda *_: stop.set())
                    signal.setitimer(signal.ITIMER_REAL, seconds)
                t0, cpu0 = time.monotonic(), time.process_time()
                counters = run(pairs, stop, args.batch)
            else:
                box: dict[str, list[Counters]] = {}
                t0, cpu0 = time.monotonic(), time.process_time()
                worker = threading.Thread(
                    target=lambda: box.setdefault("c", run(pairs, stop, args.batch)))
                worker.start()
                try:
                    traffic(ns_a, ns_b, args.iperf)
                    if args.seconds:
                        stop.wait(max(0.0, args.seconds - (time.monotonic() - t0)))
                finally:
                    stop.set()
                    worker.join(10)
                counters = box.get("c", [])
            result = {
                "forwarder": f"tuntap-{args.mode}",
                "offload": args.offload,
                "coalesce": args.coalesce,
                "napi": "threaded" if args.napi_threaded else bool(args.napi),
                "seconds": round(time.monotonic() - t0, 3),
                "cpu_seconds": round(time.process_time() - cpu0, 3),
                "directions": [c.as_dict() for c in counters],
            }
            print(json.dumps(result), flush=True)
        finally:
            for d in devices:
                d.close()
    finally:
        for ns in made:
            netns_del(ns)
    return 0


if __name__ == "__main__":
    sys.exit(main())
