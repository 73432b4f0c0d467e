"""The built-in benchmark behind ``tuntap bench`` and the engine of ``benchmarks/``.

What is measured: the wall-clock cost per packet of moving exactly ``K`` packets through a
TUN device, one method at a time, on one pinned CPU, inside a private network namespace.

* **read**: a UDP socket sends ``K`` datagrams to an address routed via the device
  (untimed, the device's ``txqueuelen`` raised above ``K`` and its drop counter checked),
  then the method drains exactly ``K`` packets (timed). Afterwards the device's transmit
  counter must have grown by ``K`` and the queue must be empty.
* **write**: the method writes one prebuilt IPv4/UDP packet ``K`` times (timed); the
  packets are addressed to a local UDP sink socket, which must receive all ``K``.

Each method gets its own device configured identically, so every method sees the same
packets and the same queue depth. A C loop (plain ``read``/``write``, one syscall per
packet: ``cfloor.c``, compiled here with ``cc -O2`` when a compiler exists) gives the
physical floor. Every result carries two ratios to the floor of the same run: the paired
one, the median over rounds of (this method's time / the floor's time in that round),
which drift in machine load between rounds cannot bias, and the ratio of the two medians.

One job per module:

========== ==============================================================================
env        private network namespace, CPU pinning and checks, SCHED_FIFO, device setup
packets    the payload and the IPv4/UDP packet written
cfloor     ``cfloor.c`` (package data): compile, load through ctypes, run as a server
methods    :class:`Method`, the timed loops, the built-in methods (C, tuntap, os.read)
runner     :func:`run_bench`: rounds, interleaving, the per-run checks, :class:`Result`
report     the progress bar and the markdown tables
cli        what ``tuntap bench`` runs (its arguments are parsed in ``tuntap.__main__``)
========== ==============================================================================

This package works from an installed wheel: it imports nothing from ``benchmarks/``.
The scripts in ``benchmarks/`` import it and add more methods (the ctypes class,
python-pytun, pytap2, scapy). The names below are its interface for them.
"""

from __future__ import annotations

from .cfloor import CFloor, compile_cfloor, source
from .env import (
    BenchError,
    allowed_cpus,
    check_cpu,
    check_tun,
    configure,
    dev_counters,
    enter_private_netns,
    open_plain_tun,
    pin_cpu,
    set_realtime,
)
from .methods import (
    BATCH,
    FLOOR_READ,
    FLOOR_WRITE,
    READ_BUFSIZE,
    Method,
    cfloor_methods,
    inline_ctypes_methods,
    loop0,
    loop1,
    loop2,
    loop3,
    loop_batch,
    loop_write_batch,
    tuntap_methods,
)
from .packets import udp4_packet
from .report import format_point_table, format_table
from .runner import Result, run_bench

__all__ = [
    "BATCH",
    "FLOOR_READ",
    "FLOOR_WRITE",
    "READ_BUFSIZE",
    "BenchError",
    "CFloor",
    "Method",
    "Result",
    "allowed_cpus",
    "cfloor_methods",
    "check_cpu",
    "check_tun",
    "compile_cfloor",
    "configure",
    "dev_counters",
    "enter_private_netns",
    "format_point_table",
    "format_table",
    "inline_ctypes_methods",
    "loop0",
    "loop1",
    "loop2",
    "loop3",
    "loop_batch",
    "loop_write_batch",
    "open_plain_tun",
    "pin_cpu",
    "run_bench",
    "set_realtime",
    "source",
    "tuntap_methods",
    "udp4_packet",
]
