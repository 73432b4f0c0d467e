"""The pure-Python TUN class "as users write it today": ctypes + fcntl, no extension.

This is the baseline the benchmarks call "the ctypes version". It is what a Python
program without a TUN library ends up with: open ``/dev/net/tun``, ``TUNSETIFF`` through
``fcntl.ioctl`` with a hand-packed ``struct ifreq``, then one syscall per packet through
``os.read`` / ``os.write``, a ``FileIO`` object or libc's ``read`` called via ctypes.
It deliberately has no cleverness: the point is to measure the ordinary way.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import io
import os
import struct

# <linux/if_tun.h>; user code copies these numbers, so this class does too.
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.read.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
_libc.read.restype = ctypes.c_ssize_t
_libc.write.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
_libc.write.restype = ctypes.c_ssize_t


class CtypesTun:
    """A TUN device opened with ``os.open`` + ``fcntl.ioctl(TUNSETIFF)``.

    Parameters
    ----------
    name : str
        Interface name or template (``"tun%d"``).
    flags : int
        ``IFF_TUN | IFF_NO_PI`` by default.
    """

    def __init__(self, name: str = "tun%d", flags: int = IFF_TUN | IFF_NO_PI) -> None:
        self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
        try:
            ifr = struct.pack("16sH22x", name.encode(), flags)
            ifr = fcntl.ioctl(self.fd, TUNSETIFF, ifr)
        except BaseException:
            os.close(self.fd)
            raise
        self.name = ifr[:16].rstrip(b"\0").decode()
        # closefd=False: the FileIO shares our fd, close() below owns it.
        self.file = io.FileIO(self.fd, "r+b", closefd=False)
        self._libc_read = _libc.read
        self._libc_write = _libc.write

    def fileno(self) -> int:
        return self.fd

    # -- the three ways users read one packet ---------------------------------
    def read(self, size: int = 2048) -> bytes:
        """``os.read``: allocates a new bytes object per packet."""
        return os.read(self.fd, size)

    def readinto(self, buf: bytearray | memoryview) -> int | None:
        """``FileIO.readinto``: reuses the caller's buffer."""
        return self.file.readinto(buf)

    def libc_readinto(self, cbuf: ctypes.Array[ctypes.c_char], size: int) -> int:
        """libc ``read`` through ctypes into a ``ctypes.create_string_buffer``."""
        n: int = self._libc_read(self.fd, cbuf, size)
        if n < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return n

    # -- writes ----------------------------------------------------------------
    def write(self, data: bytes) -> int:
        """``os.write``: one packet."""
        return os.write(self.fd, data)

    def libc_write(self, cbuf: ctypes.Array[ctypes.c_char], size: int) -> int:
        n: int = self._libc_write(self.fd, cbuf, size)
        if n < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return n

    def close(self) -> None:
        if self.fd >= 0:
            self.file.close()
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> CtypesTun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
