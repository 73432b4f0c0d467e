"""The built-in benchmark behind ``python -m tuntap bench`` and the engine of ``benchmarks/``.

What is measured: the wall-clock cost per packet of moving exactly ``K`` packets through a
TUN device, one method at a time, on one pinned CPU, inside a private network namespace.

* **read**: a UDP socket sends ``K`` datagrams to an address routed via the device
  (untimed, the device's ``txqueuelen`` raised above ``K`` and its drop counter checked),
  then the method drains exactly ``K`` packets (timed). Afterwards the device's transmit
  counter must have grown by ``K`` and the queue must be empty.
* **write**: the method writes one prebuilt IPv4/UDP packet ``K`` times (timed); the
  packets are addressed to a local UDP sink socket, which must receive all ``K``.

Each method gets its own device configured identically, so every method sees the same
packets and the same queue depth. A C loop (plain ``read``/``write``, one syscall per
packet, compiled here with ``cc -O2`` when a compiler exists) gives the physical floor;
every result carries its ratio to the floor of the same run: the median over rounds of
(this method's time / the floor's time in that round), a paired estimate that drift in
machine load between rounds cannot bias (the ratio of the two medians is printed too).

This module must work from an installed wheel: it imports nothing from ``benchmarks/``.
The standalone scripts in ``benchmarks/`` import it and add more methods (the ctypes
class, python-pytun, pytap2, scapy).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import gc
import json
import os
import select
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from itertools import repeat
from typing import Any, Callable, TextIO

__all__ = [
    "BenchError",
    "Method",
    "Result",
    "run_bench",
    "main",
]

# The C reference loop; benchmarks/bench_io.py compiles this same text (one copy).
CFLOOR_SOURCE = r"""/* The C reference loop: the physical floor for per-packet TUN I/O.
 *
 * Plain read()/write(), one syscall per packet, no batching, no tricks: the cost
 * any language pays at least when it moves one packet per syscall.  Timed with
 * CLOCK_MONOTONIC around the loop only (the same clock as time.perf_counter_ns).
 *
 *   cfloor read  FD|NAME K [BUFSIZE]   read exactly K packets
 *   cfloor write FD|NAME K             write the packet given on stdin K times
 *   cfloor serve FD|NAME               stay up and run commands from stdin:
 *       "r K BUFSIZE\n"                 read exactly K packets
 *       "w K LEN\n" + LEN bytes         write that packet K times
 *
 * FD is an inherited, already attached TUN fd (the benchmark passes it); a NAME
 * opens /dev/net/tun and attaches to that interface (IFF_TUN | IFF_NO_PI).
 * Each run prints "<elapsed ns> <packets> <bytes>" on stdout; exit status 1 on any
 * error.
 *
 * The benchmarks compile this file with `cc -O2` (benchmarks/_build/) twice: as a
 * shared library whose cfloor_run() they call through ctypes, so the floor ("C read()")
 * runs inside the same process, address space, caches and scheduling as the Python
 * methods; and as this program, run once with `serve` for the whole benchmark ("C
 * read() [own process]"), to show that a separate process measures the same floor.
 * The same source is embedded in tuntap/_bench.py for `python -m tuntap bench`.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int open_dev(const char *arg)
{
    char *end;
    long fd = strtol(arg, &end, 10);
    if (*arg != '\0' && *end == '\0')
        return (int)fd;
    int t = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    if (t < 0) {
        perror("open /dev/net/tun");
        return -1;
    }
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", arg);
    if (ioctl(t, TUNSETIFF, &ifr) < 0) {
        perror("ioctl(TUNSETIFF)");
        close(t);
        return -1;
    }
    return t;
}

static char buf[65536];

/* One timed run; returns 0 or -1 with errno set.  Exported: the benchmarks also build
 * this file as a shared library and call it through ctypes, so the floor runs inside
 * the very process (same address space, caches and scheduling) as the Python methods.
 * For writes the packet must already be in buf (cfloor_buffer()). */
