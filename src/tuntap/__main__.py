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
EXIT_FAILURE = 1
EXIT_USAGE = 2  # argparse's own status for a bad command line
EXIT_INTERRUPTED = 130

EXIT_STATUS = """\
exit status:
  0    success
  1    failure: the command cannot do its job here (not root, no /dev/net/tun, no such
       device or namespace, the kernel refused); the last line on stderr says why
  2    usage error: a bad command line (the last line says what is wrong)
  3    bench: a measured method failed a check (wrong packet count, an error or a
       30 s timeout); its row says "error" and the reason is under the table
  130  interrupted (Ctrl-C), except for capture, where Ctrl-C is the normal end (0)
"""

Subparsers = Any  # argparse._SubParsersAction: private, so not spelled out


def _paragraphs(*texts: str) -> str:
    """Paragraphs wrapped for the terminal (the raw formatter keeps the epilog's layout)."""
    # A terminal that reports 0 columns (a pty nobody sized) gets 0 here before 3.11.
    width = max(min(shutil.get_terminal_size().columns or 80, 100), 40) - 2
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
        help="measure the cost of one packet read or written: tuntap, os.read, C",
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


# --------------------------------------------------------------------------- validation of names
def _ifname(text: str) -> str:
    """An argparse ``type``: an interface name the kernel accepts."""
    from tuntap import _tuntap

    try:
        _tuntap._check_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not text or "%" in text:
        raise argparse.ArgumentTypeError(f"need a full interface name, got {text!r}")
    return text


