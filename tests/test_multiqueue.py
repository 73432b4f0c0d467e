"""Multi-queue devices: open_queues spreads flows; detach_queue / attach_queue."""

from __future__ import annotations

import errno
import select
import socket
import threading
import time

import pytest

import tuntap
from netutil import (
    WAIT,
    is_udp4_to,
    link_exists,
    link_json,
    parse_udp4,
    poll_events,
    unique_name,
)

# The I/O part of the suite: every test runs on both batch backends (conftest.io_backend).
pytestmark = [pytest.mark.needs_tun, pytest.mark.usefixtures("io_backend")]

PORT = 7700


def send_flows(dst: str, nflows: int, per_flow: int = 2) -> list[int]:
    """One socket (one source port, one flow hash) per flow; returns the source ports."""
    ports = []
    for _ in range(nflows):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("", 0))
            ports.append(s.getsockname()[1])
            for i in range(per_flow):
                s.sendto(b"flow %d" % i, (dst, PORT))
    return ports


def drain(qs, expected: int, dst: str) -> list[list[int]]:
    """Source ports of our UDP packets, per queue, until `expected` arrived (bounded)."""
    per_queue: list[list[int]] = [[] for _ in qs]
    for q in qs:
        q.setblocking(False)
    deadline = time.monotonic() + WAIT
    total = 0
    while total < expected and time.monotonic() < deadline:
        progress = False
        for i, q in enumerate(qs):
            try:
                pkt = q.read()
            except BlockingIOError:
                continue
            progress = True
            if is_udp4_to(pkt, dst, PORT):
                per_queue[i].append(parse_udp4(pkt)[1].sport)
                total += 1
        if not progress:
            time.sleep(0.002)
    return per_queue


def test_open_queues_returns_multi_queue_devices_on_one_interface(up_queues):
    qs, _net = up_queues(4)
    assert len(qs) == 4
    name = qs[0].name
    assert all(q.name == name for q in qs)
    assert all(isinstance(q, tuntap.Device) for q in qs)
    assert len({q.fileno() for q in qs}) == 4
    assert all(tuntap.Flags.MULTI_QUEUE in q.flags for q in qs)
    assert all(tuntap.Flags.NO_PI in q.flags for q in qs)
    data = link_json(name)["linkinfo"]["info_data"]
    assert data["multi_queue"] is True
    assert data["numqueues"] == 4


def test_flows_are_spread_across_all_queues(up_queues):
    qs, net = up_queues(4)
    ports = send_flows(net.remote, 64)
    per_queue = drain(qs, 128, net.remote)
    assert sum(len(p) for p in per_queue) == 128
    assert all(per_queue), f"an idle queue: {[len(p) for p in per_queue]}"
    # A flow sticks to one queue.
    where = {}
    for i, plist in enumerate(per_queue):
        for p in plist:
            assert where.setdefault(p, i) == i, f"flow {p} on queues {where[p]} and {i}"
    assert set(where) == set(ports)


def test_detached_queue_receives_nothing_and_attach_restores_it(up_queues):
    qs, net = up_queues(4)
    qs[0].detach_queue()
    assert link_json(qs[0].name)["linkinfo"]["info_data"]["numqueues"] == 3
    send_flows(net.remote, 48, per_flow=1)
    per_queue = drain(qs, 48, net.remote)
    assert per_queue[0] == []
    assert sum(len(p) for p in per_queue[1:]) == 48
    qs[0].setblocking(False)
    with pytest.raises(BlockingIOError):
        qs[0].read()

    # Detaching twice is the kernel's EINVAL (docs/kernel.md, "Multi-queue and detached queues").
    with pytest.raises(OSError) as ei:
        qs[0].detach_queue()
    assert ei.value.errno == errno.EINVAL

    qs[0].attach_queue()
    assert link_json(qs[0].name)["linkinfo"]["info_data"]["numqueues"] == 4
    send_flows(net.remote, 64, per_flow=1)
    per_queue = drain(qs, 64, net.remote)
    assert sum(len(p) for p in per_queue) == 64
    assert per_queue[0], "re-attached queue got no flow out of 64"


def test_detached_queue_can_still_write(up_queues):
    qs, net = up_queues(4)
    from netutil import build_udp4, udp_socket

    qs[1].detach_queue()
    with udp_socket() as s:
        s.bind((net.local, 0))
        pkt = build_udp4(net.remote, net.local, 4000, s.getsockname()[1], b"from detached")
        assert qs[1].write(pkt) == len(pkt)
        assert s.recvfrom(100)[0] == b"from detached"


