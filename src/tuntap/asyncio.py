"""asyncio for TUN/TAP devices: awaitable zero-copy I/O that loses no packet on cancel.

``import tuntap.asyncio`` (``import tuntap`` never imports asyncio, as pyzmq's
``zmq.asyncio``). Two interfaces:

- :class:`AsyncDevice` wraps an open :class:`tuntap.Device` (switched to non-blocking):
  ``await readinto(buf)``, ``await read(size)``, ``await read_batch(batch)``,
  ``await write(data)``, ``await write_batch(packets)``.
- :func:`create_endpoint` gives a :class:`PacketTransport` and your
  :class:`PacketProtocol`, in the manner of ``loop.create_datagram_endpoint``:
  ``protocol.packets_received(batch)`` once per batch read (a wake-up reads on while
  batches come back full, up to 16), no future or task per packet.

How a call runs
---------------
*Try first, wait second* (as CPython's ``sock_recv_into``): a call first tries the
system call once; a packet already queued is read with no event-loop round trip.
The five I/O methods are C (the base class ``_tuntap._AsyncCore``): each returns a
coroutine object made in C that does nothing until awaited, then tries once through
the non-raising ``_try_*`` methods (-1 or None on ``EAGAIN`` instead of
``BlockingIOError``) and, only if nothing was ready, waits in the coroutine of
``AsyncDevice._wait()``. A call that is never awaited reads and writes nothing.

Only when the queue is empty does the call wait: it joins a FIFO of waiters and the
device's fd is registered with the loop (``add_reader``) once while waiters exist,
not once per call. When the fd becomes readable, the loop's callback reads for the
waiters in order, each read done only for a waiter that is still pending, until the
queue is empty. A call never tries first while others are waiting, so waiters are
served in order and a write never overtakes a queued one.

Cancellation
------------
A call cancelled while it waits consumes nothing: no packet is read (or written) for
it. If the cancel comes after the packets were read for it but before the awaiting
task resumed (the data arrived in the same loop iteration), the packets are not lost:
they are kept, in the order read, and returned by the next read on this
``AsyncDevice``; ``await read_batch(batch)`` then leaves the batch empty
(``len(batch) == 0``) and ``readinto`` leaves the packet's bytes in the buffer but
returns it again to the next reader. (Packets served to other waiters meanwhile
come first, so order is kept except across such a cancel.) A cancelled write may
already have been written, as with sockets; a cancelled ``write_batch`` leaves the
packets written so far written and writes no more.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import select
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Protocol, TypeVar, Union

from . import _tuntap
from ._device import Device
from ._flags import Flags

__all__ = [
    "AsyncDevice",
    "PacketProtocol",
    "PacketTransport",
    "create_endpoint",
    "open",
]

_CLOSED = "I/O operation on closed device"
# A detached queue polls POLLERR but reads EAGAIN (docs/kernel.md): look again this often.
_DETACHED_RECHECK = 0.05

_Buffer = Any  # a bytes-like object (collections.abc.Buffer from 3.12 on)
_Packets = Union[_tuntap.PacketBatch, Sequence[Any]]
_T = TypeVar("_T")


def _closed_error() -> ValueError:
    return ValueError(_CLOSED)


class _Waiter:
    """One awaiting call: its future, the try-method and argument, progress made."""

    __slots__ = ("fut", "fn", "arg", "kind", "done", "total")

    def __init__(self, fut: asyncio.Future[Any], fn: Callable[..., Any], arg: Any, kind: int,
                 total: int = 0) -> None:
        self.fut = fut
        self.fn = fn
        self.arg = arg
        self.kind = kind
        self.done = 0
        self.total = total


# Waiter kinds: how a result is kept when its task is cancelled after it arrived.
_READINTO, _READ, _READ_BATCH, _WRITE, _WRITE_BATCH = range(5)


def _poll_error_only(fd: int) -> bool:
    """True when ``fd`` polls POLLERR without POLLIN (a detached queue)."""
    p = select.poll()
    p.register(fd, select.POLLIN)
    for _, ev in p.poll(0):
        return bool(ev & select.POLLERR) and not ev & select.POLLIN
    return False


class AsyncDevice(_tuntap._AsyncCore):
    """An open :class:`tuntap.Device` for asyncio (default loop or uvloop).

    ``AsyncDevice(device)`` switches the device to non-blocking mode and wraps it. The
    object is bound to the event loop it first waits on; a call that has to wait from
    another loop raises ``RuntimeError``. (As ``asyncio.Lock`` and ``asyncio.Queue`` do:
    a call that completes at once, because a packet was queued or the send buffer had
    room, never touches the loop, so it does not check which one runs it; the check
    would add a lookup in asyncio to every packet.) Closing (``close()``,
    ``await aclose()``, ``async with``) closes the device and makes every waiting call raise
    ``ValueError("I/O operation on closed device")``; ``close()`` may be called from any
    thread.

    Errors are the sync API's: ``OSError`` (EIO while the interface is down, EFAULT or
    EBADFD once it was deleted, the message says so), ``ValueError`` for a closed
    device or bad sizes, ``TypeError`` for wrong types.

    Parameters
    ----------
    device : tuntap.Device
        An open device (``Device`` or a subclass); it stays available as ``.device``.

    Raises
    ------
    TypeError
        ``device`` is not a :class:`tuntap.Device`.
    ValueError
        The device is closed.
    """

    __slots__ = (
        "_fd", "_loop", "_thread", "_readers", "_writers", "_reading",
        "_writing", "_closed", "_pushback", "_spurious", "_paused", "_fns",
    )

    def __init__(self, device: _tuntap.Device) -> None:
        if not isinstance(device, _tuntap.Device):
            raise TypeError(f"AsyncDevice() argument must be a tuntap.Device, "
                            f"not {type(device).__name__}")
        device.setblocking(False)
        self._fd = device.fileno()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = 0
        self._readers: collections.deque[_Waiter] = collections.deque()
        self._writers: collections.deque[_Waiter] = collections.deque()
        self._reading = self._writing = self._closed = self._paused = False
        self._pushback: collections.deque[bytes] = collections.deque()
        self._spurious = 0
        # The device's non-raising tries, indexed by call kind (_READINTO ... _WRITE_BATCH).
        self._fns: tuple[Callable[..., Any], ...] = (
            device._try_readinto, device._try_read, device._try_read_batch,
            device._try_write, device._try_write_batch)
        super().__init__(device, self._readers, self._writers, self._pushback)

    def __repr__(self) -> str:
        return f"<AsyncDevice {self.device!r}>"

    # -- loop binding ---------------------------------------------------------------
    def _bind(self) -> asyncio.AbstractEventLoop:
        """The running loop, which must be the one this object waits on (the first)."""
        loop = asyncio.get_running_loop()  # RuntimeError outside a running loop
        if self._loop is None:
            self._loop = loop
            self._thread = threading.get_ident()
        elif loop is not self._loop:
            raise RuntimeError(f"{self!r} is bound to the event loop {self._loop!r}, "
                               f"not the running loop {loop!r}")
        return loop

    def fileno(self) -> int:
        """The device's file descriptor."""
        return self.device.fileno()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (or the device was closed)."""
        return self._closed or self.device.closed

    # -- reads and writes: readinto, read, read_batch, write and write_batch are the C
    # base's (_tuntap._AsyncCore): they return awaitables that try first, in C, and
    # call _wait() for the coroutine below only when nothing was ready. ---------------
    def _wait(self, kind: int, arg: Any, done: int) -> Coroutine[Any, Any, Any]:
        """The coroutine a call of ``kind`` waits in (the try found nothing ready)."""
        if kind >= _WRITE:
            total = 1 if kind == _WRITE else len(arg)
            return self._wait_write(self._fns[kind], arg, kind, total, done)
        return self._wait_read(self._fns[kind], arg, kind)

    async def _wait_read(self, fn: Callable[[Any], Any], arg: Any, kind: int) -> Any:
        loop = self._bind()
        if self._closed:
            raise _closed_error()
        if kind == _READ_BATCH:
            if type(arg) is not _tuntap.PacketBatch:
                fn(arg)  # raises the sync API's TypeError
            arg.clear()
        if self._pushback and not self._readers:
            return self._from_pushback(kind, arg)
        fut = loop.create_future()
        w = _Waiter(fut, fn, arg, kind)
        self._readers.append(w)
        if not self._reading:
            self._start_reading()
        try:
            return await fut
        except BaseException:  # cancelled, or the call closed (GeneratorExit)
            self._reader_cancelled(w)
            raise

    def _from_pushback(self, kind: int, arg: Any) -> Any:
        """Serve a read from packets kept after a cancel (same rules as the kernel)."""
        pb = self._pushback
        if kind == _READ:
            if arg < 0:
                self._fns[_READ](arg)  # raises the sync API's ValueError
            return pb.popleft()[:arg]
        if kind == _READINTO:
            view = memoryview(arg).cast("B")
            data = pb.popleft()
            n = min(len(data), len(view))
            view[:n] = data[:n]
            return n
        batch: _tuntap.PacketBatch = arg
        batch.clear()
        while pb and len(batch) < batch.capacity:
            batch.append(pb.popleft()[:batch.slot_size])
        return len(batch)

    def _reader_cancelled(self, w: _Waiter) -> None:
        fut = w.fut
        if not fut.cancelled() and fut.done() and fut.exception() is None:
            # The packets were read for this call, then the cancel won: keep them.
            result = fut.result()
            pb = self._pushback
            if w.kind == _READ:
                pb.append(result)
            elif w.kind == _READINTO:
                pb.append(bytes(memoryview(w.arg).cast("B")[:result]))
            else:
                batch: _tuntap.PacketBatch = w.arg
                pb.extend(bytes(p) for p in batch)
                batch.clear()
            if self._readers and self._loop is not None:
                self._loop.call_soon(self._on_readable)
        else:
            try:
                self._readers.remove(w)
            except ValueError:
                pass

    def _start_reading(self) -> None:
        assert self._loop is not None
        self._loop.add_reader(self._fd, self._on_readable)
        self._reading = True

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._fd)

    def _on_readable(self) -> None:
        """The fd is readable (or packets were kept): serve the waiters in order."""
        readers = self._readers
        if not readers:
            # Nobody waits any more: drop the registration (lazily, so a task that is
            # served and waits again at once keeps it).
            self._stop_reading()
            return
        pushback = self._pushback
        while readers:
            w = readers[0]
            fut = w.fut
            if fut.done():  # cancelled while waiting: read nothing for it
                readers.popleft()
                continue
            if pushback:
                r = self._from_pushback(w.kind, w.arg)
            else:
                try:
                    r = w.fn(w.arg)
                except Exception as exc:  # the sync API's error, for this waiter
                    readers.popleft()
                    fut.set_exception(exc)
                    continue
                if r is None or r == -1:
                    self._not_ready()
                    return
            readers.popleft()
            fut.set_result(r)
        self._spurious = 0

    def _not_ready(self) -> None:
        """A wake-up found nothing: normal now and then (another reader drained the
        queue first); twice in a row on a POLLERR-only fd it is a detached queue, which
        would wake the loop forever: look again every 50 ms instead (as the engine)."""
        self._spurious += 1
        if self._spurious >= 2 and not self._paused and _poll_error_only(self._fd):
            assert self._loop is not None
            self._stop_reading()
            self._paused = True
            self._loop.call_later(_DETACHED_RECHECK, self._recheck)

    def _recheck(self) -> None:
        self._paused = False
        self._spurious = 0
        if self._closed:
            return
        if self._readers and not self._reading:
            self._start_reading()
        self._on_readable()

    # -- writes -----------------------------------------------------------------------
    async def _wait_write(self, fn: Callable[..., Any], arg: Any, kind: int, total: int,
                          done: int) -> Any:
        loop = self._bind()
        if self._closed:
            raise _closed_error()
        fut = loop.create_future()
        w = _Waiter(fut, fn, arg, kind, total)
        w.done = done
        self._writers.append(w)
        if not self._writing:
            loop.add_writer(self._fd, self._on_writable)
            self._writing = True
        try:
            return await fut
        except BaseException:  # cancelled, or the call closed (GeneratorExit)
            try:
                self._writers.remove(w)
            except ValueError:
                pass
            raise

    def _stop_writing(self) -> None:
        if self._writing:
            self._writing = False
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_writer(self._fd)

    def _on_writable(self) -> None:
        writers = self._writers
        if not writers:
            self._stop_writing()
            return
        while writers:
            w = writers[0]
            fut = w.fut
            if fut.done():
                writers.popleft()
                continue
            try:
                if w.kind == _WRITE:
                    r = w.fn(w.arg)
                else:
                    r = w.fn(w.arg, w.done)
            except Exception as exc:
                writers.popleft()
                if w.done:  # a later write failed: the count so far (like send())
                    fut.set_result(w.done)
                else:
                    fut.set_exception(exc)
                continue
            if r == -1:
                return  # still full: wait for POLLOUT
            if w.kind == _WRITE_BATCH:
                w.done += r
                if w.done < w.total:
                    return  # full again part-way (or stopped: the next try says why)
                r = w.done
            writers.popleft()
            fut.set_result(r)

    # -- closing ----------------------------------------------------------------------
    def close(self) -> None:
        """Close the device; every waiting call raises ``ValueError``. Idempotent.

        Safe from any thread: from another thread the close is handed to the loop's
        thread (``call_soon_threadsafe``), so the fd leaves the loop's selector before it
        is closed; if the loop is closed or not running it happens at once.
        """
        if self._closed:
            return
        self._closed = True
        loop = self._loop
        if loop is None or threading.get_ident() == self._thread or not loop.is_running():
            self._close_now()
            return
        try:
            loop.call_soon_threadsafe(self._close_now)
        except RuntimeError:  # the loop was closed meanwhile
            self._close_now()

    def _close_now(self) -> None:
        self._stop_reading()
        self._stop_writing()
        self.device.close()
        self._pushback.clear()
        for queue in (self._readers, self._writers):
            while queue:
                fut = queue.popleft().fut
                if not fut.done():
                    fut.set_exception(_closed_error())

    async def aclose(self) -> None:
        """Close (see :meth:`close`) and let the waiting tasks see it."""
        self.close()
        await asyncio.sleep(0)

    async def __aenter__(self) -> AsyncDevice:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def open(name: str = "", flags: int = Flags.TUN | Flags.NO_PI, **kwargs: Any) -> AsyncDevice:
    """Make a :class:`tuntap.Device` (same arguments) and wrap it in an :class:`AsyncDevice`.

    Raises
    ------
    The errors of :class:`tuntap.Device`.
    """
    kwargs.pop("blocking", None)  # the wrapper makes it non-blocking anyway
    return AsyncDevice(Device(name, flags, **kwargs))


# -------------------------------------------------------------------------------------
# The protocol interface
# -------------------------------------------------------------------------------------


class PacketProtocol(asyncio.BaseProtocol):
    """What :func:`create_endpoint` calls; subclass it and override what you need.

    ``connection_made(transport)`` first, then ``packets_received(batch)`` once per
    batch read (a wake-up reads on while the batch comes back full, up to 16 times),
    ``error_received(exc)`` when a buffered write fails, ``pause_writing()`` /
    ``resume_writing()`` around the write buffer's high and low water marks, and
    ``connection_lost(exc)`` last (``None`` after ``close()``, the ``OSError`` when the
    interface was deleted).
    """

    def packets_received(self, batch: _tuntap.PacketBatch) -> None:
        """The packets of one read: ``batch[i]`` are zero-copy views, valid only
        during this call (the next read reuses the batch). Copy what you keep."""

    def error_received(self, exc: OSError) -> None:
        """A write failed (EINVAL: malformed packet, EIO: interface down); the packet
        was dropped."""


class _ProtocolLike(Protocol):
    def connection_made(self, transport: Any) -> None: ...
    def connection_lost(self, exc: Exception | None) -> None: ...
    def packets_received(self, batch: _tuntap.PacketBatch) -> None: ...


_P = TypeVar("_P", bound=_ProtocolLike)

# Full batches one wake-up reads before going back to the loop (PacketTransport).
_FULL_READS = 16

# errnos that mean the device is gone: the transport closes (tt_raise in engine.c).
_FATAL = {errno.EFAULT, errno.EBADFD}


class PacketTransport(asyncio.BaseTransport):
    """The transport of :func:`create_endpoint`: reads every wake-up into one
    :class:`tuntap.PacketBatch` and hands it to the protocol; buffers writes the
    device's send buffer cannot take yet and writes them in order when it can."""

    def __init__(self, loop: asyncio.AbstractEventLoop, device: _tuntap.Device,
                 protocol: Any, batch: _tuntap.PacketBatch) -> None:
        super().__init__(extra={"device": device})
        self._loop = loop
        self._device = device
        self._fd = device.fileno()
        self._protocol = protocol
        self._batch = batch
        self._buffer: list[bytes] = []
        self._buffer_size = 0
        self._reading = False
        self._writing = False
        self._closing = False
        self._lost = False
        self._protocol_paused = False
        self._high = 64 * 1024
        self._low = 16 * 1024
        self._try_read_batch = device._try_read_batch
        self._try_write = device._try_write
        self._try_write_batch = device._try_write_batch

    def __repr__(self) -> str:
        state = "closing" if self._closing else "reading" if self._reading else "paused"
        return f"<PacketTransport {self._device!r} {state}>"

    # -- reading ----------------------------------------------------------------------
    def _on_readable(self) -> None:
        batch = self._batch
        # A full batch means more may be queued: read on (at most _FULL_READS batches)
        # before going back to the loop, as the epoll forwarder does; one loop
        # iteration per batch cost ~20% of the plain-MTU forwarding rate.
        for _ in range(_FULL_READS):
            try:
                n = self._try_read_batch(batch)
            except Exception as exc:  # deleted interface (OSError) or closed device
                self._fatal(exc)
                return
            if n <= 0:
                return
            self._protocol.packets_received(batch)
            if n < batch.capacity or not self._reading:  # drained, or paused/closed
                return

    def pause_reading(self) -> None:
        """Stop reading until :meth:`resume_reading` (the kernel queues, then drops)."""
        if self._reading:
            self._reading = False
            self._loop.remove_reader(self._fd)

    def resume_reading(self) -> None:
        """Read again after :meth:`pause_reading`."""
        if not self._reading and not self._closing:
            self._reading = True
            self._loop.add_reader(self._fd, self._on_readable)

    def is_reading(self) -> bool:
        return self._reading

    # -- writing ----------------------------------------------------------------------
    def write(self, data: _Buffer) -> None:
        """Write one packet now, or buffer it (copied) behind earlier buffered ones."""
        if self._closing:
            return
        if not self._buffer:
            try:
                if self._try_write(data) != -1:
                    return
            except OSError as exc:
                self._write_error(exc)
                return
        packet = memoryview(data).tobytes()
        if not packet:
            raise ValueError("write() of an empty packet")
        self._append([packet])

    def write_batch(self, packets: _Packets) -> None:
        """Write a :class:`tuntap.PacketBatch` or a sequence of packets; what the send
        buffer cannot take now is copied into the write buffer, in order."""
        if self._closing:
            return
        done = 0
        total = len(packets)
        if not self._buffer:
            try:
                done = max(0, self._try_write_batch(packets))
            except OSError as exc:
                self._write_error(exc)
                done = 1  # that packet is dropped, as one write() would drop it
            if done >= total:
                return
        if isinstance(packets, _tuntap.PacketBatch):
            rest = [bytes(packets[i]) for i in range(done, total)]
        else:
            rest = [memoryview(p).tobytes() for p in packets[done:]]
        self._append(rest)

    def _append(self, packets: list[bytes]) -> None:
        self._buffer.extend(packets)
        self._buffer_size += sum(map(len, packets))
        if not self._writing:
            self._writing = True
            self._loop.add_writer(self._fd, self._on_writable)
        if not self._protocol_paused and self._buffer_size > self._high:
            self._protocol_paused = True
            self._call_protocol("pause_writing")

    def _on_writable(self) -> None:
        buf = self._buffer
        while buf:
            try:
                n = self._try_write_batch(buf)
            except OSError as exc:
                self._buffer_size -= len(buf[0])
                del buf[0]
                self._write_error(exc)
                if self._lost:
                    return
                continue
            except ValueError as exc:  # closed under us
                self._fatal(exc)
                return
            if n == -1:
                return
            self._buffer_size -= sum(map(len, buf[:n]))
            del buf[:n]
            if n == 0:
                break
        if not buf:
            self._writing = False
            self._loop.remove_writer(self._fd)
            if self._closing:
                self._finish(None)
        if self._protocol_paused and self._buffer_size <= self._low:
            self._protocol_paused = False
            self._call_protocol("resume_writing")

    def _write_error(self, exc: OSError) -> None:
        if exc.errno in _FATAL:
            self._fatal(exc)
        else:
            self._call_protocol("error_received", exc)

    def _call_protocol(self, name: str, *args: Any) -> None:
        method = getattr(self._protocol, name, None)
        if method is not None:
            method(*args)

    def get_write_buffer_size(self) -> int:
        """Bytes buffered, waiting for room in the device's send buffer."""
        return self._buffer_size

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Water marks for ``pause_writing()``/``resume_writing()`` (64 KiB / 16 KiB)."""
        high = 64 * 1024 if high is None else high
        low = high // 4 if low is None else low
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    # -- closing ----------------------------------------------------------------------
    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop reading, write what is buffered, then close the device and call
        ``connection_lost(None)``."""
        if self._closing:
            return
        self._closing = True
        self.pause_reading()
        if not self._buffer:
            self._loop.call_soon(self._finish, None)

    def abort(self) -> None:
        """Close at once, dropping the write buffer."""
        self._finish(None)

    def _fatal(self, exc: Exception) -> None:
        self._finish(exc)

    def _finish(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        self.pause_reading()
        if self._writing:
            self._writing = False
            self._loop.remove_writer(self._fd)
        self._buffer.clear()
        self._buffer_size = 0
        self._device.close()
        self._protocol.connection_lost(exc)

    def get_protocol(self) -> Any:
        return self._protocol

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol


def _default_batch(device: _tuntap.Device) -> _tuntap.PacketBatch:
    hdr = device.header_size
    if Flags(device.flags) & Flags.VNET_HDR:
        return _tuntap.PacketBatch(64, 65536 + hdr)  # GSO super-packets
    return _tuntap.PacketBatch(64, max(2048, device.mtu + hdr + 64))


async def create_endpoint(protocol_factory: Callable[[], _P], device: _tuntap.Device,
                          batch: _tuntap.PacketBatch | None = None
                          ) -> tuple[PacketTransport, _P]:
    """Connect ``device`` to a protocol, like ``loop.create_datagram_endpoint``.

    The device is switched to non-blocking and owned by the transport from now on
    (``transport.close()`` closes it). Reading starts right after
    ``protocol.connection_made(transport)``.

    Parameters
    ----------
    protocol_factory : callable
        Returns the protocol (a :class:`PacketProtocol` or anything with its methods).
    device : tuntap.Device
        An open device.
    batch : tuntap.PacketBatch, optional
        The batch every wake-up reads into (default: 64 slots of the MTU plus headers,
        64 KiB slots on a ``VNET_HDR`` device).

    Returns
    -------
    (PacketTransport, protocol)
    """
    loop = asyncio.get_running_loop()
    if not isinstance(device, _tuntap.Device):
        raise TypeError(f"create_endpoint() device must be a tuntap.Device, "
                        f"not {type(device).__name__}")
    device.setblocking(False)
    if batch is None:
        batch = _default_batch(device)
    elif not isinstance(batch, _tuntap.PacketBatch):
        raise TypeError(f"batch must be a PacketBatch, not {type(batch).__name__}")
    protocol = protocol_factory()
    transport = PacketTransport(loop, device, protocol, batch)
    protocol.connection_made(transport)
    transport.resume_reading()
    return transport, protocol
