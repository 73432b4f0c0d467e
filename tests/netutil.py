"""Small helpers shared by the tests: kernel constants, packet builders/parsers,
namespaces, ``ip`` queries.

Packets are built and parsed with plain ``struct``/``socket``; the one thing taken from the
library is ``tuntap.checksum`` (the RFC 1071 checksum, itself checked against RFC 1071's
worked example and scapy in test_checksum.py). Kernel ABI values are written out here,
from the kernel headers, so no test takes them from the library it checks.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import hashlib
import ipaddress
import itertools
import json
import os
import secrets
import select
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from tuntap import checksum

CLONE_NEWNET = 0x40000000  # <linux/sched.h>

# <linux/if_tun.h>: ioctls, TUNSETIFF flags, TUNSETOFFLOAD bits
TUN_PATH = "/dev/net/tun"
TUNSETIFF = 0x400454CA  # _IOW('T', 202, int)
TUNGETIFF = 0x800454D2  # _IOR('T', 210, unsigned int)
TUNGETFEATURES = 0x800454CF  # _IOR('T', 207, unsigned int)
IFF_TUN = 0x0001
IFF_TAP = 0x0002
IFF_NAPI = 0x0010
IFF_NAPI_FRAGS = 0x0020
IFF_NO_CARRIER = 0x0040
IFF_MULTI_QUEUE = 0x0100
IFF_PERSIST = 0x0800
IFF_NO_PI = 0x1000
IFF_NOFILTER = 0x1000  # the same bit as IFF_NO_PI: see docs/kernel.md
IFF_ONE_QUEUE = 0x2000
IFF_VNET_HDR = 0x4000
IFF_TUN_EXCL = 0x8000
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08
TUN_F_UFO = 0x10
TUN_F_USO4 = 0x20
TUN_F_USO6 = 0x40
PI_SIZE = 4  # struct tun_pi: __u16 flags (host order), __be16 proto
TUN_PKT_STRIP = 0x0001  # tun_pi.flags: the packet did not fit the read buffer
IFREQ = struct.Struct("16sH22x")  # struct ifreq: ifr_name, ifr_flags, padding

ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_P_IPV6 = 0x86DD
IPPROTO_ICMP = 1
IPPROTO_TCP = 6
IPPROTO_UDP = 17

NOBODY = 65534  # uid and gid of nobody/nogroup: an owner that is not root

# The ValueError of any call on a closed device.
CLOSED_MSG = "I/O operation on closed device"

# Wait bound for anything that should happen "now" (a packet in flight, a thread waking).
WAIT = 2.0

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


# --------------------------------------------------------------------------------------
# Namespaces
# --------------------------------------------------------------------------------------


def unshare_net() -> None:
    """Move the calling thread into a fresh network namespace."""
    if hasattr(os, "unshare"):
        os.unshare(CLONE_NEWNET)
        return
    if _libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), "unshare(CLONE_NEWNET)")


def setns_net(fd: int) -> None:
    """Move the calling thread into the network namespace behind ``fd``."""
    if hasattr(os, "setns"):
        os.setns(fd, CLONE_NEWNET)
        return
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), "setns(CLONE_NEWNET)")


def current_netns() -> str:
    """Identity of the calling thread's network namespace, e.g. ``net:[4026531840]``."""
    return os.readlink("/proc/thread-self/ns/net")


@contextlib.contextmanager
def in_netns(path: str) -> Iterator[None]:
    """Run the body (this thread, and subprocesses it starts) inside another namespace."""
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns_net(target)
        try:
            yield
        finally:
            setns_net(back)
    finally:
        os.close(target)
        os.close(back)


def tcp_transfer(family: int, server_addr: str, server_netns: str, data: bytes,
                 timeout: float = 30.0) -> dict[str, Any]:
    """Send ``data`` over one TCP connection from here to a server listening on
    ``server_addr`` inside ``server_netns`` (a path); return what the server received:
    ``{"n": bytes, "sha": sha256 hex}``. Every step is bounded by ``timeout``."""
    with in_netns(server_netns):
        srv = socket.socket(family, socket.SOCK_STREAM)
    got: dict[str, Any] = {}
    with srv:
        srv.bind((server_addr, 0))
        srv.listen(1)
        srv.settimeout(timeout)

        def receive() -> None:
            conn, _ = srv.accept()
            h, n = hashlib.sha256(), 0
            with conn:
                conn.settimeout(timeout)
                while chunk := conn.recv(1 << 20):
                    h.update(chunk)
                    n += len(chunk)
            got["sha"], got["n"] = h.hexdigest(), n

        rt = threading.Thread(target=receive)
        rt.start()
        with socket.socket(family, socket.SOCK_STREAM) as cli:
            cli.settimeout(timeout)
            cli.connect((server_addr, srv.getsockname()[1]))
            cli.sendall(data)
            cli.shutdown(socket.SHUT_WR)
            rt.join(2 * timeout)
            assert not rt.is_alive(), "receiver did not finish"
    return got


