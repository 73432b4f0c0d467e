"""Where the benchmark runs: a private network namespace, one pinned CPU, TUN devices.

Everything here talks to the kernel directly (``unshare``, ``sched_setaffinity``, plain
interface ioctls), so the benchmark needs neither ``ip`` nor any other tool, and it never
touches an interface outside the namespace it creates for itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import os
import socket
import struct

__all__ = [
    "BenchError",
    "allowed_cpus",
    "check_cpu",
    "check_tun",
    "configure",
    "dev_counters",
    "enter_private_netns",
    "format_cpus",
    "open_plain_tun",
    "pin_cpu",
    "set_realtime",
    "set_up",
]

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


class BenchError(Exception):
    """The environment cannot run the benchmark (not root, no TUN, ...)."""


# --------------------------------------------------------------------------- namespace
def enter_private_netns() -> None:
    """Move this process into a new, empty network namespace (gone when it exits).

    Brings ``lo`` up and turns IPv6 off for new interfaces, so that no router
    solicitation or MLD report lands in a device queue and spoils the count.

    Raises
    ------
    BenchError
        Not privileged enough, or the kernel has no network namespaces.
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
    """Raise BenchError unless TUN devices can be opened here."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        raise BenchError(f"no TUN support: {path} is missing (modprobe tun)") from None
    except PermissionError as exc:
        raise BenchError(f"needs root to open {path}: {exc}") from None
    os.close(fd)


# --------------------------------------------------------------------------- CPU
def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity mask), sorted."""
    return sorted(os.sched_getaffinity(0))


def format_cpus(cpus: list[int]) -> str:
    """``[0, 1, 2, 5]`` as ``"0-2, 5"`` (the notation of ``taskset -c``)."""
    runs: list[str] = []
    i = 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        runs.append(str(cpus[i]) if i == j else f"{cpus[i]}-{cpus[j]}")
        i = j + 1
    return ", ".join(runs)


def check_cpu(cpu: int) -> None:
    """Raise ValueError, naming the allowed CPUs, unless this process may run on ``cpu``."""
    allowed = allowed_cpus()
    if cpu not in allowed:
        raise ValueError(f"CPU {cpu} is not available to this process; "
                         f"allowed CPUs: {format_cpus(allowed)}")


def pin_cpu(cpu: int | None = None) -> int:
    """Pin this process (and so its children) to one CPU; return its number.

    Parameters
    ----------
    cpu
        The CPU; None picks the last one this process may run on.

    Raises
    ------
    ValueError
        ``cpu`` is not in this process's affinity mask (the message lists the allowed ones).
    """
    if cpu is None:
        cpu = allowed_cpus()[-1]
    check_cpu(cpu)
    os.sched_setaffinity(0, {cpu})
    return cpu


def set_realtime(priority: int = 1) -> bool:
    """Run this process (and the C floor it starts) as SCHED_FIFO; False if refused.

    Other busy processes then cannot preempt a timed loop. The loops are bounded and the
    kernel's RT throttling still leaves 5% of the CPU to others.
    """
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------- devices
def _ifreq(name: str, data: bytes = b"") -> bytes:
    return struct.pack("16s24s", name.encode(), data)


def _sockaddr_in(addr: str) -> bytes:
    return struct.pack("=HH4s8x", socket.AF_INET, 0, socket.inet_aton(addr))


def set_up(name: str) -> None:
    """Set IFF_UP on interface ``name`` (SIOCGIFFLAGS / SIOCSIFFLAGS)."""
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


def open_plain_tun(name: str) -> int:
    """os.open + TUNSETIFF(IFF_TUN | IFF_NO_PI): the minimal device for the floor."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI))
    except BaseException:
        os.close(fd)
        raise
    return fd
