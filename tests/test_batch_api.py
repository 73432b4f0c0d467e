"""PacketBatch, Device.read_batch and Device.write_batch with real packets."""

from __future__ import annotations

import gc
import socket
import time
import tracemalloc

import pytest

import tuntap
from netutil import CLOSED_MSG, WAIT, build_udp4, is_udp4_to, parse_udp4, udp_socket

# The I/O part of the suite: every test runs on both batch backends (conftest.io_backend).
pytestmark = pytest.mark.usefixtures("io_backend")


def _send(dst: str, port: int, payloads: list[bytes]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for p in payloads:
            s.sendto(p, (dst, port))


def _udp_payloads(batch: tuntap.PacketBatch, dst: str, port: int) -> list[bytes]:
    return [parse_udp4(bytes(p))[1].payload for p in batch if is_udp4_to(bytes(p), dst, port)]


def _read_until(dev: tuntap.Device, batch: tuntap.PacketBatch, dst: str, port: int,
                want: int) -> list[bytes]:
    """read_batch until `want` matching datagrams arrived (bounded by WAIT)."""
    got: list[bytes] = []
    deadline = time.monotonic() + WAIT
    dev.settimeout(WAIT)
    while len(got) < want and time.monotonic() < deadline:
        dev.read_batch(batch)
        got += _udp_payloads(batch, dst, port)
    return got


# -- PacketBatch on its own (no device needed) ------------------------------------------


def test_new_batch_is_empty_with_its_geometry() -> None:
    b = tuntap.PacketBatch(8, 256, headroom=16)
    assert (len(b), b.capacity, b.slot_size, b.headroom, b.stride) == (0, 8, 256, 16, 272)
    assert list(b) == []
    assert bytes(b.sizes) == b""
    assert tuntap.PacketBatch().capacity == 64 and tuntap.PacketBatch().slot_size == 2048


def test_append_index_iterate_and_clear() -> None:
    b = tuntap.PacketBatch(4, 16, headroom=2)
    for p in (b"a", b"bc", b"def"):
        b.append(p)
    assert len(b) == 3
    assert [bytes(p) for p in b] == [b"a", b"bc", b"def"]
    assert bytes(b[-1]) == b"def"
    assert list(b.sizes) == [1, 2, 3]
    assert b.sizes.format == "I" and b.sizes.readonly
    with pytest.raises(IndexError):
        b[3]
    with pytest.raises(IndexError):
        b[-4]
    b.clear()
    assert len(b) == 0 and list(b) == []


def test_item_views_are_zero_copy_and_writable() -> None:
    b = tuntap.PacketBatch(2, 8)
    b.append(b"xyz")
    view = b[0]
    view[0] = ord("X")
    assert bytes(b[0]) == b"Xyz"
    whole = memoryview(b)
    assert len(whole) == 2 * 8 and not whole.readonly
    assert bytes(whole[:3]) == b"Xyz"


def test_slot_includes_headroom_so_a_header_can_be_prepended_in_place() -> None:
    b = tuntap.PacketBatch(2, 8, headroom=4)
    b.append(b"data")
    slot = b.slot(0)
    assert len(slot) == 4 + 4
    slot[:4] = b"HDR:"
    assert bytes(b.slot(0)) == b"HDR:data"
    assert bytes(b[0]) == b"data"
    assert bytes(memoryview(b)[:8]) == b"HDR:data"
    with pytest.raises(IndexError):
        b.slot(1)


def test_sizes_view_is_read_only() -> None:
    b = tuntap.PacketBatch(2, 8)
    b.append(b"ab")
    with pytest.raises(TypeError):
        b.sizes[0] = 5  # type: ignore[index]


@pytest.mark.parametrize(
    ("args", "kwargs", "exc"),
    [
        ((0,), {}, ValueError),
        ((-1,), {}, ValueError),
        ((4, 0), {}, ValueError),
        ((4, -5), {}, ValueError),
        ((4, 16), {"headroom": -1}, ValueError),
        (("4",), {}, TypeError),
        ((4, 16.5), {}, TypeError),
        ((4, 16, 2), {}, TypeError),  # headroom is keyword-only
        ((2**40, 2**30), {}, OverflowError),
    ],
)
def test_bad_batch_geometry_raises(args: tuple, kwargs: dict, exc: type) -> None:
    with pytest.raises(exc):
        tuntap.PacketBatch(*args, **kwargs)


def test_append_refuses_empty_oversized_and_full() -> None:
    b = tuntap.PacketBatch(1, 4)
    with pytest.raises(ValueError, match="empty"):
        b.append(b"")
    with pytest.raises(ValueError, match="does not fit"):
        b.append(b"12345")
    with pytest.raises(TypeError):
        b.append("text")  # type: ignore[arg-type]
    b.append(b"1234")
    with pytest.raises(ValueError, match="full"):
        b.append(b"x")
    assert len(b) == 1


# -- with a device ------------------------------------------------------------------------


@pytest.mark.needs_tun
def test_read_batch_reads_queued_packets_byte_exact(tun) -> None:
    payloads = [bytes([i]) * (10 + i) for i in range(20)]
    _send(tun.remote, 4000, payloads)
    batch = tuntap.PacketBatch(64, 2048)
    assert _read_until(tun.dev, batch, tun.remote, 4000, 20) == payloads


@pytest.mark.needs_tun
def test_read_batch_stops_at_capacity_and_the_next_call_gets_the_rest(tun) -> None:
    payloads = [b"p%02d" % i for i in range(10)]
    _send(tun.remote, 4001, payloads)
    small = tuntap.PacketBatch(4, 2048)
    got: list[bytes] = []
    sizes_seen = []
    deadline = time.monotonic() + WAIT
    tun.dev.settimeout(WAIT)
    while len(got) < 10 and time.monotonic() < deadline:
        n = tun.dev.read_batch(small)
        assert 1 <= n <= 4 and len(small) == n
        sizes_seen.append(n)
        got += _udp_payloads(small, tun.remote, 4001)
    assert got == payloads
    assert max(sizes_seen) == 4  # a full batch happened, so capacity bounded it


@pytest.mark.needs_tun
def test_read_batch_truncates_to_slot_size(tun) -> None:
    _send(tun.remote, 4002, [b"x" * 500])
    batch = tuntap.PacketBatch(4, 100)
    deadline = time.monotonic() + WAIT
    tun.dev.settimeout(WAIT)
    while time.monotonic() < deadline:
        tun.dev.read_batch(batch)
        long_ones = [p for p in batch if len(p) == 100]
        if long_ones:
            break
    assert long_ones and bytes(long_ones[0][:1])[0] >> 4 == 4
    assert batch.sizes[0] <= 100


@pytest.mark.needs_tun
def test_read_batch_places_packets_after_the_headroom(tun) -> None:
    _send(tun.remote, 4003, [b"headroom!"])
    batch = tuntap.PacketBatch(8, 2048, headroom=12)
    assert _read_until(tun.dev, batch, tun.remote, 4003, 1) == [b"headroom!"]
    i = next(i for i, p in enumerate(batch) if is_udp4_to(bytes(p), tun.remote, 4003))
    assert bytes(batch.slot(i))[12:] == bytes(batch[i])
    arena = memoryview(batch)
    start = i * batch.stride + 12
    assert bytes(arena[start:start + batch.sizes[i]]) == bytes(batch[i])


@pytest.mark.needs_tun
def test_read_batch_timeout_raises_on_time_and_empties_the_batch(tun) -> None:
    batch = tuntap.PacketBatch(4, 2048)
    batch.append(b"old")
    tun.dev.settimeout(0.2)
    # Drain whatever housekeeping traffic is queued first.
    try:
        while True:
            tun.dev.read_batch(batch)
    except TimeoutError:
        pass
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        tun.dev.read_batch(batch)
    elapsed = time.monotonic() - t0
    assert 0.18 <= elapsed < 1.0
    assert len(batch) == 0


@pytest.mark.needs_tun
def test_read_batch_non_blocking_empty_raises_blocking_io_error(tun) -> None:
    batch = tuntap.PacketBatch(4, 2048)
    tun.dev.setblocking(False)
    try:
        while True:
            tun.dev.read_batch(batch)
    except BlockingIOError as e:
        assert e.errno == 11
    with pytest.raises(BlockingIOError):
        tun.dev.read_batch(batch)


@pytest.mark.needs_tun
def test_read_batch_returns_what_is_queued_when_the_queue_runs_dry(tun) -> None:
    """EAGAIN after some packets ends the batch without waiting or raising."""
    _send(tun.remote, 4004, [b"a", b"b", b"c"])
    time.sleep(0.05)
    tun.dev.setblocking(False)
    batch = tuntap.PacketBatch(64, 2048)
    t0 = time.monotonic()
    n = tun.dev.read_batch(batch)
    assert time.monotonic() - t0 < 0.1
    assert 3 <= n < 64
    assert _udp_payloads(batch, tun.remote, 4004) == [b"a", b"b", b"c"]


@pytest.mark.needs_tun
def test_write_batch_of_a_packet_batch_reaches_a_socket(tun) -> None:
    with udp_socket() as sink:
        sink.bind((tun.local, 0))
        port = sink.getsockname()[1]
        batch = tuntap.PacketBatch(8, 2048)
        for i in range(5):
            batch.append(build_udp4(tun.remote, tun.local, 999, port, b"w%d" % i))
        assert tun.dev.write_batch(batch) == 5
        assert [sink.recv(100) for _ in range(5)] == [b"w%d" % i for i in range(5)]


@pytest.mark.needs_tun
def test_write_batch_of_a_sequence_reaches_a_socket(tun) -> None:
    with udp_socket() as sink:
        sink.bind((tun.local, 0))
        port = sink.getsockname()[1]
        packets = [build_udp4(tun.remote, tun.local, 999, port, b"s%d" % i) for i in range(70)]
        # list of bytes, tuple of bytearray, memoryviews: all bytes-like
        assert tun.dev.write_batch(packets) == 70
        assert tun.dev.write_batch(tuple(bytearray(p) for p in packets[:3])) == 3
        assert tun.dev.write_batch([memoryview(packets[0])]) == 1
        got = [sink.recv(100) for _ in range(74)]
        assert got[:70] == [b"s%d" % i for i in range(70)]
        assert got[70:] == [b"s0", b"s1", b"s2", b"s0"]
        assert tun.dev.write_batch([]) == 0
        assert tun.dev.write_batch(tuntap.PacketBatch(2, 64)) == 0


@pytest.mark.needs_tun
def test_write_batch_later_failure_returns_count_written(tun) -> None:
    with udp_socket() as sink:
        sink.bind((tun.local, 0))
        port = sink.getsockname()[1]
        good = build_udp4(tun.remote, tun.local, 999, port, b"ok")
        bad = b"\x00" * 40  # IP version 0: EINVAL from the kernel
        assert tun.dev.write_batch([good, good, bad, good]) == 2
        assert [sink.recv(100) for _ in range(2)] == [b"ok", b"ok"]
        sink.settimeout(0.2)
        with pytest.raises(socket.timeout):
            sink.recv(100)  # the packet after the bad one was not written


@pytest.mark.needs_tun
def test_write_batch_first_failure_raises_kernel_error(tun) -> None:
    with pytest.raises(OSError) as info:
        tun.dev.write_batch([b"\x00" * 40, b"\x45" + b"\x00" * 39])
    assert info.value.errno == 22
    assert tun.name in str(info.value) and "write()" in str(info.value)
    with pytest.raises(ValueError, match="empty"):
        tun.dev.write_batch([b"", b"\x45" * 20])


@pytest.mark.needs_tun
def test_write_batch_bad_item_type_raises_before_writing_anything(tun) -> None:
    with udp_socket() as sink:
        sink.bind((tun.local, 0))
        port = sink.getsockname()[1]
        good = build_udp4(tun.remote, tun.local, 999, port, b"never")
        with pytest.raises(TypeError, match="item 1"):
            tun.dev.write_batch([good, "not bytes"])
        sink.settimeout(0.2)
        with pytest.raises(socket.timeout):
            sink.recv(100)


@pytest.mark.needs_tun
@pytest.mark.parametrize("arg", [b"\x45" * 20, bytearray(20), "text", 5, None])
def test_write_batch_wrong_argument_type_raises_type_error(tun, arg) -> None:
    with pytest.raises(TypeError):
        tun.dev.write_batch(arg)


@pytest.mark.needs_tun
@pytest.mark.parametrize("arg", [bytearray(100), [bytearray(100)], None])
def test_read_batch_needs_a_packet_batch(tun, arg) -> None:
    with pytest.raises(TypeError, match="PacketBatch"):
        tun.dev.read_batch(arg)


@pytest.mark.needs_tun
def test_read_batch_slot_must_exceed_packet_info_header(open_device) -> None:
    from netutil import unique_name

    dev = open_device(unique_name(), tuntap.Flags.TUN)  # packet info on: 4-byte header
    with pytest.raises(ValueError, match="4-byte"):
        dev.read_batch(tuntap.PacketBatch(2, 4))


@pytest.mark.needs_tun
def test_batch_calls_on_a_closed_device_raise_value_error(open_device) -> None:
    from netutil import unique_name

    dev = open_device(unique_name())
    dev.close()
    batch = tuntap.PacketBatch(2, 64)
    with pytest.raises(ValueError, match=f"^{CLOSED_MSG}$"):
        dev.read_batch(batch)
    with pytest.raises(ValueError, match=f"^{CLOSED_MSG}$"):
        dev.write_batch(batch)
    with pytest.raises(ValueError, match=f"^{CLOSED_MSG}$"):
        dev.write_batch([b"x"])


@pytest.mark.needs_tun
def test_batched_io_allocates_nothing_per_packet(tun) -> None:
    """100,000 packets through read_batch and write_batch: no Python allocation at all.

    tracemalloc's peak is reset right before each call and read right after, so any
    allocation made inside the call, even one freed before it returns, shows up.
    """
    total = 100_000
    batch = tuntap.PacketBatch(64, 2048)
    tun.dev.txqueuelen = 10_000
    payloads = [b"%05d" % i for i in range(64)]
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dst = (tun.remote, 4010)
    out = tuntap.PacketBatch(64, 2048)
    with udp_socket() as sink:
        sink.bind((tun.local, 0))
        port = sink.getsockname()[1]
        for i in range(64):
            out.append(build_udp4(tun.remote, tun.local, 999, port, b"%d" % i))
        gc.collect()
        tracemalloc.start()
        try:
            read = written = worst = 0
            deadline = time.monotonic() + 60
            tun.dev.settimeout(WAIT)
            while (read < total or written < total) and time.monotonic() < deadline:
                if read < total:
                    for p in payloads:
                        sender.sendto(p, dst)
                    # sendto() queues synchronously on the device: one call drains them.
                    before = tracemalloc.get_traced_memory()[0]
                    tracemalloc.reset_peak()
                    n = tun.dev.read_batch(batch)
                    peak = tracemalloc.get_traced_memory()[1]
                    worst = max(worst, peak - before)
                    read += n
                if written < total:
                    before = tracemalloc.get_traced_memory()[0]
                    tracemalloc.reset_peak()
                    n = tun.dev.write_batch(out)
                    peak = tracemalloc.get_traced_memory()[1]
                    worst = max(worst, peak - before)
                    written += n
        finally:
            tracemalloc.stop()
            sender.close()
    assert read >= total and written >= total
    assert worst == 0, f"a batched call allocated {worst} bytes"