int cfloor_run(int fd, int writing, long k, size_t size, long long *ns, long long *bytes);
char *cfloor_buffer(void);

char *cfloor_buffer(void)
{
    return buf;
}

int cfloor_run(int fd, int writing, long k, size_t size, long long *ns, long long *bytes)
{
    if (size == 0 || size > sizeof buf)
        return errno = EINVAL, -1;
    long long t0, t1, total = 0;
    long i;

    if (!writing)
        memset(buf, 0, size); /* fault the buffer in before the clock starts */
    t0 = now_ns();
    for (i = 0; i < k; i++) {
        ssize_t n = writing ? write(fd, buf, size) : read(fd, buf, size);
        if (n < 0) {
            if (errno == EINTR) {
                i--;
                continue;
            }
            return -1;
        }
        total += n;
    }
    t1 = now_ns();
    *ns = t1 - t0;
    *bytes = total;
    return 0;
}

static int serve(int fd)
{
    char line[128], op;
    long k;
    size_t size;
    long long ns, bytes;

    while (fgets(line, sizeof line, stdin)) {
        if (sscanf(line, "%c %ld %zu", &op, &k, &size) != 3 || k <= 0 || size == 0 ||
            size > sizeof buf || (op != 'r' && op != 'w')) {
            fprintf(stderr, "bad command: %s", line);
            return 2;
        }
        if (op == 'w' && fread(buf, 1, size, stdin) != size) {
            fprintf(stderr, "short packet on stdin\n");
            return 2;
        }
        if (cfloor_run(fd, op == 'w', k, size, &ns, &bytes) < 0) {
            perror(op == 'w' ? "write" : "read");
            return 1;
        }
        printf("%lld %ld %lld\n", ns, k, bytes);
        fflush(stdout);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3 || (strcmp(argv[1], "serve") != 0 && argc < 4)) {
        fprintf(stderr,
                "usage: %s read FD|NAME K [BUFSIZE] | write FD|NAME K < packet | serve FD|NAME\n",
                argv[0]);
        return 2;
    }
    int fd = open_dev(argv[2]);
    if (fd < 0)
        return 1;
    if (strcmp(argv[1], "serve") == 0)
        return serve(fd);

    long k = strtol(argv[3], NULL, 10);
    int writing = strcmp(argv[1], "write") == 0;
    size_t size;
    long long ns, bytes;
    if (k <= 0 || (!writing && strcmp(argv[1], "read") != 0)) {
        fprintf(stderr, "bad mode or K\n");
        return 2;
    }
    if (writing) {
        size = fread(buf, 1, sizeof buf, stdin);
        if (size == 0) {
            fprintf(stderr, "no packet on stdin\n");
            return 2;
        }
    } else {
        size = argc > 4 ? (size_t)strtoul(argv[4], NULL, 10) : 2048;
        if (size == 0 || size > sizeof buf)
            return 2;
    }
    if (cfloor_run(fd, writing, k, size, &ns, &bytes) < 0) {
        perror(writing ? "write" : "read");
        return 1;
    }
    printf("%lld %ld %lld\n", ns, k, bytes);
    return 0;
}
"""

# <linux/if_tun.h>, <linux/sockios.h>, <linux/if.h>, <sched.h>
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_UP = 0x1
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
SIOCSIFADDR = 0x8916
SIOCSIFNETMASK = 0x891C
SIOCSIFTXQLEN = 0x8943
CLONE_NEWNET = 0x40000000

READ_BUFSIZE = 2048
BATCH = 64
SINK_PORT = 9999
FILL_PORT = 9
DEADLINE_S = 30.0  # one drain or write run longer than this is a hang: abort it


class BenchError(Exception):
    """The environment cannot run the benchmark (not root, no TUN, ...)."""


# --------------------------------------------------------------------------- environment
def enter_private_netns() -> None:
    """Move this process into a new, empty network namespace (gone when it exits).

    Brings ``lo`` up and turns IPv6 off for new interfaces, so that no router
    solicitation or MLD report lands in a device queue and spoils the count.
    """
    try:
        if hasattr(os, "unshare"):  # 3.12+
            os.unshare(CLONE_NEWNET)
        else:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            if libc.unshare(CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
    except PermissionError as exc:
        raise BenchError(
            "needs root (CAP_SYS_ADMIN to unshare a private network namespace and "
            f"CAP_NET_ADMIN to create TUN devices): {exc}"
        ) from None
    except OSError as exc:
        raise BenchError(f"cannot create a private network namespace: {exc}") from None
    for key in ("default", "all"):
        try:
            with open(f"/proc/sys/net/ipv6/conf/{key}/disable_ipv6", "w") as f:
                f.write("1")
        except OSError:
            pass  # no IPv6 in this kernel: nothing to silence
    set_up("lo")


def check_tun(path: str = "/dev/net/tun") -> None:
    """Raise BenchError unless TUN devices can be created here."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise BenchError(f"no TUN support: {path} is missing (modprobe tun)") from None
    except PermissionError as exc:
        raise BenchError(f"needs root to open {path}: {exc}") from None
    os.close(fd)