# --------------------------------------------------------------------------------------
# Names and addresses
# --------------------------------------------------------------------------------------

_names = itertools.count()
_nets = itertools.count(1)


def unique_name(prefix: str = "tt") -> str:
    """A fresh interface name (<= 15 bytes) unlikely to collide with anything."""
    return f"{prefix}{os.getpid() % 10000}x{next(_names)}{secrets.token_hex(1)}"[:15]


class Net(NamedTuple):
    """A /24 for one test: ``local`` goes on the device, ``remote`` is routed through it."""

    local: str
    remote: str
    other: str
    prefix: int = 24

    @property
    def cidr(self) -> str:
        return f"{self.local}/{self.prefix}"


def unique_net() -> Net:
    n = next(_nets)
    base = f"10.{100 + n // 250}.{n % 250}"
    return Net(f"{base}.1", f"{base}.2", f"{base}.3")


def unique_net6() -> tuple[str, str]:
    n = next(_nets)
    return f"fd00:77:{n:x}::1", f"fd00:77:{n:x}::2"


# --------------------------------------------------------------------------------------
# ip(8)
# --------------------------------------------------------------------------------------


def ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["ip"]
    if netns is not None:
        cmd += ["-n", netns]
    cmd += list(args)
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=10)


def link_json(name: str, netns: str | None = None) -> dict[str, Any] | None:
    """``ip -j -d link show dev NAME`` as a dict, or None if there is no such link."""
    r = ip("-j", "-d", "link", "show", "dev", name, netns=netns, check=False)
    if r.returncode != 0:
        return None
    data = json.loads(r.stdout)
    return data[0] if data else None


def addr_json(name: str, netns: str | None = None) -> list[dict[str, Any]]:
    """The ``addr_info`` list of ``ip -j addr show dev NAME``."""
    r = ip("-j", "addr", "show", "dev", name, netns=netns)
    data = json.loads(r.stdout)
    return data[0].get("addr_info", []) if data else []


def link_exists(name: str, netns: str | None = None) -> bool:
    return link_json(name, netns) is not None


def wait_ipv6_routes(name: str, local: str, dest: str, timeout: float = WAIT,
                     netns: str | None = None) -> None:
    """Wait (bounded) for the routes of a new IPv6 address on ``name``: the local route of
    ``local`` and the route to ``dest`` (the peer, or the prefix such as ``fd00::/64``).
    The kernel installs them from its address work item after ``ip addr add`` (or
    RTM_NEWADDR) has returned, even with ``nodad``; a packet sent or written before that
    is dropped."""
    deadline = time.monotonic() + timeout
    for _ in range(10000):
        have_local = ip("-6", "route", "show", "table", "local", local, "dev", name,
                        netns=netns, check=False).stdout.strip()
        have_dest = ip("-6", "route", "show", dest, "dev", name, netns=netns,
                       check=False).stdout.strip()
        if have_local and have_dest:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    raise AssertionError(f"no IPv6 routes for {local} / {dest} on {name} within {timeout} s")


# --------------------------------------------------------------------------------------
# Checksums and packets
# --------------------------------------------------------------------------------------


def build_ipv4(src: str, dst: str, proto: int, payload: bytes, *, ttl: int = 64,
               ident: int = 0x1234) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), ident, 0x4000, ttl,
                      proto, 0, socket.inet_aton(src), socket.inet_aton(dst))
    csum = checksum(hdr)
    return hdr[:10] + struct.pack("!H", csum) + hdr[12:] + payload


def build_udp4(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    """A complete IPv4 packet carrying one UDP datagram with a correct UDP checksum."""
    length = 8 + len(payload)
    udp = struct.pack("!HHHH", sport, dport, length, 0) + payload
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0,
                                                                         IPPROTO_UDP, length)
    csum = checksum(pseudo + udp) or 0xFFFF
    udp = udp[:6] + struct.pack("!H", csum) + udp[8:]
    return build_ipv4(src, dst, IPPROTO_UDP, udp)


