"""anyio for TUN/TAP devices: the :class:`tuntap.asyncio.AsyncDevice` API on anyio, so it
runs under trio as well as asyncio.

``import tuntap.anyio`` needs anyio (``pip install anyio``, plus trio for that backend);
``import tuntap`` never imports it. Waiting is anyio's ``wait_readable`` /
``wait_writable``, which let one task at a time wait on an fd: readers (and writers)
therefore queue on a FIFO lock, and the task holding it tries the read, waits for the
fd, and tries again. So waiters are served in order, a write never overtakes a queued
one, and a call cancelled while it waits reads (or writes) nothing: the read happens
in the waiting task itself, right after its wait returns, with no checkpoint between
the read and the return, so a cancel can never land after the data arrived.

Try first, as in :mod:`tuntap.asyncio` and on the same C base class
(``_tuntap._AsyncCore``): a call that finds a packet queued (or room in the send
buffer) and no one waiting before it completes without a checkpoint, and a call never
awaited does nothing. A loop
that always finds packets therefore never yields; add ``await anyio.sleep(0)`` if other
tasks must run in between.
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, Union

import anyio
import anyio.lowlevel

from . import _tuntap
from ._device import Device
from ._flags import Flags

__all__ = ["AsyncDevice", "open"]

_CLOSED = "I/O operation on closed device"
_Buffer = Any
_Packets = Union[_tuntap.PacketBatch, Sequence[Any]]
_get_running_loop = asyncio._get_running_loop


def _loop_identity() -> object:
    """The running event loop (asyncio backend) or trio run's token."""
    loop = _get_running_loop()
    if loop is not None:
        return loop
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            return trio.lowlevel.current_trio_token()
        except RuntimeError:
            pass
    return anyio.lowlevel.current_token().native_token


# Call kinds of _tuntap._AsyncCore (src/aio.c), as in tuntap.asyncio.
_READINTO, _READ, _READ_BATCH, _WRITE, _WRITE_BATCH = range(5)