def pin_cpu(cpu: int | None = None) -> int:
    """Pin this process (and so its children) to one CPU; return its number."""
    allowed = sorted(os.sched_getaffinity(0))
    if cpu is None:
        cpu = allowed[-1]
    os.sched_setaffinity(0, {cpu})
    return cpu


def set_realtime(priority: int = 1) -> bool:
    """Run this process (and the C floor it starts) as SCHED_FIFO so that other busy
    processes cannot preempt a timed loop; False if the kernel refuses. The loops are
    bounded and the kernel's RT throttling still leaves 5% of the CPU to others."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError:
        return False
    return True


def _ifreq(name: str, data: bytes = b"") -> bytes:
    return struct.pack("16s24s", name.encode(), data)


def _sockaddr_in(addr: str) -> bytes:
    return struct.pack("=HH4s8x", socket.AF_INET, 0, socket.inet_aton(addr))


def set_up(name: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        res = fcntl.ioctl(s, SIOCGIFFLAGS, _ifreq(name))
        (flags,) = struct.unpack_from("=H", res, 16)
        fcntl.ioctl(s, SIOCSIFFLAGS, _ifreq(name, struct.pack("=H", flags | IFF_UP)))


def configure(name: str, addr: str, netmask: str, txqueuelen: int) -> None:
    """Address, netmask, queue length and up, through plain ioctls (no ``ip`` needed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s, SIOCSIFADDR, _ifreq(name, _sockaddr_in(addr)))
        fcntl.ioctl(s, SIOCSIFNETMASK, _ifreq(name, _sockaddr_in(netmask)))
        fcntl.ioctl(s, SIOCSIFTXQLEN, _ifreq(name, struct.pack("=i", txqueuelen)))
    set_up(name)


def dev_counters(name: str) -> dict[str, int]:
    """The interface's counters from /proc/self/net/dev (always this namespace's view)."""
    with open("/proc/self/net/dev") as f:
        for line in f:
            if ":" not in line:
                continue
            ifname, rest = line.split(":", 1)
            if ifname.strip() == name:
                v = [int(x) for x in rest.split()]
                return {
                    "rx_packets": v[1], "rx_dropped": v[3],
                    "tx_packets": v[9], "tx_dropped": v[11],
                }
    raise BenchError(f"interface {name!r} not found in /proc/self/net/dev")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def udp4_packet(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """A complete IPv4/UDP packet (UDP checksum 0, which IPv4 allows)."""
    total = 28 + len(payload)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, socket.IPPROTO_UDP, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    hdr = hdr[:10] + struct.pack("!H", _checksum(hdr)) + hdr[12:]
    return hdr + struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


class CFloor:
    """The compiled C floor: the ``cfloor`` program and ``libcfloor.so``."""

    def __init__(self, exe: str, lib: str) -> None:
        self.exe = exe
        self.lib = ctypes.CDLL(lib, use_errno=True)  # CDLL releases the GIL in calls
        self.lib.cfloor_run.argtypes = (
            ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_size_t,
            ctypes.POINTER(ctypes.c_longlong), ctypes.POINTER(ctypes.c_longlong))
        self.lib.cfloor_run.restype = ctypes.c_int
        self.lib.cfloor_buffer.restype = ctypes.c_void_p
        self.lib.cfloor_buffer.argtypes = ()

    def run(self, fd: int, packet: bytes | None, k: int, size: int) -> int:
        """Run the C loop in this process; ``packet`` None reads, else writes it."""
        if packet is not None:
            ctypes.memmove(self.lib.cfloor_buffer(), packet, len(packet))
            size = len(packet)
        ns, nbytes = ctypes.c_longlong(), ctypes.c_longlong()
        if self.lib.cfloor_run(fd, packet is not None, k, size, ctypes.byref(ns),
                               ctypes.byref(nbytes)) < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"C floor: {os.strerror(err)}")
        return ns.value


