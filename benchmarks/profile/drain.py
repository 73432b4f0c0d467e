"""Drain 2,048 queued packets with readinto, read_batch(64) and os.read, for callgrind.

Run as root under valgrind (the interpreter's real binary, not a pyenv shim)::

    valgrind --tool=callgrind "$(python -c 'import sys; print(sys.executable)')" \
        benchmarks/profile/drain.py
    callgrind_annotate --inclusive=yes callgrind.out.* | grep -E 'Device_read|os_read'

Divide the inclusive instruction counts of ``Device_readinto``, ``Device_read_batch`` and
``os_read`` by 2,048 for user-space instructions per packet (syscalls count as zero).
"""

from __future__ import annotations

import os
import socket

import tuntap
from tuntap import _bench

K = 2048


def main() -> None:
    _bench.enter_private_netns()  # private namespace, gone when this process exits
    dev = tuntap.Device("cg0")
    _bench.configure("cg0", "10.9.0.1", "255.255.255.0", K + 64)
    fd = _bench.open_plain_tun("cg1")
    _bench.configure("cg1", "10.9.1.1", "255.255.255.0", K + 64)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def fill(dst: str) -> None:
        for _ in range(K):
            s.sendto(b"x" * 64, (dst, 9))

    buf = bytearray(2048)
    batch = tuntap.PacketBatch(64, 2048)
    fill("10.9.0.2")
    _bench.loop1(dev.readinto, buf, K)
    fill("10.9.0.2")
    _bench.loop_batch(dev.read_batch, batch, K)
    fill("10.9.1.2")
    _bench.loop2(os.read, fd, 2048, K)
    s.close()
    dev.close()
    os.close(fd)


if __name__ == "__main__":
    main()
