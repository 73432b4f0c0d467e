"""The runner: every method at every (K, payload) point, rounds interleaved, each run checked.

Each run is verified against the kernel's own counters: a read run must have drained
exactly K packets (the device's tx counter grew by K, the queue is empty after), a write
run must have delivered exactly K packets to the sink socket. A run that fails a check
marks its method's result as an error instead of producing a number.
"""

from __future__ import annotations

import gc
import select
import signal
import socket
import statistics
from collections.abc import Sequence
from itertools import repeat
from typing import Any, Callable, TextIO

from .env import configure, dev_counters
from .methods import FLOOR_READ, FLOOR_WRITE, Method
from .packets import payload as make_payload
from .packets import udp4_packet
from .report import Progress

__all__ = ["DEADLINE_S", "MAX_PACKETS", "Result", "run_bench"]

SINK_PORT = 9999
FILL_PORT = 9
DEADLINE_S = 30.0  # one drain or write run longer than this is a hang: abort it
MAX_PACKETS = 1 << 20


class Result:
    """All rounds of one method at one (kind, K, payload) point.

    Attributes
    ----------
    per_packet
        ns per packet of each timed round, in round order.
    ratio
        The paired ratio to the C floor: the median over rounds of (this method's time /
        the floor's time in the same round). None without a floor.
    ratio_of_medians
        This method's median / the floor's median.
    missing, error
        Why there is no number: the method cannot run here, or a run failed its check.
    """

    def __init__(self, method: str, kind: str, k: int, payload: int) -> None:
        self.method = method
        self.kind = kind
        self.k = k
        self.payload = payload
        self.per_packet: list[float] = []
        self.by_round: dict[int, float] = {}
        self.missing: str | None = None
        self.error: str | None = None
        self.ratio: float | None = None
        self.ratio_of_medians: float | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.per_packet)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"bench": self.kind, "method": self.method, "K": self.k,
                             "payload": self.payload}
        if self.missing:
            d["missing"] = self.missing
        elif self.error:
            d["error"] = self.error
        elif self.per_packet:
            d.update(
                median_ns=round(self.median, 1),
                min_ns=round(min(self.per_packet), 1),
                max_ns=round(max(self.per_packet), 1),
                rounds=len(self.per_packet),
                ratio_to_c=None if self.ratio is None else round(self.ratio, 3),
                ratio_of_medians=(None if self.ratio_of_medians is None
                                  else round(self.ratio_of_medians, 3)),
            )
        return d


class _Alarm(Exception):
    pass


def _on_alarm(signum: int, frame: Any) -> None:
    raise _Alarm()


def _queue_empty(fd: int) -> bool:
    p = select.poll()
    p.register(fd, select.POLLIN)
    return not p.poll(0)


def _drain_sink(sink: socket.socket) -> int:
    buf = bytearray(4096)
    n = 0
    while True:
        try:
            sink.recv_into(buf)
        except BlockingIOError:
            return n
        n += 1


