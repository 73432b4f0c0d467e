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
on them), ``--napi-threaded`` also switches B to threaded NAPI. ``--coalesce`` needs
``--mode epoll`` or ``threads``.

Loop designs (``--mode``): ``epoll`` (the default), one thread polling both devices
and draining a ready one batch by batch; ``threads``, one thread per direction (per
queue with ``--queues``) blocked in ``read_batch`` (the GIL is released while it waits and
reads); ``asyncio``, ``tuntap.asyncio.create_endpoint`` with a protocol whose
``packets_received(batch)`` hands the batch to the other device's transport; ``await``,
one task per direction doing ``await read_batch`` / ``await write_batch`` on
``tuntap.asyncio.AsyncDevice`` (``--loop uvloop`` for either). ``epoll`` costs less CPU
per byte than ``threads``: a blocking ``read_batch`` that finds the queue empty makes a
``read`` (EAGAIN), a ``poll`` and the ``read`` again, and each wake-up of a thread also
hands the GIL over. All move up to ``--batch`` packets per call with
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
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

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


def slot_size(offload: bool) -> int:
    # A GSO super-packet is up to 64 KiB plus the virtio-net header; plain packets fit
    # the MTU (1500) with room to spare.
    return 65536 + 64 if offload else 2048


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
         offload: bool, counters: Counters) -> None:
    """One direction, one thread: read a batch, write it, until ``stop`` is set."""
    batch = tuntap.PacketBatch(batch_size, slot_size(bool(src.header_size)))
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
                batch_size: int, offload: bool) -> list[Counters]:
    counters = [Counters() for _ in pairs]
    threads = [threading.Thread(target=pump, args=(s, d, stop, batch_size, offload, c),
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
              batch_size: int, offload: bool) -> list[Counters]:
    """One thread, all devices non-blocking, epoll; drain a ready device batch by batch."""
    counters = [Counters() for _ in pairs]
    batches = {v: tuntap.PacketBatch(batch_size, slot_size(v)) for v in (False, True)}
    ep = select.epoll()
    route = {}
    for i, (src, dst) in enumerate(pairs):
        src.setblocking(False)
        ep.register(src.fileno(), select.EPOLLIN)
        route[src.fileno()] = (src.read_batch, writer(src, dst), counters[i],
                               batches[bool(src.header_size)])
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


def _new_loop(kind: str) -> Any:
    import asyncio

    if kind == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run_asyncio(pairs: list[tuple[tuntap.Device, tuntap.Device]], stop: threading.Event,
                batch_size: int, offload: bool, loop_kind: str = "asyncio") -> list[Counters]:
    """asyncio's protocol interface: one transport per device; each wake-up's batch goes
    straight to the other device's ``transport.write_batch`` from ``packets_received``
    (no future, no task per batch)."""
    import asyncio

    import tuntap.asyncio as ta

    counters = [Counters() for _ in pairs]

    class Forward(ta.PacketProtocol):
        def __init__(self, c: Counters) -> None:
            self.c = c
            self.out: ta.PacketTransport | None = None

        def packets_received(self, batch: tuntap.PacketBatch) -> None:
            c = self.c
            c.reads += 1
            c.packets += len(batch)
            assert self.out is not None
            self.out.write_batch(batch)  # written now, or copied and written in order

        def error_received(self, exc: OSError) -> None:
            self.c.dropped += 1  # e.g. EIO while the far side is down: a tunnel drops

    async def main() -> None:
        transports: dict[int, ta.PacketTransport] = {}
        protocols: list[tuple[Forward, tuntap.Device]] = []
        for (src, dst), c in zip(pairs, counters):
            t, p = await ta.create_endpoint(lambda c=c: Forward(c), src,  # type: ignore[misc]
                                            tuntap.PacketBatch(batch_size, slot_size(offload)))
            transports[id(src)] = t
            protocols.append((p, dst))
        for p, dst in protocols:
            p.out = transports[id(dst)]
        while not stop.is_set():
            await asyncio.sleep(0.2)
        for t in transports.values():
            t.pause_reading()

    loop = _new_loop(loop_kind)
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return counters


def run_await(pairs: list[tuple[tuntap.Device, tuntap.Device]], stop: threading.Event,
              batch_size: int, offload: bool, loop_kind: str = "asyncio") -> list[Counters]:
    """``tuntap.asyncio.AsyncDevice``: one task per direction,
    ``n = await src.read_batch(batch); await dst.write_batch(batch)``."""
    import asyncio

    import tuntap.asyncio as ta

    counters = [Counters() for _ in pairs]

    async def pump(src: ta.AsyncDevice, dst: ta.AsyncDevice, c: Counters) -> None:
        batch = tuntap.PacketBatch(batch_size, slot_size(offload))
        read_batch, write_batch = src.read_batch, dst.write_batch
        while True:
            n = await read_batch(batch)
            c.reads += 1
            c.packets += n
            try:
                w = await write_batch(batch)
            except OSError:
                w = 0
            if w != n:
                c.dropped += n - w

    async def main() -> None:
        adevs = {id(d): ta.AsyncDevice(d) for pair in pairs for d in pair}
        tasks = [asyncio.ensure_future(pump(adevs[id(s)], adevs[id(d)], c))
                 for (s, d), c in zip(pairs, counters)]
        while not stop.is_set():
            await asyncio.sleep(0.2)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    loop = _new_loop(loop_kind)
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
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


def traffic(ns_a: str, ns_b: str, iperf_seconds: float) -> bool:
    """The demo: ping A -> B, then optionally an iperf3 TCP run A -> B; True if all worked."""
    r = in_ns(ns_a, "ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", ADDR_B, timeout=20)
    lines = r.stdout.strip().splitlines()
    print(f"ping A -> B: {lines[-2] if len(lines) >= 2 else r.stderr.strip()}", flush=True)
    ok = r.returncode == 0
    if iperf_seconds > 0:
        srv = subprocess.Popen(["ip", "netns", "exec", ns_b, "iperf3", "-s", "-1", "-B", ADDR_B],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            print(f"iperf3 A -> B for {iperf_seconds:g} s ...", flush=True)
            client = subprocess.Popen(["ip", "netns", "exec", ns_a, "iperf3", "-c", ADDR_B,
                                       "-t", str(iperf_seconds), "-J"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            out, err = _wait_showing_time(client, iperf_seconds)
            if client.returncode == 0:
                end = json.loads(out)["end"]
                print(f"iperf3 A -> B: {end['sum_received']['bits_per_second'] / 1e9:.2f} Gbps, "
                      f"{end['sum_sent'].get('retransmits', 0)} retransmits")
            else:
                print("iperf3 failed:", out[-500:], err[-500:])
                ok = False
        finally:
            srv.kill()
            srv.wait(5)
    return ok


def _wait_showing_time(proc: subprocess.Popen[str], seconds: float) -> tuple[str, str]:
    """Wait for proc (bounded); on a terminal, show the seconds gone by while it runs."""
    t0 = time.monotonic()
    live = sys.stderr.isatty()
    box: dict[str, tuple[str, str]] = {}
    reader = threading.Thread(target=lambda: box.setdefault("io", proc.communicate()))
    reader.start()
    while reader.is_alive() and time.monotonic() - t0 < seconds + 30:
        reader.join(0.5)
        if live:
            sys.stderr.write(f"\r  {min(time.monotonic() - t0, seconds):4.1f} of "
                             f"{seconds:g} s")
            sys.stderr.flush()
    if live:
        sys.stderr.write("\r" + " " * 20 + "\r")
    if reader.is_alive():
        proc.kill()
        reader.join(5)
    return box.get("io", ("", "timed out"))


def require_root() -> None:
    """Exit with a plain message unless this process may make namespaces and devices."""
    with open("/proc/self/status") as f:
        caps = int(next(line for line in f if line.startswith("CapEff:")).split()[1], 16)
    if not caps & (1 << 12) or not caps & (1 << 21):  # CAP_NET_ADMIN, CAP_SYS_ADMIN
        sys.exit(f"forward.py: needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN, to make network "
                 f"namespaces and TUN devices); try: sudo {sys.executable} {sys.argv[0]}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--offload", action="store_true",
                   help="VNET_HDR + set_offload(CSUM|TSO4|TSO6) on both devices")
    p.add_argument("--coalesce", action="store_true",
                   help="A plain, B VNET_HDR + TSO; A -> B written with coalesce=True")
    p.add_argument("--napi", action="store_true", help="B opened with Flags.NAPI")
    p.add_argument("--napi-threaded", action="store_true",
                   help="B opened with Flags.NAPI and switched to threaded NAPI")
    p.add_argument("--mode", choices=("threads", "epoll", "asyncio", "await"), default="epoll",
                   help="one epoll thread for all devices (default), one thread per "
                        "direction, asyncio's protocol interface (tuntap.asyncio."
                        "create_endpoint) or AsyncDevice tasks (await read_batch/write_batch)")
    p.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio",
                   help="event loop for --mode asyncio/await (default: asyncio's own)")
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
    if args.coalesce and args.mode not in ("epoll", "threads"):
        p.error("--coalesce needs --mode epoll or threads")
    external = bool(args.ns_a)
    require_root()
    for tool in ("ip", "ping") + (("iperf3",) if args.iperf else ()):
        if shutil.which(tool) is None:
            sys.exit(f"forward.py: needs {tool} (apt-get install "
                     f"{ {'ip': 'iproute2', 'ping': 'iputils-ping'}.get(tool, tool)})")

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    made: list[str] = []
    ok = True
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
            def run(pairs: list[tuple[tuntap.Device, tuntap.Device]], stop: threading.Event,
                    batch: int, offload: bool) -> list[Counters]:
                if args.mode in ("asyncio", "await"):
                    afn = run_asyncio if args.mode == "asyncio" else run_await
                    return afn(pairs, stop, batch, offload, args.loop)
                fn = run_threads if args.mode == "threads" else run_epoll
                return fn(pairs, stop, batch, offload)
            seconds = args.seconds or (60 if external else 0)
            if external:
                print("ready", flush=True)
                if seconds:
                    signal.signal(signal.SIGALRM, lambda *_: stop.set())
                    signal.setitimer(signal.ITIMER_REAL, seconds)
                t0, cpu0 = time.monotonic(), time.process_time()
                counters = run(pairs, stop, args.batch, args.offload)
            else:
                box: dict[str, list[Counters]] = {}
                t0, cpu0 = time.monotonic(), time.process_time()
                worker = threading.Thread(
                    target=lambda: box.setdefault("c", run(pairs, stop, args.batch, args.offload)))
                worker.start()
                try:
                    ok = traffic(ns_a, ns_b, args.iperf)
                    if args.seconds:
                        stop.wait(max(0.0, args.seconds - (time.monotonic() - t0)))
                finally:
                    stop.set()
                    worker.join(10)
                counters = box.get("c", [])
            result = {
                "forwarder": f"tuntap-{args.mode}" + (
                    f"-{args.loop}" if args.mode in ("asyncio", "await") else ""),
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
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
