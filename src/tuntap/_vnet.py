"""The virtio-net header in front of every packet on a ``Flags.VNET_HDR`` device.

``struct virtio_net_hdr`` from ``<linux/virtio_net.h>`` (10 bytes), optionally followed by
``num_buffers`` (``struct virtio_net_hdr_mrg_rxbuf``, 12 bytes). TUN uses host byte order
for these fields unless userspace switched it with ``TUNSETVNETLE``/``TUNSETVNETBE``
(``drivers/net/tun_vnet.h: tun_vnet_is_little_endian``; docs/kernel.md, "The virtio-net
header"), so this module packs in native order.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Union

__all__ = [
    "VirtioNetHdr",
    "VNET_HDR_SIZE",
    "VNET_HDR_MRG_RXBUF_SIZE",
    "VIRTIO_NET_HDR_F_NEEDS_CSUM",
    "VIRTIO_NET_HDR_F_DATA_VALID",
    "VIRTIO_NET_HDR_F_RSC_INFO",
    "VIRTIO_NET_HDR_GSO_NONE",
    "VIRTIO_NET_HDR_GSO_TCPV4",
    "VIRTIO_NET_HDR_GSO_UDP",
    "VIRTIO_NET_HDR_GSO_TCPV6",
    "VIRTIO_NET_HDR_GSO_UDP_L4",
    "VIRTIO_NET_HDR_GSO_ECN",
]

# Sizes: the only place the Python side writes them (VirtioNetHdr.SIZE / SIZE_MRG_RXBUF).
VNET_HDR_SIZE = 10  #: sizeof(struct virtio_net_hdr); TUNSETVNETHDRSZ refuses less
VNET_HDR_MRG_RXBUF_SIZE = 12  #: sizeof(struct virtio_net_hdr_mrg_rxbuf): + num_buffers

# flags (<linux/virtio_net.h>)
VIRTIO_NET_HDR_F_NEEDS_CSUM = 1  #: checksum from csum_start, store at csum_start + csum_offset
VIRTIO_NET_HDR_F_DATA_VALID = 2  #: checksum already verified
VIRTIO_NET_HDR_F_RSC_INFO = 4  #: coalescing info in csum_* (virtio only, never from TUN)

# gso_type
VIRTIO_NET_HDR_GSO_NONE = 0  #: not a GSO frame
VIRTIO_NET_HDR_GSO_TCPV4 = 1  #: TCP over IPv4 (TSO)
VIRTIO_NET_HDR_GSO_UDP = 3  #: IPv4 UDP fragmentation (UFO; the kernel no longer produces it)
VIRTIO_NET_HDR_GSO_TCPV6 = 4  #: TCP over IPv6
VIRTIO_NET_HDR_GSO_UDP_L4 = 5  #: UDP segmentation (USO), IPv4 or IPv6; Linux >= 6.2
VIRTIO_NET_HDR_GSO_ECN = 0x80  #: bit or-ed into gso_type: the TCP packet has CWR set

_BASE = struct.Struct("=BBHHHH")
_NUM_BUFFERS = struct.Struct("=H")
_FIELDS = (("flags", 8), ("gso_type", 8), ("hdr_len", 16), ("gso_size", 16),
           ("csum_start", 16), ("csum_offset", 16), ("num_buffers", 16))
_Buffer = Union[bytes, bytearray, memoryview]


@dataclass
class VirtioNetHdr:
    """One ``struct virtio_net_hdr`` (plus ``num_buffers`` for the 12-byte form).

    Parameters
    ----------
    flags : int
        ``F_NEEDS_CSUM`` / ``F_DATA_VALID`` bits.
    gso_type : int
        ``GSO_NONE``, ``GSO_TCPV4``, ``GSO_TCPV6``, ``GSO_UDP_L4``, optionally ``| GSO_ECN``.
    hdr_len : int
        Length of the headers (IP + TCP/UDP) as the sender saw it. Only a hint: the
        kernel and guests fill it inconsistently; derive headers from the packet itself.
    gso_size : int
        Payload bytes per segment (the MSS for TCP).
    csum_start, csum_offset : int
        With ``F_NEEDS_CSUM``: checksum from ``csum_start`` (relative to the start of the
        packet after this header) to the end, store it at ``csum_start + csum_offset``.
    num_buffers : int
        Only in the 12-byte header; TUN writes 0 there.

    Examples
    --------
    >>> h = VirtioNetHdr.parse(packet)          # packet from a VNET_HDR device
    >>> h.is_gso, h.gso_size
    (True, 1448)
    >>> VirtioNetHdr().pack()                    # a header for a plain packet
    b'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00'
    """

    flags: int = 0
    gso_type: int = 0
    hdr_len: int = 0
    gso_size: int = 0
    csum_start: int = 0
    csum_offset: int = 0
    num_buffers: int = 0

    F_NEEDS_CSUM = VIRTIO_NET_HDR_F_NEEDS_CSUM
    F_DATA_VALID = VIRTIO_NET_HDR_F_DATA_VALID
    F_RSC_INFO = VIRTIO_NET_HDR_F_RSC_INFO
    GSO_NONE = VIRTIO_NET_HDR_GSO_NONE
    GSO_TCPV4 = VIRTIO_NET_HDR_GSO_TCPV4
    GSO_UDP = VIRTIO_NET_HDR_GSO_UDP
    GSO_TCPV6 = VIRTIO_NET_HDR_GSO_TCPV6
    GSO_UDP_L4 = VIRTIO_NET_HDR_GSO_UDP_L4
    GSO_ECN = VIRTIO_NET_HDR_GSO_ECN
    SIZE = VNET_HDR_SIZE  #: sizeof(struct virtio_net_hdr)
    SIZE_MRG_RXBUF = VNET_HDR_MRG_RXBUF_SIZE  #: with num_buffers

    @classmethod
    def parse(cls, data: _Buffer, size: int = VNET_HDR_SIZE) -> VirtioNetHdr:
        """Decode the header at the start of ``data``.

        Parameters
        ----------
        data : bytes-like
            A packet as read from a ``VNET_HDR`` device (or just its header).
        size : int
            The device's ``vnet_hdr_size``: 10, 12, or more (bytes past 12 are ignored).

        Raises
        ------
        ValueError
            ``size`` < 10 or ``data`` shorter than ``size``.
        """
        if size < VNET_HDR_SIZE:
            raise ValueError(f"vnet header size must be at least {VNET_HDR_SIZE}, not {size}")
        if len(data) < size:
            raise ValueError(f"need {size} bytes for the vnet header, got {len(data)}")
        flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = _BASE.unpack_from(data)
        num_buffers = (_NUM_BUFFERS.unpack_from(data, VNET_HDR_SIZE)[0]
                       if size >= VNET_HDR_MRG_RXBUF_SIZE else 0)
        return cls(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers)

    def pack(self, size: int = VNET_HDR_SIZE) -> bytes:
        """Encode to ``size`` bytes (10, 12, or more: zero padding after ``num_buffers``).

        Raises
        ------
        ValueError
            ``size`` < 10 or a field out of range (8-bit flags/gso_type, 16-bit others).
        TypeError
            A field that is not an int.
        """
        buf = bytearray(max(size, VNET_HDR_SIZE))
        self.pack_into(buf, 0, size)
        return bytes(buf)

    def pack_into(self, buffer: bytearray | memoryview, offset: int = 0,
                  size: int = VNET_HDR_SIZE) -> None:
        """Encode in place, e.g. into the headroom of a ``PacketBatch`` slot."""
        if size < VNET_HDR_SIZE:
            raise ValueError(f"vnet header size must be at least {VNET_HDR_SIZE}, not {size}")
        if offset < 0 or len(buffer) - offset < size:
            raise ValueError(f"need {size} bytes at offset {offset}, buffer has {len(buffer)}")
        self._check_fields(size)
        _BASE.pack_into(buffer, offset, self.flags, self.gso_type, self.hdr_len,
                        self.gso_size, self.csum_start, self.csum_offset)
        if size >= VNET_HDR_MRG_RXBUF_SIZE:
            _NUM_BUFFERS.pack_into(buffer, offset + VNET_HDR_SIZE, self.num_buffers)
        if size > VNET_HDR_MRG_RXBUF_SIZE:
            end = offset + VNET_HDR_MRG_RXBUF_SIZE
            buffer[end:offset + size] = bytes(size - VNET_HDR_MRG_RXBUF_SIZE)

    def _check_fields(self, size: int) -> None:
        """TypeError for a non-int field, ValueError for one out of range: checked before
        anything is written, so a failed pack_into leaves the buffer as it was.
        ``num_buffers`` only counts in the 12-byte (and longer) header."""
        for name, bits in _FIELDS if size >= VNET_HDR_MRG_RXBUF_SIZE else _FIELDS[:-1]:
            value = getattr(self, name)
            if not isinstance(value, int):
                raise TypeError(f"{name} must be int, not {type(value).__name__}")
            if not 0 <= value < 1 << bits:
                raise ValueError(f"virtio-net header field out of range: {name}={value} "
                                 f"(0..{(1 << bits) - 1})")

    @property
    def is_gso(self) -> bool:
        """True for a GSO super-packet (``gso_type`` other than ``GSO_NONE``)."""
        return (self.gso_type & ~VIRTIO_NET_HDR_GSO_ECN) != VIRTIO_NET_HDR_GSO_NONE

    @property
    def needs_csum(self) -> bool:
        """True when the L4 checksum is partial (``F_NEEDS_CSUM``)."""
        return bool(self.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM)
