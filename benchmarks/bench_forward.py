#!/usr/bin/env python3
"""Userspace tunnel throughput: iperf3 TCP from namespace A to namespace B through a forwarder.

What is measured
----------------
Two network namespaces, ``A`` with TUN device ``tA`` (10.77.0.1, peer 10.77.0.2) and ``B``
with ``tB`` (10.77.0.2, peer 10.77.0.1); no veth, so every packet between them crosses a
userspace forwarder process that holds both fds. ``iperf3 -c`` in A sends TCP to
``iperf3 -s`` in B for ``--seconds`` (after ``--omit`` seconds of warm-up). Forwarders:

- ``c-threads``: ``cforward.c``, one thread per direction, blocking ``read`` then ``write``.
- ``c-poll``: ``cforward.c``, one thread, ``poll`` on both, read up to 64 then write them.
- ``tuntap-threads`` / ``tuntap-epoll``: ``examples/forward.py`` (``read_batch`` /
  ``write_batch``, batches of 64) with one thread per direction / one epoll thread.
- ``ctypes-threads``: the same thread-per-direction loop on the ctypes-style TUN of
  ``ctypes_tun.py`` (``os.read``/``os.write``, one packet per call), as users write it today.
- ``tuntap-asyncio`` / ``tuntap-uvloop``: ``forward.py --mode asyncio`` (the
  ``tuntap.asyncio.create_endpoint`` protocol interface: ``packets_received(batch)`` hands
  each wake-up's batch to the other device's ``transport.write_batch``) on asyncio's own
  loop / on uvloop; ``tuntap-await`` / ``tuntap-await-uvloop``: ``--mode await``
  (``AsyncDevice`` tasks, ``await read_batch`` then ``await write_batch``).
- ``tuntap-threads-uring`` / ``tuntap-epoll-uring``: the tuntap forwarders with
  ``TUNTAP_IO=uring`` (the io_uring batch backend whatever ``io="auto"`` picks here).

each ``plain`` (TUN, MTU 1500) and ``offload`` (``IFF_VNET_HDR`` + ``TUNSETOFFLOAD(CSUM|TSO4|
TSO6)``: 64 KiB TCP super-packets pass through with their virtio-net header). Per run:
Gbps (iperf3 receiver), TCP retransmits, packets the devices dropped because the forwarder
fell behind (``tx_dropped``: the queue holds ``txqueuelen`` = 500), bytes per read (the
devices' ``tx_bytes`` divided by the packets the forwarder read: every ``read()`` system call
returns one packet, ``read_batch`` makes one per packet too), packets per batch (packets
divided by read rounds: a ``read_batch()`` call for tuntap, a drain round for ``c-poll``, 1
for the one-packet loops) and forwarder CPU seconds per GB moved (utime+stime of the
forwarder process from ``/proc/<pid>/stat`` over the iperf3 run, divided by the bytes
iperf3 received in that time). Forwarders are interleaved round-robin over ``--reps``
repetitions; the summary gives medians and min-max.

``--queues`` adds the multi-queue read benchmark: a ``MULTI_QUEUE`` device with 1 or 2
queues is filled (untimed) with ``--packets`` 64-byte UDP packets from 64 flows, then one
thread per queue drains its queue with ``read_batch(64)``; aggregate packets/s (all packets
divided by the time until the last queue is empty), median of ``--rounds`` after one warm-up
round. The kernel picks a queue by a hash of each flow's addresses and ports, so 64 random
flows split unevenly (e.g. 45/55%) and the run would measure that split; the benchmark
probes source ports first and picks 32 flows that land on each queue.

The receive side of a VPN (``--modes coalesce napi napi-threaded``, tuntap forwarders
only): ``tA`` stays plain MTU 1500 (it stands for the network) and only ``tB`` changes.
``coalesce``: ``tB`` has ``VNET_HDR`` + TSO and the forwarder writes A -> B with
``write_batch(batch, coalesce=True)`` (B -> A through ``segment()``); ``napi``: ``tB`` is
opened with ``IFF_NAPI`` and written plain (the kernel's own GRO on TUN writes);
``napi-threaded``: the same with threaded NAPI switched on for ``tB``. Compare them with
``plain``. Segments per write = packets the forwarder read from ``tA`` / packets
``tB`` received (its rx counter counts one per write).

Output: one JSON line per run and per summary row; ``--markdown`` prints a table.
Run as root (it makes and deletes two ``ip netns`` namespaces with unique names).
"""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ADDR_A, ADDR_B = "10.77.0.1", "10.77.0.2"
FORWARDERS = ("c-threads", "c-poll", "tuntap-threads", "tuntap-epoll", "ctypes-threads",
              "tuntap-asyncio", "tuntap-uvloop", "tuntap-await", "tuntap-await-uvloop",
              "tuntap-threads-uring", "tuntap-epoll-uring")
