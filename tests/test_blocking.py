"""Blocking, non-blocking and timeout modes; signals during a blocking read; what poll(2)
reports on the device fd (the blocking modes wait in poll, docs/kernel.md "poll")."""

from __future__ import annotations

import os
import select
import signal
import threading
import time

import pytest

from netutil import TUN_PATH, WAIT, ip, parse_udp4, poll_events, udp_socket, unique_name

# The I/O part of the suite: every test runs on both batch backends (conftest.io_backend).
pytestmark = [pytest.mark.needs_tun, pytest.mark.usefixtures("io_backend")]


def send_later(delay: float, dst: str, port: int, payload: bytes,
               block: tuple[int, ...] = ()) -> threading.Thread:
    def run() -> None:
        if block:
            signal.pthread_sigmask(signal.SIG_BLOCK, block)  # signals go to the main thread
        time.sleep(delay)
        with udp_socket() as s:
            s.sendto(payload, (dst, port))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_default_is_blocking_without_timeout(open_device):
    dev = open_device(unique_name())
    assert dev.getblocking() is True
    assert dev.gettimeout() is None


def test_constructor_blocking_false(open_device):
    dev = open_device(unique_name(), blocking=False)
    assert dev.getblocking() is False
    assert dev.gettimeout() == 0.0
    with pytest.raises(BlockingIOError):
        dev.readinto(bytearray(100))


def test_setblocking_false_raises_blocking_io_error_at_once(tun):
    tun.dev.setblocking(False)
    assert tun.dev.getblocking() is False
    assert tun.dev.gettimeout() == 0.0
    t0 = time.monotonic()
    with pytest.raises(BlockingIOError):
        tun.dev.readinto(bytearray(2048))
    with pytest.raises(BlockingIOError):
        tun.dev.read()
    assert time.monotonic() - t0 < 0.1
    tun.dev.setblocking(True)
    assert tun.dev.getblocking() is True
    assert tun.dev.gettimeout() is None


def test_nonblocking_read_returns_a_queued_packet(tun):
    tun.dev.setblocking(False)
    with udp_socket() as s:
        s.sendto(b"queued", (tun.remote, 7100))
    deadline = time.monotonic() + WAIT
    while True:
        try:
            pkt = tun.dev.read()
            break
        except BlockingIOError:
            assert time.monotonic() < deadline
            time.sleep(0.005)
    assert parse_udp4(pkt)[1].payload == b"queued"


def test_settimeout_raises_timeout_error_on_time(tun):
    tun.dev.settimeout(0.2)
    assert tun.dev.gettimeout() == pytest.approx(0.2)
    assert tun.dev.getblocking() is True
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        tun.dev.readinto(bytearray(2048))
    elapsed = time.monotonic() - t0
    assert 0.19 <= elapsed < 0.5, elapsed


def test_timeout_error_is_an_oserror_like_socket_timeout(tun):
    tun.dev.settimeout(0.01)
    with pytest.raises(OSError) as ei:  # what `except OSError` around a read catches
        tun.dev.read()
    assert type(ei.value) is TimeoutError


def test_blocking_read_with_timeout_returns_packet_sent_later(tun):
    tun.dev.settimeout(WAIT)
    t = send_later(0.2, tun.remote, 7101, b"later")
    t0 = time.monotonic()
    pkt = tun.dev.read()
    elapsed = time.monotonic() - t0
    t.join(WAIT)
    assert parse_udp4(pkt)[1].payload == b"later"
    assert 0.15 <= elapsed < 1.5


@pytest.mark.parametrize("bad", [-1, -0.5, float("nan")])
def test_settimeout_rejects_bad_values(tun, bad):
    with pytest.raises(ValueError):
        tun.dev.settimeout(bad)
    assert tun.dev.gettimeout() is None


def test_settimeout_rejects_wrong_type(tun):
    with pytest.raises(TypeError):
        tun.dev.settimeout("1")


def test_settimeout_zero_is_nonblocking(tun):
    tun.dev.settimeout(0)
    assert tun.dev.getblocking() is False
    with pytest.raises(BlockingIOError):
        tun.dev.read()


# --- poll ------------------------------------------------------------------------