def test_detached_queue_polls_no_pollin_and_a_blocked_read_is_not_woken(up_queues):
    """Detaching neither wakes a reader blocked on that queue nor hands it anything: it
    waits out its timeout while the flows go to the other queue. poll says POLLOUT only
    (not POLLERR: the file is still attached to the device, just not receiving)."""
    qs, net = up_queues(2)
    result: dict = {}
    qs[1].settimeout(0.6)

    def reader() -> None:
        t0 = time.monotonic()
        try:
            result["pkt"] = qs[1].read()
        except BaseException as e:
            result["exc"] = e
        result["elapsed"] = time.monotonic() - t0

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    time.sleep(0.1)
    qs[1].detach_queue()
    send_flows(net.remote, 16, per_flow=1)
    t.join(WAIT)
    assert not t.is_alive()
    assert isinstance(result.get("exc"), TimeoutError), result
    assert result["elapsed"] >= 0.55
    assert poll_events(qs[1].fileno()) == select.POLLOUT
    assert poll_events(qs[0].fileno()) == select.POLLIN | select.POLLOUT
    assert len(drain(qs[:1], 16, net.remote)[0]) == 16


def test_detached_queues_count_towards_the_256_queue_limit(up_queues):
    qs, _net = up_queues(256)
    qs[7].detach_queue()
    with pytest.raises(OSError) as ei:
        tuntap.Device(qs[0].name, tuntap.Flags.TUN | tuntap.Flags.NO_PI
                      | tuntap.Flags.MULTI_QUEUE)
    assert ei.value.errno == errno.E2BIG
    qs[7].attach_queue()  # its slot was never given away
    assert link_json(qs[0].name)["linkinfo"]["info_data"]["numqueues"] == 256


def test_single_queue_device_cannot_attach_queue(open_device):
    dev = open_device(unique_name())
    with pytest.raises(OSError) as ei:
        dev.detach_queue()
    assert ei.value.errno == errno.EINVAL


def test_closing_all_queues_removes_the_device():
    qs = tuntap.open_queues(unique_name(), 3)
    name = qs[0].name
    for q in qs[:-1]:
        q.close()
    assert link_exists(name)
    qs[-1].close()
    assert not link_exists(name)


def test_open_queues_with_tap_flags(up_queues):
    qs, _net = up_queues(2, tuntap.Flags.TAP | tuntap.Flags.NO_PI)
    assert all(tuntap.Flags.TAP in q.flags and tuntap.Flags.MULTI_QUEUE in q.flags
               for q in qs)
    assert link_json(qs[0].name)["link_type"] == "ether"


@pytest.mark.parametrize("count", [0, -1])
def test_open_queues_rejects_bad_count(count):
    with pytest.raises(ValueError, match=f"^count must be >= 1, not {count}$"):
        tuntap.open_queues(unique_name(), count)


def test_open_queues_failure_leaks_nothing():
    import os

    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(ValueError, match="must not contain"):
        tuntap.open_queues("bad/name", 4)
    name = unique_name()
    with pytest.raises(OSError) as ei:
        # 257 queues: the kernel refuses the 257th (E2BIG); the first 256 must be closed.
        tuntap.open_queues(name, 257)
    assert ei.value.errno == errno.E2BIG
    assert f"ioctl(TUNSETIFF) on '{name}'" in str(ei.value)
    assert not link_exists(name)
    after = set(os.listdir("/proc/self/fd"))
    assert after <= before, after - before


# ---------------------------------------------------------------------------------------
# One reader thread per queue (the documented pattern)
# ---------------------------------------------------------------------------------------
#
#     def reader(q: tuntap.Device, stop: threading.Event) -> None:
#         batch = tuntap.PacketBatch(64, 2048)  # one batch per thread, reused
#         q.settimeout(0.1)                     # wake up now and then to check `stop`
#         while not stop.is_set():
#             try:
#                 n = q.read_batch(batch)       # waits for the first packet only
#             except TimeoutError:
#                 continue
#             for i in range(n):
#                 handle(batch[i])              # zero-copy view, valid until next read
#
# Each queue is its own fd, so the threads never contend for a lock; read_batch releases
# the GIL while it waits, so all queues drain concurrently.


