"""The C API (tuntap/capi.h, the capsule tuntap._tuntap._C_API) driven through the C-only
example extension (examples/capi/tuntap_capi_demo.c, compiled here as C99 and as C++17),
and the Cython example (examples/cython/) built with pip against the imported tuntap."""

from __future__ import annotations

import ctypes
import errno
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import tuntap
from capi_build import (
    COMPILER,
    DEMO_C,
    STD,
    STRICT,
    build_cython_example,
    compile_demo,
    include_flags,
    load,
    missing_build_tools,
)
from netutil import WAIT, build_udp4, in_netns, parse_udp4, udp_socket, unique_name, unique_net

IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)  # <linux/in.h>; not in every socket module
HEADER = Path(tuntap.get_include()) / "tuntap" / "capi.h"
PXD = Path(tuntap.get_include()) / "tuntap" / "capi.pxd"


def _define(name: str) -> int:
    m = re.search(rf"^#define {name} \(?(-?\d+)\)?", HEADER.read_text(), re.M)
    assert m, f"{name} not in capi.h"
    return int(m.group(1))


@pytest.fixture(scope="session")
def demo(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """examples/capi/tuntap_capi_demo.c compiled with cc -std=c99 -Wall -Wextra -Werror."""
    out = tmp_path_factory.mktemp("capi-c")
    return load(compile_demo(out, "c"), "tuntap_capi_demo")


@pytest.fixture(scope="session")
def ttl_forward(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    """examples/cython built with `pip install --no-build-isolation` into a temp dir."""
    why = missing_build_tools()
    if why is not None:
        pytest.skip(why)
    site = build_cython_example(tmp_path_factory.mktemp("capi-cython"))
    (so,) = site.glob("ttl_forward*.so")
    return load(so, "ttl_forward")


def _send(dst: str, port: int, payloads: list[bytes], ttl: int | None = None) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        if ttl is not None:
            s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, ttl)
        for p in payloads:
            s.sendto(p, (dst, port))


def _closer(dev: tuntap.Device, after: float) -> tuple[threading.Thread, list[float]]:
    when: list[float] = []

    def run() -> None:
        time.sleep(after)
        when.append(time.perf_counter())
        dev.close()

    t = threading.Thread(target=run)
    t.start()
    return t, when


# -- the capsule, the header, the package data -----------------------------------------


def test_header_and_pxd_are_installed_where_get_include_points() -> None:
    assert os.path.isabs(tuntap.get_include())
    assert HEADER.is_file() and PXD.is_file()
    assert HEADER.parent == Path(tuntap.__file__).parent
    assert "import_tuntap" in HEADER.read_text() and "import_tuntap" in PXD.read_text()
    assert "get_include" in tuntap.__all__


def test_capsule_table_starts_with_the_header_versions_and_size(demo: ModuleType) -> None:
    from tuntap import _tuntap

    cap = _tuntap._C_API
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype = ctypes.c_void_p
    get.argtypes = [ctypes.py_object, ctypes.c_char_p]
    addr = get(cap, b"tuntap._tuntap._C_API")
    major, minor = struct.unpack("ii", ctypes.string_at(addr, 8))
    size = ctypes.c_size_t.from_address(addr + 8).value
    assert (major, minor) == (_define("TUNTAP_CAPI_MAJOR"), _define("TUNTAP_CAPI_MINOR"))
    assert (major, minor, size) == (demo.CAPI_MAJOR, demo.CAPI_MINOR, demo.TABLE_SIZE)
    # a header, then one pointer per function
    assert size == 16 + 8 * HEADER.read_text().count("(*")


def test_import_does_not_need_the_package_attribute(demo_path: Path) -> None:
    # PyCapsule_Import walks attributes ("tuntap" . "_tuntap" . "_C_API"), and
    # tuntap/__init__.py deletes its `_tuntap` name; import_tuntap() imports the module
    # by its full name instead, so it works with the attribute gone.
    code = ("import importlib.util as u, sys, tuntap\n"
            "vars(tuntap).pop('_tuntap', None)\n"
            f"s = u.spec_from_file_location('tuntap_capi_demo', {str(demo_path)!r})\n"
            "m = u.module_from_spec(s); s.loader.exec_module(m)\n"
            "print(hasattr(tuntap, '_tuntap'), m.checksum(b'\\x45\\x00\\x00\\x14'))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", str(tuntap.checksum(b"\x45\x00\x00\x14"))]


_PATCH = """
import ctypes, importlib.util, sys
import tuntap._tuntap as m
class Head(ctypes.Structure):
    _fields_ = [("major", ctypes.c_int), ("minor", ctypes.c_int), ("size", ctypes.c_size_t),
                ("pad", ctypes.c_char * 256)]
head = Head({major}, {minor}, {size})
new = ctypes.pythonapi.PyCapsule_New
new.restype = ctypes.py_object
new.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
name = {name!r}
m._C_API = {replacement}
spec = importlib.util.spec_from_file_location("tuntap_capi_demo", {path!r})
mod = importlib.util.module_from_spec(spec)
try:
    spec.loader.exec_module(mod)
except Exception as e:
    print(type(e).__name__ + ": " + str(e))
else:
    print("imported")
"""


@pytest.fixture(scope="module")
def demo_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_demo(tmp_path_factory.mktemp("capi-abi"), "c")


def _import_with_capsule(path: Path, major: int, minor: int, size: int,
                         name: bytes = b"tuntap._tuntap._C_API",
                         replacement: str = "new(ctypes.addressof(head), name, None)") -> str:
    code = _PATCH.format(major=major, minor=minor, size=size, name=name, path=str(path),
                         replacement=replacement)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_abi_major_mismatch_is_an_import_error_naming_both_versions(demo_path: Path,
                                                                    demo: ModuleType) -> None:
    out = _import_with_capsule(demo_path, demo.CAPI_MAJOR + 1, 0, 4096)
    assert out.startswith("ImportError: tuntap C API version mismatch")
    assert f"built against tuntap C API {demo.CAPI_MAJOR}.{demo.CAPI_MINOR}" in out
    assert f"installed tuntap provides {demo.CAPI_MAJOR + 1}.0" in out


def test_abi_older_minor_or_smaller_table_is_an_import_error(demo_path: Path,
                                                             demo: ModuleType) -> None:
    out = _import_with_capsule(demo_path, demo.CAPI_MAJOR, demo.CAPI_MINOR - 1, 4096)
    assert out.startswith("ImportError: tuntap C API version mismatch")
    assert f"provides {demo.CAPI_MAJOR}.{demo.CAPI_MINOR - 1}" in out
    out = _import_with_capsule(demo_path, demo.CAPI_MAJOR, demo.CAPI_MINOR, 16)
    assert out.startswith("ImportError: tuntap C API version mismatch")
    assert f"(table of {demo.TABLE_SIZE} bytes)" in out and "(table of 16 bytes)" in out


def test_abi_newer_minor_and_larger_table_are_accepted(demo_path: Path,
                                                       demo: ModuleType) -> None:
    # functions are only appended: a module built against 1.0 runs on 1.1 with a longer
    # table (it is not called here, only imported)
    out = _import_with_capsule(demo_path, demo.CAPI_MAJOR, demo.CAPI_MINOR + 1,
                               demo.TABLE_SIZE + 8)
    assert out == "imported"


def test_wrong_capsule_name_or_object_fails_the_import(demo_path: Path) -> None:
    out = _import_with_capsule(demo_path, 1, 0, 4096, name=b"other._C_API")
    assert out.startswith("ValueError: PyCapsule_GetPointer called with incorrect name")
    out = _import_with_capsule(demo_path, 1, 0, 4096, replacement="42")
    assert out.startswith("ValueError: PyCapsule_GetPointer called with invalid PyCapsule")


# -- compiling the header -------------------------------------------------------------


@pytest.mark.parametrize("lang", ["c", "c++"])
def test_header_alone_compiles_warning_free(lang: str, tmp_path: Path) -> None:
    src = tmp_path / "only.c"
    src.write_text("#include <tuntap/capi.h>\nint tt_unused_tu(void);\n")
    r = subprocess.run([COMPILER[lang], *STD[lang], *STRICT, "-fsyntax-only",
                        *include_flags(), str(src)],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr


def test_demo_compiles_as_cxx17_and_works(tmp_path: Path) -> None:
    so = compile_demo(tmp_path, "c++")
    code = (f"import importlib.util as u, tuntap\n"
            f"s = u.spec_from_file_location('tuntap_capi_demo', {str(so)!r})\n"
            f"m = u.module_from_spec(s); s.loader.exec_module(m)\n"
            f"b = tuntap.PacketBatch(4, 64); b.append(b'\\x45' * 20)\n"
            f"assert m.batch_view(b)['count'] == 1 and m.batch_set_count(b, 0) == 0\n"
            f"assert len(b) == 0 and m.checksum(b'\\x45\\x00') == tuntap.checksum(b'\\x45\\x00')\n"
            f"print('ok', m.CAPI_MAJOR, m.CAPI_MINOR)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ok", str(_define("TUNTAP_CAPI_MAJOR")),
                                str(_define("TUNTAP_CAPI_MINOR"))]
    assert DEMO_C.suffix == ".c"  # one source for both languages


# -- batch views (no device) ------------------------------------------------------------


def test_batch_view_describes_the_arena(demo: ModuleType) -> None:
    b = tuntap.PacketBatch(4, 100, headroom=16)
    b.append(b"abc")
    b.append(b"defgh")
    v = demo.batch_view(b)
    arena = ctypes.addressof((ctypes.c_char * (4 * 116)).from_buffer(b))
    assert v["arena"] == arena
    assert (v["capacity"], v["slot_size"], v["stride"], v["headroom"], v["count"]) == (
        4, 100, 116, 16, 2)
    assert v["owner"] is b
    sizes = (ctypes.c_uint32 * 4).from_address(v["sizes"])
    assert list(sizes)[:2] == [3, 5]
    assert ctypes.string_at(arena + 116 + 16, 5) == b"defgh"


@pytest.mark.parametrize("arg", [None, 5, b"bytes", bytearray(100)])
def test_batch_view_of_a_non_batch_is_a_type_error(demo: ModuleType, arg: object) -> None:
    with pytest.raises(TypeError, match=r"^tuntap_batch_view\(\) argument must be "
                                        r"tuntap.PacketBatch, not "):
        demo.batch_view(arg)


def test_batch_set_count_changes_len_and_refuses_bad_counts(demo: ModuleType) -> None:
    b = tuntap.PacketBatch(4, 64)
    b.append(b"x" * 10)
    b.append(b"y" * 20)
    assert demo.batch_set_count(b, 1) == 0
    assert len(b) == 1 and bytes(b[0]) == b"x" * 10
    assert demo.batch_set_count(b, 2) == 0 and bytes(b[1]) == b"y" * 20
    assert demo.batch_set_count(b, 5) == -errno.EINVAL
    assert demo.batch_set_count(b, -1) == -errno.EINVAL
    sizes = (ctypes.c_uint32 * 4).from_address(demo.batch_view(b)["sizes"])
    sizes[3] = 65
    assert demo.batch_set_count(b, 4) == -errno.EINVAL  # a size > slot_size
    assert len(b) == 2


def test_checksum_is_tuntap_checksum(demo: ModuleType) -> None:
    for data in (b"", b"\x01", b"\x45\x00\x00\x1c" * 5, bytes(range(255))):
        assert demo.checksum(data) == tuntap.checksum(data)


def _udp_vnet_packet(payload: bytes) -> bytes:
    # a plain (no GSO, no NEEDS_CSUM) packet with a 10-byte vnet header: copied through
    return b"\0" * 10 + build_udp4("10.0.0.1", "10.0.0.2", 1, 2, payload)


def test_segment_matches_tuntap_segment(demo: ModuleType) -> None:
    pkt = _udp_vnet_packet(b"hello")
    b1, b2 = tuntap.PacketBatch(4, 2048), tuntap.PacketBatch(4, 2048)
    assert demo.segment(pkt, b1, 10) == tuntap.segment(pkt, b2) == 1
    assert len(b1) == 1 and bytes(b1[0]) == bytes(b2[0]) == pkt[10:]


def test_segment_errors_are_codes_and_raise_what_segment_raises(demo: ModuleType) -> None:
    # GSO_TCPV4 with a truncated IPv4 header
    bad = struct.pack("<BBHHHH", 0, 1, 40, 100, 0, 0) + b"\x45" + b"\0" * 5
    gso = bytearray(_udp_vnet_packet(b"z" * 1000))
    gso[1] = 5  # VIRTIO_NET_HDR_GSO_UDP_L4
    struct.pack_into("<HH", gso, 2, 28, 100)  # hdr_len, gso_size: 10 segments
    b = tuntap.PacketBatch(4, 2048)
    b.append(b"keep")
    cases = [(bytes(gso), demo.SEG_ECAPACITY, 4), (bad, demo.SEG_EIPHDR, 10)]
    for pkt, code, hdr in cases:
        assert demo.segment(pkt, b, 10) == code
        assert len(b) == 1 and bytes(b[0]) == b"keep"  # untouched
        with pytest.raises(ValueError) as want:
            tuntap.segment(pkt, tuntap.PacketBatch(hdr, 2048))
        with pytest.raises(ValueError) as got:
            demo.raise_segment_error(code)
        assert str(got.value) == str(want.value)
    assert demo.segment(b"\0" * 9 + b"x", b, 9) == -1  # TUNTAP_SEG_EHDRSIZE


def test_segment_of_a_packet_inside_the_batch_is_refused(demo: ModuleType) -> None:
    b = tuntap.PacketBatch(4, 2048)
    b.append(_udp_vnet_packet(b"in"))
    assert demo.segment(b[0], b, 10) == demo.SEG_EOVERLAP
    with pytest.raises(ValueError, match="lies inside the destination batch"):
        demo.raise_segment_error(demo.SEG_EOVERLAP)


# -- devices: acquire, nogil I/O, errors ------------------------------------------------


@pytest.mark.parametrize("arg", [None, 3, "tun0", tuntap.PacketBatch(1, 64)])
def test_acquire_of_a_non_device_is_a_type_error(demo: ModuleType, arg: object) -> None:
    with pytest.raises(TypeError, match=r"^tuntap_device_acquire\(\) argument must be "
                                        r"tuntap.Device, not "):
        demo.header_size(arg)


@pytest.mark.needs_tun
def test_acquire_of_a_closed_device_is_value_error(demo: ModuleType, open_device) -> None:
    dev = open_device(unique_name())
    dev.close()
    for call in (lambda: demo.header_size(dev),
                 lambda: demo.read_batch(dev, tuntap.PacketBatch(1, 64), 0)):
        with pytest.raises(ValueError, match=r"^I/O operation on closed device$"):
            call()


@pytest.mark.needs_tun
def test_header_size_follows_the_device_flags(demo: ModuleType, open_device) -> None:
    assert demo.header_size(open_device(unique_name())) == 0
    assert demo.header_size(open_device(unique_name(), tuntap.Flags.TUN)) == 4
    vnet = open_device(unique_name(), tuntap.Flags.TUN | tuntap.Flags.NO_PI |
                       tuntap.Flags.VNET_HDR)
    assert demo.header_size(vnet) == 10
    vnet.vnet_hdr_size = 12
    assert demo.header_size(vnet) == 12


@pytest.mark.needs_tun
@pytest.mark.usefixtures("io_backend")  # the C API on both batch backends
def test_nogil_round_trip_reads_and_writes_exact_bytes(demo: ModuleType, tun) -> None:
    payloads = [b"capi-%d-" % i + bytes(range(i * 7 % 200)) for i in range(12)]
    _send(tun.remote, 4242, payloads)
    batch = tuntap.PacketBatch(16, 2048)
    got: list[bytes] = []
    deadline = time.monotonic() + WAIT
    while len(got) < len(payloads) and time.monotonic() < deadline:
        n = demo.read_batch(tun.dev, batch, int(WAIT * 1e9))
        assert n > 0 and len(batch) == n
        for i in range(n):
            ip4, udp = parse_udp4(bytes(batch[i]))
            assert (ip4.src, ip4.dst, udp.dport, udp.checksum_ok) == (tun.local, tun.remote,
                                                                      4242, True)
            got.append(udp.payload)
    assert got == payloads
    # and back in: a batch of crafted packets, then one packet, reach a local socket
    with udp_socket() as sink:
        sink.bind((tun.local, 0))
        port = sink.getsockname()[1]
        out = tuntap.PacketBatch(8, 2048)
        for i in range(6):
            out.append(build_udp4(tun.remote, tun.local, 999, port, b"in-%d" % i))
        assert demo.write_batch(tun.dev, out, 0, 6, -1) == 6
        assert demo.write_batch(tun.dev, out, 4, 2, -1) == 2
        assert demo.write(tun.dev, build_udp4(tun.remote, tun.local, 9, port, b"one"), 0) > 0
        recv = [sink.recv(100) for _ in range(9)]
        assert recv == [b"in-%d" % i for i in range(6)] + [b"in-4", b"in-5", b"one"]
    # a single-packet read, truncated to the buffer like readinto()
    _send(tun.remote, 4243, [b"x" * 300])
    pkt = demo.read(tun.dev, 100, int(WAIT * 1e9))
    assert isinstance(pkt, bytes) and len(pkt) == 100 and pkt[:1] == b"\x45"


@pytest.mark.needs_tun
@pytest.mark.usefixtures("io_backend")  # the C API on both batch backends
def test_nogil_read_times_out_and_nonblocking_says_eagain(demo: ModuleType, tun) -> None:
    batch = tuntap.PacketBatch(4, 2048)
    for call in (lambda t: demo.read_batch(tun.dev, batch, t),
                 lambda t: demo.read(tun.dev, 2048, t)):
        t0 = time.perf_counter()
        assert call(0) == -errno.EAGAIN
        assert call(100_000_000) == -errno.ETIMEDOUT
        dt = time.perf_counter() - t0
        assert 0.095 <= dt < 0.1 + WAIT
    assert len(batch) == 0
    # the device's own timeout does not apply: the C API call's does
    tun.dev.settimeout(0)
    t0 = time.perf_counter()
    assert demo.read_batch(tun.dev, batch, 50_000_000) == -errno.ETIMEDOUT
    assert time.perf_counter() - t0 >= 0.045


@pytest.mark.needs_tun
@pytest.mark.usefixtures("io_backend")  # the C API on both batch backends
@pytest.mark.parametrize("how", ["read_batch", "read"])
def test_close_from_another_thread_ends_a_nogil_blocking_read(demo: ModuleType, tun,
                                                              how: str) -> None:
    batch = tuntap.PacketBatch(4, 2048)
    result: list[Any] = []

    def reader() -> None:
        r = (demo.read_batch(tun.dev, batch, -1) if how == "read_batch"
             else demo.read(tun.dev, 2048, -1))
        result.append((r, time.perf_counter()))

    t = threading.Thread(target=reader)
    t.start()
    closer, closed_at = _closer(tun.dev, 0.3)
    closer.join(WAIT)
    t.join(WAIT)
    assert not t.is_alive() and not closer.is_alive()
    (code, ended), = result
    assert code == demo.ECLOSED
    assert ended - closed_at[0] < 0.1
    assert tun.dev.closed


@pytest.mark.needs_tun
@pytest.mark.usefixtures("io_backend")  # the C API on both batch backends
def test_close_ends_every_nogil_reader_of_the_device(demo: ModuleType, tun) -> None:
    results: list[Any] = []

    def reader() -> None:
        results.append((demo.read_batch(tun.dev, tuntap.PacketBatch(4, 2048), -1),
                        time.perf_counter()))

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    closer, closed_at = _closer(tun.dev, 0.3)
    for t in [*threads, closer]:
        t.join(WAIT)
    assert [r for r, _ in results] == [demo.ECLOSED] * 3
    assert max(w for _, w in results) - closed_at[0] < 0.1


class _Alarm(Exception):
    pass


@pytest.fixture
def alarm() -> Iterator[Any]:
    """arm(seconds, raising): SIGALRM once; its handler raises _Alarm if `raising`."""
    import signal

    def arm(after: float, raising: bool) -> list[float]:
        calls: list[float] = []

        def handler(signum: int, frame: Any) -> None:
            calls.append(time.perf_counter())
            if raising:
                raise _Alarm

        signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, after)
        return calls

    old = signal.getsignal(signal.SIGALRM)
    try:
        yield arm
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.needs_tun
@pytest.mark.usefixtures("io_backend")  # the C API on both batch backends
def test_a_signal_during_a_nogil_wait_returns_eintr(demo: ModuleType, tun, alarm) -> None:
    calls = alarm(0.1, False)
    t0 = time.perf_counter()
    code = demo.read_batch(tun.dev, tuntap.PacketBatch(4, 2048), int(WAIT * 1e9))
    assert code == -errno.EINTR
    assert time.perf_counter() - t0 < WAIT / 2
    assert len(calls) == 1  # the handler ran once the call returned to Python


@pytest.mark.needs_tun
@pytest.mark.usefixtures("io_backend")  # the C API on both batch backends
@pytest.mark.parametrize("which", ["c", "cython"])
def test_forward_raises_what_a_signal_handler_raises_and_goes_on_otherwise(
        demo: ModuleType, request: pytest.FixtureRequest, pair: Pair, alarm,
        which: str) -> None:
    if which == "c":
        def forward(timeout: float) -> Any:
            return demo.forward(pair.src, pair.dst, tuntap.PacketBatch(4, 2048), -1,
                                int(timeout * 1e9))
    else:
        mod = request.getfixturevalue("ttl_forward")

        def forward(timeout: float) -> Any:
            return mod.forward(pair.src, pair.dst, tuntap.PacketBatch(4, 2048), -1, timeout)

    alarm(0.1, True)
    t0 = time.perf_counter()
    with pytest.raises(_Alarm):
        forward(WAIT)
    assert time.perf_counter() - t0 < WAIT / 2
    calls = alarm(0.1, False)  # a handler that returns: the loop carries on to its timeout
    t0 = time.perf_counter()
    assert forward(0.5) == (0, 0)
    assert len(calls) == 1 and time.perf_counter() - t0 >= 0.5


@pytest.mark.needs_tun
@pytest.mark.usefixtures("io_backend")  # the C API on both batch backends
def test_write_batch_bad_ranges_and_sizes_are_einval(demo: ModuleType, tun) -> None:
    b = tuntap.PacketBatch(4, 64)
    b.append(b"\x45" + b"\0" * 19)
    for first, count in [(-1, 1), (0, -1), (0, 5), (3, 2), (5, 0)]:
        assert demo.write_batch(tun.dev, b, first, count, 0) == -errno.EINVAL
    assert demo.write_batch(tun.dev, b, 1, 0, 0) == 0
    assert demo.write_batch(tun.dev, b, 1, 1, 0) == -errno.EINVAL  # size 0
    sizes = (ctypes.c_uint32 * 4).from_address(demo.batch_view(b)["sizes"])
    sizes[0] = 65
    assert demo.write_batch(tun.dev, b, 0, 1, 0) == -errno.EINVAL  # size > slot_size
    assert demo.write(tun.dev, b"", 0) == -errno.EINVAL


@pytest.mark.needs_tun
@pytest.mark.usefixtures("io_backend")  # the C API on both batch backends
def test_read_buffers_not_larger_than_the_packet_header_are_einval(demo: ModuleType,
                                                                   open_device) -> None:
    dev = open_device(unique_name(), tuntap.Flags.TUN)  # packet info: 4 bytes
    assert demo.read_batch(dev, tuntap.PacketBatch(2, 4), 0) == -errno.EINVAL
    assert demo.read(dev, 4, 0) == -errno.EINVAL
    assert demo.read(dev, 0, 0) == -errno.EINVAL
    assert demo.read_batch(dev, tuntap.PacketBatch(2, 5), 0) == -errno.EAGAIN


@pytest.mark.needs_tun
@pytest.mark.usefixtures("io_backend")  # the C API on both batch backends
def test_write_batch_later_failure_returns_the_count_so_far(demo: ModuleType, tun) -> None:
    with udp_socket() as sink:
        sink.bind((tun.local, 0))
        port = sink.getsockname()[1]
        b = tuntap.PacketBatch(4, 2048)
        good = build_udp4(tun.remote, tun.local, 999, port, b"ok")
        for p in (good, good, b"\x00" * 40, good):  # IP version 0: EINVAL
            b.append(p)
        assert demo.write_batch(tun.dev, b, 0, 4, -1) == 2
        assert demo.write_batch(tun.dev, b, 2, 2, -1) == -errno.EINVAL
        assert [sink.recv(100) for _ in range(2)] == [b"ok", b"ok"]


@pytest.mark.needs_tun
@pytest.mark.usefixtures("io_backend")  # the C API on both batch backends
def test_raise_error_raises_what_the_python_api_raises(demo: ModuleType, tun) -> None:
    dev = tun.dev
    pkt = build_udp4(tun.remote, tun.local, 1, 2, b"down")
    # ValueError for the closed code
    with pytest.raises(ValueError, match=r"^I/O operation on closed device$"):
        demo.raise_error(dev, demo.ECLOSED, "read()")
    # the timeout, non-blocking and errno cases, compared with the Python methods
    dev.settimeout(0.01)
    with pytest.raises(TimeoutError) as want_t:
        dev.read_batch(tuntap.PacketBatch(1, 2048))
    code = demo.read_batch(dev, tuntap.PacketBatch(1, 2048), 10_000_000)
    with pytest.raises(TimeoutError) as got_t:
        demo.raise_error(dev, code, "read()")
    assert str(got_t.value) == str(want_t.value)
    dev.setblocking(False)
    with pytest.raises(BlockingIOError) as want_b:
        dev.read_batch(tuntap.PacketBatch(1, 2048))
    code = demo.read_batch(dev, tuntap.PacketBatch(1, 2048), 0)
    with pytest.raises(BlockingIOError) as got_b:
        demo.raise_error(dev, code, "read()")
    assert str(got_b.value) == str(want_b.value)
    dev.down()
    with pytest.raises(OSError) as want_d:
        dev.write(pkt)
    code = demo.write(dev, pkt, 0)
    assert code == -errno.EIO
    with pytest.raises(OSError) as got_d:
        demo.raise_error(dev, code, "write()")
    assert type(got_d.value) is type(want_d.value)
    assert (got_d.value.errno, str(got_d.value)) == (want_d.value.errno, str(want_d.value))
    assert "(the interface is down)" in str(got_d.value)
    with pytest.raises(PermissionError, match=rf"^\[Errno 1\] .*: read\(\) on '{dev.name}'$"):
        demo.raise_error(dev, -errno.EPERM, "read()")
    with pytest.raises(InterruptedError):
        demo.raise_error(dev, -errno.EINTR, "read()")
    with pytest.raises(SystemError, match="not an error code"):
        demo.raise_error(dev, 3, "read()")


# -- the complete loops: the C demo's forward() and the Cython example -------------------


class Pair:
    """src in our namespace (local .1, remote .2 routed through it); dst in a named
    namespace with the remote address, and a UDP sink bound there reporting the TTL."""

    def __init__(self, open_device, netns: str) -> None:
        self.net = unique_net()
        self.src = open_device(unique_name())
        self.src.add_address(self.net.cidr)
        self.src.up()
        self.dst = open_device(unique_name(), netns=netns)
        self.dst.add_address(f"{self.net.remote}/24")
        self.dst.up()
        with in_netns(f"/var/run/netns/{netns}"):
            self.sink = udp_socket()
        try:
            self.sink.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
            self.sink.bind((self.net.remote, 0))
            self.port = self.sink.getsockname()[1]
        except BaseException:
            self.sink.close()
            raise

    def received(self, n: int) -> list[tuple[bytes, int]]:
        out = []
        for _ in range(n):
            data, anc, _flags, _addr = self.sink.recvmsg(2048, socket.CMSG_SPACE(4))
            ttl = [struct.unpack("i", d[:4])[0] for lvl, typ, d in anc
                   if lvl == socket.IPPROTO_IP and typ == socket.IP_TTL]
            out.append((data, ttl[0]))
        return out

    def nothing_more(self) -> bool:
        self.sink.settimeout(0.2)
        try:
            self.sink.recv(2048)
        except socket.timeout:
            return True
        return False


@pytest.fixture
def pair(open_device, named_netns: str) -> Iterator[Pair]:
    p = Pair(open_device, named_netns)
    try:
        yield p
    finally:
        p.sink.close()


def _forward_checks(forward, pair: Pair) -> None:
    payloads = [b"fwd-%d" % i for i in range(10)]
    _send(pair.net.remote, pair.port, payloads[:5])
    _send(pair.net.remote, pair.port, [b"expires"], ttl=1)  # dropped by the forwarder
    _send(pair.net.remote, pair.port, payloads[5:])
    batch = tuntap.PacketBatch(4, 2048)  # smaller than the burst: several rounds
    assert forward(pair.src, pair.dst, batch, 11, int(WAIT * 1e9)) == (10, 1)
    # the kernel drops packets with a bad IPv4 header checksum, so arriving proves it
    assert pair.received(10) == [(p, 63) for p in payloads]
    assert pair.nothing_more()


@pytest.mark.needs_tun
@pytest.mark.usefixtures("io_backend")  # the C API on both batch backends
def test_c_forward_rewrites_ttl_and_checksum_between_devices(demo: ModuleType,
                                                             pair: Pair) -> None:
    _forward_checks(demo.forward, pair)


@pytest.mark.needs_tun
@pytest.mark.usefixtures("io_backend")  # the C API on both batch backends
def test_c_forward_ends_on_close_of_src_and_on_idle_timeout(demo: ModuleType,
                                                            pair: Pair) -> None:
    batch = tuntap.PacketBatch(4, 2048)
    t0 = time.perf_counter()
    assert demo.forward(pair.src, pair.dst, batch, -1, 100_000_000) == (0, 0)
    assert 0.095 <= time.perf_counter() - t0 < WAIT
    closer, closed_at = _closer(pair.src, 0.2)
    assert demo.forward(pair.src, pair.dst, batch, -1, -1) == (0, 0)
    assert time.perf_counter() - closed_at[0] < 0.1
    closer.join(WAIT)


@pytest.mark.needs_tun
@pytest.mark.usefixtures("io_backend")  # the C API on both batch backends
def test_c_forward_raises_the_write_error_of_dst(demo: ModuleType, pair: Pair,
                                                 open_device) -> None:
    pair.dst.down()
    _send(pair.net.remote, pair.port, [b"a", b"b"])
    with pytest.raises(OSError, match=r"write\(\) on '.*' \(the interface is down\)") as e:
        demo.forward(pair.src, pair.dst, tuntap.PacketBatch(4, 2048), 2, int(WAIT * 1e9))
    assert e.value.errno == errno.EIO
    with pytest.raises(ValueError, match="differ in packet headers"):
        demo.forward(pair.src, open_device(unique_name(), tuntap.Flags.TUN),
                     tuntap.PacketBatch(4, 2048), 1, 0)


@pytest.mark.needs_tun
@pytest.mark.usefixtures("io_backend")  # the C API on both batch backends
def test_cython_example_forwards_with_ttl_and_checksum_rewritten(ttl_forward: ModuleType,
                                                                 pair: Pair) -> None:
    def forward(src, dst, batch, limit, timeout_ns):  # type: ignore[no-untyped-def]
        return ttl_forward.forward(src, dst, batch, limit, timeout_ns / 1e9)

    _forward_checks(forward, pair)


@pytest.mark.needs_tun
@pytest.mark.usefixtures("io_backend")  # the C API on both batch backends
def test_cython_example_stops_when_src_is_closed_by_another_thread(ttl_forward: ModuleType,
                                                                   pair: Pair) -> None:
    closer, closed_at = _closer(pair.src, 0.3)
    assert ttl_forward.forward(pair.src, pair.dst, tuntap.PacketBatch(4, 2048)) == (0, 0)
    assert time.perf_counter() - closed_at[0] < 0.1
    closer.join(WAIT)
    with pytest.raises(ValueError, match=r"^I/O operation on closed device$"):
        ttl_forward.forward(pair.src, pair.dst, tuntap.PacketBatch(4, 2048))
    with pytest.raises(TypeError, match="must be tuntap.PacketBatch"):
        ttl_forward.forward(pair.dst, pair.dst, b"not a batch")


def test_cython_example_rewrite_without_devices(ttl_forward: ModuleType) -> None:
    b = tuntap.PacketBatch(8, 2048, headroom=8)
    pkts = [build_udp4("10.1.0.1", "10.1.0.2", 1, 2, b"p%d" % i) for i in range(3)]
    b.append(pkts[0])
    b.append(b"\x60" + b"\0" * 39)  # IPv6: dropped
    b.append(pkts[1])
    ttl1 = bytearray(pkts[2])
    ttl1[8] = 1
    b.append(bytes(ttl1))  # TTL 1: dropped
    b.append(pkts[2])
    assert ttl_forward.rewrite(b) == 3 and len(b) == 3
    for i, p in enumerate((pkts[0], pkts[1], pkts[2])):
        want = bytearray(p)
        want[8] -= 1
        want[10:12] = b"\0\0"
        want[10:12] = struct.pack("!H", tuntap.checksum(bytes(want[:20])))
        assert bytes(b[i]) == bytes(want)
        assert tuntap.checksum(bytes(b[i])[:20]) == 0