def compile_cfloor(source: str, outdir: str) -> CFloor | None:
    """Compile the C floor with ``cc -O2`` (program and shared library) into ``outdir``.

    Returns None when there is no C compiler; raises BenchError when compiling fails.
    """
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None
    os.makedirs(outdir, exist_ok=True)
    src = os.path.join(outdir, "cfloor.c")
    exe = os.path.join(outdir, "cfloor")
    lib = os.path.join(outdir, "libcfloor.so")
    fresh = False
    if os.path.exists(exe) and os.path.exists(lib) and os.path.exists(src):
        with open(src) as f:
            fresh = f.read() == source
    if not fresh:
        with open(src, "w") as f:
            f.write(source)
        for argv in ([cc, "-O2", "-o", exe, src],
                     [cc, "-O2", "-shared", "-fPIC", "-o", lib, src]):
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
            if proc.returncode != 0:
                raise BenchError(f"compiling the C floor failed: {' '.join(argv)}\n"
                                 f"{proc.stderr}")
    return CFloor(exe, lib)


def open_plain_tun(name: str) -> int:
    """os.open + TUNSETIFF(IFF_TUN | IFF_NO_PI): the minimal device for the floor."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI))
    except BaseException:
        os.close(fd)
        raise
    return fd


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
    """Call ``fn(batch)`` until it has handled ``k`` packets (read_batch/write_batch)."""
    n = 0
    t0 = time.perf_counter_ns()
    while n < k:
        n += fn(batch)
    return time.perf_counter_ns() - t0


# --------------------------------------------------------------------------- methods
class Method:
    """One way of reading or writing packets.

    Subclasses (or the ``opener`` / ``runner`` callables) create a device with the given
    interface name in ``open`` and move ``k`` packets in ``run``, returning elapsed ns.
    A method whose library is not available has ``missing`` set to the reason.
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


