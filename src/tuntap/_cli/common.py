"""Shared by the commands: errors with exit codes, colour, namespaces, attaching a device."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import threading
import time
from typing import Callable, TextIO, TypeVar

import tuntap

__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "CliError",
    "Status",
    "Style",
    "attach",
    "explain",
    "find_device",
    "netns_path",
    "run_in_netns",
]

EXIT_OK = 0
EXIT_FAILURE = 1  # the command cannot do its job here; the reason is on stderr

CLONE_NEWNET = 0x40000000
T = TypeVar("T")

#: The flags that describe a device (as opposed to how one fd attaches to it).
DEVICE_FLAGS = (tuntap.Flags.TUN | tuntap.Flags.TAP | tuntap.Flags.NO_PI
                | tuntap.Flags.VNET_HDR | tuntap.Flags.MULTI_QUEUE)


class CliError(Exception):
    """A failure to report as one line on stderr (no traceback) and exit with ``status``."""

    def __init__(self, message: str, status: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.status = status


def explain(exc: OSError, what: str, *, need: str = "root or CAP_NET_ADMIN") -> CliError:
    """A :class:`CliError` saying what failed, and for EPERM/EACCES what is needed.

    ``what`` is the object of the sentence, e.g. ``"create tun0"``.
    """
    if isinstance(exc, PermissionError):
        return CliError(f"cannot {what}: {exc.strerror or exc}: needs {need}")
    if exc.errno == errno.EBUSY:
        return CliError(f"cannot {what}: another process holds it (a single-queue device "
                        "has one endpoint at a time)")
    return CliError(f"cannot {what}: {exc}")


# --------------------------------------------------------------------------- colour
class Style:
    """ANSI colour for one stream: only on a terminal, never with NO_COLOR or TERM=dumb."""

    def __init__(self, stream: TextIO) -> None:
        self.enabled = (stream.isatty() and "NO_COLOR" not in os.environ
                        and os.environ.get("TERM") != "dumb")

    def _wrap(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.enabled else text

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def good(self, text: str) -> str:
        return self._wrap("32", text)

    def bad(self, text: str) -> str:
        return self._wrap("31", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)


class Status:
    """A one-line live status on a terminal (redrawn at most 5 times a second), else nothing."""

    def __init__(self, stream: TextIO, enabled: bool | None = None) -> None:
        self.stream = stream
        self.enabled = stream.isatty() if enabled is None else enabled
        self._last = 0.0
        self._width = 0

    def show(self, text: str, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        self.stream.write("\r" + text.ljust(self._width))
        self._width = len(text)
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0


# --------------------------------------------------------------------------- namespaces
def netns_path(ns: str) -> str:
    """The file behind ``--netns NS``: a name under /var/run/netns, or a path."""
    path = ns if "/" in ns else os.path.join("/var/run/netns", ns)
    if not os.path.exists(path):
        raise CliError(f"no network namespace {ns!r} ({path} does not exist; "
                       "'ip netns add NAME' makes one)")
    return path


def _setns(fd: int) -> None:
    if hasattr(os, "setns"):  # 3.12+
        os.setns(fd, CLONE_NEWNET)
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), "setns(CLONE_NEWNET)")


def run_in_netns(ns: str | None, fn: Callable[[], T]) -> T:
    """Call ``fn()`` in a short-lived thread that entered namespace ``ns`` (None: here).

    Only that thread changes namespace; sockets it opens stay bound to ``ns`` afterwards.
    """
    if ns is None:
        return fn()
    fd = os.open(netns_path(ns), os.O_RDONLY | os.O_CLOEXEC)
    box: dict[str, object] = {}

    def body() -> None:
        try:
            _setns(fd)
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    try:
        worker = threading.Thread(target=body, name="tuntap-netns", daemon=True)
        worker.start()
        worker.join()
    finally:
        os.close(fd)
    if "error" in box:
        exc = box["error"]
        if isinstance(exc, PermissionError):
            raise explain(exc, f"enter the network namespace {ns!r}") from None
        raise exc  # type: ignore[misc]
    return box["value"]  # type: ignore[return-value]


# --------------------------------------------------------------------------- devices
def find_device(name: str, netns: str | None = None) -> tuntap.DeviceInfo:
    """The TUN/TAP device ``name`` (in ``netns``), or a CliError saying how to make one."""
    if netns is not None:
        netns_path(netns)  # the plain message for a missing namespace
    infos = tuntap.list_devices(netns=netns)
    for info in infos:
        if info.name == name:
            return info
    where = "" if netns is None else f" in network namespace {netns!r}"
    raise CliError(f"no TUN/TAP device {name!r}{where} (make one with: tuntap add {name} "
                   "--address CIDR --up)")


def attach(name: str, netns: str | None = None) -> tuple[tuntap.Device, tuntap.DeviceInfo]:
    """Open one more fd on the existing device ``name``, with the device's own flags.

    Attaching with other flags would change the device for everyone (the kernel replaces
    its packet-info and vnet-header settings with the newcomer's), so its flags are read
    first and asked for unchanged.
    """
    info = find_device(name, netns)
    try:
        dev = tuntap.Device(name, info.flags & DEVICE_FLAGS, netns=netns)
    except OSError as exc:
        raise explain(exc, f"attach to {name}", need="root or CAP_NET_ADMIN, or being the "
                      "device's owner or in its group (tuntap add --user/--group)") from None
    return dev, info
