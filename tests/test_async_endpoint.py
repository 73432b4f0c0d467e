"""tuntap.asyncio.create_endpoint: the protocol interface, with real packets, on both loops."""

from __future__ import annotations

import asyncio
import errno
import time

import pytest

import tuntap
import tuntap.asyncio as ta
from asyncutil import LOOPS, Sender, Sink, run, seq_of, slow_egress, udp_to
from netutil import WAIT, ip, unique_name, unique_net

pytestmark = [pytest.mark.needs_tun, pytest.mark.parametrize("kind", LOOPS)]


class Recorder(ta.PacketProtocol):
    def __init__(self) -> None:
        self.events: list[str] = []
        self.wakeups: list[list[int | None]] = []
        self.errors: list[OSError] = []
        self.lost: asyncio.Future[Exception | None] | None = None
        self.transport: ta.PacketTransport | None = None

    def connection_made(self, transport):  # type: ignore[override]
        self.transport = transport
        self.events.append("made")
        self.lost = asyncio.get_running_loop().create_future()

    def packets_received(self, batch):
        self.events.append("packets")
        self.wakeups.append([seq_of(p) for p in batch])

    def error_received(self, exc):
        self.errors.append(exc)

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")

    def connection_lost(self, exc):
        self.events.append("lost")
        assert self.lost is not None
        self.lost.set_result(exc)

    @property
    def seqs(self) -> list[int | None]:
        return [s for w in self.wakeups for s in w]


async def wait_for_seqs(proto: Recorder, n: int) -> None:
    deadline = time.monotonic() + WAIT
    while len(proto.seqs) < n and time.monotonic() < deadline:
        await asyncio.sleep(0.005)


def test_full_batches_are_read_on_without_going_back_to_the_loop(tun, kind):
    """A wake-up that fills the batch reads again (up to 16 batches) before the loop
    runs anything else; pause_reading() inside the callback stops it at once."""
    sender = Sender(tun.remote)

    class Marking(Recorder):
        pause_after = None  # pause_reading() in this callback (1-based), if set

        def packets_received(self, batch):
            super().packets_received(batch)
            # a callback scheduled now runs only when the wake-up returns to the loop
            asyncio.get_running_loop().call_soon(self.events.append, "loop")
            if self.pause_after is not None and len(self.wakeups) == self.pause_after:
                assert self.transport is not None
                self.transport.pause_reading()

    async def main():
        batch = tuntap.PacketBatch(8, 2048)
        transport, proto = await ta.create_endpoint(Marking, tun.dev, batch)
        transport.pause_reading()
        sender.send(20)  # 8 + 8 + 4: queued before reading starts
        await asyncio.sleep(0.01)
        transport.resume_reading()
        await wait_for_seqs(proto, 20)
        assert proto.seqs == list(range(20))
        assert [len(w) for w in proto.wakeups] == [8, 8, 4]
        assert proto.events[1:] == ["packets", "packets", "packets", "loop", "loop", "loop"]
        # Paused in the first callback: the second full batch waits for resume_reading.
        proto.wakeups.clear()
        proto.events.clear()
        proto.pause_after = 1
        transport.pause_reading()
        sender.send(16)
        await asyncio.sleep(0.01)
        transport.resume_reading()
        await wait_for_seqs(proto, 8)
        await asyncio.sleep(0.01)
        assert [len(w) for w in proto.wakeups] == [8] and not transport.is_reading()
        proto.pause_after = None
        transport.resume_reading()
        await wait_for_seqs(proto, 16)
        assert proto.seqs == list(range(20, 36))
        transport.close()
        assert await asyncio.wait_for(proto.lost, WAIT) is None

    try:
        run(kind, main)
    finally:
        sender.close()


def test_packets_received_once_per_wakeup_with_zero_copy_views(tun, kind):
    sender = Sender(tun.remote)

    async def main():
        batch = tuntap.PacketBatch(16, 2048)
        transport, proto = await ta.create_endpoint(Recorder, tun.dev, batch)
        assert proto.events == ["made"] and proto.transport is transport
        assert transport.get_extra_info("device") is tun.dev and transport.is_reading()
        sender.send(5)  # queued before the loop looks: one wake-up takes all five
        await wait_for_seqs(proto, 5)
        assert proto.wakeups[0] == [0, 1, 2, 3, 4]
        sender.send(40)
        await wait_for_seqs(proto, 45)
        assert proto.seqs == list(range(45))
        assert all(len(w) <= 16 for w in proto.wakeups)
        transport.close()
        assert await asyncio.wait_for(proto.lost, WAIT) is None
        assert proto.events[-1] == "lost" and tun.dev.closed and transport.is_closing()

    try:
        run(kind, main)
    finally:
        sender.close()


