#!/usr/bin/env python3
"""Answer ICMP echo requests in userspace through a TUN device.

Runs entirely inside a private network namespace it creates for itself (the host's
interfaces are never touched): makes ``tun0`` with 10.99.0.1/24, starts
``ping -c COUNT 10.99.0.2`` and answers each echo request from Python. Nothing else
answers for 10.99.0.2, so every reply ping prints came from this program.

    sudo python examples/ping_responder.py [--count 3]

Exits with ping's status (0 when every request was answered), 1 when it cannot run here.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import shutil
import struct
import subprocess
import sys
import threading

import tuntap

PROG = "ping_responder.py"
CLONE_NEWNET = 0x40000000


def echo_reply(packet: bytes) -> bytes | None:
    """The echo reply for an IPv4 ICMP echo request, or None for anything else."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != 1:
        return None
    ihl = (packet[0] & 0x0F) * 4
    icmp = packet[ihl:]
    if icmp[0] != 8:  # echo request
        return None
    reply_icmp = bytearray(b"\0\0\0\0" + icmp[4:])  # type 0 (reply), same id, seq, data
    reply_icmp[2:4] = struct.pack("!H", tuntap.checksum(reply_icmp))
    header = bytearray(packet[:ihl])
    header[8] = 64  # TTL
    header[12:16], header[16:20] = packet[16:20], packet[12:16]  # swap addresses
    header[10:12] = b"\0\0"
    header[10:12] = struct.pack("!H", tuntap.checksum(header))
    return bytes(header + reply_icmp)


def serve(dev: tuntap.Device, stop: threading.Event) -> int:
    """Answer echo requests until stop is set or the device is closed."""
    answered = 0
    buf = bytearray(65536)
    dev.settimeout(0.2)
    while not stop.is_set():
        try:
            n = dev.readinto(buf)
        except TimeoutError:
            continue
        except ValueError:  # closed
            break
        reply = echo_reply(bytes(buf[:n]))
        if reply is not None:
            dev.write(reply)
            answered += 1
    return answered


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
    if shutil.which("ping") is None:
        sys.exit(f"{PROG}: needs ping (apt-get install iputils-ping)")
    try:
        enter_private_netns()
        dev = tuntap.Device("tun0")
    except PermissionError as exc:
        sys.exit(f"{PROG}: {exc}: needs root (CAP_SYS_ADMIN for a network namespace, "
                 f"CAP_NET_ADMIN for the device); try: sudo {sys.executable} {sys.argv[0]}")
    with dev:
        dev.add_address("10.99.0.1/24")
        dev.up()
        stop = threading.Event()
        result: list[int] = []
        worker = threading.Thread(target=lambda: result.append(serve(dev, stop)))
        worker.start()
        try:
            ping = subprocess.run(
                ["ping", "-n", "-c", str(args.count), "-W", "2", "-i", "0.2", "10.99.0.2"],
                timeout=10 + args.count,
            )
        finally:
            stop.set()
            worker.join(timeout=5)
    print(f"answered {result[0] if result else 0} echo requests in userspace")
    return ping.returncode


if __name__ == "__main__":
    sys.exit(main())