class IPv4(NamedTuple):
    version: int
    ihl: int
    total_length: int
    ttl: int
    proto: int
    header_ok: bool
    src: str
    dst: str
    payload: bytes


def parse_ipv4(pkt: bytes) -> IPv4:
    if len(pkt) < 20:
        raise ValueError(f"short IPv4 packet: {len(pkt)} bytes")
    vihl, _tos, total, _id, _frag, ttl, proto, _csum, src, dst = struct.unpack(
        "!BBHHHBBH4s4s", pkt[:20])
    ihl = (vihl & 0xF) * 4
    return IPv4(vihl >> 4, ihl, total, ttl, proto, checksum(pkt[:ihl]) == 0,
                socket.inet_ntoa(src), socket.inet_ntoa(dst), pkt[ihl:total])


class UDP(NamedTuple):
    sport: int
    dport: int
    length: int
    checksum_ok: bool
    payload: bytes


def parse_udp4(pkt: bytes) -> tuple[IPv4, UDP]:
    """Parse an IPv4/UDP packet; checks the UDP checksum when it is not zero."""
    ip4 = parse_ipv4(pkt)
    if ip4.proto != IPPROTO_UDP:
        raise ValueError(f"not UDP: proto {ip4.proto}")
    seg = ip4.payload
    sport, dport, length, csum = struct.unpack("!HHHH", seg[:8])
    ok = True
    if csum:
        pseudo = socket.inet_aton(ip4.src) + socket.inet_aton(ip4.dst) + struct.pack(
            "!BBH", 0, IPPROTO_UDP, length)
        ok = checksum(pseudo + seg[:length]) == 0
    return ip4, UDP(sport, dport, length, ok, seg[8:length])


def is_udp4_to(pkt: bytes, dst: str, dport: int) -> bool:
    if len(pkt) < 28 or pkt[0] >> 4 != 4 or pkt[9] != IPPROTO_UDP:
        return False
    ihl = (pkt[0] & 0xF) * 4
    return (socket.inet_ntoa(pkt[16:20]) == dst
            and struct.unpack("!H", pkt[ihl + 2:ihl + 4])[0] == dport)


def icmp_echo_reply_for(pkt: bytes) -> bytes | None:
    """Given an IPv4 ICMP echo request, build the matching echo reply (else None)."""
    if len(pkt) < 28 or pkt[0] >> 4 != 4:
        return None
    ip4 = parse_ipv4(pkt)
    if ip4.proto != IPPROTO_ICMP or not ip4.payload or ip4.payload[0] != 8:
        return None
    icmp = bytearray(ip4.payload)
    icmp[0] = 0  # echo reply, same id/seq/data
    icmp[2:4] = b"\0\0"
    icmp[2:4] = struct.pack("!H", checksum(bytes(icmp)))
    return build_ipv4(ip4.dst, ip4.src, IPPROTO_ICMP, bytes(icmp))


# Ethernet / ARP ------------------------------------------------------------------------


def mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def build_eth(dst: bytes, src: bytes, ethertype: int, payload: bytes) -> bytes:
    return dst + src + struct.pack("!H", ethertype) + payload


def arp_reply_for(frame: bytes, answer_ip: str, answer_mac: bytes) -> bytes | None:
    """Given an Ethernet ARP request for ``answer_ip``, build the reply frame (else None)."""
    if len(frame) < 42 or struct.unpack("!H", frame[12:14])[0] != ETH_P_ARP:
        return None
    htype, ptype, hlen, plen, op = struct.unpack("!HHBBH", frame[14:22])
    if (htype, ptype, hlen, plen, op) != (1, ETH_P_IP, 6, 4, 1):
        return None
    sha, spa, _tha, tpa = frame[22:28], frame[28:32], frame[32:38], frame[38:42]
    if tpa != socket.inet_aton(answer_ip):
        return None
    arp = struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, 2) + answer_mac + tpa + sha + spa
    return build_eth(sha, answer_mac, ETH_P_ARP, arp)


def eth_icmp_echo_reply_for(frame: bytes, my_mac: bytes) -> bytes | None:
    if len(frame) < 14 or struct.unpack("!H", frame[12:14])[0] != ETH_P_IP:
        return None
    reply = icmp_echo_reply_for(frame[14:])
    if reply is None:
        return None
    return build_eth(frame[6:12], my_mac, ETH_P_IP, reply)


