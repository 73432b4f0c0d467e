"""Leak loops (psutil's memleak idea): call every C entry point many times, on its
success path and on its error paths, and check that the process does not grow: no
Python objects left behind (``sys.getallocatedblocks()``), no fd, no resident memory
(RSS catches malloc'd C memory the object count cannot see).

Default suite: 2,000 calls per entry point; tools/soak.sh: 100,000 (figures in
tests/README.md). Device create/close cycles: 100 by default, 2,000 under soak (each
takes ~20 ms: the kernel waits for RCU when it unregisters an interface).
"""

from __future__ import annotations

import asyncio
import errno
import gc
import os
import select
import socket
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import tuntap
import tuntap.asyncio
from netutil import build_udp4, current_netns, ip, unique_name, unique_net
from soakutil import SANITIZED, SOAK, budget, open_fds, record, rss_kib

pytestmark = pytest.mark.needs_tun

# Under the sanitizers (ASan checks memory itself, and its quarantine grows RSS): fewer
# calls, and only Python objects and fds are counted.
CALLS = budget(200 if SANITIZED else 2_000, 100_000)
CYCLES = budget(100, 2_000)
F = tuntap.Flags


class Env:
    """Long-lived devices and sockets the calls use (one set for the module)."""

    def __init__(self) -> None:
        self.net = unique_net()
        self.tun = tuntap.Device(unique_name(), blocking=False)
        self.tun.add_address(self.net.cidr)
        self.tun.up()
        self.vnet = tuntap.Device(unique_name(), F.TUN | F.NO_PI | F.VNET_HDR, blocking=False)
        self.tap = tuntap.Device(unique_name(), F.TAP | F.NO_PI, blocking=False)
        self.mq = tuntap.open_queues(unique_name(), 2)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sink.bind((self.net.local, 0))
        self.sink.setblocking(False)
        self.pkt = build_udp4(self.net.remote, self.net.local, 9, self.sink.getsockname()[1],
                              b"leak")
        self.buf = bytearray(2048)
        self.batch = tuntap.PacketBatch(8, 2048)
        self.out = tuntap.PacketBatch(64, 2048)
        self.closed = tuntap.Device(unique_name())
        self.closed.close()
        self.gso = self._gso_packet()
        self.loop = asyncio.new_event_loop()
        self.adev = tuntap.asyncio.AsyncDevice(self.tun)

    def _gso_packet(self) -> bytes:
        hdr = tuntap.VirtioNetHdr(tuntap.VirtioNetHdr.F_NEEDS_CSUM,
                                  tuntap.VirtioNetHdr.GSO_TCPV4, 40, 500, 20, 16).pack()
        payload = bytes(range(256)) * 8
        tcp = bytes([0, 1, 0, 2]) + bytes(8) + bytes([0x50, 0x18, 0xff, 0xff]) + bytes(4)
        iph = bytearray(bytes([0x45, 0]) + (20 + 20 + len(payload)).to_bytes(2, "big")
                        + bytes([0, 1, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]))
        return hdr + bytes(iph) + tcp + payload

    def drain(self) -> None:
        for _ in range(100):
            try:
                self.sink.recv(64)
            except BlockingIOError:
                return

    def close(self) -> None:
        self.loop.close()
        for d in (self.tun, self.vnet, self.tap, *self.mq):
            d.close()
        self.sock.close()
        self.sink.close()


@pytest.fixture(scope="module", autouse=True)
def _stop_tracing() -> Iterator[None]:
    """measure() starts tracemalloc under the sanitizers: stop it for the next modules."""
    yield
    if tracemalloc.is_tracing():
        tracemalloc.stop()


@pytest.fixture(scope="module")
def env(_tun_env: Any) -> Iterator[Env]:
    # Module scope sets up before the function-scoped namespace guard: ask for the
    # session namespace explicitly, so the devices are made inside it.
    if not _tun_env.available:
        pytest.skip(_tun_env.reason)
    assert current_netns() == _tun_env.netns
    e = Env()
    yield e
    e.close()


def _raises(exc: type[BaseException], fn: Callable[[], Any]) -> Callable[[], None]:
    def call() -> None:
        try:
            fn()
        except exc:
            return
        raise AssertionError(f"{fn} did not raise {exc.__name__}")
    return call


