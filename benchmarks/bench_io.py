"""Per-packet cost of reading and writing a TUN device: tuntap vs C vs ctypes vs the peers.

What is measured (engine: ``tuntap._bench``, see its docstring for the protocol):

* ``read``: a UDP socket queues exactly K datagrams on the device (untimed; txqueuelen
  raised above K, the drop counter checked), then the method drains exactly K packets
  (timed). The device's tx counter must grow by K and the queue must end empty.
* ``write``: the method writes one prebuilt IPv4/UDP packet K times (timed) to a UDP sink
  socket in the same namespace, which must receive all K.

Methods: the C floor (``src/tuntap/_bench/cfloor.c``, shipped in the package: plain
read()/write(), copied to and compiled in ``_build/`` with ``cc -O2``); tuntap
``readinto``/``write`` and ``read_batch``/``write_batch`` (batch 64); the ctypes version
(``ctypes_tun.py``) with ``os.read``, ``FileIO.readinto``, libc ``read`` via ctypes,
``os.write`` and libc ``write``; python-pytun, pytap2 and scapy's ``TunTapInterface``
(``recv()`` parses into scapy packets, ``recv_raw()`` does not). A peer that is not
installed or cannot run is printed as missing.

Both batch backends side by side: ``tuntap read_batch(64) io=syscall`` / ``io=uring`` (and
``write_batch``), with the C io_uring loop (``curing.c``: the same design in C, exactly K
packets, 64 SQEs per enter) next to the C ``read()``/``write()`` floor. ``partial`` measures
one ``read_batch`` call with Q = 1, 4, 16, 64 packets queued (and the first call after a
burst), both backends paired per round. ``--seccomp N`` first installs a seccomp filter of N
instructions that allows everything but cannot be cached by the kernel, which makes every
syscall dearer and leaves io_uring's internal reads and writes alone: the dial that turns
this machine into one whose syscalls cost what the issue's did (~1500 gives ~220 ns).

Every run unshares a private network namespace (gone when the process exits), pins itself
to one CPU, runs one warm-up and ``--rounds`` timed rounds per point (methods interleaved,
order rotated each round) and prints one JSON line per result (median/min/max ns per packet,
``ratio_to_c``: the median over rounds of the method's time / the C floor's time in the
same round, and ``ratio_of_medians``), then markdown tables of the median and the paired
ratio.

    sudo python benchmarks/bench_io.py all            # K=1024,8192 x 64,1400 bytes
    sudo python benchmarks/bench_io.py read -k 1024 -s 64 -r 9
    sudo python benchmarks/bench_io.py all -k 1024 -s 64 \
        --only "tuntap read_batch,tuntap write_batch,C io_uring"
    sudo python benchmarks/bench_io.py partial -r 9 [--seccomp 1500]
    sudo python benchmarks/bench_io.py --baseline OLD/_tuntap.cpython-311-x86_64-linux-gnu.so

``--baseline`` loads another build of the extension (say, of an older commit) beside the
installed one and measures its readinto/read_batch/write/write_batch too, as "baseline
...", so two builds are compared within one run.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import io
import json
import os
import platform
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import time
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
try:
    from tuntap import _bench
except ImportError:  # running from a source tree without an installed tuntap
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "src"))
    from tuntap import _bench

from ctypes_tun import CtypesTun  # noqa: E402
from tuntap._bench import READ_BUFSIZE, Method, loop0, loop1, loop2, loop3  # noqa: E402
from tuntap._bench.methods import FdDev  # noqa: E402


def ctypes_methods() -> list[Method]:
    def opener(ifname: str) -> CtypesTun:
        return CtypesTun(ifname)

    def os_read(dev: CtypesTun, k: int, packet: bytes) -> int:
        return loop2(os.read, dev.fd, READ_BUFSIZE, k)

    def fileio_readinto(dev: CtypesTun, k: int, packet: bytes) -> int:
        return loop1(dev.file.readinto, bytearray(READ_BUFSIZE), k)

    def libc_read(dev: CtypesTun, k: int, packet: bytes) -> int:
        cbuf = ctypes.create_string_buffer(READ_BUFSIZE)
        return loop3(dev._libc_read, dev.fd, cbuf, READ_BUFSIZE, k)

    def os_write(dev: CtypesTun, k: int, packet: bytes) -> int:
        return loop2(os.write, dev.fd, packet, k)

    def libc_write(dev: CtypesTun, k: int, packet: bytes) -> int:
        cbuf = ctypes.create_string_buffer(packet, len(packet))
        return loop3(dev._libc_write, dev.fd, cbuf, len(packet), k)

    return [
        Method("ctypes os.read", "read", opener, os_read),
        Method("ctypes FileIO.readinto", "read", opener, fileio_readinto),
        Method("ctypes libc read", "read", opener, libc_read),
        Method("ctypes os.write", "write", opener, os_write),
        Method("ctypes libc write", "write", opener, libc_write),
    ]


def pytun_methods() -> list[Method]:
    try:
        import pytun  # type: ignore[import-not-found, unused-ignore]
    except ImportError as exc:
        why = f"python-pytun not installed ({exc}); pip install python-pytun"
        return [Method("pytun read", "read", missing=why),
                Method("pytun write", "write", missing=why)]

    def opener(ifname: str) -> Any:
        return pytun.TunTapDevice(name=ifname, flags=pytun.IFF_TUN | pytun.IFF_NO_PI)

    def read(dev: Any, k: int, packet: bytes) -> int:
        return loop1(dev.read, READ_BUFSIZE, k)

    def write(dev: Any, k: int, packet: bytes) -> int:
        return loop1(dev.write, packet, k)

    return [Method("pytun read", "read", opener, read),
            Method("pytun write", "write", opener, write)]


def pytap2_methods() -> list[Method]:
    try:
        import pytap2
    except ImportError as exc:
        why = f"pytap2 not installed ({exc}); pip install pytap2"
        return [Method("pytap2 read", "read", missing=why),
                Method("pytap2 write", "write", missing=why)]

    def opener(ifname: str) -> Any:
        # pytap2 appends "%d" to the name: "tb5" becomes "tb50"; .name has the real one.
        return pytap2.TapDevice(pytap2.TapMode.Tun, name=ifname)

    def read(dev: Any, k: int, packet: bytes) -> int:
        return loop0(dev.read, k)  # reads up to the MTU (1500), its default

    def write(dev: Any, k: int, packet: bytes) -> int:
        return loop1(dev.write, packet, k)

    return [Method("pytap2 read", "read", opener, read),
            Method("pytap2 write", "write", opener, write)]


def scapy_methods() -> list[Method]:
    try:
        from scapy.layers.inet import IP
        from scapy.layers.tuntap import TunTapInterface
    except ImportError as exc:
        why = f"scapy not installed ({exc}); pip install scapy"
        return [Method(n, k, missing=why) for n, k in (
            ("scapy recv", "read"), ("scapy recv_raw", "read"), ("scapy send", "write"))]

    def opener(ifname: str) -> Any:
        # TUN with packet info (scapy's Linux default), 4 more bytes per packet.
        return TunTapInterface(ifname, mode_tun=True)  # type: ignore[no-untyped-call]

    def recv(dev: Any, k: int, packet: bytes) -> int:
        return loop0(dev.recv, k)

    def recv_raw(dev: Any, k: int, packet: bytes) -> int:
        return loop0(dev.recv_raw, k)

    def send(dev: Any, k: int, packet: bytes) -> int:
        return loop1(dev.send, IP(packet), k)

    def fileno(dev: Any) -> int:
        return int(dev.ins.fileno())

    return [
        Method("scapy recv", "read", opener, recv, fileno=fileno),
        Method("scapy recv_raw", "read", opener, recv_raw, fileno=fileno),
        Method("scapy send", "write", opener, send, fileno=fileno),
    ]


# --------------------------------------------------------------------------------------
# io_uring: both tuntap backends, the C io_uring loop, the partial-queue bench, --seccomp
# --------------------------------------------------------------------------------------
BATCH = 64


def backend_methods() -> list[Method]:
    """read_batch/write_batch(64) on each backend, whatever io="auto" would pick here."""
    import tuntap

    methods: list[Method] = []
    batches: dict[int, Any] = {}
    for backend in ("syscall", "uring"):
        def opener(ifname: str, io: str = backend) -> Any:
            return tuntap.Device(ifname, io=io)

        def run_read(dev: Any, k: int, packet: bytes) -> int:
            batch = batches.get(id(dev))
            if batch is None:  # one per device, faulted in before the clock starts
                batch = batches[id(dev)] = tuntap.PacketBatch(BATCH, READ_BUFSIZE)
                memoryview(batch).cast("B")[:] = bytes(BATCH * READ_BUFSIZE)
            return _bench.loop_batch(dev.read_batch, batch, k)

        def run_write(dev: Any, k: int, packet: bytes) -> int:
            batch = tuntap.PacketBatch(BATCH, READ_BUFSIZE)
            for _ in range(min(BATCH, k)):
                batch.append(packet)
            return _bench.loop_batch(dev.write_batch, batch, k)

        methods.append(Method(f"tuntap read_batch({BATCH}) io={backend}", "read", opener,
                              run_read))
        methods.append(Method(f"tuntap write_batch({BATCH}) io={backend}", "write", opener,
                              run_write))
    return methods


def curing_methods() -> list[Method]:
    """The C io_uring loops (curing.c), built into _build/ and called through ctypes."""
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    names = (("C io_uring read", "read"), ("C io_uring write", "write"))
    if not cc:
        return [Method(n, k, missing="no C compiler (cc) found") for n, k in names]
    out = os.path.join(HERE, "_build")
    os.makedirs(out, exist_ok=True)
    lib_path = os.path.join(out, "libcuring.so")
    src = os.path.join(HERE, "curing.c")
    if not os.path.exists(lib_path) or os.path.getmtime(lib_path) < os.path.getmtime(src):
        proc = subprocess.run([cc, "-O2", "-Wall", "-shared", "-fPIC", "-o", lib_path, src],
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            why = f"compiling curing.c failed: {proc.stderr.strip()[:300]}"
            return [Method(n, k, missing=why) for n, k in names]
    lib = ctypes.CDLL(lib_path, use_errno=True)
    lib.curing_run.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_size_t,
                               ctypes.POINTER(ctypes.c_longlong),
                               ctypes.POINTER(ctypes.c_longlong))
    lib.curing_buffer.restype = ctypes.c_void_p

    def opener(ifname: str) -> FdDev:
        return FdDev(_bench.open_plain_tun(ifname))

    def run(dev: FdDev, packet: bytes | None, k: int) -> int:
        if packet is not None:
            ctypes.memmove(lib.curing_buffer(), packet, len(packet))
        ns, nbytes = ctypes.c_longlong(), ctypes.c_longlong()
        size = len(packet) if packet is not None else READ_BUFSIZE
        if lib.curing_run(dev.fd, packet is not None, k, size, ctypes.byref(ns),
                          ctypes.byref(nbytes)) < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"C io_uring loop: {os.strerror(err)}")
        return ns.value

    return [Method(names[0][0], "read", opener, lambda d, k, p: run(d, None, k)),
            Method(names[1][0], "write", opener, lambda d, k, p: run(d, p, k))]


def install_seccomp(insns: int) -> None:
    """An allow-everything seccomp filter of `insns` instructions that loads a syscall
    argument, so the kernel cannot cache it (the seccomp action bitmap): every syscall of
    this process and its children then runs the whole filter (benchmarks/uring_proto.c)."""
    if not 2 <= insns <= 4096:
        raise ValueError("--seccomp takes 2 to 4096 instructions")
    libc = ctypes.CDLL(None, use_errno=True)
    ld_arg0 = struct.pack("HBBI", 0x20, 0, 0, 16)  # ld [16]: seccomp_data.args[0]
    ret_allow = struct.pack("HBBI", 0x06, 0, 0, 0x7FFF0000)
    code = ld_arg0 * (insns - 1) + ret_allow
    buf = ctypes.create_string_buffer(code, len(code))
    prog = struct.pack("HxxxxxxQ", insns, ctypes.addressof(buf))
    if libc.prctl(38, 1, 0, 0, 0) != 0 or libc.prctl(22, 2, prog) != 0:  # NO_NEW_PRIVS, SECCOMP
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")


def syscall_ns() -> float:
    """Median of 9 x 2,000 getppid() calls: the syscall round trip, in ns."""
    runs = []
    for _ in range(9):
        t0 = time.perf_counter_ns()
        for _ in range(2000):
            os.getppid()
        runs.append((time.perf_counter_ns() - t0) / 2000)
    return statistics.median(runs)


def partial_bench(rounds: int, calls: int = 64, qs: tuple[int, ...] = (1, 4, 16, 64)
                  ) -> list[dict[str, Any]]:
    """One read_batch(64) call with Q packets queued, per backend, `calls` calls per round;
    plus "burst": the first call after a 256-packet burst was drained, with 1 queued."""
    import tuntap

    devs: dict[str, Any] = {}
    fill = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for i, io in enumerate(("syscall", "uring")):
            dev = devs[io] = tuntap.Device(f"tp{i}", io=io)
            _bench.configure(dev.name, f"10.202.{i}.1", "255.255.255.0", 1024)
            dev.setblocking(False)
        batch = tuntap.PacketBatch(BATCH, READ_BUFSIZE)
        memoryview(batch).cast("B")[:] = bytes(BATCH * READ_BUFSIZE)
        points = [*qs, "burst"]
        times: dict[tuple[str, object], list[float]] = {(io, q): [] for io in devs for q in points}

        def queue(i: int, n: int) -> None:
            for _ in range(n):
                fill.sendto(b"x" * 64, (f"10.202.{i}.2", 9))

        def one(io: str, q: object) -> float:
            i = 0 if io == "syscall" else 1
            dev = devs[io]
            total = 0
            reps = calls if q != "burst" else calls // 4
            for _ in range(reps):
                if q == "burst":
                    queue(i, 256)
                    try:
                        while True:  # drain the burst down to EAGAIN
                            dev.read_batch(batch)
                    except BlockingIOError:
                        pass
                    n = 1
                else:
                    n = int(q)  # type: ignore[call-overload]
                queue(i, n)
                t0 = time.perf_counter_ns()
                got = dev.read_batch(batch)
                total += time.perf_counter_ns() - t0
                if got != n:
                    raise RuntimeError(f"{io}: read {got} of {n} queued")
            return total / reps

        for rnd in range(rounds + 1):  # round 0: warm-up
            for q in points:
                order = ["syscall", "uring"] if rnd % 2 else ["uring", "syscall"]
                for io in order:
                    if q != "burst":
                        queue(0 if io == "syscall" else 1, int(q))  # type: ignore[call-overload]
                        devs[io].read_batch(batch)  # the steady state for q
                    t = one(io, q)
                    if rnd:
                        times[(io, q)].append(t)
        out = []
        for q in points:
            base = times[("syscall", q)]
            for io in devs:
                ts = times[(io, q)]
                out.append({"bench": "partial", "method": f"tuntap read_batch({BATCH}) io={io}",
                            "queued": q, "median_ns_per_call": round(statistics.median(ts), 1),
                            "min_ns": round(min(ts), 1), "max_ns": round(max(ts), 1),
                            "ratio_to_syscall": round(statistics.median(
                                [a / b for a, b in zip(ts, base)]), 3)})
        return out
    finally:
        fill.close()
        for dev in devs.values():
            dev.close()


def _version(dist: str) -> str:
    try:
        from importlib.metadata import version

        return version(dist)
    except Exception:  # noqa: BLE001
        return "not installed"


def cpu_times() -> list[int]:
    """The aggregate ``cpu`` line of /proc/stat (USER_HZ ticks); index 7 is steal."""
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def machine_info(cpu: int) -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "kernel": platform.release(),
        "cpu_model": model,
        "cpus": os.cpu_count(),
        "pinned_cpu": cpu,
        "loadavg": " ".join(load),
        "python": platform.python_version(),
        "versions": {d: _version(d) for d in ("tuntap", "python-pytun", "pytap2", "scapy")},
    }


def load_baseline(path: str) -> Any:
    """Load the extension module at ``path`` under a name of its own.

    Its init function is ``PyInit__tuntap`` whatever the package, so it loads as
    ``tuntap_baseline._tuntap`` beside the installed ``tuntap._tuntap``.
    """
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.ExtensionFileLoader("tuntap_baseline._tuntap", path)
    spec = importlib.util.spec_from_file_location("tuntap_baseline._tuntap", path,
                                                  loader=loader)
    if spec is None:
        raise SystemExit(f"bench_io: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("read", "write", "all", "partial"), nargs="?",
                    default="all")
    ap.add_argument("-k", "--packets", type=int, nargs="+", default=[1024, 8192])
    ap.add_argument("-s", "--payload", type=int, nargs="+", default=[64, 1400])
    ap.add_argument("-r", "--rounds", type=int, default=7)
    ap.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: last)")
    ap.add_argument("--only", default="",
                    help="comma-separated method names or prefixes, e.g. 'tuntap readinto,"
                         "ctypes os.read': run only those (and the C floor)")
    ap.add_argument("--no-progress", action="store_true",
                    help="no progress bar (it is only drawn when stderr is a terminal)")
    ap.add_argument("--seccomp", type=int, default=0, metavar="N",
                    help="install an uncacheable allow-all seccomp filter of N instructions "
                         "first: syscalls cost more, io_uring's internal I/O does not")
    ap.add_argument("--no-fifo", action="store_true",
                    help="do not switch to SCHED_FIFO (default: FIFO priority 1, so other "
                         "processes on the pinned CPU cannot preempt a timed loop)")
    ap.add_argument("--baseline", metavar="SO",
                    help="another build of tuntap/_tuntap*.so to measure beside this one")
    args = ap.parse_args(argv)
    baseline = load_baseline(args.baseline) if args.baseline else None

    try:
        _bench.check_tun()
        _bench.enter_private_netns()
    except _bench.BenchError as exc:
        print(f"bench_io: {exc}", file=sys.stderr)
        return 1
    try:
        cpu = _bench.pin_cpu(args.cpu)
    except ValueError as exc:
        ap.error(f"argument --cpu: {exc}")
    fifo = False if args.no_fifo else _bench.set_realtime()
    # The C source is package data (python -m tuntap bench needs it in a wheel);
    # compile_cfloor copies it to _build/cfloor.c next to the binaries it builds.
    floor = _bench.compile_cfloor(os.path.join(HERE, "_build"))
    curing = curing_methods()  # compiled before --seccomp, like the floor
    if args.seccomp:
        install_seccomp(args.seccomp)
    if args.what == "partial":
        import tuntap  # noqa: F401 - io="auto" below measures under the filter
        from tuntap import _tuntap
        print(json.dumps({"meta": {**machine_info(cpu), "syscall_ns": round(syscall_ns(), 1),
                                   "seccomp_insns": args.seccomp,
                                   "io_uring_probe": _tuntap._io_uring_probe(True)}}),
              flush=True)
        rows = partial_bench(args.rounds)
        for r in rows:
            print(json.dumps(r), flush=True)
        print("\n| read_batch(64), one call | " + " | ".join(
            f"Q={r['queued']}" for r in rows[::2]) + " |")
        print("|---|" + "---:|" * (len(rows) // 2))
        for backend in ("syscall", "uring"):
            cells = [f"{r['median_ns_per_call']:,.0f} ({r['ratio_to_syscall']:.2f}x)"
                     for r in rows if r["method"].endswith(backend)]
            print(f"| io={backend}: ns/call (x syscall) | " + " | ".join(cells) + " |")
        return 0

    keys = [x for x in args.only.split(",") if x]

    def floor_methods() -> list[Method]:
        return _bench.cfloor_methods(floor, own_process=True)

    factories: list[tuple[str, Callable[[], list[Method]]]] = [
        ("C", floor_methods), ("tuntap", _bench.tuntap_methods), ("ctypes", ctypes_methods),
        ("baseline", lambda: _bench.tuntap_methods(baseline, "baseline") if baseline else []),
        ("pytun", pytun_methods), ("pytap2", pytap2_methods), ("scapy", scapy_methods),
        ("C", lambda: curing), ("tuntap", backend_methods)]
    methods: list[Method] = []
    for prefix, factory in factories:
        # --only skips whole libraries, so that e.g. importing scapy stays out of a profile.
        if prefix == "C" or not keys or any(x.split()[0] == prefix for x in keys):
            methods += factory()
    if args.what != "all":
        methods = [m for m in methods if m.kind == args.what]
    if keys:
        methods = [m for m in methods
                   if m.name.startswith("C ") or any(x in m.name for x in keys)]
    # Reads first, then writes, each group in the order above.
    methods.sort(key=lambda m: m.kind != "read")

    info = machine_info(cpu)
    info["sched"] = "SCHED_FIFO 1" if fifo else "SCHED_OTHER"
    info["seccomp_insns"] = args.seccomp
    info["syscall_ns"] = round(syscall_ns(), 1)
    try:
        from tuntap import _tuntap

        info["io_uring_probe"] = _tuntap._io_uring_probe(True)
    except (ImportError, AttributeError):
        pass
    info["command"] = "python benchmarks/bench_io.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    print(json.dumps({"meta": info}), flush=True)

    def emit(d: dict[str, Any]) -> None:
        print(json.dumps(d), flush=True)

    # The progress bar only on a terminal: in a pipe or a log file it is noise.
    progress = sys.stderr if sys.stderr.isatty() and not args.no_progress else None
    t0 = cpu_times()
    results = _bench.run_bench(methods, args.packets, args.payload, args.rounds,
                               progress=progress, emit=emit)
    t1 = cpu_times()
    busy = [b - a for a, b in zip(t0, t1)]
    with open("/proc/loadavg") as f:
        end = {"loadavg": " ".join(f.read().split()[:3]),
               # time the hypervisor gave to others while we wanted the CPU, and how
               # busy both CPUs were (all processes, ours included) during the run
               "steal_pct": round(100 * busy[7] / max(sum(busy), 1), 1),
               "cpu_busy_pct": round(100 * (sum(busy) - busy[3] - busy[4]) / max(sum(busy), 1),
                                     1)}
    print(json.dumps({"meta_end": end}), flush=True)
    out = io.StringIO()
    for kind in ("read", "write"):
        if any(r.kind == kind for r in results):
            out.write("\n" + _bench.format_table(results, kind) + "\n")
    print(out.getvalue())
    return 3 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