class _FdDev:
    """A bare fd with close() and fileno(), for the floor and the inline ctypes version."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _CFloorDev:
    """A device fd plus a ``cfloor serve`` process that runs the C loops on it.

    The C process stays up for the whole benchmark, so it is as warm as the Python
    process it is compared with; it inherits the CPU pinning.
    """

    def __init__(self, exe: str, ifname: str) -> None:
        self.fd = open_plain_tun(ifname)
        self.proc = subprocess.Popen([exe, "serve", str(self.fd)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     pass_fds=(self.fd,))

    def fileno(self) -> int:
        return self.fd

    def run(self, command: bytes) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command)
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(5)
            assert self.proc.stderr is not None
            why = self.proc.stderr.read().decode(errors="replace").strip()
            raise RuntimeError(f"C floor exited with {self.proc.returncode}: {why}")
        return int(line.split()[0])

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # our own child, by its Popen handle
                self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr, self.proc.stdin):
            if f is not None and not f.closed:
                f.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


FLOOR_READ = "C read()"
FLOOR_WRITE = "C write()"


def cfloor_methods(floor: CFloor | None, own_process: bool = False) -> list[Method]:
    """The C reference loops (reported as missing without a compiler).

    ``C read()`` / ``C write()`` run in this process through ctypes (one call per run);
    with ``own_process`` the same loops also run in a separate ``cfloor serve`` process.
    """
    if floor is None:
        why = "no C compiler (cc) found"
        return [Method(FLOOR_READ, "read", missing=why), Method(FLOOR_WRITE, "write", missing=why)]

    def opener(ifname: str) -> _FdDev:
        return _FdDev(open_plain_tun(ifname))

    def run_read(dev: _FdDev, k: int, packet: bytes) -> int:
        return floor.run(dev.fd, None, k, READ_BUFSIZE)

    def run_write(dev: _FdDev, k: int, packet: bytes) -> int:
        return floor.run(dev.fd, packet, k, len(packet))

    methods = [Method(FLOOR_READ, "read", opener, run_read),
               Method(FLOOR_WRITE, "write", opener, run_write)]
    if own_process:
        def proc_opener(ifname: str) -> _CFloorDev:
            return _CFloorDev(floor.exe, ifname)

        def proc_read(dev: _CFloorDev, k: int, packet: bytes) -> int:
            return dev.run(b"r %d %d\n" % (k, READ_BUFSIZE))

        def proc_write(dev: _CFloorDev, k: int, packet: bytes) -> int:
            return dev.run(b"w %d %d\n" % (k, len(packet)) + packet)

        methods[1:1] = [Method(FLOOR_READ + " [own process]", "read", proc_opener, proc_read)]
        methods.append(Method(FLOOR_WRITE + " [own process]", "write", proc_opener, proc_write))
    return methods


def inline_ctypes_methods() -> list[Method]:
    """The pure-Python version most users write: os.open + fcntl.ioctl, os.read/os.write."""

    def opener(ifname: str) -> _FdDev:
        return _FdDev(open_plain_tun(ifname))

    def run_read(dev: _FdDev, k: int, packet: bytes) -> int:
        return loop2(os.read, dev.fd, READ_BUFSIZE, k)

    def run_write(dev: _FdDev, k: int, packet: bytes) -> int:
        return loop2(os.write, dev.fd, packet, k)

    return [
        Method("ctypes os.read", "read", opener, run_read),
        Method("ctypes os.write", "write", opener, run_write),
    ]


def tuntap_methods() -> list[Method]:
    """tuntap's per-packet and (when built) batched methods."""
    try:
        import tuntap

        tuntap.Device  # noqa: B018 - a source tree without the built extension fails here
    except Exception as exc:  # noqa: BLE001 - reported, not hidden
        why = f"tuntap is not usable here: {type(exc).__name__}: {exc}"
        return [Method(n, k, missing=why) for n, k in (
            ("tuntap readinto", "read"), ("tuntap read_batch", "read"),
            ("tuntap write", "write"), ("tuntap write_batch", "write"))]

    def opener(ifname: str) -> Any:
        return tuntap.Device(ifname)

    def run_readinto(dev: Any, k: int, packet: bytes) -> int:
        return loop1(dev.readinto, bytearray(READ_BUFSIZE), k)

    def run_write(dev: Any, k: int, packet: bytes) -> int:
        return loop1(dev.write, packet, k)

    methods = [Method("tuntap readinto", "read", opener, run_readinto)]
    batches: dict[int, Any] = {}
    has_batch = hasattr(tuntap.Device, "read_batch") and hasattr(tuntap, "PacketBatch")
    if has_batch:
        def run_read_batch(dev: Any, k: int, packet: bytes) -> int:
            # One batch per device, reused like real code does: a fresh arena would put
            # its first-touch page faults inside the timed loop.
            batch = batches.get(id(dev))
            if batch is None:
                batch = batches[id(dev)] = tuntap.PacketBatch(BATCH, READ_BUFSIZE)
                memoryview(batch).cast("B")[:] = bytes(BATCH * READ_BUFSIZE)
            return loop_batch(dev.read_batch, batch, k)

        methods.append(Method(f"tuntap read_batch({BATCH})", "read", opener, run_read_batch))
    else:
        methods.append(Method(f"tuntap read_batch({BATCH})", "read",
                              missing="this tuntap build has no read_batch"))
    methods.append(Method("tuntap write", "write", opener, run_write))
    if has_batch:
        def run_write_batch(dev: Any, k: int, packet: bytes) -> int:
            batch = tuntap.PacketBatch(BATCH, READ_BUFSIZE)
            for _ in range(min(BATCH, k)):
                batch.append(packet)
            return loop_batch(dev.write_batch, batch, k)

        methods.append(Method(f"tuntap write_batch({BATCH})", "write", opener, run_write_batch))
    else:
        methods.append(Method(f"tuntap write_batch({BATCH})", "write",
                              missing="this tuntap build has no write_batch"))
    return methods


