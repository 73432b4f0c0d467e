"""The C floor: compile ``cfloor.c`` (shipped in this package), load it, run it.

``cfloor.c`` is one plain ``read()``/``write()`` per packet: the least any language pays
when it moves one packet per system call. It is built twice with ``cc -O2``: as a shared
library whose ``cfloor_run()`` runs inside this process through ctypes (the floor every
ratio is taken against), and as a program that serves commands on its stdin, to show that
a separate process measures the same floor.
"""

from __future__ import annotations

import ctypes
import os
import shlex
import shutil
import subprocess
from importlib import resources

from .env import BenchError, open_plain_tun

__all__ = ["CFloor", "CFloorServer", "compile_cfloor", "source"]

SOURCE_NAME = "cfloor.c"


def source() -> str:
    """The text of ``cfloor.c`` as installed with this package."""
    return resources.files("tuntap._bench").joinpath(SOURCE_NAME).read_text(encoding="utf-8")


class CFloor:
    """The compiled C floor: the ``cfloor`` program and ``libcfloor.so`` loaded.

    Parameters
    ----------
    exe, lib
        Paths of the program and of the shared library built from ``cfloor.c``.
    """

    def __init__(self, exe: str, lib: str) -> None:
        self.exe = exe
        self.lib = ctypes.CDLL(lib, use_errno=True)  # CDLL releases the GIL in calls
        self.lib.cfloor_run.argtypes = (
            ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_size_t,
            ctypes.POINTER(ctypes.c_longlong), ctypes.POINTER(ctypes.c_longlong))
        self.lib.cfloor_run.restype = ctypes.c_int
        self.lib.cfloor_buffer.restype = ctypes.c_void_p
        self.lib.cfloor_buffer.argtypes = ()

    def run(self, fd: int, packet: bytes | None, k: int, size: int) -> int:
        """Move ``k`` packets with the C loop in this process; return elapsed ns.

        ``packet`` None reads (``size``-byte buffer), else writes that packet ``k`` times.

        Raises
        ------
        OSError
            A ``read()``/``write()`` failed (errno from the C loop).
        """
        if packet is not None:
            ctypes.memmove(self.lib.cfloor_buffer(), packet, len(packet))
            size = len(packet)
        ns, nbytes = ctypes.c_longlong(), ctypes.c_longlong()
        if self.lib.cfloor_run(fd, packet is not None, k, size, ctypes.byref(ns),
                               ctypes.byref(nbytes)) < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"C floor: {os.strerror(err)}")
        return ns.value


def compile_cfloor(outdir: str, text: str | None = None) -> CFloor | None:
    """Compile the C floor with ``cc -O2`` (program and shared library) into ``outdir``.

    Parameters
    ----------
    outdir
        Build directory (created if missing). ``cfloor.c`` is written there; an existing
        build of the same text is reused.
    text
        The C source; None means this package's ``cfloor.c``.

    Returns
    -------
    CFloor or None
        None when there is no C compiler (``$CC``, ``cc`` or ``gcc``).

    Raises
    ------
    BenchError
        Compiling failed (the compiler's messages are in the text).
    """
    if text is None:
        text = source()
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None
    os.makedirs(outdir, exist_ok=True)
    src = os.path.join(outdir, SOURCE_NAME)
    exe = os.path.join(outdir, "cfloor")
    lib = os.path.join(outdir, "libcfloor.so")
    fresh = False
    if os.path.exists(exe) and os.path.exists(lib) and os.path.exists(src):
        with open(src, encoding="utf-8") as f:
            fresh = f.read() == text
    if not fresh:
        with open(src, "w", encoding="utf-8") as f:
            f.write(text)
        for argv in ([*shlex.split(cc), "-O2", "-o", exe, src],
                     [*shlex.split(cc), "-O2", "-shared", "-fPIC", "-o", lib, src]):
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
            if proc.returncode != 0:
                raise BenchError(f"compiling the C floor failed: {' '.join(argv)}\n"
                                 f"{proc.stderr}")
    return CFloor(exe, lib)


class CFloorServer:
    """A device fd plus a ``cfloor serve`` process that runs the C loops on it.

    The C process stays up for the whole benchmark, so it is as warm as the Python
    process it is compared with; it inherits the CPU pinning.
    """

    def __init__(self, exe: str, ifname: str) -> None:
        self.fd = open_plain_tun(ifname)
        self.proc = subprocess.Popen([exe, "serve", str(self.fd)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     pass_fds=(self.fd,))

    def fileno(self) -> int:
        return self.fd

    def run(self, command: bytes) -> int:
        """Send one ``serve`` command; return the elapsed ns the C loop reports."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command)
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(5)
            assert self.proc.stderr is not None
            why = self.proc.stderr.read().decode(errors="replace").strip()
            raise RuntimeError(f"C floor exited with {self.proc.returncode}: {why}")
        return int(line.split()[0])

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()  # our own child, by its Popen handle
                self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr, self.proc.stdin):
            if f is not None and not f.closed:
                f.close()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
