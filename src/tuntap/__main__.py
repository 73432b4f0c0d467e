"""The ``tuntap`` command line (also ``python -m tuntap``).

Layout, so that a command is easy to add: :func:`build_parser` makes the top-level parser
and calls one ``_add_<command>(subparsers)`` function per command (listed in
:data:`COMMANDS`). Each defines the command's arguments and help and sets
``handler=_run_<command>``, which imports the implementation only when the command runs
(``--help`` and ``--version`` stay cheap) and returns the exit status.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import textwrap
from collections.abc import Sequence
from typing import Any, Callable

from tuntap._version import __version__

EXIT_OK = 0
EXIT_USAGE = 2  # argparse's own status for a bad command line
EXIT_INTERRUPTED = 130

EXIT_STATUS = """\
exit status:
  0    success
  1    failure: the command cannot run here (for bench: not root, no /dev/net/tun, no
       network namespaces), or an unexpected error
  2    usage error: a bad command line (the last line says what is wrong)
  3    bench: a measured method failed a check (wrong packet count, an error or a
       30 s timeout); its row says "error" and the reason is under the table
  130  interrupted (Ctrl-C)
"""

Subparsers = Any  # argparse._SubParsersAction: private, so not spelled out


def _paragraphs(*texts: str) -> str:
    """Paragraphs wrapped for the terminal (the raw formatter keeps the epilog's layout)."""
    width = min(shutil.get_terminal_size().columns, 100) - 2
    return "\n\n".join(textwrap.fill(t, width) for t in texts)


def _prog() -> str:
    return "tuntap" if os.path.basename(sys.argv[0]) == "tuntap" else "python -m tuntap"


# --------------------------------------------------------------------------- validation
def _int_range(lo: int, hi: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer in [lo, hi] (no upper bound if hi is None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            want = f">= {lo}" if hi is None else f"from {lo} to {hi}"
            raise argparse.ArgumentTypeError(f"must be {want}, got {value}")
        return value

    return parse


def _cpu(text: str) -> int:
    """An argparse ``type``: a CPU this process may run on."""
    cpu = _int_range(0)(text)
    from tuntap._bench.env import check_cpu

    try:
        check_cpu(cpu)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return cpu


# --------------------------------------------------------------------------- bench
BENCH_MAX_PACKETS = 65536  # the sink socket's 256 MiB buffer holds that many with room


def _add_bench(sub: Subparsers) -> None:
    p = sub.add_parser(
        "bench",
        help="measure what reading and writing one packet costs (tuntap vs os.read vs C)",
        description=_paragraphs(
            "Measure the time to read and to write one packet through a TUN device with "
            "tuntap (readinto/write, and read_batch/write_batch of 64), with plain "
            "os.read/os.write (what a pure-Python TUN class does) and with a C loop doing "
            "one read()/write() system call per packet: the floor nothing can beat. The C "
            "loop is compiled with the system's cc; without one its rows say 'missing'.",
            "Every run moves exactly K packets and is checked against the kernel's "
            "counters. It all happens in a private network namespace that disappears when "
            "the command ends (this machine's interfaces are never touched), pinned to one "
            "CPU. Needs root. Takes a few seconds (--quick: about one).",
            "Prints two tables, read and write: per method the median ns per packet over "
            "the rounds, its min-max, and two ratios to the C loop (explained under the "
            "tables). --json prints one JSON object per method instead.",
        ),
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-k", "--packets", type=_int_range(1, BENCH_MAX_PACKETS), default=1024,
                   metavar="K",
                   help=f"packets moved per timed run, 1-{BENCH_MAX_PACKETS} (default 1024)")
    p.add_argument("-s", "--payload", type=_int_range(0, 1400), default=64, metavar="BYTES",
                   help="UDP payload bytes per packet, 0-1400 (default 64)")
    p.add_argument("-r", "--rounds", type=_int_range(1), default=5, metavar="N",
                   help="timed rounds per method, after one warm-up round (default 5)")
    p.add_argument("--cpu", type=_cpu, default=None, metavar="CPU",
                   help="the CPU to run on (default: the last one this process may use)")
    p.add_argument("--quick", action="store_true",
                   help="at most 256 packets and 3 rounds")
    p.add_argument("--realtime", action="store_true",
                   help="run as SCHED_FIFO so that busy processes cannot interrupt a timed "
                        "loop (steadier numbers on a loaded machine)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per method and operation, not the tables")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (it is only drawn when stderr is a terminal)")
    p.set_defaults(handler=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from tuntap._bench.cli import run

    return run(args.packets, args.payload, args.rounds, quick=args.quick,
               as_json=args.json, cpu=args.cpu, realtime=args.realtime,
               progress=False if args.no_progress else None)


# --------------------------------------------------------------------------- the parser
COMMANDS: list[Callable[[Subparsers], None]] = [_add_bench]


def build_parser() -> argparse.ArgumentParser:
    """The ``tuntap`` parser: ``--version`` and one subcommand per entry of COMMANDS."""
    parser = argparse.ArgumentParser(
        prog=_prog(),
        description="Tools for Linux TUN/TAP devices, from the tuntap Python package.",
        epilog=EXIT_STATUS + "\n'%(prog)s COMMAND --help' describes a command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"tuntap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (see EXIT_STATUS).

    ``--help``, ``--version`` and usage errors return 0, 0 and 2 after printing, rather
    than raising SystemExit.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE if exc.code else EXIT_OK
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