def _empty(e: Env, call: Callable[[], Any]) -> None:
    """call() on an empty queue must raise BlockingIOError (stray packets read first)."""
    for _ in range(100):
        try:
            e.tun.read_batch(e.batch)
        except BlockingIOError:
            break
    _raises(BlockingIOError, call)()


def _read_one(e: Env) -> None:
    e.sock.sendto(b"x", (e.net.remote, 9))
    select.select([e.tun], [], [], 1)
    assert e.tun.readinto(e.buf) > 20


def _read_batch_one(e: Env) -> None:
    e.sock.sendto(b"x", (e.net.remote, 9))
    select.select([e.tun], [], [], 1)
    assert e.tun.read_batch(e.batch) >= 1


def _write_one(e: Env) -> None:
    e.tun.write(e.pkt)
    e.drain()


def _write_list(e: Env) -> None:
    assert e.tun.write_batch([e.pkt, bytearray(e.pkt), memoryview(e.pkt)]) == 3
    e.drain()


def _write_batch(e: Env) -> None:
    e.batch.clear()
    e.batch.append(e.pkt)
    e.batch.append(e.pkt)
    assert e.tun.write_batch(e.batch) == 2
    e.drain()


def _batch_views(e: Env) -> None:
    b = tuntap.PacketBatch(4, 64, headroom=8)
    b.append(b"abc")
    b.append(b"defg")
    assert bytes(b[1]) == b"defg" and len(b.slot(0)) == 11 and list(b.sizes) == [3, 4]
    assert [bytes(p) for p in b] == [b"abc", b"defg"] and len(memoryview(b)) == 4 * 72
    b.clear()


def _finish(call: Any) -> Any:
    """Resume an AsyncDevice call once: its result (it must not wait)."""
    try:
        call.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("the call waited")


def _await_readinto(e: Env) -> None:
    e.sock.sendto(b"x", (e.net.remote, 9))
    select.select([e.tun], [], [], 1)
    assert _finish(e.adev.readinto(e.buf)) > 20


def _await_write(e: Env) -> None:
    assert _finish(e.adev.write(e.pkt)) == len(e.pkt)
    e.drain()


def _await_read_batch_timeout(e: Env) -> None:
    """The waiting path: nothing queued, the wait cancelled by wait_for's timeout."""
    async def wait() -> None:
        try:
            await asyncio.wait_for(e.adev.read_batch(e.batch), 0.0002)
        except asyncio.TimeoutError:
            pass
    _empty(e, lambda: e.tun.read_batch(e.batch))
    e.loop.run_until_complete(wait())
    # A stray packet (an IPv6 router solicitation...) that arrived just before the
    # timeout was kept for the next read: read it, so what is kept cannot pile up.
    while e.adev._pushback:
        e.loop.run_until_complete(e.adev.read())


def _address(e: Env) -> None:
    e.tun.add_address("10.250.1.1/32")
    e.tun.remove_address("10.250.1.1/32")


def _fromfd(e: Env) -> None:
    tuntap.Device.fromfd(e.tun.fileno()).close()


def _mq(e: Env) -> None:
    e.mq[1].detach_queue()
    e.mq[1].attach_queue()


def _vnet_size(e: Env) -> None:
    e.vnet.vnet_hdr_size = 12
    e.vnet.vnet_hdr_size = 10


def _mtu(e: Env) -> None:
    e.tun.mtu = 1400
    e.tun.mtu = 1500


