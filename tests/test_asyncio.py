"""tuntap.asyncio.AsyncDevice with real packets, on the default loop and on uvloop."""

from __future__ import annotations

import asyncio
import collections
import errno
import json
import os
import random
import subprocess
import sys
import threading
import time

import pytest

import tuntap
import tuntap.asyncio as ta
from asyncutil import LOOPS, Sender, Sink, drain_sync, run, seq_of, slow_egress, udp_to
from netutil import WAIT, ip, unique_name, unique_net

pytestmark = [pytest.mark.needs_tun, pytest.mark.parametrize("kind", LOOPS)]

CLOSED = "^I/O operation on closed device$"


async def settle() -> None:
    """Let a packet sent a moment ago reach the device queue (it is synchronous for a
    local UDP send, but give the loop a turn as well)."""
    await asyncio.sleep(0.01)


def completes_without_yielding(coro):
    """Drive a coroutine one step: its value if it finished without suspending."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise AssertionError("the call suspended: it went through the event loop")


# -- the fast and the slow path --------------------------------------------------------


def test_fast_path_reads_queued_packets_with_no_loop_round_trip(tun, kind):
    adev = ta.AsyncDevice(tun.dev)
    sender = Sender(tun.remote)

    async def main():
        sender.send(6)
        await settle()
        buf = bytearray(2048)
        n = completes_without_yielding(adev.readinto(buf))
        assert seq_of(buf[:n]) == 0
        assert seq_of(completes_without_yielding(adev.read())) == 1
        batch = tuntap.PacketBatch(8, 2048)
        assert completes_without_yielding(adev.read_batch(batch)) == 4
        assert [seq_of(p) for p in batch] == [2, 3, 4, 5]
        # Nothing was ever registered with the loop.
        assert not adev._reading

    try:
        run(kind, main)
    finally:
        sender.close()


def test_fast_path_writes_with_no_loop_round_trip(tun, kind):
    adev = ta.AsyncDevice(tun.dev)
    sink = Sink(tun.local, 5602)

    async def main():
        assert completes_without_yielding(adev.write(udp_to(tun.remote, tun.local, 5602, 0))) > 0
        batch = tuntap.PacketBatch(4, 2048)
        batch.append(udp_to(tun.remote, tun.local, 5602, 1))
        batch.append(udp_to(tun.remote, tun.local, 5602, 2))
        assert completes_without_yielding(adev.write_batch(batch)) == 2
        pkts = [udp_to(tun.remote, tun.local, 5602, i) for i in (3, 4)]
        assert completes_without_yielding(adev.write_batch(pkts)) == 2
        assert completes_without_yielding(adev.write_batch([])) == 0
        assert not adev._writing
        await settle()
        assert sink.drain() == [0, 1, 2, 3, 4]

    try:
        run(kind, main)
    finally:
        sink.close()


def test_slow_path_waits_for_the_packet(tun, kind):
    adev = ta.AsyncDevice(tun.dev)
    sender = Sender(tun.remote)

    async def main():
        for op in ("read", "readinto", "read_batch"):
            buf = bytearray(2048)
            batch = tuntap.PacketBatch(8, 2048)
            coro = {"read": adev.read, "readinto": adev.readinto,
                    "read_batch": adev.read_batch}[op]
            args = {"read": (), "readinto": (buf,), "read_batch": (batch,)}[op]
            task = asyncio.ensure_future(coro(*args))
            await settle()
            assert not task.done()
            assert adev._reading  # one registration while it waits
            seqs = sender.send(2)
            r = await asyncio.wait_for(task, WAIT)
            if op == "read":
                assert seq_of(r) == seqs[0]
                assert seq_of(await adev.read()) == seqs[1]
            elif op == "readinto":
                assert seq_of(buf[:r]) == seqs[0]
                assert seq_of(await adev.read()) == seqs[1]
            else:
                assert r == 2 and [seq_of(p) for p in batch] == seqs

    try:
        run(kind, main)
    finally:
        sender.close()


def test_waiters_are_served_in_order_with_one_registration(tun, kind):
    adev = ta.AsyncDevice(tun.dev)
    sender = Sender(tun.remote)
    calls = collections.Counter()

    async def main():
        loop = asyncio.get_running_loop()
        if kind == "asyncio":  # count the registrations (a Python loop can be patched)
            add, remove = loop.add_reader, loop.remove_reader

            def counting_add(*a):
                calls["add"] += 1
                return add(*a)

            def counting_remove(*a):
                calls["remove"] += 1
                return remove(*a)

            loop.add_reader, loop.remove_reader = counting_add, counting_remove
        tasks = []
        for _ in range(8):
            tasks.append(asyncio.ensure_future(adev.read()))
            await asyncio.sleep(0)
        await settle()
        assert len(adev._readers) == 8
        sender.send(8)
        got = await asyncio.wait_for(asyncio.gather(*tasks), WAIT)
        assert [seq_of(p) for p in got] == list(range(8))
        if kind == "asyncio":
            assert calls["add"] == 1
            assert calls["remove"] <= 1

    try:
        run(kind, main)
    finally:
        sender.close()


# -- cancellation ----------------------------------------------------------------------


def test_10000_cancellations_at_random_points_lose_and_duplicate_nothing(tun, kind):
    tun.dev.txqueuelen = 20000
    adev = ta.AsyncDevice(tun.dev)
    sender = Sender(tun.remote)
    rng = random.Random(20261201)
    cases = collections.Counter()
    got: list[int] = []
    batch = tuntap.PacketBatch(4, 2048)
    buf = bytearray(2048)

    async def one(op):
        if op == 0:
            n = await adev.read_batch(batch)
            return [seq_of(batch[i]) for i in range(n)]
        if op == 1:
            n = await adev.readinto(buf)
            return [seq_of(buf[:n])]
        return [seq_of(await adev.read())]

    async def main():
        for _ in range(10_000):
            task = asyncio.ensure_future(one(rng.randrange(3)))
            point = rng.randrange(5)
            if point:
                await asyncio.sleep(0)  # the task starts; with nothing queued it waits
                if rng.random() < 0.7:
                    sender.send(rng.choice((1, 1, 2)))  # the packet(s) arrive
                for _ in range(point - 1):
                    await asyncio.sleep(0)
            kept = len(adev._pushback)
            task.cancel()
            try:
                got.extend(await task)
                cases["completed"] += 1
            except asyncio.CancelledError:
                cases["cancelled"] += 1
                if len(adev._pushback) > kept:
                    cases["read, then cancelled: kept"] += 1
        # Read everything that is left: the kept packets first, then the queue.
        left = sender.next - len(got)
        for _ in range(left):
            r = await asyncio.wait_for(one(rng.randrange(3)), WAIT)
            got.extend(r)
            if len(got) >= sender.next:
                break

    t0 = time.monotonic()
    try:
        run(kind, main, timeout=60)
    finally:
        sender.close()
    elapsed = time.monotonic() - t0
    assert None not in got
    dups = [s for s, c in collections.Counter(got).items() if c > 1]
    assert not dups, f"duplicated: {dups[:10]}"
    assert sorted(got) == list(range(sender.next)), "packets lost"
    assert drain_sync(tun.dev) == []
    # Every kind of cancel happened, so the test can fail.
    assert cases["cancelled"] > 1000 and cases["completed"] > 1000, cases
    assert cases["read, then cancelled: kept"] > 10, cases
    assert elapsed < 30, f"{elapsed:.1f} s"


def test_cancel_after_the_data_arrived_keeps_it_and_leaves_the_batch_empty(tun, kind):
    adev = ta.AsyncDevice(tun.dev)
    sender = Sender(tun.remote)

    async def main():
        batch = tuntap.PacketBatch(8, 2048)
        task = asyncio.ensure_future(adev.read_batch(batch))
        await settle()
        sender.send(3)
        # Let the loop's callback read for the waiter, but not the task resume: cancel
        # from a callback that runs right after the readiness callback.
        for _ in range(50):
            if task.done() or not adev._readers:
                break
            await asyncio.sleep(0)
        if not task.done():
            task.cancel()
        try:
            n = await task
        except asyncio.CancelledError:
            assert len(batch) == 0
            assert [seq_of(p) for p in adev._pushback] == [0, 1, 2]
            n = 0
        else:  # the task had already resumed: nothing to keep
            assert [seq_of(p) for p in batch] == [0, 1, 2][:n]
        rest = []
        while len(rest) + n < 3:
            rest.append(seq_of(await asyncio.wait_for(adev.read(), WAIT)))
        assert rest == [0, 1, 2][n:]

    try:
        run(kind, main)
    finally:
        sender.close()


def test_a_cancelled_waiter_consumes_nothing_and_leaves_no_registration(tun, kind):
    adev = ta.AsyncDevice(tun.dev)
    sender = Sender(tun.remote)

    async def main():
        tasks = [asyncio.ensure_future(adev.read()) for _ in range(5)]
        await settle()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert not adev._readers
        sender.send(2)
        await settle()
        assert not adev._readers and not adev._reading  # the lingering callback left
        assert [seq_of(await adev.read()), seq_of(await adev.read())] == [0, 1]

    try:
        run(kind, main)
    finally:
        sender.close()


# -- concurrency -----------------------------------------------------------------------


def test_8_readers_and_8_writers_concurrently(tun, kind):
    tun.dev.txqueuelen = 5000
    adev = ta.AsyncDevice(tun.dev)
    sender = Sender(tun.remote)
    per_writer = 150
    got: list[list[int]] = [[] for _ in range(8)]
    total = 2000

    with slow_egress(tun.name, rate="50mbit") as eg:
        tun.dev.sndbuf = 8192  # the writers wait now and then, and queue up
        max_writers = [0]

        async def reader(i):
            batch = tuntap.PacketBatch(4, 2048)
            while True:
                if i % 2:
                    got[i].append(seq_of(await adev.read()))
                else:
                    n = await adev.read_batch(batch)
                    got[i] += [seq_of(batch[k]) for k in range(n)]

        async def writer(w):
            for k in range(per_writer):
                pkt = udp_to(tun.remote, tun.local, 9, w * 10000 + k, size=600)
                if k % 3 == 2:
                    assert await adev.write_batch([pkt]) == 1
                else:
                    assert await adev.write(pkt) == len(pkt)
                max_writers[0] = max(max_writers[0], len(adev._writers))

        async def send():
            while sender.next < total:
                sender.send(min(25, total - sender.next))
                await asyncio.sleep(0)

        async def main():
            readers = [asyncio.ensure_future(reader(i)) for i in range(8)]
            writers = [asyncio.ensure_future(writer(w)) for w in range(8)]
            await send()
            await asyncio.wait_for(asyncio.gather(*writers), 20)
            deadline = time.monotonic() + 10
            while sum(map(len, got)) < total and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            for t in readers:  # they wait for more: nothing is left to read
                t.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
            assert not adev._pushback

        try:
            run(kind, main)
        finally:
            sender.close()
        seqs = [s for g in got for s in g if s is not None]
        assert sorted(seqs) == list(range(total))
        assert sum(1 for g in got if g) >= 4  # the readers shared the work
        assert max_writers[0] >= 2  # writers did queue behind each other
        deadline = time.monotonic() + 10
        written: list[int] = []
        while len(written) < 8 * per_writer and time.monotonic() < deadline:
            written += eg.drain()
            time.sleep(0.01)
    assert sorted(written) == sorted(w * 10000 + k for w in range(8) for k in range(per_writer))
    for w in range(8):  # no write overtook an earlier one of the same writer
        mine = [s for s in written if s // 10000 == w]
        assert mine == sorted(mine)


def test_backpressure_a_writer_waits_then_completes_nothing_lost(tun, kind):
    adev = ta.AsyncDevice(tun.dev)
    count = 300
    with slow_egress(tun.name, rate="20mbit") as eg:
        tun.dev.sndbuf = 4096
        waited = [0]

        async def main():
            for seq in range(count):
                if seq % 50 == 49:
                    pkts = [udp_to(tun.remote, tun.local, 9, seq, size=1000)]
                    assert await adev.write_batch(pkts) == 1
                else:
                    assert await adev.write(udp_to(tun.remote, tun.local, 9, seq,
                                                   size=1000)) == 1028
                if adev._writing:
                    waited[0] += 1

        t0 = time.monotonic()
        run(kind, main)
        elapsed = time.monotonic() - t0
        deadline = time.monotonic() + 10
        got: list[int] = []
        while len(got) < count and time.monotonic() < deadline:
            got += eg.drain()
            time.sleep(0.01)
    assert got == list(range(count))
    assert waited[0] > count // 2, "the writer never waited for room"
    # 300 KB through a 20 Mbit/s egress takes >= 0.1 s: the writes were paced by it.
    assert elapsed >= 0.08


def test_write_batch_waits_part_way_and_completes_in_order(tun, kind):
    adev = ta.AsyncDevice(tun.dev)
    with slow_egress(tun.name, rate="20mbit") as eg:
        tun.dev.sndbuf = 4096

        async def main():
            batch = tuntap.PacketBatch(64, 2048)
            for i in range(64):
                batch.append(udp_to(tun.remote, tun.local, 9, i, size=1000))
            seq = [udp_to(tun.remote, tun.local, 9, 64 + i, size=1000) for i in range(100)]
            t1 = asyncio.ensure_future(adev.write_batch(batch))
            t2 = asyncio.ensure_future(adev.write(udp_to(tun.remote, tun.local, 9, 164)))
            t3 = asyncio.ensure_future(adev.write_batch(seq))
            assert await asyncio.wait_for(asyncio.gather(t1, t2, t3), 20) == [64, 36, 100]

        run(kind, main)
        deadline = time.monotonic() + 10
        got: list[int] = []
        while len(got) < 165 and time.monotonic() < deadline:
            got += eg.drain()
            time.sleep(0.01)
    # FIFO: the single write waited for the whole batch before it, the list after it.
    assert got == list(range(64)) + [164] + list(range(64, 164))


# -- close, deletion, down --------------------------------------------------------------


def test_close_while_awaited_wakes_readers_and_writers(tun, kind):
    adev = ta.AsyncDevice(tun.dev)
    with slow_egress(tun.name, rate="100kbit"):
        tun.dev.sndbuf = 2048

        async def main():
            readers = [asyncio.ensure_future(adev.read_batch(tuntap.PacketBatch()))
                       for _ in range(3)]
            writers = [asyncio.ensure_future(
                adev.write(udp_to(tun.remote, tun.local, 9, i, size=1000))) for i in range(12)]
            await settle()
            assert len(adev._readers) == 3 and len(adev._writers) >= 3
            waiting = [t for t in writers if not t.done()]
            assert len(waiting) == len(adev._writers)
            adev.close()
            for t in readers + waiting:
                with pytest.raises(ValueError, match=CLOSED):
                    await t
            await asyncio.gather(*writers, return_exceptions=True)
            assert tun.dev.closed and adev.closed
            with pytest.raises(ValueError, match=CLOSED):
                await adev.read()
            with pytest.raises(ValueError, match=CLOSED):
                await adev.write(b"\x45" * 20)
            adev.close()  # idempotent
            await adev.aclose()

        run(kind, main)


def test_close_from_another_thread_while_awaited(tun, kind):
    adev = ta.AsyncDevice(tun.dev)

    async def main():
        task = asyncio.ensure_future(adev.read())
        await settle()
        closer = threading.Thread(target=adev.close)
        closer.start()
        with pytest.raises(ValueError, match=CLOSED):
            await asyncio.wait_for(task, WAIT)
        closer.join(WAIT)
        assert tun.dev.closed

    run(kind, main)


def test_async_with_and_aclose(tun, kind):
    async def main():
        async with ta.AsyncDevice(tun.dev) as adev:
            task = asyncio.ensure_future(adev.read())
            await settle()
        assert adev.closed and tun.dev.closed
        with pytest.raises(ValueError, match=CLOSED):
            await task

    run(kind, main)


def test_interface_deleted_while_awaited(open_device, kind):
    net = unique_net()
    dev = open_device(unique_name())
    dev.add_address(net.cidr)
    dev.up()
    adev = ta.AsyncDevice(dev)

    async def main():
        reader = asyncio.ensure_future(adev.read())
        await settle()
        ip("link", "del", "dev", dev.name)
        with pytest.raises(OSError, match="the interface was deleted") as e:
            await asyncio.wait_for(reader, WAIT)
        assert e.value.errno in (errno.EFAULT, errno.EBADFD)
        with pytest.raises(OSError, match="the interface was deleted") as e:
            await adev.write(udp_to(net.remote, net.local, 9, 0))
        assert e.value.errno == errno.EBADFD

    run(kind, main)


def test_device_down_while_writing_raises_eio(tun, kind):
    adev = ta.AsyncDevice(tun.dev)
    sink = Sink(tun.local, 5603)

    async def main():
        for i in range(20):
            await adev.write(udp_to(tun.remote, tun.local, 5603, i))
            if i == 9:
                tun.dev.down()
                with pytest.raises(OSError, match=r"the interface is down") as e:
                    await adev.write(udp_to(tun.remote, tun.local, 5603, 100))
                assert e.value.errno == errno.EIO
                with pytest.raises(OSError) as e:
                    await adev.write_batch([udp_to(tun.remote, tun.local, 5603, 101)])
                assert e.value.errno == errno.EIO
                tun.dev.up()
        await settle()
        assert sink.drain() == list(range(20))

    try:
        run(kind, main)
    finally:
        sink.close()


# -- loops, arguments --------------------------------------------------------------------


def test_waiting_on_another_loop_gets_runtime_error(tun, kind):
    adev = ta.AsyncDevice(tun.dev)
    sender = Sender(tun.remote)

    async def first():
        sender.send(1)
        await settle()
        return seq_of(await adev.read())  # completes at once: binds nothing

    async def waits_first():
        task = asyncio.ensure_future(adev.read())  # binds the object to this loop
        await settle()
        sender.send(1)
        return seq_of(await asyncio.wait_for(task, WAIT))

    async def second():
        # A packet is queued: the call completes without touching the loop (as with
        # asyncio.Queue.get on a non-empty queue).
        sender.send(1)
        await settle()
        assert seq_of(await adev.read()) == 2
        # This one has to wait, on another loop than the one the object is bound to.
        with pytest.raises(RuntimeError, match="is bound to the event loop .* not the "
                                               "running loop"):
            await adev.read()
        with pytest.raises(RuntimeError, match="bound to the event loop"):
            await adev.read_batch(tuntap.PacketBatch())
        assert not adev._readers

    try:
        assert run(kind, first) == 0
        assert run(kind, waits_first) == 1
        run(kind, second)
    finally:
        sender.close()


def test_constructor_and_open(tun, kind):
    with pytest.raises(TypeError, match="must be a tuntap.Device, not int"):
        ta.AsyncDevice(5)  # type: ignore[arg-type]
    closed = tuntap.Device("")
    closed.close()
    with pytest.raises(ValueError, match=CLOSED):
        ta.AsyncDevice(closed)
    tun.dev.settimeout(3)
    adev = ta.AsyncDevice(tun.dev)
    assert tun.dev.getblocking() is False
    assert adev.device is tun.dev and adev.fileno() == tun.dev.fileno()
    assert "AsyncDevice" in repr(adev)

    async def main():
        a = ta.open(unique_name(), tuntap.Flags.TUN | tuntap.Flags.NO_PI, blocking=True)
        try:
            assert isinstance(a.device, tuntap.Device) and not a.device.getblocking()
            with pytest.raises(TypeError, match="argument must be PacketBatch"):
                await a.read_batch([])  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="empty packet"):
                await a.write(b"")
        finally:
            await a.aclose()

    run(kind, main)


def test_multi_queue_one_async_device_per_queue(kind):
    net = unique_net()
    name = unique_name()
    queues = tuntap.open_queues(name, 2)
    try:
        queues[0].add_address(net.cidr)
        queues[0].up()
        adevs = [ta.AsyncDevice(q) for q in queues]
        socks = [Sender(net.remote, 5700) for _ in range(16)]  # 16 flows
        per_flow = 10
        got: list[list[tuple[int, int]]] = [[], []]

        async def reader(i):
            while sum(map(len, got)) < 16 * per_flow:
                pkt = await adevs[i].read()
                s = seq_of(pkt)
                if s is not None:
                    sport = int.from_bytes(pkt[20:22], "big")
                    got[i].append((sport, s))

        async def main():
            readers = [asyncio.ensure_future(reader(i)) for i in range(2)]
            await settle()
            for k in range(per_flow):
                for s in socks:
                    s.next = k
                    s.send(1)
                await asyncio.sleep(0)
            done, _ = await asyncio.wait(readers, timeout=WAIT,
                                         return_when=asyncio.FIRST_COMPLETED)
            for t in readers:
                t.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

        try:
            run(kind, main)
        finally:
            for s in socks:
                s.close()
        allpkts = got[0] + got[1]
        assert len(allpkts) == 16 * per_flow and len(set(allpkts)) == len(allpkts)
        assert got[0] and got[1], "both queues got flows"
        flows = [{sp for sp, _ in g} for g in got]
        assert not flows[0] & flows[1], "a flow stays on one queue"
    finally:
        for q in queues:
            q.close()


@pytest.mark.needs_tool("ping")
def test_example_async_ping_responder_answers_ping(kind):
    here = os.path.dirname(os.path.abspath(__file__))
    script = os.path.join(os.path.dirname(here), "examples", "async_ping_responder.py")
    r = subprocess.run([sys.executable, script, "--count", "3", "--loop", kind],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 packets transmitted, 3 received" in r.stdout
    assert "answered 3 echo requests" in r.stdout


@pytest.mark.needs_tool("ping")
@pytest.mark.parametrize("mode", ["asyncio", "await"])
def test_example_forward_asyncio_modes_carry_ping(kind, mode):
    """examples/forward.py --mode asyncio (create_endpoint) / await (AsyncDevice tasks)."""
    here = os.path.dirname(os.path.abspath(__file__))
    script = os.path.join(os.path.dirname(here), "examples", "forward.py")
    r = subprocess.run([sys.executable, script, "--mode", mode, "--loop", kind],
                       capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 packets transmitted, 3 received" in r.stdout
    stats = json.loads(r.stdout.strip().splitlines()[-1])
    assert stats["forwarder"] == f"tuntap-{mode}-{kind}"
    assert all(d["packets"] >= 3 and d["dropped"] == 0 for d in stats["directions"])
