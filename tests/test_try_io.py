"""The C side of the async layer: Device.sndbuf and the non-raising ``_try_*`` methods."""

from __future__ import annotations

import errno
import struct
import subprocess
import sys
import time

import pytest

import tuntap
from asyncutil import Sender, seq_of, slow_egress, udp_to
from netutil import WAIT

# The I/O part of the suite: every test runs on both batch backends (conftest.io_backend).
pytestmark = [pytest.mark.needs_tun, pytest.mark.usefixtures("io_backend")]

INT_MAX = 2**31 - 1


def test_core_package_never_imports_asyncio():
    code = ("import sys, tuntap; tuntap.Device; tuntap.PacketBatch(); "
            "found = {'asyncio', 'anyio', 'trio', 'uvloop'} & set(sys.modules); "
            "sys.exit(' '.join(sorted(found)) or None)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr


# -- sndbuf ----------------------------------------------------------------------------


def test_sndbuf_defaults_to_int_max_and_round_trips(tun):
    assert tun.dev.sndbuf == INT_MAX  # tun_chr_open: sk_sndbuf = INT_MAX
    tun.dev.sndbuf = 4096
    assert tun.dev.sndbuf == 4096
    tun.dev.sndbuf = 1
    assert tun.dev.sndbuf == 1


@pytest.mark.parametrize("value", [0, -1, -(2**31)])
def test_sndbuf_refuses_non_positive_before_the_kernel(tun, value):
    with pytest.raises(ValueError, match=f"sndbuf must be >= 1, not {value}"):
        tun.dev.sndbuf = value
    assert tun.dev.sndbuf == INT_MAX


@pytest.mark.parametrize("value", ["4096", 4096.0, None])
def test_sndbuf_wrong_type_is_type_error(tun, value):
    with pytest.raises(TypeError):
        tun.dev.sndbuf = value


def test_sndbuf_too_large_is_overflow_error(tun):
    with pytest.raises(OverflowError):
        tun.dev.sndbuf = 2**31


def test_sndbuf_cannot_be_deleted(tun):
    with pytest.raises(AttributeError, match="cannot delete sndbuf"):
        del tun.dev.sndbuf


def test_sndbuf_on_closed_device(open_device):
    dev = open_device("")
    dev.close()
    with pytest.raises(ValueError, match="I/O operation on closed device"):
        dev.sndbuf  # noqa: B018
    with pytest.raises(ValueError, match="I/O operation on closed device"):
        dev.sndbuf = 4096


def test_small_sndbuf_makes_a_write_push_back_then_room_returns(tun):
    """With the packets held by a slow egress, the send buffer fills: EAGAIN, then POLLOUT."""
    # 100 kbit/s: one 1 KB packet leaves every ~80 ms, so the room the EAGAIN reported
    # missing cannot come back between it and the write() below, even on a loaded machine.
    with slow_egress(tun.name, rate="100kbit") as eg:
        tun.dev.sndbuf = 4096
        tun.dev.setblocking(False)
        written = []
        for seq in range(100):
            r = tun.dev._try_write(udp_to(tun.remote, tun.local, 9, seq, size=1000))
            if r == -1:
                break
            assert r == 1028
            written.append(seq)
        else:
            pytest.fail("100 writes of 1 KB into a 4 KB send buffer never pushed back")
        assert 1 <= len(written) <= 8
        # The sync API raises instead, naming the cause.
        with pytest.raises(BlockingIOError, match=r"send buffer full, non-blocking mode"):
            tun.dev.write(udp_to(tun.remote, tun.local, 9, 999, size=1000))
        # A blocking write waits for room and completes.
        tun.dev.settimeout(WAIT)
        assert tun.dev.write(udp_to(tun.remote, tun.local, 9, len(written), size=1000)) == 1028
        written.append(len(written))
        deadline = time.monotonic() + WAIT
        got: list[int] = []
        while len(got) < len(written) and time.monotonic() < deadline:
            got += eg.drain()
            time.sleep(0.01)
        assert got == written


# -- _try_* ----------------------------------------------------------------------------


def test_try_reads_return_minus_one_or_none_without_raising(tun):
    dev = tun.dev
    batch = tuntap.PacketBatch(4, 2048)
    batch.append(b"stale")
    assert dev._try_readinto(bytearray(2048)) == -1
    assert dev._try_read() is None
    assert dev._try_read(100) is None
    assert dev._try_read_batch(batch) == -1
    assert len(batch) == 0  # left empty, like read_batch
    # They never wait, whatever the mode.
    dev.settimeout(None)
    t0 = time.monotonic()
    assert dev._try_read() is None
    assert time.monotonic() - t0 < 0.5
    assert dev.gettimeout() is None


def test_try_reads_return_queued_packets(tun):
    s = Sender(tun.remote)
    try:
        s.send(4)
        time.sleep(0.05)
        buf = bytearray(2048)
        n = tun.dev._try_readinto(buf)
        assert seq_of(buf[:n]) == 0
        assert seq_of(tun.dev._try_read()) == 1
        batch = tuntap.PacketBatch(8, 2048)
        assert tun.dev._try_read_batch(batch) == 2
        assert [seq_of(p) for p in batch] == [2, 3]
    finally:
        s.close()


def test_try_methods_raise_closed_like_the_sync_api(open_device):
    dev = open_device("")
    dev.close()
    batch = tuntap.PacketBatch()
    for call in (lambda: dev._try_readinto(bytearray(100)), lambda: dev._try_read(),
                 lambda: dev._try_read_batch(batch), lambda: dev._try_write(b"\x45"),
                 lambda: dev._try_write_batch([b"\x45"])):
        with pytest.raises(ValueError, match="^I/O operation on closed device$"):
            call()


def test_try_methods_raise_bad_arguments_like_the_sync_api(tun):
    dev = tun.dev
    with pytest.raises(TypeError, match="read-write bytes-like object"):
        dev._try_readinto(b"read-only")
    with pytest.raises(ValueError, match="buffer is empty"):
        dev._try_readinto(bytearray())
    with pytest.raises(ValueError, match="size must be positive"):
        dev._try_read(-1)
    with pytest.raises(TypeError, match="size must be int"):
        dev._try_read("1")
    with pytest.raises(TypeError, match="argument must be PacketBatch"):
        dev._try_read_batch([])
    with pytest.raises(ValueError, match="empty packet"):
        dev._try_write(b"")
    with pytest.raises(TypeError):
        dev._try_write(42)
    with pytest.raises(ValueError, match="empty packet"):
        dev._try_write_batch([b""])
    with pytest.raises(TypeError, match="item 1 must be a bytes-like object"):
        dev._try_write_batch([b"\x45" * 20, 5])
    with pytest.raises(TypeError, match="takes 1 or 2 arguments"):
        dev._try_write_batch()
    with pytest.raises(TypeError, match="takes 1 or 2 arguments"):
        dev._try_write_batch([], 0, 0)
    with pytest.raises(TypeError, match="start must be int"):
        dev._try_write_batch([], "0")
    with pytest.raises(ValueError, match="start must be >= 0, not -1"):
        dev._try_write_batch([], -1)


def test_try_write_of_a_malformed_packet_raises_the_kernel_error(tun):
    with pytest.raises(OSError) as e:
        tun.dev._try_write(b"\x00" * 40)  # IP version 0: EINVAL
    assert e.value.errno == errno.EINVAL
    assert "write() on" in str(e.value)


def test_try_write_while_down_raises_eio_like_write(tun):
    tun.dev.down()
    with pytest.raises(OSError, match=r"the interface is down") as e:
        tun.dev._try_write(udp_to(tun.remote, tun.local, 9, 0))
    assert e.value.errno == errno.EIO
    with pytest.raises(OSError) as e:
        tun.dev._try_write_batch([udp_to(tun.remote, tun.local, 9, 0)])
    assert e.value.errno == errno.EIO


def test_try_write_batch_from_start_and_partial_counts(tun):
    import socket

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind((tun.local, 5999))
    sink.settimeout(WAIT)
    try:
        pkts = [udp_to(tun.remote, tun.local, 5999, i) for i in range(5)]
        assert tun.dev._try_write_batch(pkts, 2) == 3
        assert tun.dev._try_write_batch(pkts, 5) == 0
        assert tun.dev._try_write_batch(pkts, 99) == 0
        batch = tuntap.PacketBatch(8, 2048)
        for p in pkts:
            batch.append(p)
        assert tun.dev._try_write_batch(batch, 4) == 1
        assert tun.dev._try_write_batch(batch, 5) == 0
        # A malformed packet after the first: the count so far, like write_batch.
        assert tun.dev._try_write_batch([pkts[0], b"\x00" * 40, pkts[1]]) == 1
        got = [struct.unpack("!I", sink.recv(2048)[4:8])[0] for _ in range(5)]
        assert got == [2, 3, 4, 4, 0]
    finally:
        sink.close()


def test_try_write_batch_stops_at_eagain_and_goes_on_from_start(tun):
    with slow_egress(tun.name, rate="2mbit") as eg:
        tun.dev.sndbuf = 4096
        pkts = [udp_to(tun.remote, tun.local, 9, i, size=1000) for i in range(40)]
        done = tun.dev._try_write_batch(pkts)
        assert 1 <= done < 40
        assert tun.dev._try_write_batch(pkts, done) == -1  # still full right after
        deadline = time.monotonic() + 5
        while done < 40 and time.monotonic() < deadline:
            r = tun.dev._try_write_batch(pkts, done)
            if r == -1:
                time.sleep(0.002)
                continue
            done += r
        assert done == 40
        got: list[int] = []
        while len(got) < 40 and time.monotonic() < deadline:
            got += eg.drain()
            time.sleep(0.01)
        assert got == list(range(40))