# --------------------------------------------------------------------------- the runner
class Result:
    """All rounds of one method at one (kind, K, payload) point."""

    def __init__(self, method: str, kind: str, k: int, payload: int) -> None:
        self.method = method
        self.kind = kind
        self.k = k
        self.payload = payload
        self.per_packet: list[float] = []
        self.by_round: dict[int, float] = {}
        self.missing: str | None = None
        self.error: str | None = None
        self.ratio: float | None = None  # median of the per-round ratios to the floor
        self.ratio_of_medians: float | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.per_packet)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"bench": self.kind, "method": self.method, "K": self.k,
                             "payload": self.payload}
        if self.missing:
            d["missing"] = self.missing
        elif self.error:
            d["error"] = self.error
        elif self.per_packet:
            d.update(
                median_ns=round(self.median, 1),
                min_ns=round(min(self.per_packet), 1),
                max_ns=round(max(self.per_packet), 1),
                rounds=len(self.per_packet),
                ratio_to_c=None if self.ratio is None else round(self.ratio, 3),
                ratio_of_medians=(None if self.ratio_of_medians is None
                                  else round(self.ratio_of_medians, 3)),
            )
        return d


class _Alarm(Exception):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Alarm()


def _queue_empty(fd: int) -> bool:
    p = select.poll()
    p.register(fd, select.POLLIN)
    return not p.poll(0)


def _drain_sink(sink: socket.socket) -> int:
    buf = bytearray(4096)
    n = 0
    while True:
        try:
            sink.recv_into(buf)
        except BlockingIOError:
            return n
        n += 1


class Progress:
    """A one-line progress bar on a stream (stderr), redrawn in place."""

    def __init__(self, total: int, stream: TextIO | None, width: int = 30) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream
        self.width = width

    def step(self, label: str) -> None:
        self.done += 1
        if self.stream is None:
            return
        filled = self.width * self.done // self.total
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r[{bar}] {self.done}/{self.total} {label[:40]:<40}")
        self.stream.flush()

    def finish(self) -> None:
        if self.stream is not None:
            self.stream.write("\n")
            self.stream.flush()


