"""The awaitable calls of tuntap.asyncio.AsyncDevice (the C type _AioCall): the
coroutine protocol with real packets, and the rule that a call reads nothing before
it is first resumed."""

from __future__ import annotations

import asyncio
import collections
import collections.abc
import gc
import inspect

import pytest

import tuntap
import tuntap.asyncio as ta
from asyncutil import LOOPS, Sender, run, seq_of
from netutil import WAIT
from tuntap import _tuntap

pytestmark = [pytest.mark.needs_tun, pytest.mark.parametrize("kind", LOOPS)]

REUSED = "^cannot reuse an already awaited tuntap call$"


async def settle() -> None:
    await asyncio.sleep(0.01)


def finish(call):
    """Resume a call once; its result if it completed without suspending."""
    with pytest.raises(StopIteration) as info:
        call.send(None)
    return info.value.value


def with_sender(tun, kind, body):
    """Run ``body(adev, sender)`` on a fresh loop of ``kind``: an AsyncDevice on the
    session device and a UDP sender through it (closed afterwards)."""
    adev = ta.AsyncDevice(tun.dev)
    sender = Sender(tun.remote)
    try:
        run(kind, lambda: body(adev, sender))
    finally:
        sender.close()


def _calls(adev):
    """One call of each kind that reads, and what its result says about the packet."""
    buf = bytearray(2048)
    batch = tuntap.PacketBatch(4, 2048)
    return [
        (adev.readinto(buf), lambda n: seq_of(buf[:n])),
        (adev.read(), seq_of),
        (adev.read(2048), seq_of),
        (adev.read_batch(batch), lambda n: seq_of(batch[0]) if n == 1 else None),
    ]


def test_calls_are_coroutines_to_asyncio(tun, kind):
    async def main(adev, sender):
        call = adev.read()
        assert isinstance(call, collections.abc.Coroutine)
        assert asyncio.iscoroutine(call) and inspect.isawaitable(call)
        call.close()
        # create_task, gather and wait_for take them like the coroutines of async def.
        task = asyncio.create_task(adev.read())
        await settle()
        assert not task.done()
        sender.send(3)
        assert seq_of(await asyncio.wait_for(task, WAIT)) == 0
        got = await asyncio.gather(adev.read(), asyncio.wait_for(adev.read(), WAIT))
        assert [seq_of(p) for p in got] == [1, 2]

    with_sender(tun, kind, main)


def test_a_call_never_resumed_reads_nothing(tun, kind):
    async def main(adev, sender):
        sender.send(1)
        await settle()
        for call, _ in _calls(adev):
            del call  # dropped without an await
        for call, _ in _calls(adev):
            call.close()
        closed = adev.write(b"\x45" + bytes(19))
        closed.close()
        with pytest.raises(RuntimeError, match=REUSED):
            closed.send(None)
        # The packet is still the first one queued.
        assert seq_of(await adev.read()) == 0

    with_sender(tun, kind, main)


def test_each_kind_of_call_completes_at_once_and_cannot_be_reused(tun, kind):
    async def main(adev, sender):
        sender.send(4)
        await settle()
        for i, (call, seq) in enumerate(_calls(adev)):
            assert seq(finish(call)) == i
            with pytest.raises(RuntimeError, match=REUSED):
                call.send(None)
            with pytest.raises(RuntimeError, match=REUSED):
                await call
        assert not adev._reading

    with_sender(tun, kind, main)


def test_a_waiting_call_cannot_be_awaited_again_once_done(tun, kind):
    async def main(adev, sender):
        call = adev.read()

        async def waiter():
            return await call

        task = asyncio.ensure_future(waiter())
        await settle()
        assert len(adev._readers) == 1
        sender.send(1)
        assert seq_of(await asyncio.wait_for(task, WAIT)) == 0
        with pytest.raises(RuntimeError, match=REUSED):
            await call

    with_sender(tun, kind, main)


def test_send_of_a_value_to_a_new_call_raises_type_error_and_reads_nothing(tun, kind):
    async def main(adev, sender):
        sender.send(1)
        await settle()
        call = adev.read()
        with pytest.raises(TypeError,
                           match="^can't send non-None value to a just-started tuntap call$"):
            call.send(1)
        with pytest.raises(RuntimeError, match=REUSED):
            call.send(None)
        assert seq_of(await adev.read()) == 0

    with_sender(tun, kind, main)


def test_throw_into_a_new_call_raises_it_and_reads_nothing(tun, kind):
    async def main(adev, sender):
        sender.send(1)
        await settle()
        with pytest.raises(KeyError, match="x"):
            adev.read().throw(KeyError("x"))
        with pytest.raises(KeyError, match="y"):
            adev.read().throw(KeyError, "y")
        with pytest.raises(LookupError):
            adev.readinto(bytearray(64)).throw(LookupError)
        with pytest.raises(TypeError, match="^exceptions must be classes or instances "
                                            "deriving from BaseException$"):
            adev.read().throw(1)
        with pytest.raises(TypeError, match="throw expected at least 1 argument"):
            adev.read().throw()
        call = adev.read()
        with pytest.raises(KeyError):
            call.throw(KeyError)
        with pytest.raises(RuntimeError, match=REUSED):
            call.send(None)
        assert seq_of(await adev.read()) == 0

    with_sender(tun, kind, main)


