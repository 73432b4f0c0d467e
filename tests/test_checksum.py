"""tuntap.checksum(): the Internet checksum (RFC 1071) against known values."""

from __future__ import annotations

import random

import pytest
from scapy.utils import checksum as scapy_checksum

import tuntap


def test_rfc1071_worked_example() -> None:
    # RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
    assert tuntap.checksum(bytes.fromhex("0001f203f4f5f6f7")) == 0x220D


def test_ipv4_header_known_checksum() -> None:
    hdr = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert tuntap.checksum(hdr) == 0xB861
    filled = hdr[:10] + bytes.fromhex("b861") + hdr[12:]
    assert tuntap.checksum(filled) == 0


@pytest.mark.parametrize("data, expected", [
    (b"", 0xFFFF),
    (b"\x00", 0xFFFF),
    (b"\xff", 0x00FF),          # odd byte is the high half of a zero-padded word
    (b"\xff\xff", 0x0000),      # -0 in ones' complement
    (b"\x12\x34\x56", 0x97CB),  # 0x1234 + 0x5600 = 0x6834
])
def test_edge_cases(data: bytes, expected: int) -> None:
    assert tuntap.checksum(data) == expected


def test_matches_scapy_for_every_length_and_alignment() -> None:
    rng = random.Random(1071)
    blob = bytes(rng.getrandbits(8) for _ in range(4096))
    for n in list(range(0, 80)) + [255, 1023, 1500, 4000]:
        for off in (0, 1, 3):
            data = memoryview(blob)[off:off + n]
            assert tuntap.checksum(data) == scapy_checksum(bytes(data)), (n, off)


def test_all_ones_words_carry_around() -> None:
    # 0xffff * many words exercises the end-around carry of the 64-bit accumulators.
    assert tuntap.checksum(b"\xff" * 65536) == 0
    assert tuntap.checksum(b"\xff" * 65535) == 0x00FF


def test_accepts_any_bytes_like() -> None:
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert tuntap.checksum(bytearray(data)) == tuntap.checksum(memoryview(data)) == 0x220D


@pytest.mark.parametrize("bad", ["abcd", 5, None, [1, 2]])
def test_non_buffer_is_a_type_error(bad: object) -> None:
    with pytest.raises(TypeError):
        tuntap.checksum(bad)  # type: ignore[arg-type]