def _cidr(text: str) -> str:
    """An argparse ``type``: an IPv4 or IPv6 address with an optional prefix length."""
    import ipaddress

    try:
        ipaddress.ip_interface(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an address/prefix: {text!r}") from None
    return text


def _owner(kind: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        from tuntap._cli import devices

        try:
            return devices.user_id(text) if kind == "user" else devices.group_id(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _offloads(text: str) -> Any:
    """An argparse ``type``: a comma-separated list of offloads (tuntap.Offload)."""
    from tuntap._cli.capture import parse_offloads

    try:
        return parse_offloads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def _netns_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--netns", metavar="NS",
                   help="the network namespace to work in: a name from 'ip netns' or a path "
                        "such as /proc/PID/ns/net (default: this one)")


def _sub(sub: Subparsers, name: str, summary: str, *texts: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=summary, description=_paragraphs(summary[0].upper() + summary[1:] + ".",
                                                     *texts),
        epilog=EXIT_STATUS, formatter_class=argparse.RawDescriptionHelpFormatter)
    return p


# --------------------------------------------------------------------------- add / del
def _add_add(sub: Subparsers) -> None:
    p = _sub(sub, "add", "create a persistent TUN or TAP device",
             "The device stays after this command ends, until 'tuntap del NAME' (or a "
             "reboot). A program then attaches to it by name, for example "
             "tuntap.Device(NAME), without needing root if --user or --group allows it. "
             "If any step fails, nothing is left behind. Needs root or CAP_NET_ADMIN.",
             "Example: tuntap add tun0 --no-pi --address 10.0.0.1/24 --up --user alice")
    p.add_argument("name", type=_ifname, metavar="NAME", help="the interface name, e.g. tun0")
    p.add_argument("--tap", action="store_true",
                   help="a TAP device (Ethernet frames) instead of TUN (IP packets)")
    p.add_argument("--no-pi", action="store_true",
                   help="no 4-byte packet-info header before each packet (tuntap.Device's "
                        "default; the kernel's default is with it)")
    p.add_argument("--multi-queue", action="store_true",
                   help="allow several fds (queues) at once; the kernel spreads flows over them")
    p.add_argument("--vnet-hdr", action="store_true",
                   help="a virtio-net header before each packet (needed for offloads)")
    p.add_argument("--user", type=_owner("user"), metavar="USER",
                   help="this user (name or uid) may attach without privileges")
    p.add_argument("--group", type=_owner("group"), metavar="GROUP",
                   help="members of this group (name or gid) may attach without privileges")
    _netns_arg(p)
    p.add_argument("--mtu", type=_int_range(68, 65535), metavar="N",
                   help="the MTU, 68-65535 (default 1500)")
    p.add_argument("--address", type=_cidr, action="append", default=[], metavar="CIDR",
                   help="an IPv4 or IPv6 address such as 10.0.0.1/24 or fd00::1/64 "
                        "(repeat for more)")
    p.add_argument("--up", action="store_true", help="bring the interface up")
    p.set_defaults(handler=_run_add)


def _run_add(args: argparse.Namespace) -> int:
    from tuntap._cli import devices

    return devices.add(args.name, tap=args.tap, no_pi=args.no_pi, multi_queue=args.multi_queue,
                       vnet_hdr=args.vnet_hdr, user=args.user, group=args.group,
                       netns=args.netns, mtu=args.mtu, addresses=args.address, up=args.up)


def _add_del(sub: Subparsers) -> None:
    p = _sub(sub, "del", "delete a persistent TUN or TAP device",
             "The interface disappears once no program holds it open. Needs root or "
             "CAP_NET_ADMIN (or being its owner).")
    p.add_argument("name", type=_ifname, metavar="NAME")
    _netns_arg(p)
    p.set_defaults(handler=_run_del)


def _run_del(args: argparse.Namespace) -> int:
    from tuntap._cli import devices

    return devices.delete(args.name, netns=args.netns)


# --------------------------------------------------------------------------- list / show
def _add_list(sub: Subparsers) -> None:
    p = _sub(sub, "list", "list the TUN and TAP devices",
             "One line per device: type, flags, state, MTU, owner, group, the number of "
             "fds (queues) attached and the addresses. A device nobody holds shows 0 "
             "queues and no carrier. Works without root.")
    _netns_arg(p)
    p.add_argument("--json", action="store_true", help="print a JSON list instead")
    p.set_defaults(handler=_run_list)


def _run_list(args: argparse.Namespace) -> int:
    from tuntap._cli import devices

    return devices.list_(netns=args.netns, as_json=args.json)


def _add_show(sub: Subparsers) -> None:
    p = _sub(sub, "show", "show everything about one device",
             "Flags, packet info, owner, group, queues, offloads, MTU, addresses and the "
             "packet counters, read without attaching to the device (so it works while a "
             "program holds it). Works without root.")
    p.add_argument("name", type=_ifname, metavar="NAME")
    _netns_arg(p)
    p.add_argument("--json", action="store_true", help="print a JSON object instead")
    p.set_defaults(handler=_run_show)


def _run_show(args: argparse.Namespace) -> int:
    from tuntap._cli import devices

    return devices.show(args.name, netns=args.netns, as_json=args.json)


# --------------------------------------------------------------------------- capture / replay
def _add_capture(sub: Subparsers) -> None:
    p = _sub(sub, "capture", "record what the kernel sends to a device, into a pcap file",
             "Attaches to the existing device NAME as its endpoint (the program that reads "
             "it), so it cannot run beside another program holding a single-queue device. "
             "Writes a pcap file that tcpdump, tshark, Wireshark and scapy read: IP "
             "packets (link type RAW) for TUN, Ethernet frames for TAP. The packet-info and "
             "virtio-net headers are stripped. On a VNET_HDR device, --offload takes GSO "
             "super-packets from the kernel: each is recorded whole (up to 64 KiB), or "
             "with --segment as the MTU-sized packets it stands for.",
             "Stops after -c packets, after --timeout seconds, or on Ctrl-C (exit status "
             "0). A live count is shown when stderr is a terminal.")
    p.add_argument("name", type=_ifname, metavar="NAME")
    p.add_argument("-w", "--write", required=True, metavar="FILE",
                   help="the pcap file to write ('-' for standard output)")
    p.add_argument("-c", "--count", type=_int_range(1), metavar="N",
                   help="stop after N packets")
    p.add_argument("--timeout", type=_positive_float, metavar="S",
                   help="stop after S seconds")
    p.add_argument("--offload", type=_offloads, metavar="LIST",
                   help="VNET_HDR devices: the offloads to take, e.g. csum,tso4,tso6,uso "
                        "(default none: the kernel then segments everything itself)")
    p.add_argument("--segment", action="store_true",
                   help="with --offload: record each GSO super-packet as its segments "
                        "(tuntap.segment), checksums completed")
    _netns_arg(p)
    p.add_argument("--no-progress", action="store_true", help="no live packet count")
    p.set_defaults(handler=_run_capture)


def _run_capture(args: argparse.Namespace) -> int:
    from tuntap._cli import capture

    return capture.capture(args.name, args.write, count=args.count, timeout=args.timeout,
                           netns=args.netns, segment=args.segment, offload=args.offload,
                           progress=False if args.no_progress else None)


def _add_replay(sub: Subparsers) -> None:
    p = _sub(sub, "replay", "inject a capture's packets into the kernel through a device",
             "Writes every packet of a pcap or pcapng file into the existing device NAME: "
             "the kernel receives them on NAME as if they had come from the network. A TUN "
             "device takes raw IP, Ethernet (the link header is dropped) and Linux cooked "
             "captures, skipping what is not IP; a TAP device takes Ethernet captures. The "
             "device must be up. Attaches to NAME like capture does.")
    p.add_argument("name", type=_ifname, metavar="NAME")
    p.add_argument("file", metavar="FILE", help="the pcap or pcapng file ('-' for stdin)")
    p.add_argument("--rate", type=_positive_float, metavar="PPS",
                   help="packets per second (default: as fast as the kernel takes them)")
    _netns_arg(p)
    p.add_argument("--no-progress", action="store_true", help="no live packet count")
    p.set_defaults(handler=_run_replay)


def _run_replay(args: argparse.Namespace) -> int:
    from tuntap._cli import replay

    return replay.replay(args.name, args.file, rate=args.rate, netns=args.netns,
                         progress=False if args.no_progress else None)


# --------------------------------------------------------------------------- the parser
COMMANDS: list[Callable[[Subparsers], None]] = [
    _add_add, _add_del, _add_list, _add_show, _add_capture, _add_replay, _add_bench,
]


def build_parser() -> argparse.ArgumentParser:
    """The ``tuntap`` parser: ``--version`` and one subcommand per entry of COMMANDS."""
    parser = argparse.ArgumentParser(
        prog=_prog(),
        description=_paragraphs(
            "Create, inspect, capture from and inject into Linux TUN/TAP devices, and "
            "measure them; from the tuntap Python package."),
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
    except OSError as exc:
        # The environment said no in a way the command did not explain: still one line.
        return _fail(parser.prog, args.command, str(exc), EXIT_FAILURE)
    except Exception as exc:
        from tuntap._cli.common import CliError

        if isinstance(exc, CliError):
            return _fail(parser.prog, args.command, str(exc), exc.status)
        raise


def _fail(prog: str, command: str, message: str, status: int) -> int:
    from tuntap._cli.common import Style

    style = Style(sys.stderr)
    print(f"{prog} {command}: {style.bad('error:')} {message}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
