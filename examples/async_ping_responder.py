#!/usr/bin/env python3
"""Answer ICMP echo requests from an asyncio task through a TUN device.

The asyncio twin of ``ping_responder.py``: makes a private network namespace for
itself (the host's interfaces are never touched), a ``tun0`` with 10.99.0.1/24, runs
``ping -c COUNT 10.99.0.2`` as an asyncio subprocess and, in a task, answers every
echo request with ``tuntap.asyncio.AsyncDevice``: ``await read_batch`` (zero-copy
views) and ``await write_batch`` of the replies.

    sudo python examples/async_ping_responder.py [--count 3] [--loop asyncio|uvloop]

Exits with ping's status (0 when every request was answered), 1 when it cannot run here.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import struct
import sys

import tuntap
import tuntap.asyncio

CLONE_NEWNET = 0x40000000


def echo_reply(packet: memoryview) -> bytes | None:
    """The echo reply for an IPv4 ICMP echo request, or None for anything else."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != 1:
        return None
    ihl = (packet[0] & 0x0F) * 4
    if packet[ihl] != 8:  # not an echo request
        return None
    icmp = bytearray(packet[ihl:])
    icmp[0] = 0  # echo reply: same id, sequence and data
    icmp[2:4] = b"\0\0"
    icmp[2:4] = struct.pack("!H", tuntap.checksum(icmp))
    header = bytearray(packet[:ihl])
    header[8] = 64  # TTL
    header[12:16], header[16:20] = packet[16:20], packet[12:16]
    header[10:12] = b"\0\0"
    header[10:12] = struct.pack("!H", tuntap.checksum(header))
    return bytes(header) + bytes(icmp)


async def serve(adev: tuntap.asyncio.AsyncDevice) -> int:
    """Answer echo requests until the task is cancelled; return how many."""
    answered = 0
    batch = tuntap.PacketBatch(16, 2048)
    try:
        while True:
            await adev.read_batch(batch)  # waits without a thread, takes all queued
            replies = [r for r in map(echo_reply, batch) if r is not None]
            if replies:
                answered += await adev.write_batch(replies)
    except asyncio.CancelledError:
        return answered


async def run(count: int) -> int:
    async with tuntap.asyncio.open("tun0") as adev:
        adev.device.add_address("10.99.0.1/24")
        adev.device.up()
        responder = asyncio.create_task(serve(adev))
        ping = await asyncio.create_subprocess_exec(
            "ping", "-c", str(count), "-W", "2", "-i", "0.2", "10.99.0.2")
        try:
            status = await asyncio.wait_for(ping.wait(), timeout=10 + count)
        finally:
            if ping.returncode is None:
                ping.kill()
                await ping.wait()
            responder.cancel()
            answered = await responder
    print(f"answered {answered} echo requests in userspace")
    return status


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3, help="echo requests to send")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args()

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        print(f"async_ping_responder.py: unshare(CLONE_NEWNET) failed (errno {err}): needs "
              "root (CAP_SYS_ADMIN for a network namespace, CAP_NET_ADMIN for the device)",
              file=sys.stderr)
        return 1
    if args.loop == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(run(args.count))
    finally:
        loop.close()


if __name__ == "__main__":
    sys.exit(main())