# name -> (calls per iteration factor 1, callable taking Env)
ENTRY_POINTS: dict[str, Callable[[Env], Any]] = {
    "readinto": _read_one,
    "readinto, nothing queued": lambda e: _empty(e, lambda: e.tun.readinto(e.buf)),
    "readinto, read-only buffer": lambda e: _raises(TypeError, lambda: e.tun.readinto(b"x"))(),
    "read, nothing queued": lambda e: _empty(e, lambda: e.tun.read(100)),
    "read, negative size": lambda e: _raises(ValueError, lambda: e.tun.read(-1))(),
    "write": _write_one,
    "write, malformed (EINVAL)": lambda e: _raises(OSError, lambda: e.tun.write(b"\x00" * 40))(),
    "write, empty": lambda e: _raises(ValueError, lambda: e.tun.write(b""))(),
    "read_batch": _read_batch_one,
    "read_batch, nothing queued": lambda e: _empty(e, lambda: e.tun.read_batch(e.batch)),
    "read_batch, not a batch": lambda e: _raises(TypeError, lambda: e.tun.read_batch([]))(),
    "write_batch, list": _write_list,
    "write_batch, PacketBatch": _write_batch,
    "write_batch, bad item": lambda e: _raises(TypeError,
                                               lambda: e.tun.write_batch([e.pkt, "x"]))(),
    "write_batch, EINVAL first": lambda e: _raises(OSError,
                                                   lambda: e.tun.write_batch([b"\0" * 40]))(),
    "await readinto": _await_readinto,
    "await write": _await_write,
    "await read_batch, waits and is cancelled": _await_read_batch_timeout,
    "await readinto, read-only buffer": lambda e: _raises(
        TypeError, lambda: e.adev.readinto(b"x").send(None))(),
    "async call never awaited": lambda e: (e.adev.read(), e.adev.write_batch([e.pkt])),
    "closed device": lambda e: _raises(ValueError, lambda: e.closed.readinto(e.buf))(),
    "modes": lambda e: (e.tun.settimeout(0.5), e.tun.gettimeout(), e.tun.getblocking(),
                        e.tun.setblocking(False), e.tun.fileno()),
    "settimeout(nan)": lambda e: _raises(ValueError, lambda: e.tun.settimeout(float("nan")))(),
    "properties": lambda e: (e.tun.name, e.tun.closed, e.tun.header_size, e.tun.ifindex,
                             e.tun.is_up, e.tun.mtu, e.tun.txqueuelen, e.vnet.vnet_hdr_size),
    "flags (rtnetlink)": lambda e: e.tun.flags,
    "mtu set": _mtu,
    "hwaddr": lambda e: setattr(e.tap, "hwaddr", e.tap.hwaddr),
    "hwaddr, garbage": lambda e: _raises(ValueError,
                                         lambda: setattr(e.tap, "hwaddr", "zz"))(),
    "vnet_hdr_size set": _vnet_size,
    "set_offload": lambda e: (e.vnet.set_offload(tuntap.Offload.CSUM), e.vnet.set_offload(0)),
    "set_offload, refused": lambda e: _raises(ValueError, lambda: e.tun.set_offload(1))(),
    "set_owner/set_group": lambda e: (e.tun.set_owner(0), e.tun.set_group(0)),
    "set_owner(-1)": lambda e: _raises(ValueError, lambda: e.tun.set_owner(-1))(),
    "up/down": lambda e: (e.tap.up(), e.tap.down()),
    "persist off": lambda e: e.tun.persist(False),
    "add/remove address": _address,
    "add_address, garbage": lambda e: _raises(ValueError, lambda: e.tun.add_address("x/99"))(),
    "remove_address, absent": lambda e: _raises(OSError,
                                                lambda: e.tun.remove_address("10.251.0.1"))(),
    "detach/attach_queue": _mq,
    "fromfd": _fromfd,
    "fromfd, not a tun fd": lambda e: _raises(ValueError,
                                              lambda: tuntap.Device.fromfd(e.sock.fileno()))(),
    "Device(), bad name": lambda e: _raises(ValueError, lambda: tuntap.Device("a/b"))(),
    "Device(), busy name": lambda e: _raises(OSError, lambda: tuntap.Device(e.tun.name))(),
    "PacketBatch views": lambda e: _batch_views(e),
    "PacketBatch, bad geometry": lambda e: _raises(ValueError,
                                                   lambda: tuntap.PacketBatch(0, 10))(),
    "PacketBatch, too large": lambda e: _raises(MemoryError,
                                                lambda: tuntap.PacketBatch(2**31, 2**20))(),
    "append, too long": lambda e: _raises(ValueError, lambda: e.out.append(bytes(4096)))(),
    "segment": lambda e: tuntap.segment(e.gso, e.out),
    "segment, malformed": lambda e: _raises(ValueError, lambda: tuntap.segment(b"x" * 20,
                                                                              e.out))(),
    "checksum": lambda e: tuntap.checksum(e.pkt),
    "features": lambda e: tuntap.features(),
    "list_devices": lambda e: tuntap.list_devices(),
    "VirtioNetHdr parse/pack": lambda e: tuntap.VirtioNetHdr.parse(e.gso).pack(12),
}
if SANITIZED:
    # ASan symbolizes a stack for every allocation it refuses: seconds per call
    del ENTRY_POINTS["PacketBatch, too large"]
