"""tuntap.anyio.AsyncDevice with real packets on anyio's asyncio and trio backends."""

from __future__ import annotations

import collections
import errno
import random
import threading
import time

import pytest

import tuntap
from asyncutil import Sender, Sink, drain_sync, seq_of, slow_egress, udp_to
from netutil import WAIT, ip, unique_name, unique_net

anyio = pytest.importorskip("anyio", reason="anyio is not installed (pip install anyio)")
import tuntap.anyio as tanyio  # noqa: E402

try:
    import trio  # noqa: F401
except ImportError as exc:  # pragma: no cover - CI installs it
    TRIO_MISSING = f"trio is not installed for this interpreter ({exc})"
else:
    TRIO_MISSING = ""

BACKENDS = [
    "asyncio",
    pytest.param("trio", marks=pytest.mark.skipif(bool(TRIO_MISSING), reason=TRIO_MISSING)),
]
pytestmark = [pytest.mark.needs_tun, pytest.mark.parametrize("backend", BACKENDS)]
CLOSED = "^I/O operation on closed device$"


def run(backend, fn, timeout=30.0):
    async def bounded():
        with anyio.fail_after(timeout):
            return await fn()

    return anyio.run(bounded, backend=backend)


async def settle():
    await anyio.sleep(0.01)


def completes_without_yielding(coro):
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise AssertionError("the call suspended")


def test_a_call_never_awaited_or_cancelled_while_waiting_reads_nothing(tun, backend):
    adev = tanyio.AsyncDevice(tun.dev)
    sender = Sender(tun.remote)

    async def main():
        sender.send(1)
        await settle()
        adev.read().close()  # made, never awaited
        adev.readinto(bytearray(64))  # dropped at once
        assert seq_of(await adev.read()) == 0
        # A call cancelled while it waits (nothing queued) reads nothing either.
        with anyio.move_on_after(0.05):
            await adev.read()
        assert not adev._rwaiting
        sender.send(1)
        with anyio.fail_after(WAIT):
            assert seq_of(await adev.read()) == 1

    try:
        run(backend, main)
    finally:
        sender.close()


def test_fast_path_and_slow_path(tun, backend):
    adev = tanyio.AsyncDevice(tun.dev)
    sender = Sender(tun.remote)
    sink = Sink(tun.local, 5620)

    async def main():
        sender.send(3)
        await settle()
        buf = bytearray(2048)
        n = completes_without_yielding(adev.readinto(buf))
        assert seq_of(buf[:n]) == 0
        assert seq_of(completes_without_yielding(adev.read())) == 1
        batch = tuntap.PacketBatch(8, 2048)
        assert completes_without_yielding(adev.read_batch(batch)) == 1
        assert seq_of(batch[0]) == 2
        assert completes_without_yielding(adev.write(udp_to(tun.remote, tun.local, 5620, 0)))
        assert completes_without_yielding(
            adev.write_batch([udp_to(tun.remote, tun.local, 5620, 1)])) == 1
        # The slow path: nothing queued, the packet comes later.
        result = []

        async def reader():
            result.append(seq_of(await adev.read()))

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await settle()
            assert not result
            sender.send(1)
        assert result == [3]
        await settle()
        assert sink.drain() == [0, 1]

    try:
        run(backend, main)
    finally:
        sender.close()
        sink.close()