def test_poll_reports_pollin_only_while_a_packet_is_queued(tun):
    fd = tun.dev.fileno()
    assert poll_events(fd) == select.POLLOUT
    with udp_socket() as s:
        s.sendto(b"poll me", (tun.remote, 7102))
    assert poll_events(fd, WAIT) == select.POLLIN | select.POLLOUT
    assert parse_udp4(tun.dev.read())[1].payload == b"poll me"
    assert poll_events(fd) == select.POLLOUT


def test_poll_reports_pollout_only_while_the_link_is_up(open_device):
    dev = open_device(unique_name())
    assert poll_events(dev.fileno()) == 0  # down: a write would be EIO
    dev.up()
    assert poll_events(dev.fileno()) == select.POLLOUT
    dev.down()
    assert poll_events(dev.fileno()) == 0


def test_poll_reports_pollerr_on_an_unattached_fd_and_after_deletion(tun):
    fd = os.open(TUN_PATH, os.O_RDWR | os.O_CLOEXEC)  # no TUNSETIFF yet
    try:
        assert poll_events(fd) == select.POLLERR
    finally:
        os.close(fd)
    ip("link", "del", "dev", tun.name)
    assert poll_events(tun.dev.fileno()) == select.POLLERR


# --- signals ---------------------------------------------------------------------


@pytest.fixture
def main_thread_only():
    if threading.current_thread() is not threading.main_thread():
        pytest.fail("signal tests must run in the main thread")


def test_eintr_from_python_signal_handler_is_retried(tun, main_thread_only):
    """PEP 475: a SIGALRM handler that returns normally does not end the read."""
    calls = []
    old = signal.signal(signal.SIGALRM, lambda signum, frame: calls.append(time.monotonic()))
    buf = bytearray(2048)
    try:
        t = send_later(0.4, tun.remote, 7200, b"after signals", block=(signal.SIGALRM,))
        signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
        try:
            t0 = time.monotonic()
            n = tun.dev.readinto(buf)  # blocking, no timeout
            during = len(calls)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0, 0)
        t.join(WAIT)
    finally:
        signal.signal(signal.SIGALRM, old)
    assert parse_udp4(bytes(buf[:n]))[1].payload == b"after signals"
    assert during >= 3, f"the handler ran only {during} times during the read"
    assert all(c >= t0 for c in calls)


def test_eintr_does_not_restart_the_timeout(tun, main_thread_only):
    """Signals every 50 ms must not extend a 0.4 s timeout (deadline, not per-wait)."""
    calls = []
    old = signal.signal(signal.SIGALRM, lambda signum, frame: calls.append(1))
    tun.dev.settimeout(0.4)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)
        try:
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):
                tun.dev.read()
            elapsed = time.monotonic() - t0
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0, 0)
    finally:
        signal.signal(signal.SIGALRM, old)
    assert len(calls) >= 4
    assert 0.39 <= elapsed < 0.8, elapsed


def test_exception_from_signal_handler_ends_the_read(tun, main_thread_only):
    class Boom(Exception):
        pass

    def handler(signum, frame):
        raise Boom

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.1)
        t0 = time.monotonic()
        with pytest.raises(Boom):
            tun.dev.read()
        assert time.monotonic() - t0 < 1.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, old)
    # The device still works afterwards.
    with udp_socket() as s:
        s.sendto(b"still ok", (tun.remote, 7201))
    tun.dev.settimeout(WAIT)
    assert parse_udp4(tun.dev.read())[1].payload == b"still ok"


def test_ctrl_c_ends_a_blocking_read_with_keyboard_interrupt(tun, main_thread_only):
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    main = threading.main_thread().ident
    timer = threading.Timer(0.2, signal.pthread_kill, (main, signal.SIGINT))
    try:
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            tun.dev.readinto(bytearray(2048))  # blocking, no timeout
        elapsed = time.monotonic() - t0
    finally:
        timer.cancel()
        timer.join(WAIT)
        signal.signal(signal.SIGINT, old)
    assert 0.15 <= elapsed < 1.0, elapsed


def test_sigint_to_the_process_ends_a_blocking_read(tun, main_thread_only):
    """os.kill(SIGINT) to the whole process, as a terminal's Ctrl-C does."""
    import os

    old = signal.signal(signal.SIGINT, signal.default_int_handler)

    def killer() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGINT)

    t = threading.Thread(target=killer, daemon=True)
    try:
        t.start()
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            tun.dev.read()
        elapsed = time.monotonic() - t0
    finally:
        t.join(WAIT)
        signal.signal(signal.SIGINT, old)
    assert elapsed < 1.0