class QueueReaders:
    """One thread per queue calling ``read_batch`` (blocking, 50 ms timeout); the source
    ports of our UDP packets to ``dst:PORT`` are recorded per queue."""

    def __init__(self, qs: list[tuntap.Device], dst: str) -> None:
        self.qs = qs
        self.dst = dst
        self.stop = threading.Event()
        self.ports: list[list[int]] = [[] for _ in qs]
        self.batches_read = [0] * len(qs)
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(len(qs))]

    def _run(self, i: int) -> None:
        q, sink = self.qs[i], self.ports[i]
        batch = tuntap.PacketBatch(64, 2048)
        q.settimeout(0.05)
        deadline = time.monotonic() + 30
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                try:
                    n = q.read_batch(batch)
                except TimeoutError:
                    continue
                self.batches_read[i] += 1
                for k in range(n):
                    pkt = bytes(batch[k])
                    if is_udp4_to(pkt, self.dst, PORT):
                        sink.append(parse_udp4(pkt)[1].sport)
        except BaseException as e:  # reported by the test
            self.errors.append(e)

    @property
    def total(self) -> int:
        return sum(len(p) for p in self.ports)

    def take(self, expected: int) -> list[list[int]]:
        """Wait (bounded) until ``expected`` packets arrived, plus a short quiet period
        to catch any extra; return and reset the per-queue source ports."""
        deadline = time.monotonic() + WAIT
        while self.total < expected and time.monotonic() < deadline and not self.errors:
            time.sleep(0.005)
        time.sleep(0.1)
        assert not self.errors, f"reader failed: {self.errors!r}"
        got = [list(p) for p in self.ports]
        for p in self.ports:
            p.clear()
        return got

    def __enter__(self) -> QueueReaders:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(WAIT)
        assert not any(t.is_alive() for t in self.threads), "a reader did not stop"
        assert not self.errors, f"reader failed: {self.errors!r}"


def flow_sockets(n: int) -> list[socket.socket]:
    """``n`` bound UDP sockets: one source port, so one flow hash, each."""
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("", 0))
        socks.append(s)
    return socks


def send_on(socks: list[socket.socket], dst: str, per_flow: int) -> None:
    for i in range(per_flow):
        for s in socks:
            s.sendto(b"packet %d" % i, (dst, PORT))


def flow_to_queue(per_queue: list[list[int]]) -> dict[int, int]:
    where: dict[int, int] = {}
    for i, plist in enumerate(per_queue):
        for p in plist:
            assert where.setdefault(p, i) == i, f"flow {p} on queues {where[p]} and {i}"
    return where


@pytest.mark.parametrize("count", [2, 4])
def test_one_reader_thread_per_queue_drains_every_flow_concurrently(up_queues,
                                                                     count: int) -> None:
    qs, net = up_queues(count)
    with QueueReaders(qs, net.remote) as readers:
        socks = flow_sockets(64)
        try:
            send_on(socks, net.remote, 4)
            per_queue = readers.take(256)
            ports = {s.getsockname()[1] for s in socks}
        finally:
            for s in socks:
                s.close()
    assert sum(len(p) for p in per_queue) == 256
    assert all(per_queue), f"an idle queue: {[len(p) for p in per_queue]}"
    assert all(n > 0 for n in readers.batches_read)
    where = flow_to_queue(per_queue)
    assert set(where) == ports
    assert all(sum(p.count(port) for p in per_queue) == 4 for port in ports)


def test_detach_reroutes_a_queues_flows_without_loss_and_attach_takes_them_back(
        up_queues) -> None:
    qs, net = up_queues(4)
    with QueueReaders(qs, net.remote) as readers:
        socks = flow_sockets(64)
        try:
            send_on(socks, net.remote, 1)
            before = readers.take(64)
            assert all(before), f"an idle queue: {[len(p) for p in before]}"

            qs[1].detach_queue()
            send_on(socks, net.remote, 2)
            detached = readers.take(128)

            qs[1].attach_queue()
            send_on(socks, net.remote, 1)
            after = readers.take(64)
        finally:
            for s in socks:
                s.close()

    # While detached: queue 1 idle, its flows on the other queues, nothing lost.
    assert detached[1] == []
    assert sum(len(p) for p in detached) == 128
    where = flow_to_queue(detached)
    assert len(where) == 64
    assert all(where[p] != 1 for p in before[1])
    assert all(detached[where[p]].count(p) == 2 for p in where)

    # Re-attached: all four queues get flows again, nothing lost, and the flows are
    # grouped exactly as before (the hash buckets are the same; which fd serves which
    # bucket may change, since the kernel moves its last queue into a detached slot).
    assert sum(len(p) for p in after) == 64
    assert all(after), f"an idle queue after attach: {[len(p) for p in after]}"
    assert sorted(sorted(p) for p in after) == sorted(sorted(p) for p in before)