def test_concurrent_readers_in_order_and_writers_in_order(tun, backend):
    tun.dev.txqueuelen = 5000
    adev = tanyio.AsyncDevice(tun.dev)
    sender = Sender(tun.remote)
    per_writer = 60
    with slow_egress(tun.name, rate="50mbit") as eg:
        tun.dev.sndbuf = 8192
        order = []

        async def main():
            async def reader(i):
                order.append((i, seq_of(await adev.read())))

            async def writer(w):
                for k in range(per_writer):
                    pkt = udp_to(tun.remote, tun.local, 9, w * 10000 + k, size=600)
                    if k % 2:
                        assert await adev.write_batch([pkt]) == 1
                    else:
                        assert await adev.write(pkt) == len(pkt)

            async with anyio.create_task_group() as tg:
                for i in range(8):
                    tg.start_soon(reader, i)
                    await anyio.sleep(0.002)  # start in order
                for w in range(8):
                    tg.start_soon(writer, w)
                await settle()
                sender.send(8)

        try:
            run(backend, main)
        finally:
            sender.close()
        assert [i for i, _ in order] == list(range(8))  # FIFO
        assert [s for _, s in order] == list(range(8))
        deadline = time.monotonic() + 10
        written: list[int] = []
        while len(written) < 8 * per_writer and time.monotonic() < deadline:
            written += eg.drain()
            time.sleep(0.01)
    assert sorted(written) == sorted(w * 10000 + k for w in range(8) for k in range(per_writer))
    for w in range(8):
        mine = [s for s in written if s // 10000 == w]
        assert mine == sorted(mine)


def test_cancellations_at_random_points_lose_and_duplicate_nothing(tun, backend):
    tun.dev.txqueuelen = 20000
    adev = tanyio.AsyncDevice(tun.dev)
    sender = Sender(tun.remote)
    rng = random.Random(4321)
    cases = collections.Counter()
    got: list[int] = []
    batch = tuntap.PacketBatch(4, 2048)
    buf = bytearray(2048)

    async def one(op):
        if op == 0:
            n = await adev.read_batch(batch)
            got.extend(seq_of(batch[i]) for i in range(n))
        elif op == 1:
            n = await adev.readinto(buf)
            got.append(seq_of(buf[:n]))
        else:
            got.append(seq_of(await adev.read()))

    async def main():
        for _ in range(10_000):
            before = len(got)
            async with anyio.create_task_group() as tg:
                tg.start_soon(one, rng.randrange(3))
                point = rng.randrange(4)
                if point:
                    await anyio.lowlevel.checkpoint()
                    if rng.random() < 0.7:
                        sender.send(rng.choice((1, 1, 2)))
                    for _ in range(point - 1):
                        await anyio.lowlevel.checkpoint()
                tg.cancel_scope.cancel()
            cases["completed" if len(got) > before else "cancelled"] += 1
        left = sender.next - len(got)
        for _ in range(left):
            with anyio.fail_after(WAIT):
                await one(rng.randrange(3))
            if len(got) >= sender.next:
                break

    try:
        run(backend, main, timeout=60)
    finally:
        sender.close()
    assert None not in got
    dups = [s for s, c in collections.Counter(got).items() if c > 1]
    assert not dups, f"duplicated: {dups[:10]}"
    assert sorted(got) == list(range(sender.next)), "packets lost"
    assert drain_sync(tun.dev) == []
    assert cases["cancelled"] > 1000 and cases["completed"] > 1000, cases


def test_close_while_awaited_reader_and_writer(tun, backend):
    adev = tanyio.AsyncDevice(tun.dev)
    with slow_egress(tun.name, rate="100kbit"):
        tun.dev.sndbuf = 2048
        errors = []

        async def main():
            async def call(coro):
                try:
                    await coro
                except ValueError as e:
                    errors.append(str(e))

            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(call, adev.read())
                tg.start_soon(call, adev.read_batch(tuntap.PacketBatch()))
                for i in range(12):
                    tg.start_soon(call, adev.write(udp_to(tun.remote, tun.local, 9, i,
                                                          size=1000)))
                await settle()
                assert len(adev._rwaiting) == 4 and len(adev._wwaiting) >= 3
                waiting = 4 + len(adev._wwaiting)
                adev.close()
            assert errors == ["I/O operation on closed device"] * waiting
            assert tun.dev.closed and adev.closed
            with pytest.raises(ValueError, match=CLOSED):
                await adev.read()
            await adev.aclose()

        run(backend, main)


def test_close_from_another_thread_while_awaited(tun, backend):
    adev = tanyio.AsyncDevice(tun.dev)

    async def main():
        async def reader():
            with pytest.raises(ValueError, match=CLOSED):
                await adev.read()

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            await settle()
            closer = threading.Thread(target=adev.close)
            closer.start()
        closer.join(WAIT)
        assert tun.dev.closed

    run(backend, main)


def test_interface_deleted_while_awaited(backend):
    net = unique_net()
    dev = tuntap.Device(unique_name())
    try:
        dev.add_address(net.cidr)
        dev.up()
        adev = tanyio.AsyncDevice(dev)

        async def main():
            async def reader():
                with pytest.raises(OSError, match="the interface was deleted") as e:
                    await adev.read()
                assert e.value.errno in (errno.EFAULT, errno.EBADFD)

            async with anyio.create_task_group() as tg:
                tg.start_soon(reader)
                await settle()
                ip("link", "del", "dev", dev.name)

        run(backend, main)
    finally:
        dev.close()


def test_device_down_while_writing_and_backpressure(tun, backend):
    adev = tanyio.AsyncDevice(tun.dev)
    with slow_egress(tun.name, rate="20mbit") as eg:

        async def main():
            await adev.write(udp_to(tun.remote, tun.local, 9, 0))
            tun.dev.down()
            with pytest.raises(OSError, match="the interface is down") as e:
                await adev.write(udp_to(tun.remote, tun.local, 9, 1))
            assert e.value.errno == errno.EIO
            tun.dev.up()
            tun.dev.sndbuf = 4096
            waited = []

            async def writer():
                for seq in range(1, 150):
                    await adev.write(udp_to(tun.remote, tun.local, 9, seq, size=1000))
                pkts = [udp_to(tun.remote, tun.local, 9, 150 + i, size=1000) for i in range(50)]
                assert await adev.write_batch(pkts) == 50
                tg.cancel_scope.cancel()

            async with anyio.create_task_group() as tg:
                tg.start_soon(writer)
                while True:  # the writer is cancelled by nothing else: it ends this loop
                    waited.append(len(adev._wwaiting))
                    await anyio.sleep(0.001)
            assert max(waited) == 1, "the writer never waited for room"
            assert adev._wlock is not None and not adev._wlock.locked()

        run(backend, main)
        deadline = time.monotonic() + 10
        got: list[int] = []
        while len(got) < 200 and time.monotonic() < deadline:
            got += eg.drain()
            time.sleep(0.01)
    assert got == list(range(200))


def test_another_loop_gets_runtime_error_and_bad_arguments(tun, backend):
    with pytest.raises(TypeError, match="must be a tuntap.Device"):
        tanyio.AsyncDevice(object())  # type: ignore[arg-type]
    adev = tanyio.AsyncDevice(tun.dev)
    assert adev.fileno() == tun.dev.fileno() and adev.device is tun.dev

    sink = Sink(tun.local, 5630)  # no ICMP port-unreachable comes back to read

    async def first():
        await adev.write(udp_to(tun.remote, tun.local, 5630, 0))  # at once: binds nothing
        with anyio.move_on_after(0.05):
            await adev.read()  # waits: binds

    async def second():
        await adev.write(udp_to(tun.remote, tun.local, 5630, 1))  # at once: fine
        with pytest.raises(RuntimeError, match="bound to the event loop"):
            await adev.read()  # has to wait, in another loop
        await settle()
        assert sink.drain() == [0, 1]

    try:
        run(backend, first)
        run(backend, second)
    finally:
        sink.close()

    async def with_open():
        async with tanyio.open(unique_name()) as a:
            with pytest.raises(TypeError, match="argument must be PacketBatch"):
                await a.read_batch([])  # type: ignore[arg-type]
        assert a.closed

    run(backend, with_open)
