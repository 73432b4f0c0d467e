"""``tuntap replay``: write a capture's packets into a device, as if they came from the network.

Every packet written to a TUN/TAP fd enters the kernel's receive path on that interface
(``drivers/net/tun.c: tun_get_user``), exactly like a packet arriving on a network card.
A TUN device takes IP packets: captures of link type RAW, IPv4 and IPv6 are written as
they are, Ethernet and Linux "cooked" (``tcpdump -i any``) captures lose their link
header, and what is not IPv4 or IPv6 (ARP, ...) is skipped. A TAP device takes Ethernet
frames, so only Ethernet captures can be replayed into it. The device's own per-packet
header is added: packet info for a device without ``NO_PI``, an empty virtio-net header
(no GSO, checksum complete) for a ``VNET_HDR`` device.
"""

from __future__ import annotations

import errno
import struct
import sys
import time
from typing import BinaryIO, TextIO

import tuntap

from .common import EXIT_FAILURE, EXIT_OK, CliError, Status, attach
from .pcap import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_RAW,
    PcapError,
    read_packets,
)

__all__ = ["ip_packet", "replay"]

F = tuntap.Flags
ETH_P_IP, ETH_P_IPV6, ETH_P_8021Q = 0x0800, 0x86DD, 0x8100
LINKTYPE_NAMES = {LINKTYPE_ETHERNET: "Ethernet", LINKTYPE_RAW: "raw IP",
                  LINKTYPE_IPV4: "IPv4", LINKTYPE_IPV6: "IPv6",
                  LINKTYPE_LINUX_SLL: "Linux cooked"}


def ip_packet(linktype: int, data: bytes) -> bytes | None:
    """The IP packet inside one captured packet, or None if it carries none."""
    if linktype == LINKTYPE_ETHERNET:
        off = 12
        while len(data) >= off + 2 and struct.unpack_from("!H", data, off)[0] == ETH_P_8021Q:
            off += 4  # VLAN tags
        if len(data) < off + 2 or struct.unpack_from("!H", data, off)[0] not in (ETH_P_IP,
                                                                                 ETH_P_IPV6):
            return None
        data = data[off + 2:]
    elif linktype == LINKTYPE_LINUX_SLL:
        if len(data) < 16 or struct.unpack_from("!H", data, 14)[0] not in (ETH_P_IP,
                                                                           ETH_P_IPV6):
            return None
        data = data[16:]
    elif linktype not in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        raise CliError(f"cannot replay link type {linktype} into a TUN device (it takes "
                       "raw IP, Ethernet or Linux cooked captures)")
    if not data or data[0] >> 4 not in (4, 6):
        return None
    return data


def replay(name: str, path: str, *, rate: float | None = None, netns: str | None = None,
           progress: bool | None = None, err: TextIO | None = None) -> int:
    """Write the packets of the pcap/pcapng file ``path`` (``-``: stdin) into ``name``."""
    err = err if err is not None else sys.stderr
    try:
        stream: BinaryIO = sys.stdin.buffer if path == "-" else open(path, "rb")
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror or exc}") from None
    with stream:
        dev, info = attach(name, netns)
        with dev:
            if not dev.is_up:
                raise CliError(f"{name} is down: the kernel takes no packets from a device "
                               f"that is down (ip link set {name} up)")
            try:
                written, skipped, invalid, octets, seconds = _loop(
                    dev, info, stream, rate, Status(err, progress))
            except PcapError as exc:
                raise CliError(f"{path}: {exc}") from None
    notes = []
    if skipped:
        notes.append(f"{skipped:,} skipped (no IP packet in them)")
    if invalid:
        notes.append(f"{invalid:,} refused by the kernel (EINVAL: malformed)")
    err.write(f"tuntap replay: {written:,} packets ({octets:,} bytes) written into {name} in "
              f"{seconds:.2f} s" + ("; " + ", ".join(notes) if notes else "") + "\n")
    return EXIT_OK if written or not (skipped or invalid) else EXIT_FAILURE


def _loop(dev: tuntap.Device, info: tuntap.DeviceInfo, stream: BinaryIO,
          rate: float | None, status: Status) -> tuple[int, int, int, int, float]:
    tap = bool(info.flags & F.TAP)
    pi = not info.flags & F.NO_PI
    vnet = b"\0" * dev.vnet_hdr_size if info.flags & F.VNET_HDR else b""
    written = skipped = invalid = octets = 0
    start = time.monotonic()
    for pkt in read_packets(stream):
        if tap:
            if pkt.linktype != LINKTYPE_ETHERNET:
                kind = LINKTYPE_NAMES.get(pkt.linktype, f"link type {pkt.linktype}")
                raise CliError(f"cannot replay a {kind} capture into TAP device {dev.name}: "
                               "it takes Ethernet frames")
            data: bytes | None = pkt.data if len(pkt.data) >= 14 else None
        else:
            data = ip_packet(pkt.linktype, pkt.data)
        if data is None:
            skipped += 1
            continue
        if rate is not None:
            wait = start + (written + invalid) / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
        head = vnet
        if pi:
            proto = struct.unpack_from("!H", data, 12)[0] if tap else (
                ETH_P_IP if data[0] >> 4 == 4 else ETH_P_IPV6)
            head = struct.pack("!HH", 0, proto) + vnet
        try:
            dev.write(head + data if head else data)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                invalid += 1
                continue
            if exc.errno == errno.EIO:
                raise CliError(f"{dev.name} went down after {written} packets") from None
            raise CliError(f"writing into {dev.name} failed after {written} packets: "
                           f"{exc}") from None
        written += 1
        octets += len(data)
        status.show(f"{written:,} packets, {octets:,} bytes")
    status.clear()
    return written, skipped, invalid, octets, time.monotonic() - start