if hasattr(tuntap, "coalesce"):
    ENTRY_POINTS["coalesce, nothing to merge"] = lambda e: tuntap.coalesce([], e.out)


def allocated() -> int:
    """Python's live allocations: pymalloc blocks; under the sanitizers (malloc heap, where
    getallocatedblocks() says 0) the bytes tracemalloc traces, in 64-byte units."""
    if SANITIZED:
        return tracemalloc.get_traced_memory()[0] // 64
    return sys.getallocatedblocks()


def measure(fn: Callable[[], Any], n: int) -> tuple[int, int, int]:
    """(blocks, fds, RSS KiB) the process grew by over n calls, after a warm-up."""
    if SANITIZED and not tracemalloc.is_tracing():
        tracemalloc.start()
    for _ in range(max(n // 20, 50)):
        fn()
    gc.collect()
    b0, f0, r0 = allocated(), open_fds(), rss_kib()
    for _ in range(n):
        fn()
    gc.collect()
    return allocated() - b0, open_fds() - f0, rss_kib() - r0


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_entry_point_does_not_leak(env: Env, name: str) -> None:
    fn = ENTRY_POINTS[name]
    # psutil's rule: a real leak grows on every try; noise does not. Three tries.
    tries = []
    for _ in range(3):
        blocks, fds, rss = measure(lambda: fn(env), CALLS)
        tries.append((blocks, fds, rss))
        if blocks < 32 and fds == 0 and (SANITIZED or rss < (4096 if SOAK else 1024)):
            break
    else:
        pytest.fail(f"{name}: grew over {CALLS} calls (blocks, fds, RSS KiB): {tries}")
    record(f"leak {name}", calls=CALLS, blocks=blocks, fds=fds, rss_kib=rss)


def test_device_create_close_cycles_leave_no_fd_and_no_interface() -> None:
    prefix = unique_name("lk")[:11]
    before_fds = open_fds()
    before_links = {d.name for d in tuntap.list_devices()}
    gc.collect()
    b0, r0 = allocated(), rss_kib()
    for i in range(CYCLES):
        with tuntap.Device(f"{prefix}{i % 7}", F.TUN | F.NO_PI) as d:
            if i % 10 == 0:
                d.settimeout(0.001)             # make the wake-up eventfd too
                with pytest.raises(TimeoutError):
                    d.read()
    gc.collect()
    blocks, rss = allocated() - b0, rss_kib() - r0
    assert open_fds() == before_fds
    assert {d.name for d in tuntap.list_devices()} == before_links
    assert ip("-o", "link", "show").stdout.count(prefix) == 0
    record("leak device create/close", cycles=CYCLES, blocks=blocks, rss_kib=rss,
           fds=open_fds() - before_fds)
    assert blocks < 64 and (SANITIZED or rss < 2048), (blocks, rss)


def test_a_failed_open_leaves_no_fd() -> None:
    before = open_fds()
    for _ in range(budget(200, 5_000)):
        with pytest.raises(OSError) as ei:
            tuntap.Device("lo")                 # not a tun device: EINVAL after open()
        assert ei.value.errno == errno.EINVAL
        with pytest.raises(FileNotFoundError):
            tuntap.Device("", path="/nonexistent/tun")
    assert open_fds() == before


def test_the_leak_check_sees_a_leak() -> None:
    """The harness itself: one object or one fd kept per call is caught."""
    kept: list[object] = []
    blocks, _, _ = measure(lambda: kept.append(object()), 2_000)
    assert blocks >= (400 if SANITIZED else 2_000)
    fds: list[int] = []
    try:
        _, grown, _ = measure(lambda: fds.append(os.dup(0)), 200)
        assert grown == 200
    finally:
        for fd in fds:
            os.close(fd)
