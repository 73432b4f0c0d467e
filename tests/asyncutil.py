"""Helpers for the async tests: event loops to run on, a slow egress that makes TUN
writes push back, sequence-numbered UDP traffic."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import subprocess
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from netutil import build_udp4, ip, parse_udp4, unique_name

T = TypeVar("T")

try:
    import uvloop
except ImportError as exc:  # pragma: no cover - CI installs it (tools/requirements-*.txt)
    uvloop = None
    UVLOOP_MISSING = f"uvloop is not installed for this interpreter ({exc})"
else:
    UVLOOP_MISSING = ""

LOOPS = [
    "asyncio",
    pytest.param("uvloop", marks=pytest.mark.skipif(uvloop is None, reason=UVLOOP_MISSING)),
]

# A run that takes longer than this is a hang.
RUN_TIMEOUT = 30.0


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        assert uvloop is not None
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(kind: str, fn: Callable[[], Awaitable[T]], timeout: float = RUN_TIMEOUT) -> T:
    """Run ``fn()`` on a fresh loop of ``kind``; cancel what is left; close the loop."""
    loop = new_loop(kind)
    try:
        async def bounded() -> T:
            return await asyncio.wait_for(fn(), timeout)

        return loop.run_until_complete(bounded())
    finally:
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


# -- traffic -------------------------------------------------------------------------

MAGIC = b"TTAS"


def seq_payload(seq: int, size: int = 0) -> bytes:
    body = MAGIC + struct.pack("!I", seq)
    return body + b"." * max(0, size - len(body))


def seq_of(packet: bytes | memoryview) -> int | None:
    """The sequence number of one of our UDP packets (IPv4), or None for anything else."""
    pkt = bytes(packet)
    if len(pkt) < 36 or pkt[0] >> 4 != 4 or pkt[9] != socket.IPPROTO_UDP:
        return None
    _, udp = parse_udp4(pkt)
    if not udp.payload.startswith(MAGIC):
        return None
    return int(struct.unpack("!I", udp.payload[4:8])[0])


class Sender:
    """A UDP socket sending sequence-numbered datagrams through the device."""

    def __init__(self, dst: str, port: int = 5601) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.dst = (dst, port)
        self.next = 0

    def send(self, count: int = 1, size: int = 0, sport_sock: socket.socket | None = None
             ) -> list[int]:
        seqs = []
        sock = sport_sock or self.sock
        for _ in range(count):
            sock.sendto(seq_payload(self.next, size), self.dst)
            seqs.append(self.next)
            self.next += 1
        return seqs

    def close(self) -> None:
        self.sock.close()


def udp_to(src: str, dst: str, dport: int, seq: int, size: int = 0) -> bytes:
    """An IPv4/UDP packet for the device to write: the kernel delivers it to dst:dport."""
    return build_udp4(src, dst, 40000, dport, seq_payload(seq, size))


class Sink:
    """A UDP socket bound on the device's address that receives written packets."""

    def __init__(self, addr: str, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((addr, port))
        self.sock.setblocking(False)

    def drain(self) -> list[int]:
        seqs = []
        for _ in range(1_000_000):
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                break
            if data.startswith(MAGIC):
                seqs.append(int(struct.unpack("!I", data[4:8])[0]))
        return seqs

    def close(self) -> None:
        self.sock.close()


# -- a slow egress: written packets stay charged to the device's send buffer ----------


class SlowEgress:
    """Make the kernel hold written packets, so a small ``sndbuf`` pushes back.

    A written IP packet is normally freed (and its bytes returned to the device's send
    buffer) within the write() call: ip_rcv_core orphans it. Here a tc ingress filter on
    the TUN device redirects every written packet to a veth whose token-bucket qdisc
    lets ``rate`` through: the packets wait in the qdisc, still charged to the TUN
    socket, until they leave. They arrive at the veth peer, where a packet socket
    counts them (the bytes are the IP packet: a TUN skb has no link-layer header).
    """

    def __init__(self, tun: str, rate: str = "20mbit") -> None:
        self.tun = tun
        self.va, self.vb = unique_name("tva"), unique_name("tvb")
        ip("link", "add", self.va, "type", "veth", "peer", "name", self.vb)
        try:
            for d in (self.va, self.vb):
                ip("link", "set", d, "up")
            tc("qdisc", "add", "dev", self.va, "root", "tbf", "rate", rate, "burst", "4000",
               "limit", "10000000")
            tc("qdisc", "add", "dev", tun, "ingress")
            tc("filter", "add", "dev", tun, "parent", "ffff:", "u32", "match", "u32", "0", "0",
               "action", "mirred", "egress", "redirect", "dev", self.va)
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
            self.sock.bind((self.vb, 0))
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
            self.sock.setblocking(False)
        except BaseException:
            self.close()
            raise

    def drain(self) -> list[int]:
        seqs = []
        for _ in range(1_000_000):
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                break
            s = seq_of(data)
            if s is not None:
                seqs.append(s)
        return seqs

    def close(self) -> None:
        if hasattr(self, "sock"):
            self.sock.close()
        tc("qdisc", "del", "dev", self.tun, "ingress", check=False)
        ip("link", "del", "dev", self.va, check=False)


def tc(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tc", *args], capture_output=True, text=True, check=check,
                          timeout=10)


@contextlib.contextmanager
def slow_egress(tun: str, rate: str = "20mbit") -> Iterator[SlowEgress]:
    eg = SlowEgress(tun, rate)
    try:
        yield eg
    finally:
        eg.close()


def drain_sync(dev: Any) -> list[int]:
    """Read what is left on a device without waiting (sequence numbers of ours)."""
    old = dev.gettimeout()
    dev.setblocking(False)
    seqs = []
    try:
        for _ in range(1_000_000):
            try:
                pkt = dev.read()
            except BlockingIOError:
                break
            s = seq_of(pkt)
            if s is not None:
                seqs.append(s)
    finally:
        dev.settimeout(old)
    return seqs