def test_pause_and_resume_reading(tun, kind):
    sender = Sender(tun.remote)

    async def main():
        transport, proto = await ta.create_endpoint(Recorder, tun.dev)
        transport.pause_reading()
        assert not transport.is_reading()
        sender.send(3)
        await asyncio.sleep(0.05)
        assert proto.seqs == []  # queued in the kernel meanwhile
        transport.resume_reading()
        await wait_for_seqs(proto, 3)
        assert proto.seqs == [0, 1, 2]
        transport.abort()
        assert await asyncio.wait_for(proto.lost, WAIT) is None

    try:
        run(kind, main)
    finally:
        sender.close()


def test_transport_writes_reach_a_socket(tun, kind):
    sink = Sink(tun.local, 5610)

    async def main():
        transport, proto = await ta.create_endpoint(Recorder, tun.dev)
        transport.write(udp_to(tun.remote, tun.local, 5610, 0))
        transport.write_batch([udp_to(tun.remote, tun.local, 5610, i) for i in (1, 2)])
        batch = tuntap.PacketBatch(4, 2048)
        batch.append(udp_to(tun.remote, tun.local, 5610, 3))
        transport.write_batch(batch)
        assert transport.get_write_buffer_size() == 0
        await asyncio.sleep(0.02)
        assert sink.drain() == [0, 1, 2, 3]
        # A malformed packet is dropped and reported; the transport goes on.
        transport.write(b"\x00" * 40)
        assert len(proto.errors) == 1 and proto.errors[0].errno == errno.EINVAL
        transport.write(udp_to(tun.remote, tun.local, 5610, 4))
        await asyncio.sleep(0.02)
        assert sink.drain() == [4]
        with pytest.raises(TypeError):
            transport.write(5)
        transport.close()
        await asyncio.wait_for(proto.lost, WAIT)

    try:
        run(kind, main)
    finally:
        sink.close()


def test_buffered_writes_with_backpressure_keep_order_and_pause_the_protocol(tun, kind):
    count = 200
    with slow_egress(tun.name, rate="20mbit") as eg:
        tun.dev.sndbuf = 4096

        async def main():
            transport, proto = await ta.create_endpoint(Recorder, tun.dev)
            transport.set_write_buffer_limits(high=20_000, low=5_000)
            assert transport.get_write_buffer_limits() == (5_000, 20_000)
            for seq in range(0, count, 2):
                transport.write(udp_to(tun.remote, tun.local, 9, seq, size=1000))
                transport.write_batch([udp_to(tun.remote, tun.local, 9, seq + 1, size=1000)])
            assert transport.get_write_buffer_size() > 20_000
            assert "pause" in proto.events
            transport.close()  # flushes first
            assert await asyncio.wait_for(proto.lost, 20) is None
            assert "resume" in proto.events
            assert transport.get_write_buffer_size() == 0

        run(kind, main)
        deadline = time.monotonic() + 10
        got: list[int] = []
        while len(got) < count and time.monotonic() < deadline:
            got += eg.drain()
            time.sleep(0.01)
    assert got == list(range(count))


def test_interface_deleted_calls_connection_lost_with_the_error(kind):
    net = unique_net()
    dev = tuntap.Device(unique_name())
    try:
        dev.add_address(net.cidr)
        dev.up()

        async def main():
            transport, proto = await ta.create_endpoint(Recorder, dev)
            await asyncio.sleep(0.01)
            ip("link", "del", "dev", dev.name)
            exc = await asyncio.wait_for(proto.lost, WAIT)
            assert isinstance(exc, OSError) and exc.errno in (errno.EFAULT, errno.EBADFD)
            assert "the interface was deleted" in str(exc)
            assert dev.closed and transport.is_closing()

        run(kind, main)
    finally:
        dev.close()


def test_create_endpoint_bad_arguments(tun, kind):
    async def main():
        with pytest.raises(TypeError, match="must be a tuntap.Device, not str"):
            await ta.create_endpoint(Recorder, "tun0")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="batch must be a PacketBatch, not list"):
            await ta.create_endpoint(Recorder, tun.dev, [])  # type: ignore[arg-type]
        transport, proto = await ta.create_endpoint(Recorder, tun.dev)
        with pytest.raises(ValueError, match="must be >= low"):
            transport.set_write_buffer_limits(high=1, low=2)
        transport.close()
        transport.write(b"ignored after close")
        await asyncio.wait_for(proto.lost, WAIT)

    run(kind, main)
