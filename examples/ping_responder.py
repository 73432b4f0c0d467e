"""Answer ICMP echo requests in userspace through a TUN device.

Runs entirely inside a private network namespace it creates for itself (the host's
interfaces are never touched): makes ``tun0`` with 10.99.0.1/24, starts
``ping -c COUNT 10.99.0.2`` and answers each echo request from Python.

    sudo python examples/ping_responder.py [--count 3]

Exits with ping's status (0 when every request was answered).
"""

from __future__ import annotations

import argparse
import ctypes
import struct
import subprocess
import sys
import threading

import tuntap

CLONE_NEWNET = 0x40000000


def echo_reply(packet: bytes) -> bytes | None:
    """The echo reply for an IPv4 ICMP echo request, or None for anything else."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != 1:
        return None
    ihl = (packet[0] & 0x0F) * 4
    icmp = packet[ihl:]
    if icmp[0] != 8:  # echo request
        return None
    reply_icmp = b"\0\0\0\0" + icmp[4:]
    reply_icmp = (reply_icmp[:2] + struct.pack("!H", tuntap.checksum(reply_icmp))
                  + reply_icmp[4:])
    src, dst = packet[12:16], packet[16:20]
    header = bytearray(packet[:ihl])
    header[8] = 64  # TTL
    header[12:16], header[16:20] = dst, src
    header[10:12] = b"\0\0"
    header[10:12] = struct.pack("!H", tuntap.checksum(header))
    return bytes(header) + reply_icmp


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3, help="echo requests to send")
    args = parser.parse_args()

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        print(f"unshare(CLONE_NEWNET) failed (errno {err}): run as root", file=sys.stderr)
        return 2
    with tuntap.Device("tun0") as dev:
        dev.add_address("10.99.0.1/24")
        dev.up()
        stop = threading.Event()
        result = []
        worker = threading.Thread(target=lambda: result.append(serve(dev, stop)))
        worker.start()
        try:
            ping = subprocess.run(
                ["ping", "-c", str(args.count), "-W", "2", "-i", "0.2", "10.99.0.2"],
                timeout=10 + args.count,
            )
        finally:
            stop.set()
            worker.join(timeout=5)
    print(f"answered {result[0] if result else 0} echo requests in userspace")
    return ping.returncode


if __name__ == "__main__":
    sys.exit(main())
