#!/usr/bin/env python3
"""A TAP device answering ARP and ICMP echo from Python, with packets built by scapy.

Inside a private network namespace it makes for itself (the host's interfaces are never
touched), the kernel gets ``tap0`` with 10.97.0.1/24. This program plays the host
10.97.0.2 with MAC 02:00:00:00:00:02 on the other side of that virtual cable: when the
kernel asks who has 10.97.0.2 (ARP) it answers with its MAC, and it answers every echo
request, so ``ping -c COUNT 10.97.0.2`` succeeds. Frames are parsed and built with scapy
(``pip install scapy``), which also fills in lengths and checksums.

    sudo python examples/tap_responder.py [--count 3]

Exits with ping's status (0 when every request was answered), 1 when it cannot run here.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import shutil
import subprocess
import sys
import threading
from typing import Any

import tuntap

PROG = "tap_responder.py"
CLONE_NEWNET = 0x40000000
MY_IP, MY_MAC = "10.97.0.2", "02:00:00:00:00:02"


def answer(frame: bytes, scapy: Any) -> tuple[str, bytes] | None:
    """("arp" | "icmp", the reply frame) for a request to MY_IP, else None."""
    eth = scapy.Ether(frame)
    if eth.haslayer(scapy.ARP):
        arp = eth[scapy.ARP]
        if arp.op == 1 and arp.pdst == MY_IP:  # who-has MY_IP
            reply = (scapy.Ether(dst=eth.src, src=MY_MAC)
                     / scapy.ARP(op=2, hwsrc=MY_MAC, psrc=MY_IP, hwdst=arp.hwsrc,
                                 pdst=arp.psrc))
            return "arp", bytes(reply)
    elif eth.haslayer(scapy.ICMP):
        ip, icmp = eth[scapy.IP], eth[scapy.ICMP]
        if icmp.type == 8 and ip.dst == MY_IP:  # echo request
            reply = (scapy.Ether(dst=eth.src, src=MY_MAC)
                     / scapy.IP(src=MY_IP, dst=ip.src)
                     / scapy.ICMP(type=0, id=icmp.id, seq=icmp.seq)
                     / bytes(icmp.payload))
            return "icmp", bytes(reply)
    return None


def serve(dev: tuntap.Device, stop: threading.Event, counts: dict[str, int],
          scapy: Any) -> None:
    """Answer frames until stop is set."""
    dev.settimeout(0.2)
    while not stop.is_set():
        try:
            frame = dev.read()
        except TimeoutError:
            continue
        except ValueError:  # closed
            return
        result = answer(frame, scapy)
        if result is not None:
            kind, reply = result
            dev.write(reply)
            counts[kind] += 1


def enter_private_netns() -> None:
    """Move this process into a new network namespace, gone when it exits."""
    if hasattr(os, "unshare"):  # 3.12+
        os.unshare(CLONE_NEWNET)
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), "unshare(CLONE_NEWNET)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=3, help="echo requests to send (default 3)")
    args = parser.parse_args(argv)
    try:
        import scapy.all as scapy
    except ImportError:
        sys.exit(f"{PROG}: needs scapy (pip install scapy, or pip install '.[scapy]')")
    if shutil.which("ping") is None:
        sys.exit(f"{PROG}: needs ping (apt-get install iputils-ping)")
    try:
        enter_private_netns()
        dev = tuntap.Device("tap0", tuntap.Flags.TAP | tuntap.Flags.NO_PI)
    except PermissionError as exc:
        sys.exit(f"{PROG}: {exc}: needs root (CAP_SYS_ADMIN for a network namespace, "
                 f"CAP_NET_ADMIN for the device); try: sudo {sys.executable} {sys.argv[0]}")
    counts = {"arp": 0, "icmp": 0}
    with dev:
        dev.add_address("10.97.0.1/24")
        dev.up()
        stop = threading.Event()
        worker = threading.Thread(target=serve, args=(dev, stop, counts, scapy))
        worker.start()
        try:
            ping = subprocess.run(
                ["ping", "-n", "-c", str(args.count), "-W", "2", "-i", "0.2", MY_IP],
                timeout=10 + args.count,
            )
        finally:
            stop.set()
            worker.join(timeout=5)
    print(f"answered {counts['arp']} ARP requests and {counts['icmp']} echo requests "
          f"as {MY_IP} ({MY_MAC})")
    return ping.returncode


if __name__ == "__main__":
    sys.exit(main())