CLK_TCK = os.sysconf("SC_CLK_TCK")

# <linux/if_tun.h>: user code copies these numbers, so the ctypes forwarder does too.
TUNSETOFFLOAD = 0x400454D0
TUN_F_CSUM, TUN_F_TSO4, TUN_F_TSO6 = 0x01, 0x02, 0x04
IFF_VNET_HDR = 0x4000
CLONE_NEWNET = 0x40000000


def run(*cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=timeout)


def setup_tools() -> None:
    """Install iperf3 from the Debian packages when it is missing."""
    if shutil.which("iperf3"):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env, timeout=600)
    subprocess.run(["apt-get", "install", "-y", "-q", "iperf3"], check=True, env=env, timeout=600)


def build_cforward(outdir: str) -> str:
    exe = os.path.join(outdir, "cforward")
    run("cc", "-O2", "-Wall", "-pthread", "-o", exe, os.path.join(HERE, "cforward.c"))
    return exe


def proc_cpu(pid: int) -> float:
    """utime + stime of a whole process (all threads), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tx_stats(ns: str, dev: str) -> tuple[int, int]:
    """(bytes handed to the forwarder through this device, packets dropped: queue full)."""
    out = run("ip", "-n", ns, "-s", "-j", "link", "show", "dev", dev).stdout
    tx = json.loads(out)[0]["stats64"]["tx"]
    return int(tx["bytes"]), int(tx["dropped"])


def link_counters(ns: str, dev: str) -> dict[str, int]:
    """tx/rx packets and bytes of a device (for TUN: rx counts one per write)."""
    out = run("ip", "-n", ns, "-s", "-j", "link", "show", "dev", dev).stdout
    st = json.loads(out)[0]["stats64"]
    return {f"{d}_{k}": int(st[d][k]) for d in ("tx", "rx") for k in ("packets", "bytes",
                                                                         "dropped")}


def napi_threads_cpu(dev: str) -> float:
    """utime+stime of the threaded-NAPI kernel threads of ``dev`` ("napi/DEV-ID"), seconds.

    Their work (B's receive path) is not in the forwarder's own CPU time."""
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                if not f.read().startswith(f"napi/{dev}-"):
                    continue
            total += proc_cpu(int(pid))
        except OSError:  # gone meanwhile
            continue
    return total


MODES = ("plain", "offload", "coalesce", "napi", "napi-threaded")
TUNTAP_ONLY = ("coalesce", "napi", "napi-threaded")


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """proc's next stdout line, or "" if none comes within ``timeout`` seconds."""
    import select

    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    return proc.stdout.readline() if ready else ""


# --------------------------------------------------------------------------------------
# The ctypes forwarder (runs in a child process: bench_forward.py _ctypes NS_A ...)
# --------------------------------------------------------------------------------------
def ctypes_forwarder(ns_a: str, dev_a: str, ns_b: str, dev_b: str, offload: bool,
                     seconds: float) -> None:
    sys.path.insert(0, HERE)
    from ctypes_tun import IFF_NO_PI, IFF_TUN, CtypesTun

    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    tuns = []
    for ns, dev in ((ns_a, dev_a), (ns_b, dev_b)):
        nsfd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
        if libc.setns(nsfd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        t = CtypesTun(dev, IFF_TUN | IFF_NO_PI | (IFF_VNET_HDR if offload else 0))
        fcntl.ioctl(t.fd, TUNSETOFFLOAD, (TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) if offload else 0)
        tuns.append(t)
        libc.setns(home, CLONE_NEWNET)
        os.close(nsfd)
    counts = [[0, 0], [0, 0]]  # reads, write errors per direction
    stop = threading.Event()

    # Like the other forwarders: room for a 64 KiB super-packet with offloads, 2 KiB without
    size = 65536 + 64 if offload else 2048

    def pump(d: int) -> None:
        src, dst, c = tuns[d].fd, tuns[1 - d].fd, counts[d]
        read, write = os.read, os.write
        while not stop.is_set():  # bounded: the main thread exits the process after `seconds`
            data = read(src, size)
            c[0] += 1
            try:
                write(dst, data)
            except OSError:
                c[1] += 1

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    for d in (0, 1):
        threading.Thread(target=pump, args=(d,), daemon=True).start()
    print("ready", flush=True)
    stop.wait(seconds)
    print(json.dumps({"forwarder": "ctypes-threads", "reads": [c[0] for c in counts],
                      "write_errors": [c[1] for c in counts]}), flush=True)
    os._exit(0)  # the pump threads are blocked in read()


# --------------------------------------------------------------------------------------
# One forwarding run
# --------------------------------------------------------------------------------------
class Env:
    def __init__(self, cforward: str, seconds: float, omit: float) -> None:
        tag = f"{os.getpid()}"
        self.ns_a, self.ns_b = f"ttbf-a-{tag}", f"ttbf-b-{tag}"
        self.cforward, self.seconds, self.omit = cforward, seconds, omit

    def __enter__(self) -> Env:
        try:
            for ns in (self.ns_a, self.ns_b):
                run("ip", "netns", "add", ns)
                run("ip", "-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for ns in (self.ns_a, self.ns_b):  # by exact name; "not there" is fine
            run("ip", "netns", "del", ns, check=False)

    def command(self, fwd: str, mode: str) -> tuple[list[str], bool]:
        """argv of the forwarder and whether it configures the links itself."""
        offload = mode == "offload"
        life = str(int(self.seconds + self.omit + 60))
        common = [self.ns_a, "tA", self.ns_b, "tB"]
        if fwd.startswith("c-"):
            return [self.cforward, fwd[2:], *common, "1" if offload else "0", life], False
        if fwd.startswith("tuntap-"):
            # tuntap-asyncio / -uvloop: --mode asyncio (create_endpoint) on that loop;
            # tuntap-await[-uvloop]: --mode await (AsyncDevice tasks)
            design = fwd.split("-")[1]  # not `mode`: that is the TUN mode, used below
            loop = "uvloop" if fwd.endswith("uvloop") else "asyncio"
            design = "asyncio" if design == "uvloop" else design
            argv = [sys.executable, os.path.join(ROOT, "examples", "forward.py"),
                    "--mode", design, "--loop", loop, "--ns-a", self.ns_a, "--ns-b", self.ns_b,
                    "--dev-a", "tA", "--dev-b", "tB", "--seconds", life]
            if fwd.endswith("-uring"):  # the same forwarder on the io_uring batch backend
                argv = ["env", "TUNTAP_IO=uring", *argv]
            return argv + ([] if mode == "plain" else [f"--{mode}"]), True
        if fwd == "ctypes-threads":
            return [sys.executable, os.path.abspath(__file__), "_ctypes", *common,
                    "1" if offload else "0", life], False
        raise ValueError(fwd)

    def run_once(self, fwd: str, mode: str) -> dict[str, object]:
        offload = mode == "offload"
        argv, self_config = self.command(fwd, mode)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        srv = None
        try:
            line = read_line(proc, 30)
            if line.strip() != "ready":
                raise RuntimeError(f"{fwd} did not start: {line!r}")
            if not self_config:
                for ns, dev, addr, peer in ((self.ns_a, "tA", ADDR_A, ADDR_B),
                                            (self.ns_b, "tB", ADDR_B, ADDR_A)):
                    run("ip", "-n", ns, "addr", "add", addr, "peer", peer, "dev", dev)
                    run("ip", "-n", ns, "link", "set", dev, "up")
            srv = subprocess.Popen(["ip", "netns", "exec", self.ns_b, "iperf3", "-s", "-1",
                                    "-B", ADDR_B], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
            ping = run("ip", "netns", "exec", self.ns_a, "ping", "-c", "1", "-W", "2", ADDR_B,
                       check=False)
            if ping.returncode != 0:
                raise RuntimeError(f"{fwd}: no ping through the tunnel: {ping.stdout}")
            for _ in range(50):  # wait (at most 5 s) until the iperf3 server listens
                if run("ss", "-N", self.ns_b, "-Hltn", "sport", "=", ":5201",
                       check=False).stdout.strip():
                    break
                time.sleep(0.1)
            time.sleep(0.2)
            cpu0 = proc_cpu(proc.pid)
            napi0 = napi_threads_cpu("tB")
            t0 = time.monotonic()
            r = run("ip", "netns", "exec", self.ns_a, "iperf3", "-c", ADDR_B, "-J",
                    "-t", str(self.seconds), "-O", str(self.omit),
                    check=False, timeout=self.seconds + self.omit + 60)
            wall = time.monotonic() - t0
            cpu = proc_cpu(proc.pid) - cpu0
            napi_cpu = napi_threads_cpu("tB") - napi0
            (txa, dropa), (txb, dropb) = tx_stats(self.ns_a, "tA"), tx_stats(self.ns_b, "tB")
            ca, cb = link_counters(self.ns_a, "tA"), link_counters(self.ns_b, "tB")
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            try:
                out, err = proc.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, err = proc.communicate(timeout=15)
            if srv is not None:
                if srv.poll() is None:
                    srv.kill()
                srv.wait(5)
        if r.returncode != 0:
            raise RuntimeError(f"iperf3 failed with {fwd}: {r.stdout[-1000:]} {r.stderr[-500:]}")
        report = json.loads(r.stdout)
        if "error" in report or "sum_received" not in report.get("end", {}):
            raise RuntimeError(f"iperf3 with {fwd}: {report.get('error', 'no result')}")
        end = report["end"]
        lines = out.strip().splitlines()
        if not lines:
            raise RuntimeError(f"{fwd} printed no counters: {err[-2000:]}")
        stats = json.loads(lines[-1])
        if "directions" in stats:  # examples/forward.py: reads = read_batch() calls
            packets = sum(d["packets"] for d in stats["directions"])
            rounds = sum(d["reads"] for d in stats["directions"])
        elif "packets" in stats:  # cforward.c
            packets, rounds = sum(stats["packets"]), sum(stats["batches"])
        else:  # ctypes: one packet per read
            packets = rounds = sum(stats["reads"])
        rx_bytes = end["sum_received"]["bytes"]
        # iperf3's counters exclude the --omit interval; CPU covers the whole client run,
        # so scale the bytes to it (rate x wall time).
        moved = end["sum_received"]["bits_per_second"] / 8 * wall
        return {
            "forwarder": fwd,
            "mode": mode,
            "offload": offload,
            "gbps": round(end["sum_received"]["bits_per_second"] / 1e9, 3),
            "retransmits": end["sum_sent"].get("retransmits", 0),
            "tx_dropped": dropa + dropb,
            "bytes_per_read": round((txa + txb) / max(1, packets)),
            "packets_per_batch": round(packets / max(1, rounds), 2),
            "cpu_s_per_gb": round(cpu / (moved / 1e9), 4) if moved else None,
            "forwarder_cpu_s": round(cpu, 3),
            # threaded NAPI: B's receive work runs in kernel threads, not the forwarder
            "napi_thread_cpu_s": round(napi_cpu, 3),
            "cpu_s_per_gb_with_napi": round((cpu + napi_cpu) / (moved / 1e9), 4) if moved else None,
            # A -> B: packets read from tA per packet written into tB (tB's rx counter)
            "segs_per_write": round(ca["tx_packets"] / max(1, cb["rx_packets"]), 2),
            "bytes_per_write": round(cb["rx_bytes"] / max(1, cb["rx_packets"])),
            "wall_s": round(wall, 2),
            "iperf_bytes": rx_bytes,
        }


# --------------------------------------------------------------------------------------
# Multi-queue read benchmark
# --------------------------------------------------------------------------------------
def queue_bench(queues: int, packets: int, rounds: int, pin: bool = True) -> dict[str, object]:
    """Aggregate read packets/s with ``queues`` reader threads, one per queue."""
    import socket

    import tuntap

    libc = ctypes.CDLL(None, use_errno=True)
    ns = f"ttbq-{os.getpid()}-{queues}"
    flows = 64
    run("ip", "netns", "add", ns)
    home = nsfd = -1
    rates: list[tuple[int, float, list[int]]] = []
    socks: list[socket.socket] = []
    devs: list[tuntap.Device] = []
    try:
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        nsfd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)

        def enter() -> None:
            if libc.setns(nsfd, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns")

        def leave() -> None:
            if libc.setns(home, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")

        name = "tq0"
        enter()  # open_queues and the sockets work in the caller's namespace
        try:
            devs = tuntap.open_queues(name, queues)
        finally:
            leave()
        run("ip", "-n", ns, "link", "set", name, "txqueuelen", str(packets + 1000), "up")
        run("ip", "-n", ns, "addr", "add", "10.78.0.1", "peer", "10.78.0.2", "dev", name)
        run("ip", "-n", ns, "link", "set", "lo", "up")
        for d in devs:
            d.setblocking(False)
        batches = [tuntap.PacketBatch(64, 2048) for _ in devs]
        got = [0] * len(devs)
        ends = [0.0] * len(devs)
        cpus = sorted(os.sched_getaffinity(0))
        limit = 2 * packets // 64 + 100  # read_batch calls: bounded even if traffic came in

        def drain(i: int, barrier: threading.Barrier | None = None) -> None:
            rb, b, n = devs[i].read_batch, batches[i], 0
            if barrier is not None:
                if pin:  # one reader per CPU: the multi-queue pattern (pid 0 = this thread)
                    os.sched_setaffinity(0, {cpus[i % len(cpus)]})
                barrier.wait(30)
            for _ in range(limit):
                try:
                    n += rb(b)
                except BlockingIOError:
                    break
            ends[i] = time.perf_counter()
            got[i] = n

        def queue_of_last_packet() -> int:
            for i, d in enumerate(devs):
                try:
                    if d.read_batch(batches[i]):
                        return i
                except BlockingIOError:
                    pass
            return -1

        # Choose source ports so that each queue gets flows // queues flows: the kernel
        # hashes (addresses, ports) to a queue; probe one packet per candidate port.
        payload = b"x" * 64
        want = flows // queues
        per_queue = [0] * queues
        enter()
        try:
            for port in range(20000, 20000 + 16 * flows):  # bounded probe
                if len(socks) == want * queues:
                    break
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind(("10.78.0.1", port))
                s.sendto(payload, ("10.78.0.2", 9))
                q = queue_of_last_packet()
                if q >= 0 and per_queue[q] < want:
                    per_queue[q] += 1
                    socks.append(s)
                else:
                    s.close()
        finally:
            leave()
        if len(socks) != want * queues:
            raise RuntimeError(f"could not find {want} flows per queue: {per_queue}")
        for _ in range(rounds + 1):  # the first round is a warm-up
            for i in range(len(devs)):
                drain(i)
            for j in range(packets):
                socks[j % len(socks)].sendto(payload, ("10.78.0.2", 9))
            barrier = threading.Barrier(len(devs) + 1)
            threads = [threading.Thread(target=drain, args=(i, barrier))
                       for i in range(len(devs))]
            for t in threads:
                t.start()
            barrier.wait(30)
            t0 = time.perf_counter()
            for t in threads:
                t.join(60)
            if sum(got) != packets:
                raise RuntimeError(f"read {got} packets, sent {packets}")
            rates.append((sum(got), max(ends) - t0, list(got)))
    finally:
        for s in socks:
            s.close()
        for d in devs:
            d.close()
        for fd in (nsfd, home):
            if fd >= 0:
                os.close(fd)
        run("ip", "netns", "del", ns, check=False)
    rates = rates[1:]
    pps = [n / dt for n, dt, _ in rates]
    return {"bench": "queues", "queues": queues, "packets": packets, "pinned": pin,
            "pps": round(statistics.median(pps)), "pps_min": round(min(pps)),
            "pps_max": round(max(pps)), "per_queue_last": rates[-1][2],
            "rounds": [round(x) for x in pps]}


# --------------------------------------------------------------------------------------
KEYS = ("gbps", "retransmits", "tx_dropped", "bytes_per_read", "packets_per_batch",
        "cpu_s_per_gb", "segs_per_write", "bytes_per_write", "cpu_s_per_gb_with_napi")


def summarize(results: list[dict[str, object]]) -> list[dict[str, object]]:
    rows = []
    for mode in MODES:
        for fwd in FORWARDERS:
            rs = [r for r in results if r["forwarder"] == fwd and r["mode"] == mode]
            if not rs:
                continue
            row: dict[str, object] = {"summary": fwd, "mode": mode, "offload": mode == "offload",
                                      "n": len(rs)}
            for k in KEYS:
                vals = [float(r[k]) for r in rs if r.get(k) is not None]  # type: ignore[arg-type]
                row[k] = statistics.median(vals) if vals else None
                row[k + "_range"] = [min(vals), max(vals)] if vals else None
            # paired with plain of the same forwarder and repetition: immune to the load
            # drifting between repetitions
            base = {r["rep"]: r for r in results if r["forwarder"] == fwd and r["mode"] == "plain"}
            pairs = [(r, base[r["rep"]]) for r in rs if r["rep"] in base]
            if pairs and mode != "plain":
                for k in ("gbps", "cpu_s_per_gb", "cpu_s_per_gb_with_napi"):
                    row[k + "_x_plain"] = round(statistics.median(
                        float(a[k]) / float(b[k]) for a, b in pairs  # type: ignore[arg-type]
                        if a.get(k) and b.get(k)), 2)
            gb = [float(r["gbps"]) * float(r["wall_s"]) / 8 for r in rs]  # type: ignore[arg-type]
            row["retransmits_per_gb"] = round(statistics.median(
                float(r["retransmits"]) / g for r, g in zip(rs, gb) if g), 0)  # type: ignore[arg-type]
            rows.append(row)
    return rows


def markdown(rows: list[dict[str, object]], queues: list[dict[str, object]], meta: str) -> str:
    def rng(r: dict[str, object], k: str, fmt: str) -> str:
        span = r[k + "_range"]
        assert isinstance(span, list)
        lo, hi = span
        return f"{r[k]:{fmt}} ({lo:{fmt}}-{hi:{fmt}})" if r["n"] != 1 else f"{r[k]:{fmt}}"

    out = [meta, "",
           "| TUN | forwarder | Gbps (min-max) | retransmits | tx_dropped | bytes/read "
           "| packets/batch | segments/write B | CPU s/GB (min-max) | + NAPI thread | runs |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['mode']} | {r['summary']} | "
                   f"{rng(r, 'gbps', '.2f')} | {r['retransmits']:,.0f} | {r['tx_dropped']:,.0f} | "
                   f"{r['bytes_per_read']:,.0f} | {r['packets_per_batch']:.1f} | "
                   f"{r['segs_per_write']:.1f} | "
                   f"{rng(r, 'cpu_s_per_gb', '.3f')} | {r['cpu_s_per_gb_with_napi']:.3f} | "
                   f"{r['n']} |")
    paired = [r for r in rows if "gbps_x_plain" in r]
    if paired:
        out += ["", "Paired with `plain` of the same forwarder and repetition (median of the "
                "per-repetition ratios), and retransmits per GB moved:", "",
                "| TUN | forwarder | Gbps x plain | CPU/GB x plain | CPU/GB (+ NAPI thread) "
                "x plain | retransmits/GB |", "|---|---|---:|---:|---:|---:|"]
        for r in rows:
            if r["mode"] == "plain" or "gbps_x_plain" in r:
                out.append(f"| {r['mode']} | {r['summary']} | {r.get('gbps_x_plain', 1.0):.2f} | "
                           f"{r.get('cpu_s_per_gb_x_plain', 1.0):.2f} | "
                           f"{r.get('cpu_s_per_gb_with_napi_x_plain', 1.0):.2f} | "
                           f"{r['retransmits_per_gb']:,.0f} |")
    if queues:
        out += ["", "| queues | packets/s (median) | min-max | per round |",
                "|---:|---:|---|---|"]
        for q in queues:
            out.append(f"| {q['queues']} | {q['pps']:,} | {q['pps_min']:,}-{q['pps_max']:,} "
                       f"| {q['rounds']} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_ctypes":
        a = argv[1:]
        ctypes_forwarder(a[0], a[1], a[2], a[3], a[4] == "1", float(a[5]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=5, help="iperf3 -t (default 5)")
    p.add_argument("--omit", type=float, default=1, help="iperf3 -O warm-up (default 1)")
    p.add_argument("--reps", type=int, default=3, help="repetitions (default 3)")
    p.add_argument("--only", nargs="*", choices=FORWARDERS, help="forwarders to run")
    p.add_argument("--modes", nargs="*", choices=MODES, default=["plain", "offload"],
                   help="coalesce, napi and napi-threaded run the tuntap forwarders only")
    p.add_argument("--queues", action="store_true", help="also the 1 vs 2 queue read benchmark")
    p.add_argument("--queues-only", action="store_true")
    p.add_argument("--packets", type=int, default=20000, help="packets per queue-bench round")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--no-pin", action="store_true",
                   help="queue bench: do not pin reader thread i to CPU i")
    p.add_argument("--markdown", action="store_true")
    args = p.parse_args(argv)
    if os.geteuid() != 0:
        p.error("run as root (it creates network namespaces)")
    setup_tools()
    meta = (f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, "
            f"kernel {platform.release()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()}, load {os.getloadavg()[0]:.2f}; "
            f"`python benchmarks/bench_forward.py {' '.join(argv)}`")
    results: list[dict[str, object]] = []
    if not args.queues_only:
        with tempfile.TemporaryDirectory() as tmp:
            cforward = build_cforward(tmp)
            with Env(cforward, args.seconds, args.omit) as env:
                for rep in range(args.reps):
                    for mode in args.modes:
                        for fwd in args.only or FORWARDERS:
                            if mode in TUNTAP_ONLY and not fwd.startswith("tuntap-"):
                                continue
                            try:
                                r = env.run_once(fwd, mode)
                            except RuntimeError as e:  # one retry, then give up
                                print(json.dumps({"retry": fwd, "error": str(e)[:300]}),
                                      flush=True)
                                r = env.run_once(fwd, mode)
                            r["rep"] = rep
                            results.append(r)
                            print(json.dumps(r), flush=True)
    rows = summarize(results)
    for row in rows:
        print(json.dumps(row), flush=True)
    qs = []
    if args.queues or args.queues_only:
        for n in (1, 2):
            q = queue_bench(n, args.packets, args.rounds, pin=not args.no_pin)
            qs.append(q)
            print(json.dumps(q), flush=True)
    if args.markdown:
        print(markdown(rows, qs, meta))
    return 0


if __name__ == "__main__":
    sys.exit(main())
