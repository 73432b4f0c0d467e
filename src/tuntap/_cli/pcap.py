"""pcap files: a writer (classic libpcap format) and a reader for pcap and pcapng.

The writer makes what tcpdump writes: the libpcap header with magic ``0xa1b2c3d4`` in
this machine's byte order, microsecond timestamps, snaplen 262144, and one link type per
file: ``LINKTYPE_RAW`` (101: each packet is an IPv4 or IPv6 packet, no link header) for a
TUN device, ``LINKTYPE_ETHERNET`` (1) for a TAP device.

The reader takes both byte orders, microsecond and nanosecond pcap, and pcapng (section
header, interface description, enhanced and simple packet blocks; other blocks are skipped),
which is what Wireshark writes by default.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import BinaryIO, NamedTuple

__all__ = [
    "LINKTYPE_ETHERNET",
    "LINKTYPE_IPV4",
    "LINKTYPE_IPV6",
    "LINKTYPE_LINUX_SLL",
    "LINKTYPE_RAW",
    "Packet",
    "PcapError",
    "PcapWriter",
    "read_packets",
]

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
SNAPLEN = 262144

PCAP_MAGIC_US = 0xA1B2C3D4
PCAP_MAGIC_NS = 0xA1B23C4D
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BYTE_ORDER = 0x1A2B3C4D
PCAPNG_IDB, PCAPNG_SPB, PCAPNG_EPB = 1, 3, 6


class PcapError(ValueError):
    """The file is not a pcap/pcapng file, or is damaged (the message says where)."""


class Packet(NamedTuple):
    """One captured packet: time (ns since the epoch), link type, the bytes captured."""

    timestamp_ns: int
    linktype: int
    data: bytes


class PcapWriter:
    """Write packets of one link type to ``stream`` as a classic pcap file."""

    def __init__(self, stream: BinaryIO, linktype: int, snaplen: int = SNAPLEN) -> None:
        self.stream = stream
        self.snaplen = snaplen
        stream.write(struct.pack("=IHHiIII", PCAP_MAGIC_US, 2, 4, 0, 0, snaplen, linktype))

    def write(self, data: bytes | bytearray | memoryview, timestamp_ns: int) -> None:
        """Append one packet (cut to snaplen; the original length is recorded)."""
        sec, usec = divmod(timestamp_ns // 1000, 1_000_000)
        kept = min(len(data), self.snaplen)
        self.stream.write(struct.pack("=IIII", sec, usec, kept, len(data)))
        self.stream.write(data[:kept])


def _read_exact(f: BinaryIO, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise PcapError(f"truncated file: {what} cut short ({len(data)} of {n} bytes)")
    return data


def read_packets(f: BinaryIO) -> Iterator[Packet]:
    """Every packet of a pcap or pcapng file, in file order.

    Raises
    ------
    PcapError
        Not a pcap/pcapng file (bad magic), or a truncated or inconsistent record.
    """
    head = f.read(4)
    if len(head) < 4:
        raise PcapError("not a pcap file: shorter than a header")
    if struct.unpack("<I", head)[0] == PCAPNG_SHB:
        yield from _read_pcapng(f, head)
        return
    for order in "<>":
        magic = struct.unpack(order + "I", head)[0]
        if magic in (PCAP_MAGIC_US, PCAP_MAGIC_NS):
            break
    else:
        raise PcapError(f"not a pcap or pcapng file (magic {head.hex()})")
    scale = 1000 if magic == PCAP_MAGIC_US else 1
    _major, _minor, _zone, _sig, _snap, linktype = struct.unpack(
        order + "HHiIII", _read_exact(f, 20, "file header"))
    linktype &= 0xFFFF  # the upper bits may carry FCS information
    for n in range(1, 1 << 62):
        rec = f.read(16)
        if not rec:
            return
        if len(rec) < 16:
            raise PcapError(f"truncated file: record {n} header cut short")
        sec, frac, incl, _orig = struct.unpack(order + "IIII", rec)
        if incl > SNAPLEN * 4:
            raise PcapError(f"record {n}: captured length {incl} is not plausible")
        yield Packet(sec * 1_000_000_000 + frac * scale, linktype,
                     _read_exact(f, incl, f"record {n}"))


def _read_pcapng(f: BinaryIO, first: bytes) -> Iterator[Packet]:
    order = "<"
    interfaces: list[tuple[int, int]] = []  # (linktype, ns per timestamp unit or -divisor)
    block_type_raw = first
    for n in range(1, 1 << 62):
        if n > 1:
            block_type_raw = f.read(4)
            if not block_type_raw:
                return
            if len(block_type_raw) < 4:
                raise PcapError(f"truncated file: block {n} cut short")
        length_raw = _read_exact(f, 4, f"block {n}")
        if struct.unpack("<I", block_type_raw)[0] == PCAPNG_SHB:
            bom = _read_exact(f, 4, f"block {n}")
            order = "<" if struct.unpack("<I", bom)[0] == PCAPNG_BYTE_ORDER else ">"
            if struct.unpack(order + "I", bom)[0] != PCAPNG_BYTE_ORDER:
                raise PcapError(f"block {n}: bad pcapng byte-order magic {bom.hex()}")
            interfaces = []
            (length,) = struct.unpack(order + "I", length_raw)
            if length < 28 or length % 4:
                raise PcapError(f"block {n}: bad section header length {length}")
            body = bom + _read_exact(f, length - 12, f"block {n}")
        else:
            (length,) = struct.unpack(order + "I", length_raw)
            if length < 12 or length % 4:
                raise PcapError(f"block {n}: bad length {length}")
            body = _read_exact(f, length - 8, f"block {n}")
        (kind,) = struct.unpack(order + "I", block_type_raw)
        body = body[:-4]  # the trailing copy of the length
        if kind == PCAPNG_IDB:
            linktype, _snap = struct.unpack_from(order + "HxxI", body)
            interfaces.append((linktype, _tsresol(body[8:], order)))
        elif kind == PCAPNG_EPB:
            iface, hi, lo, incl, _orig = struct.unpack_from(order + "IIIII", body)
            if iface >= len(interfaces) or 20 + incl > len(body):
                raise PcapError(f"block {n}: packet for unknown interface or too long")
            linktype, unit = interfaces[iface]
            ticks = (hi << 32) | lo
            ts = ticks * unit if unit > 0 else ticks * 1_000_000_000 // -unit
            yield Packet(ts, linktype, body[20:20 + incl])
        elif kind == PCAPNG_SPB:
            if not interfaces:
                raise PcapError(f"block {n}: packet before any interface description")
            (orig,) = struct.unpack_from(order + "I", body)
            yield Packet(0, interfaces[0][0], body[4:4 + orig])
    return


def _tsresol(options: bytes, order: str) -> int:
    """if_tsresol of an interface: ns per unit (> 0), or -(units per second) if finer."""
    off = 0
    while off + 4 <= len(options):
        code, length = struct.unpack_from(order + "HH", options, off)
        if code == 0:
            break
        if code == 9 and length >= 1:  # if_tsresol
            v = options[off + 4]
            per_second: int = 1 << (v & 0x7F) if v & 0x80 else int(10 ** v)
            return 1_000_000_000 // per_second if per_second <= 1_000_000_000 else -per_second
        off += 4 + ((length + 3) & ~3)
    return 1000  # default: microseconds
