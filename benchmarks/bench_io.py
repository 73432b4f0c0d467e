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

Every run unshares a private network namespace (gone when the process exits), pins itself
to one CPU, runs one warm-up and ``--rounds`` timed rounds per point (methods interleaved,
order rotated each round) and prints one JSON line per result (median/min/max ns per packet,
``ratio_to_c``: the median over rounds of the method's time / the C floor's time in the
same round, and ``ratio_of_medians``), then markdown tables of the median and the paired
ratio.

    sudo python benchmarks/bench_io.py all            # K=1024,8192 x 64,1400 bytes
    sudo python benchmarks/bench_io.py read -k 1024 -s 64 -r 9
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
import sys
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
    ap.add_argument("what", choices=("read", "write", "all"), nargs="?", default="all")
    ap.add_argument("-k", "--packets", type=int, nargs="+", default=[1024, 8192])
    ap.add_argument("-s", "--payload", type=int, nargs="+", default=[64, 1400])
    ap.add_argument("-r", "--rounds", type=int, default=7)
    ap.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: last)")
    ap.add_argument("--only", default="",
                    help="comma-separated method names or prefixes, e.g. 'tuntap readinto,"
                         "ctypes os.read': run only those (and the C floor)")
    ap.add_argument("--no-progress", action="store_true",
                    help="no progress bar (it is only drawn when stderr is a terminal)")
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

    keys = [x for x in args.only.split(",") if x]

    def floor_methods() -> list[Method]:
        return _bench.cfloor_methods(floor, own_process=True)

    factories: list[tuple[str, Callable[[], list[Method]]]] = [
        ("C", floor_methods), ("tuntap", _bench.tuntap_methods), ("ctypes", ctypes_methods),
        ("baseline", lambda: _bench.tuntap_methods(baseline, "baseline") if baseline else []),
        ("pytun", pytun_methods), ("pytap2", pytap2_methods), ("scapy", scapy_methods)]
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