def run_bench(
    methods: Sequence[Method],
    ks: Sequence[int],
    payloads: Sequence[int],
    rounds: int,
    *,
    warmup: int = 1,
    progress: TextIO | None = None,
    emit: Callable[[dict[str, Any]], None] | None = None,
) -> list[Result]:
    """Run every available method at every (K, payload); return one Result per point.

    Must be called inside a private network namespace (``enter_private_netns``): it
    creates interfaces ``tb0``, ``tb1``, ... with addresses 10.201.<i>.1/24.
    """
    if not (len(methods) < 250 and max(ks) <= 1 << 20 and rounds >= 1):
        raise ValueError("too many methods, K too large or rounds < 1")
    results: dict[tuple[str, str, int, int], Result] = {}
    live: list[tuple[int, Method]] = []
    txqlen = max(ks) + 256
    for i, m in enumerate(methods):
        for k in ks:
            for p in payloads:
                results[(m.kind, m.name, k, p)] = r = Result(m.name, m.kind, k, p)
                r.missing = m.missing
        if m.missing:
            continue
        try:
            m.open(f"tb{i}")
            configure(m.ifname, f"10.201.{i}.1", "255.255.255.0", txqlen)
        except Exception as exc:  # noqa: BLE001 - a peer that cannot run is reported
            m.close()
            m.missing = f"cannot open device: {type(exc).__name__}: {exc}"
            for k in ks:
                for p in payloads:
                    results[(m.kind, m.name, k, p)].missing = m.missing
            continue
        live.append((i, m))

    fill = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sink.setsockopt(socket.SOL_SOCKET, 33, 256 << 20)  # SO_RCVBUFFORCE
    except OSError:
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 20)
    sink.bind(("0.0.0.0", SINK_PORT))
    sink.setblocking(False)
    old_alarm = signal.signal(signal.SIGALRM, _on_alarm)
    gc_was_enabled = gc.isenabled()
    total = len(live) * len(ks) * len(payloads) * (rounds + warmup)
    bar = Progress(total, progress)
    try:
        for k in ks:
            for p in payloads:
                payload = bytes(range(256)) * (p // 256) + bytes(range(p % 256))
                for rnd in range(warmup + rounds):
                    # Rotate the order each round so no method always runs first/last.
                    order = live[rnd % len(live):] + live[:rnd % len(live)] if live else []
                    for i, m in order:
                        r = results[(m.kind, m.name, k, p)]
                        bar.step(f"{m.kind} K={k} {p}B {m.name}")
                        if r.error:
                            continue
                        try:
                            ns = _one_run(m, i, k, payload, fill, sink)
                        except Exception as exc:  # noqa: BLE001 - reported per method
                            r.error = f"{type(exc).__name__}: {exc}"
                            continue
                        if rnd >= warmup:
                            r.per_packet.append(ns / k)
                            r.by_round[rnd] = ns / k
        bar.finish()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_alarm)
        if gc_was_enabled:
            gc.enable()
        fill.close()
        sink.close()
        for _, m in live:
            m.close()

    out = list(results.values())
    floors = {(r.kind, r.k, r.payload): r for r in out
              if r.method in (FLOOR_READ, FLOOR_WRITE) and r.per_packet}
    for r in out:
        floor = floors.get((r.kind, r.k, r.payload))
        if r.per_packet and floor is not None:
            r.ratio_of_medians = r.median / floor.median
            pairs = [t / floor.by_round[j] for j, t in r.by_round.items() if j in floor.by_round]
            r.ratio = statistics.median(pairs) if pairs else r.ratio_of_medians
        if emit is not None:
            emit(r.to_json())
    return out


def _one_run(m: Method, i: int, k: int, payload: bytes, fill: socket.socket,
             sink: socket.socket) -> int:
    ifname = m.ifname
    local, peer = f"10.201.{i}.1", f"10.201.{i}.2"
    fd = m.fileno()
    if not _queue_empty(fd):
        raise RuntimeError("device queue not empty before the run")
    before = dev_counters(ifname)
    if m.kind == "read":
        sendto = fill.sendto
        dst = (peer, FILL_PORT)
        for _ in repeat(None, k):
            sendto(payload, dst)
        mid = dev_counters(ifname)
        if mid["tx_dropped"] != before["tx_dropped"]:
            raise RuntimeError(f"{mid['tx_dropped'] - before['tx_dropped']} packets dropped "
                               "while filling the queue (txqueuelen too small?)")
        packet = b""
    else:
        packet = udp4_packet(peer, local, 4000, SINK_PORT, payload)
        if _drain_sink(sink):
            raise RuntimeError("sink not empty before the run")
    gc.collect()
    gc.disable()
    signal.setitimer(signal.ITIMER_REAL, DEADLINE_S)
    try:
        ns = m.run(k, packet)
    except _Alarm:
        raise TimeoutError(f"no result after {DEADLINE_S:.0f} s") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        gc.enable()
    after = dev_counters(ifname)
    if m.kind == "read":
        got = after["tx_packets"] - before["tx_packets"]
        if got != k or not _queue_empty(fd):
            raise RuntimeError(f"read {got} packets of {k}, or the queue was not empty after")
    else:
        got = _drain_sink(sink)
        if got != k:
            raise RuntimeError(f"the sink received {got} packets of {k} written")
    return ns