def run_bench(
    methods: Sequence[Method],
    ks: Sequence[int],
    payloads: Sequence[int],
    rounds: int,
    *,
    warmup: int = 1,
    progress: TextIO | None = None,
    emit: Callable[[dict[str, Any]], None] | None = None,
) -> list[Result]:
    """Run every available method at every (K, payload); return one Result per point.

    Must be called inside a private network namespace (``enter_private_netns``): it
    creates interfaces ``tb0``, ``tb1``, ... with addresses 10.201.<i>.1/24.

    Parameters
    ----------
    methods
        Reads and writes; the floor is the one named ``C read()`` / ``C write()``.
    ks, payloads
        Packets per run and UDP payload sizes; every combination is a point.
    rounds, warmup
        Timed and untimed rounds per point. Within a round the methods are interleaved
        and the order rotates every round.
    progress
        Where to draw a progress bar (a terminal), or None for none.
    emit
        Called with each result's JSON object at the end.

    Raises
    ------
    ValueError
        No points, 250 methods or more, K outside 1-2**20, payload outside 0-1400,
        rounds < 1.
    """
    if not (ks and payloads and len(methods) < 250 and rounds >= 1 and warmup >= 0
            and all(1 <= k <= MAX_PACKETS for k in ks)
            and all(0 <= p <= 1400 for p in payloads)):
        raise ValueError("need fewer than 250 methods, 1 <= K <= 2**20, "
                         "0 <= payload <= 1400 and rounds >= 1")
    results: dict[tuple[str, str, int, int], Result] = {}
    live: list[tuple[int, Method]] = []
    txqlen = max(ks) + 256
    for i, m in enumerate(methods):
        for k in ks:
            for p in payloads:
                results[(m.kind, m.name, k, p)] = r = Result(m.name, m.kind, k, p)
                r.missing = m.missing
        if m.missing:
            continue
        try:
            m.open(f"tb{i}")
            configure(m.ifname, f"10.201.{i}.1", "255.255.255.0", txqlen)
        except Exception as exc:  # noqa: BLE001 - a peer that cannot run is reported
            m.close()
            m.missing = f"cannot open device: {type(exc).__name__}: {exc}"
            for k in ks:
                for p in payloads:
                    results[(m.kind, m.name, k, p)].missing = m.missing
            continue
        live.append((i, m))

    fill = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sink.setsockopt(socket.SOL_SOCKET, 33, 256 << 20)  # SO_RCVBUFFORCE
    except OSError:
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 << 20)
    sink.bind(("0.0.0.0", SINK_PORT))
    sink.setblocking(False)
    old_alarm = signal.signal(signal.SIGALRM, _on_alarm)
    gc_was_enabled = gc.isenabled()
    total = len(live) * len(ks) * len(payloads) * (rounds + warmup)
    bar = Progress(total, progress)
    try:
        for k in ks:
            for p in payloads:
                data = make_payload(p)
                for rnd in range(warmup + rounds):
                    # Rotate the order each round so no method always runs first/last.
                    order = live[rnd % len(live):] + live[:rnd % len(live)] if live else []
                    for i, m in order:
                        r = results[(m.kind, m.name, k, p)]
                        bar.step(f"{m.kind} K={k} {p}B {m.name}")
                        if r.error:
                            continue
                        try:
                            ns = _one_run(m, i, k, data, fill, sink)
                        except Exception as exc:  # noqa: BLE001 - reported per method
                            r.error = f"{type(exc).__name__}: {exc}"
                            continue
                        if rnd >= warmup:
                            r.per_packet.append(ns / k)
                            r.by_round[rnd] = ns / k
        bar.finish()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_alarm)
        if gc_was_enabled:
            gc.enable()
        fill.close()
        sink.close()
        for _, m in live:
            m.close()

    out = list(results.values())
    floors = {(r.kind, r.k, r.payload): r for r in out
              if r.method in (FLOOR_READ, FLOOR_WRITE) and r.per_packet}
    for r in out:
        floor = floors.get((r.kind, r.k, r.payload))
        if r.per_packet and floor is not None:
            r.ratio_of_medians = r.median / floor.median
            pairs = [t / floor.by_round[j] for j, t in r.by_round.items() if j in floor.by_round]
            r.ratio = statistics.median(pairs) if pairs else r.ratio_of_medians
        if emit is not None:
            emit(r.to_json())
    return out


def _one_run(m: Method, i: int, k: int, data: bytes, fill: socket.socket,
             sink: socket.socket) -> int:
    ifname = m.ifname
    local, peer = f"10.201.{i}.1", f"10.201.{i}.2"
    fd = m.fileno()
    if not _queue_empty(fd):
        raise RuntimeError("device queue not empty before the run")
    before = dev_counters(ifname)
    if m.kind == "read":
        sendto = fill.sendto
        dst = (peer, FILL_PORT)
        for _ in repeat(None, k):
            sendto(data, dst)
        mid = dev_counters(ifname)
        if mid["tx_dropped"] != before["tx_dropped"]:
            raise RuntimeError(f"{mid['tx_dropped'] - before['tx_dropped']} packets dropped "
                               "while filling the queue (txqueuelen too small?)")
        packet = b""
    else:
        packet = udp4_packet(peer, local, 4000, SINK_PORT, data)
        if _drain_sink(sink):
            raise RuntimeError("sink not empty before the run")
    gc.collect()
    gc.disable()
    signal.setitimer(signal.ITIMER_REAL, DEADLINE_S)
    try:
        ns = m.run(k, packet)
    except _Alarm:
        raise TimeoutError(f"no result after {DEADLINE_S:.0f} s") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        gc.enable()
    after = dev_counters(ifname)
    if m.kind == "read":
        got = after["tx_packets"] - before["tx_packets"]
        if got != k or not _queue_empty(fd):
            raise RuntimeError(f"read {got} packets of {k}, or the queue was not empty after")
    else:
        got = _drain_sink(sink)
        if got != k:
            raise RuntimeError(f"the sink received {got} packets of {k} written")
    return ns
