"""tuntap.VirtioNetHdr on its own: the layout of ``struct virtio_net_hdr``, round trips,
every ValueError and TypeError. No device needed; the same header on real packets is
tested in test_offload.py and test_segment.py.
"""

from __future__ import annotations

import re
import struct
import sys

import pytest

import tuntap

VNET = tuntap.VirtioNetHdr
HDR, MRG = VNET.SIZE, VNET.SIZE_MRG_RXBUF  # 10 and 12 bytes
PADDED = 20  # a vnet_hdr_size past the 12-byte form: zero padding after num_buffers

SAMPLE = dict(flags=1, gso_type=5, hdr_len=28, gso_size=1000, csum_start=20, csum_offset=6)


def test_default_header_packs_to_ten_zero_bytes() -> None:
    h = VNET()
    assert h.pack() == bytes(HDR)
    assert (h.flags, h.gso_type, h.hdr_len, h.gso_size, h.csum_start, h.csum_offset,
            h.num_buffers) == (0, 0, 0, 0, 0, 0, 0)
    # sizeof(struct virtio_net_hdr) and sizeof(struct virtio_net_hdr_mrg_rxbuf)
    assert (VNET.SIZE, VNET.SIZE_MRG_RXBUF) == (10, 12)
    assert (VNET.SIZE, VNET.SIZE_MRG_RXBUF) == (struct.calcsize("=BBHHHH"),
                                                struct.calcsize("=BBHHHHH"))


def test_pack_layout_is_struct_virtio_net_hdr_in_native_order() -> None:
    h = VNET(**SAMPLE, num_buffers=7)
    assert h.pack() == struct.pack("=BBHHHH", 1, 5, 28, 1000, 20, 6)
    assert h.pack(MRG) == struct.pack("=BBHHHHH", 1, 5, 28, 1000, 20, 6, 7)
    if sys.byteorder == "little":
        assert h.pack() == b"\x01\x05\x1c\x00\xe8\x03\x14\x00\x06\x00"


@pytest.mark.parametrize("size", [HDR, MRG, PADDED])
def test_pack_parse_round_trip(size: int) -> None:
    h = VNET(flags=3, gso_type=0x81, hdr_len=65535, gso_size=1448, csum_start=40,
             csum_offset=16, num_buffers=9 if size >= MRG else 0)
    data = h.pack(size)
    assert len(data) == size
    assert data[MRG:] == bytes(max(0, size - MRG))  # zero padding past num_buffers
    assert VNET.parse(data, size) == h
    # Trailing packet bytes after the header are not part of it.
    assert VNET.parse(data + b"\x45" * 30, size) == h


def test_parse_of_ten_bytes_ignores_num_buffers_and_twenty_ignores_the_padding() -> None:
    raw = struct.pack("=BBHHHHH", 1, 5, 28, 1000, 20, 6, 7) + b"\xff" * 8
    assert VNET.parse(raw) == VNET(**SAMPLE)  # size 10: num_buffers left at 0
    assert VNET.parse(raw, MRG) == VNET(**SAMPLE, num_buffers=7)
    assert VNET.parse(raw, PADDED) == VNET(**SAMPLE, num_buffers=7)
    assert VNET.parse(memoryview(raw)) == VNET.parse(bytearray(raw)) == VNET(**SAMPLE)


@pytest.mark.parametrize("size", [9, 0, -1])
def test_parse_and_pack_refuse_a_size_below_10(size: int) -> None:
    msg = re.escape(f"vnet header size must be at least {HDR}, not {size}")
    with pytest.raises(ValueError, match=msg):
        VNET.parse(bytes(20), size)
    with pytest.raises(ValueError, match=msg):
        VNET().pack(size)
    with pytest.raises(ValueError, match=msg):
        VNET().pack_into(bytearray(20), 0, size)