# --------------------------------------------------------------------------- output
def format_table(results: Iterable[Result], kind: str) -> str:
    """A markdown table: one row per method, one column per (K, payload)."""
    rs = [r for r in results if r.kind == kind]
    points = sorted({(r.k, r.payload) for r in rs})
    names: list[str] = []
    for r in rs:
        if r.method not in names:
            names.append(r.method)
    by = {(r.method, r.k, r.payload): r for r in rs}
    head = f"| {kind}: median ns/packet (x C floor) | " + " | ".join(
        f"K={k} {p}B" for k, p in points) + " |"
    lines = [head, "|---|" + "---:|" * len(points)]
    for name in names:
        cells = []
        for k, p in points:
            r = by[(name, k, p)]
            if r.missing:
                cells.append("missing")
            elif r.error:
                cells.append("error")
            elif r.per_packet:
                ratio = f" ({r.ratio:.2f}x)" if r.ratio is not None else ""
                cells.append(f"{r.median:,.0f}{ratio}")
            else:
                cells.append("-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    notes = sorted({f"{r.method}: {r.missing or r.error}" for r in rs if r.missing or r.error})
    if notes:
        lines.append("")
        lines += [f"- {n}" for n in notes]
    return "\n".join(lines)


# --------------------------------------------------------------------------- CLI
def main(
    packets: int = 1024,
    payload: int = 64,
    rounds: int = 5,
    *,
    quick: bool = False,
    as_json: bool = False,
    cpu: int | None = None,
    realtime: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``python -m tuntap bench``: tuntap vs the inline ctypes version vs the C floor.

    Returns the process exit status: 0 on success, 1 when the environment cannot run the
    benchmark (message on ``err``), 3 when a method failed while running.
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    if quick:
        packets, rounds = min(packets, 256), min(rounds, 3)
    if packets < 1 or rounds < 1 or not 0 <= payload <= 1400:
        err.write("tuntap bench: need packets >= 1, rounds >= 1, 0 <= payload <= 1400\n")
        return 2
    try:
        check_tun()
        enter_private_netns()
    except BenchError as exc:
        err.write(f"tuntap bench: {exc}\n")
        return 1
    cpu = pin_cpu(cpu)
    if realtime and not set_realtime():
        err.write("tuntap bench: SCHED_FIFO refused, running as a normal process\n")
        realtime = False
    tmp = tempfile.mkdtemp(prefix="tuntap-bench-")
    try:
        try:
            floor = compile_cfloor(CFLOOR_SOURCE, tmp)
        except (BenchError, OSError, subprocess.SubprocessError) as exc:
            err.write(f"tuntap bench: C floor unavailable: {exc}\n")
            floor = None
        c_read, c_write = cfloor_methods(floor)
        c_read_, c_write_ = inline_ctypes_methods()
        tt = tuntap_methods()
        methods = [c_read, *[m for m in tt if m.kind == "read"], c_read_,
                   c_write, *[m for m in tt if m.kind == "write"], c_write_]
        err.write(f"tuntap bench: K={packets} packets, {payload}-byte UDP payload, "
                  f"{rounds} rounds, CPU {cpu}{' (SCHED_FIFO)' if realtime else ''}, "
                  "private network namespace\n")

        def emit(d: dict[str, Any]) -> None:
            if as_json:
                out.write(json.dumps(d) + "\n")

        results = run_bench(methods, [packets], [payload], rounds, progress=err, emit=emit)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not as_json:
        out.write(format_table(results, "read") + "\n\n" + format_table(results, "write") + "\n")
    failed = [r for r in results if r.error]
    return 3 if failed else 0

