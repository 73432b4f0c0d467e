"""``tuntap bench``: tuntap vs plain ``os.read``/``os.write`` vs the C floor, one point.

The command line itself (arguments, help, validation) is in ``tuntap/__main__.py``; this
is what it runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from typing import Any, TextIO

from .cfloor import compile_cfloor
from .env import BenchError, check_tun, enter_private_netns, pin_cpu, set_realtime
from .methods import cfloor_methods, inline_ctypes_methods, tuntap_methods
from .report import format_point_table, ratio_note
from .runner import MAX_PACKETS, run_bench

__all__ = ["EXIT_CHECK", "EXIT_FAILURE", "EXIT_OK", "QUICK_PACKETS", "QUICK_ROUNDS", "run"]

EXIT_OK = 0
EXIT_FAILURE = 1  # the environment cannot run the benchmark (message on stderr)
EXIT_CHECK = 3    # a method failed a run's check (wrong count, error, timeout)
QUICK_PACKETS = 256
QUICK_ROUNDS = 3


def run(
    packets: int = 1024,
    payload: int = 64,
    rounds: int = 5,
    *,
    quick: bool = False,
    as_json: bool = False,
    cpu: int | None = None,
    realtime: bool = False,
    progress: bool | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Run the built-in benchmark at one point and print its tables (or JSON lines).

    Parameters
    ----------
    packets, payload, rounds
        K packets per timed run (1 to 2**20), UDP payload bytes (0-1400), timed rounds
        (>= 1).
    quick
        At most :data:`QUICK_PACKETS` packets and :data:`QUICK_ROUNDS` rounds.
    as_json
        One JSON object per result on ``out`` instead of the tables.
    cpu
        The CPU to pin to; None is the last one allowed.
    realtime
        Run as SCHED_FIFO (a note on ``err`` if the kernel refuses).
    progress
        Draw a progress bar on ``err``; None draws it only when ``err`` is a terminal.
    out, err
        Default ``sys.stdout`` / ``sys.stderr``.

    Returns
    -------
    int
        :data:`EXIT_OK`; :data:`EXIT_FAILURE` when this environment cannot run the
        benchmark (not root, no TUN; the reason on ``err``); :data:`EXIT_CHECK` when a
        method failed a run's check (its row says ``error``, the reason under the table).

    Raises
    ------
    ValueError
        An argument is out of range, or ``cpu`` is not one this process may run on.
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    if quick:
        packets, rounds = min(packets, QUICK_PACKETS), min(rounds, QUICK_ROUNDS)
    if not (1 <= packets <= MAX_PACKETS and 0 <= payload <= 1400 and rounds >= 1):
        raise ValueError(f"need 1 <= packets <= {MAX_PACKETS}, 0 <= payload <= 1400 and "
                         f"rounds >= 1; got {packets}, {payload}, {rounds}")
    if progress is None:
        progress = err.isatty()
    try:
        check_tun()
        enter_private_netns()
    except BenchError as exc:
        err.write(f"tuntap bench: {exc}\n")
        return EXIT_FAILURE
    cpu = pin_cpu(cpu)
    if realtime and not set_realtime():
        err.write("tuntap bench: SCHED_FIFO refused, running as a normal process\n")
        realtime = False
    tmp = tempfile.mkdtemp(prefix="tuntap-bench-")
    try:
        try:
            floor = compile_cfloor(tmp)
        except (BenchError, OSError, subprocess.SubprocessError) as exc:
            err.write(f"tuntap bench: C floor unavailable: {exc}\n")
            floor = None
        c_read, c_write = cfloor_methods(floor)
        py_read, py_write = inline_ctypes_methods()
        tt = tuntap_methods()
        methods = [c_read, *[m for m in tt if m.kind == "read"], py_read,
                   c_write, *[m for m in tt if m.kind == "write"], py_write]
        err.write(f"tuntap bench: K={packets} packets, {payload}-byte UDP payload, "
                  f"{rounds} rounds, CPU {cpu}{' (SCHED_FIFO)' if realtime else ''}, "
                  "private network namespace\n")
        err.flush()

        def emit(d: dict[str, Any]) -> None:
            if as_json:
                out.write(json.dumps(d) + "\n")

        results = run_bench(methods, [packets], [payload], rounds,
                            progress=err if progress else None, emit=emit)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not as_json:
        out.write(format_point_table(results, "read") + "\n\n"
                  + format_point_table(results, "write") + "\n\n"
                  + ratio_note(rounds))
    return EXIT_CHECK if any(r.error for r in results) else EXIT_OK