# --------------------------------------------------------------------------------------
# Reading with a bound
# --------------------------------------------------------------------------------------


def poll_events(fd: int, timeout: float = 0.0) -> int:
    """The events ``poll(2)`` reports for ``fd`` (POLLIN|POLLOUT asked; POLLERR, POLLHUP
    always), waiting up to ``timeout`` seconds for one; 0 if none."""
    p = select.poll()
    p.register(fd, select.POLLIN | select.POLLOUT)
    got = p.poll(int(timeout * 1000))
    return got[0][1] if got else 0


def wait_readable(fd: int, timeout: float = WAIT) -> None:
    """Wait (bounded) until ``fd`` polls POLLIN, i.e. a packet is queued."""
    p = select.poll()
    p.register(fd, select.POLLIN)
    assert p.poll(int(timeout * 1000)), f"nothing queued within {timeout} s"


def libc_write(fd: int, data: bytes) -> int:
    """One write(2) straight through libc; raises OSError on failure."""
    n = _libc.write(fd, data, ctypes.c_size_t(len(data)))
    if n < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(n)


def libc_read(fd: int, size: int) -> bytes:
    """One read(2) of ``size`` bytes straight through libc (no shortcut for size 0)."""
    buf = ctypes.create_string_buffer(max(size, 1))
    n = _libc.read(fd, buf, ctypes.c_size_t(size))
    if n < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return buf.raw[:n]


def read_matching(dev: Any, pred: Callable[[bytes], bool], *, timeout: float = WAIT,
                  size: int = 65536) -> bytes:
    """Read packets from ``dev`` (blocking mode, any timeout) until ``pred`` accepts one.

    Unrelated packets (IPv6 housekeeping and the like) are skipped. Raises AssertionError
    when nothing matching arrives within ``timeout`` seconds.
    """
    old = dev.gettimeout()
    deadline = time.monotonic() + timeout
    buf = bytearray(size)
    try:
        for _ in range(10000):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            dev.settimeout(left)
            try:
                n = dev.readinto(buf)
            except TimeoutError:
                break
            pkt = bytes(buf[:n])
            if pred(pkt):
                return pkt
    finally:
        dev.settimeout(old)
    raise AssertionError(f"no matching packet within {timeout} s")


class Responder:
    """A thread that answers packets on a device: ``handler(pkt) -> reply | None``."""

    def __init__(self, dev: Any, handler: Callable[[bytes], bytes | None]) -> None:
        self.dev = dev
        self.handler = handler
        self.stop = threading.Event()
        self.answered = 0
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        buf = bytearray(65536)
        self.dev.settimeout(0.05)
        deadline = time.monotonic() + 30
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                try:
                    n = self.dev.readinto(buf)
                except TimeoutError:
                    continue
                reply = self.handler(bytes(buf[:n]))
                if reply is not None:
                    self.dev.write(reply)
                    self.answered += 1
        except BaseException as e:  # reported by the test
            self.errors.append(e)

    def __enter__(self) -> Responder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "responder thread did not stop"
        assert not self.errors, f"responder failed: {self.errors!r}"


def ping(addr: str, *, count: int = 2, wait: float = 2.0,
         deadline: int = 10) -> subprocess.CompletedProcess:
    """iputils ping, bounded: ``wait`` s per reply and a ``deadline`` overall."""
    fam = "-6" if ":" in addr else "-4"
    return subprocess.run(["ping", fam, "-n", "-c", str(count), "-i", "0.2", "-W", str(wait),
                           "-w", str(int(deadline)), addr],
                          capture_output=True, text=True, timeout=deadline + 5)


def udp_socket(family: int = socket.AF_INET) -> socket.socket:
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(WAIT)
    return s


def is_ipv6(addr: str) -> bool:
    return ipaddress.ip_address(addr).version == 6


# --------------------------------------------------------------------------------------
# Running programs without privileges
# --------------------------------------------------------------------------------------

PR_CAPBSET_DROP = 24


def drop_capabilities() -> None:
    """``preexec_fn``: empty the capability bounding set, so the program exec'd next has
    no capabilities at all, even as root (no CAP_NET_ADMIN, no CAP_SYS_ADMIN). File access
    is unchanged, so it still runs from a root-only venv."""
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != 22:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def run_unprivileged(argv: list[str], timeout: float = 60,
                     **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` with no capabilities (see :func:`drop_capabilities`), output captured."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=drop_capabilities, **kw)
