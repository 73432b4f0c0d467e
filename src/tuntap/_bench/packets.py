"""The packets the benchmark moves: a UDP payload of a given size and IPv4/UDP packets."""

from __future__ import annotations

import socket
import struct

from tuntap import checksum

__all__ = ["payload", "udp4_packet"]


def payload(size: int) -> bytes:
    """``size`` bytes counting 0, 1, ..., 255, 0, 1, ... (easy to recognise in a dump)."""
    if size < 0:
        raise ValueError(f"payload size must be >= 0, got {size}")
    return bytes(range(256)) * (size // 256) + bytes(range(size % 256))


def udp4_packet(src: str, dst: str, sport: int, dport: int, data: bytes) -> bytes:
    """A complete IPv4/UDP packet: header checksum filled in, UDP checksum 0.

    A zero UDP checksum means "none" over IPv4 (RFC 768), so the kernel delivers the
    packet to a socket without checking it.
    """
    total = 28 + len(data)
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0, 0x4000, 64, socket.IPPROTO_UDP, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return hdr + struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
