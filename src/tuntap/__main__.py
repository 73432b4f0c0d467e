"""Command line: ``python -m tuntap bench [options]``.

Argument parsing only; the work is done in :mod:`tuntap._bench`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tuntap", description=__doc__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    bench = sub.add_parser(
        "bench",
        help="measure per-packet read/write cost: tuntap vs plain os.read/os.write vs C",
        description=(
            "Measure the per-packet cost of reading and writing a TUN device with tuntap, "
            "with the pure-Python os.read/os.write version and with a C loop (when a C "
            "compiler is present), inside a private network namespace, pinned to one CPU. "
            "Needs root."
        ),
    )
    bench.add_argument("-k", "--packets", type=int, default=1024,
                       help="packets per run (default 1024)")
    bench.add_argument("-s", "--payload", type=int, default=64,
                       help="UDP payload bytes, 0-1400 (default 64)")
    bench.add_argument("-r", "--rounds", type=int, default=5,
                       help="timed rounds per method (default 5)")
    bench.add_argument("--cpu", type=int, default=None,
                       help="CPU to pin to (default: the last one allowed)")
    bench.add_argument("--quick", action="store_true",
                       help="a few seconds: at most 256 packets and 3 rounds")
    bench.add_argument("--realtime", action="store_true",
                       help="run as SCHED_FIFO so busy processes cannot preempt a timed loop "
                            "(steadier numbers on a loaded machine)")
    bench.add_argument("--json", action="store_true",
                       help="print one JSON object per result instead of the table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "bench":
        from tuntap import _bench

        return _bench.main(args.packets, args.payload, args.rounds, quick=args.quick,
                           as_json=args.json, cpu=args.cpu,
                           realtime=args.realtime)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