class AsyncDevice(_tuntap._AsyncCore):
    """An open :class:`tuntap.Device` for anyio (asyncio or trio backend).

    The same calls as :class:`tuntap.asyncio.AsyncDevice`: ``await readinto(buf)``,
    ``await read(size)``, ``await read_batch(batch)``, ``await write(data)``,
    ``await write_batch(packets)``, ``close()``, ``await aclose()``, ``async with``,
    ``device``, ``fileno()``. Bound to the event loop (trio run) it first waits in; a
    call that has to wait in another one gets ``RuntimeError`` (a call that completes
    at once does not look, as in :mod:`tuntap.asyncio`). Closing while calls wait makes them raise
    ``ValueError("I/O operation on closed device")``; ``close()`` may be called from any
    thread.

    Raises
    ------
    TypeError
        ``device`` is not a :class:`tuntap.Device`.
    ValueError
        The device is closed.
    """

    __slots__ = ("_fd", "_loop", "_thread", "_token", "_rlock", "_wlock",
                 "_rwaiting", "_wwaiting", "_closed",
                 "_try_readinto", "_try_read", "_try_read_batch", "_try_write",
                 "_try_write_batch")

    def __init__(self, device: _tuntap.Device) -> None:
        if not isinstance(device, _tuntap.Device):
            raise TypeError(f"AsyncDevice() argument must be a tuntap.Device, "
                            f"not {type(device).__name__}")
        device.setblocking(False)
        self._fd = device.fileno()
        self._loop: object = None
        self._thread = 0
        self._token: anyio.lowlevel.EventLoopToken | None = None
        self._rlock: anyio.Lock | None = None
        self._wlock: anyio.Lock | None = None
        # One entry per call waiting in each direction: the C base tries first only
        # while these are empty (so nobody overtakes a waiter).
        self._rwaiting: list[None] = []
        self._wwaiting: list[None] = []
        self._closed = False
        self._try_readinto = device._try_readinto
        self._try_read = device._try_read
        self._try_read_batch = device._try_read_batch
        self._try_write = device._try_write
        self._try_write_batch = device._try_write_batch
        super().__init__(device, self._rwaiting, self._wwaiting, ())

    def __repr__(self) -> str:
        return f"<tuntap.anyio.AsyncDevice {self.device!r}>"

    def _bind(self) -> None:
        loop = _loop_identity()  # also fails outside a running loop
        if self._loop is None:
            self._loop = loop
            self._thread = threading.get_ident()
            self._token = anyio.lowlevel.current_token()
            self._rlock = anyio.Lock()
            self._wlock = anyio.Lock()
        elif loop is not self._loop:
            raise RuntimeError(f"{self!r} is bound to the event loop {self._loop!r}, "
                               f"not the running one {loop!r}")

    def fileno(self) -> int:
        """The device's file descriptor."""
        return self.device.fileno()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (or the device was closed)."""
        return self._closed or self.device.closed

    # -- reads and writes: readinto, read, read_batch, write, write_batch are the C
    # base's; they try first and call _wait() for the coroutine that waits. ------------
    def _wait(self, kind: int, arg: Any, done: int) -> Coroutine[Any, Any, Any]:
        """The coroutine a call of ``kind`` waits in (the try found nothing ready)."""
        if kind == _READINTO:
            return self._read_slow(self._try_readinto, arg, -1)
        if kind == _READ:
            return self._read_slow(self._try_read, arg, None)
        if kind == _READ_BATCH:
            return self._read_slow(self._try_read_batch, arg, -1)
        if kind == _WRITE:
            return self._write_slow(arg, None)
        return self._write_slow(arg, (done, len(arg)))

    async def _read_slow(self, fn: Any, arg: Any, again: object) -> Any:
        self._bind()
        if self._closed:
            raise ValueError(_CLOSED)
        assert self._rlock is not None
        self._rwaiting.append(None)
        try:
            async with self._rlock:
                while True:
                    r = fn(arg)
                    if r is not again and r != again:
                        return r
                    try:
                        await anyio.wait_readable(self._fd)
                    except anyio.ClosedResourceError:
                        raise ValueError(_CLOSED) from None
        finally:
            self._rwaiting.pop()

    async def _write_slow(self, arg: Any, batch: tuple[int, int] | None) -> int:
        self._bind()
        if self._closed:
            raise ValueError(_CLOSED)
        assert self._wlock is not None
        self._wwaiting.append(None)
        try:
            async with self._wlock:
                done = 0
                while True:
                    if batch is None:
                        r: int = self._try_write(arg)
                        if r != -1:
                            return r
                    else:
                        done, total = batch
                        try:
                            r = self._try_write_batch(arg, done)
                        except Exception:
                            if done:  # a later write failed: the count so far
                                return done
                            raise
                        if r != -1:
                            done += r
                            batch = (done, total)
                            if done >= total:
                                return done
                    try:
                        await anyio.wait_writable(self._fd)
                    except anyio.ClosedResourceError:
                        raise ValueError(_CLOSED) from None
        finally:
            self._wwaiting.pop()

    # -- closing -------------------------------------------------------------------------
    def close(self) -> None:
        """Close the device; waiting calls raise ``ValueError``. Idempotent; safe from
        any thread (the close is handed to the loop's thread, as ``notify_closing``
        must run there, unless that loop is gone)."""
        if self._closed:
            return
        self._closed = True
        token = self._token
        if token is None or threading.get_ident() == self._thread:
            self._close_now()
            return
        native: Any = token.native_token
        if hasattr(native, "call_soon_threadsafe"):
            # asyncio: anyio finds its backend only inside a task, so close in one.
            coro = self._close_in_task()
            try:
                native.call_soon_threadsafe(native.create_task, coro)
            except RuntimeError:  # the loop is closed
                coro.close()
                self._close_now()
            return
        try:
            native.run_sync_soon(self._close_now)  # trio
        except RuntimeError:  # the trio run has finished
            self._close_now()

    async def _close_in_task(self) -> None:
        self._close_now()

    def _close_now(self) -> None:
        token = self._token
        if token is not None and not self.device.closed:
            # Wake the tasks in wait_readable/wait_writable (they raise
            # ClosedResourceError, turned into ValueError) before the fd goes. The
            # backend's own call: this may run in a plain loop callback, outside any task.
            try:
                token.backend_class.notify_closing(self._fd)
            except RuntimeError:  # the loop has finished: nobody can be waiting
                pass
        self.device.close()

    async def aclose(self) -> None:
        """Close (see :meth:`close`) and let the waiting tasks see it."""
        self.close()
        await anyio.lowlevel.checkpoint()

    async def __aenter__(self) -> AsyncDevice:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def open(name: str = "", flags: int = Flags.TUN | Flags.NO_PI, **kwargs: Any) -> AsyncDevice:
    """Make a :class:`tuntap.Device` (same arguments) and wrap it in an :class:`AsyncDevice`."""
    kwargs.pop("blocking", None)
    return AsyncDevice(Device(name, flags, **kwargs))