def test_throw_into_a_waiting_call_cancels_it_and_consumes_nothing(tun, kind):
    async def main(adev, sender):
        call = adev.read()
        fut = call.send(None)  # nothing queued: it waits on a future of this loop
        assert isinstance(fut, asyncio.Future) and len(adev._readers) == 1
        with pytest.raises(asyncio.CancelledError):
            call.throw(asyncio.CancelledError())
        assert not adev._readers
        with pytest.raises(RuntimeError, match=REUSED):
            call.send(None)
        sender.send(1)
        assert seq_of(await asyncio.wait_for(adev.read(), WAIT)) == 0

    with_sender(tun, kind, main)


def test_closing_or_dropping_a_waiting_call_leaves_no_waiter(tun, kind):
    async def main(adev, sender):
        call = adev.readinto(bytearray(2048))
        call.send(None)
        assert len(adev._readers) == 1
        call.close()  # GeneratorExit in the waiting coroutine: the waiter leaves
        assert not adev._readers
        call.close()  # idempotent
        dropped = adev.read_batch(tuntap.PacketBatch(4, 2048))
        dropped.send(None)
        assert len(adev._readers) == 1
        del dropped
        gc.collect()
        assert not adev._readers
        # No packet is read for either of them.
        sender.send(2)
        assert seq_of(await asyncio.wait_for(adev.read(), WAIT)) == 0
        assert seq_of(await asyncio.wait_for(adev.read(), WAIT)) == 1

    with_sender(tun, kind, main)


def test_the_gc_sees_a_waiting_call_and_its_coroutine(tun, kind):
    """A call that completes at once is never tracked (the fast path); once it waits
    it is, and it shows the collector the device and the coroutine it delegates to."""
    adev = ta.AsyncDevice(tun.dev)
    buf = bytearray(2048)

    async def main():
        call = adev.readinto(buf)
        assert not gc.is_tracked(call)
        call.send(None)
        assert gc.is_tracked(call)
        refs = gc.get_referents(call)
        assert adev in refs and any(refs_i is buf for refs_i in refs)
        assert [inspect.iscoroutine(r) for r in refs].count(True) == 1
        call.close()
        assert not adev._readers
        assert not any(inspect.iscoroutine(r) for r in gc.get_referents(call))

    run(kind, main)


def test_calls_are_not_made_by_hand_and_need_the_base_initialised(tun, kind):
    adev = ta.AsyncDevice(tun.dev)
    call = adev.read()
    call_type = type(call)
    call.close()
    with pytest.raises(TypeError, match="^cannot create 'tuntap._tuntap._AioCall' instances$"):
        call_type()

    class NoInit(ta.AsyncDevice):
        def __init__(self) -> None:
            pass

    with pytest.raises(TypeError, match=r"^_AsyncCore.__init__\(\) was not called$"):
        NoInit().read()
    with pytest.raises(AttributeError, match="^device$"):
        _ = NoInit().device
    q = collections.deque
    with pytest.raises(TypeError,
                       match="^AsyncDevice\\(\\) argument must be a tuntap.Device, not object$"):
        _tuntap._AsyncCore(object(), q(), q(), q())
    with pytest.raises(TypeError, match=r"^_AsyncCore\(\) takes exactly 4 arguments \(1 given\)$"):
        _tuntap._AsyncCore(tun.dev)
    with pytest.raises(TypeError, match=r"^_AsyncCore\(\) takes no keyword arguments$"):
        _tuntap._AsyncCore(tun.dev, q(), q(), pushback=q())
    assert adev.device is tun.dev


def test_deques_replaced_by_other_sequences_still_order_calls(tun, kind):
    """The C side reads the waiters' deques directly; any sized container works."""
    sender = Sender(tun.remote)

    class Listed(ta.AsyncDevice):
        __slots__ = ()

    adev = Listed(tun.dev)
    readers: list[object] = []
    _tuntap._AsyncCore.__init__(adev, tun.dev, readers, [], [])

    async def main():
        sender.send(1)
        await settle()
        readers.append(None)  # "someone waits": no try first
        call = adev.read()
        fut = call.send(None)
        assert isinstance(fut, asyncio.Future)
        call.close()
        readers.clear()
        assert seq_of(await adev.read()) == 0

    try:
        run(kind, main)
    finally:
        sender.close()


def test_results_travel_in_stop_iteration_and_a_kept_one_never_changes(tun, kind):
    """next() (what ``await`` uses from 3.12 on) ends with StopIteration(result); one
    that somebody keeps is never reused for a later result."""
    async def main(adev, sender):
        sender.send(3)
        await settle()
        with pytest.raises(StopIteration) as first:
            next(adev.read())
        kept = first.value
        with pytest.raises(StopIteration) as second:
            next(adev.read())
        assert second.value is not kept
        assert seq_of(kept.value) == 0 and seq_of(second.value.value) == 1
        assert kept.__traceback__ is not None  # raised through this frame: its own
        del first, second, kept
        assert seq_of(await adev.read()) == 2

    with_sender(tun, kind, main)