@pytest.mark.parametrize("size, n", [(HDR, 0), (HDR, HDR - 1), (MRG, MRG - 1), (PADDED, MRG)])
def test_parse_refuses_short_data(size: int, n: int) -> None:
    with pytest.raises(ValueError,
                       match=re.escape(f"need {size} bytes for the vnet header, got {n}")):
        VNET.parse(bytes(n), size)


@pytest.mark.parametrize("field, value, size", [
    ("flags", 256, HDR), ("flags", -1, HDR), ("gso_type", 256, HDR), ("hdr_len", 65536, HDR),
    ("gso_size", 65536, HDR), ("csum_start", -1, HDR), ("csum_offset", 1 << 16, HDR),
    ("num_buffers", 65536, MRG), ("num_buffers", -1, PADDED),
])
def test_pack_refuses_a_field_out_of_range(field: str, value: int, size: int) -> None:
    h = VNET(**{field: value})
    with pytest.raises(ValueError, match="virtio-net header field out of range"):
        h.pack(size)


@pytest.mark.parametrize("field, value", [("gso_size", 70000), ("num_buffers", -1)])
def test_pack_into_checks_every_field_before_writing(field: str, value: int) -> None:
    buf = bytearray(b"\xaa" * MRG)
    h = VNET(**{**SAMPLE, field: value})
    with pytest.raises(ValueError, match=f"out of range: {field}={value}"):
        h.pack_into(buf, 0, MRG)
    assert buf == b"\xaa" * MRG


@pytest.mark.parametrize("field, value, tname", [
    ("flags", "x", "str"), ("gso_size", 1.5, "float"), ("hdr_len", None, "NoneType"),
])
def test_pack_refuses_a_field_that_is_not_an_int(field: str, value: object,
                                                 tname: str) -> None:
    with pytest.raises(TypeError, match=f"^{field} must be int, not {tname}$"):
        VNET(**{field: value}).pack()


def test_num_buffers_is_not_packed_into_the_ten_byte_header() -> None:
    assert VNET(num_buffers=7).pack(HDR) == bytes(HDR)
    assert VNET(num_buffers=65536).pack(HDR) == bytes(HDR)  # not part of it, not checked


@pytest.mark.parametrize("buflen, offset, size", [
    (HDR - 1, 0, HDR), (16, 7, HDR), (16, 5, MRG), (16, -1, HDR), (16, 16, HDR), (0, 0, HDR),
])
def test_pack_into_refuses_a_small_buffer_or_bad_offset_and_writes_nothing(
        buflen: int, offset: int, size: int) -> None:
    buf = bytearray(b"\xaa" * buflen)
    with pytest.raises(ValueError, match=re.escape(
            f"need {size} bytes at offset {offset}, buffer has {buflen}")):
        VNET(**SAMPLE).pack_into(buf, offset, size)
    assert buf == b"\xaa" * buflen


def test_pack_into_writes_exactly_the_header_bytes_at_the_offset() -> None:
    buf = bytearray(b"\xaa" * 40)
    VNET(**SAMPLE, num_buffers=3).pack_into(buf, 4, PADDED)
    end = 4 + PADDED
    assert buf[:4] == b"\xaa" * 4 and buf[end:] == b"\xaa" * (40 - end)
    assert buf[4:end] == VNET(**SAMPLE, num_buffers=3).pack(PADDED)
    mv = memoryview(bytearray(MRG))
    VNET(**SAMPLE).pack_into(mv, 2)
    assert bytes(mv[2:]) == VNET(**SAMPLE).pack()


@pytest.mark.parametrize("gso_type, is_gso", [(0, False), (0x80, False), (1, True),
                                              (0x81, True), (3, True), (4, True), (5, True)])
def test_is_gso_ignores_the_ecn_bit(gso_type: int, is_gso: bool) -> None:
    assert VNET(gso_type=gso_type).is_gso is is_gso


@pytest.mark.parametrize("flags, needs", [(0, False), (1, True), (2, False), (3, True),
                                          (4, False)])
def test_needs_csum_is_the_needs_csum_flag(flags: int, needs: bool) -> None:
    assert VNET(flags=flags).needs_csum is needs
