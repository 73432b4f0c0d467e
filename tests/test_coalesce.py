"""tuntap.coalesce(): consecutive TCP segments / UDP datagrams of a flow into super-packets.

Three kinds of test, none needs a device:

- the rules, one case each (in the spirit of wireguard-go's ``Test_handleGRO``): several
  flows, PSH interleaved, invalid checksums, out of order, unequal TTL / ToS / hop limit /
  traffic class / flow label, MF and DF, TCP options, ACK number and window differing,
  sequence wrap-around, the 64 KB and segment caps, UDP only when asked and never
  reordered, packets that are not candidates passing through unchanged;
- every bad argument, with its exception class and message, and a refused call leaving
  ``out`` as it was;
- hypothesis properties over random interleaved flows: ``segment(coalesce(x))`` gives back
  ``x`` (payload bytes, order per flow, flags; IPv4 ids are renumbered from the first
  packet's, as documented), packets of different flows never merge, a packet with a bad
  checksum never merges.

Merged packets are checked field by field by ``grobuild.check_superpacket`` (plain
``struct``), and split again by ``tuntap.segment()``.
"""

from __future__ import annotations

import os
import random
import struct
from typing import Any

import pytest

import tuntap
from grobuild import (
    ACK,
    FIN,
    PSH,
    RST,
    SYN,
    TCP,
    UDP,
    URG,
    Flow,
    Out,
    check_superpacket,
    l4_ok,
    outputs,
    payload_of,
    tcp_flags,
    tcp_seq,
)

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

MSS = 1400
F4, F6 = Flow(4), Flow(6)


def coalesce(pkts: list[bytes] | Any, *, capacity: int = 256, slot_size: int = 65600,
             headroom: int = 0, **kw: Any) -> list[Out]:
    out = tuntap.PacketBatch(capacity, slot_size, headroom=headroom)
    n = tuntap.coalesce(pkts, out, **kw)
    assert n == len(out)
    return outputs(out, kw.get("vnet_hdr_size", 10))


def resegment(o: Out) -> list[bytes]:
    """The packets an output stands for: segment() of a merge, the packet itself if not."""
    if not o.merged:
        assert o[:6] == (0, 0, 0, 0, 0, 0), "a passed-through packet has a zero header"
        return [o.ip]
    batch = tuntap.PacketBatch(1024, 2048)
    n = tuntap.segment(struct.pack("=BBHHHH", *o[:6]) + o.ip, batch)
    return [bytes(batch[i]) for i in range(n)]


def same_but_ipv4_id(a: bytes, b: bytes) -> bool:
    """Equal, except the IPv4 id and header checksum (renumbered by segment())."""
    if a[0] >> 4 == 4:
        return a[:4] + a[6:10] + a[12:] == b[:4] + b[6:10] + b[12:]
    return a == b


def assert_merge(o: Out, members: list[bytes]) -> None:
    check_superpacket(o, members)
    assert resegment(o) == members  # ids of the members here are consecutive


def assert_passed(o: Out, pkt: bytes) -> None:
    assert not o.merged and o.ip == pkt


# ---------------------------------------------------------------------------------------
# The rules, one case each
# ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fam", [4, 6])
@pytest.mark.parametrize("sizes", [[MSS] * 2, [MSS] * 10, [MSS] * 9 + [700], [1] * 30,
                                   [536, 536, 1]], ids=["2", "10", "short-last", "1-byte",
                                                        "536"])
def test_in_order_segments_of_one_flow_become_one_superpacket(fam: int, sizes: list[int]) -> None:
    pkts = Flow(fam).stream(7000, sizes, ident=100)
    (o,) = coalesce(pkts)
    assert_merge(o, pkts)


@pytest.mark.parametrize("fam", [4, 6])
def test_psh_on_the_last_segment_merges_and_is_kept(fam: int) -> None:
    pkts = Flow(fam).stream(1, [MSS] * 5, psh_last=True)
    (o,) = coalesce(pkts)
    assert_merge(o, pkts)
    assert tcp_flags(o.ip) == ACK | PSH
    assert [tcp_flags(p) for p in resegment(o)] == [ACK] * 4 + [ACK | PSH]


@pytest.mark.parametrize("fam", [4, 6])
def test_nothing_follows_a_psh_segment(fam: int) -> None:
    f = Flow(fam)
    a = f.stream(1, [MSS] * 3, psh_last=True)
    b = f.stream(1 + 3 * MSS, [MSS] * 3, psh_last=True, ident=3)
    o1, o2 = coalesce(a + b)
    assert_merge(o1, a)
    assert_merge(o2, b)


def test_psh_interleaved_across_flows() -> None:
    f1, f2 = F4, F4.but(sport=40001)
    a = f1.stream(1, [MSS] * 4, psh_last=True)
    b = f2.stream(9, [MSS] * 4)
    c = f1.stream(1 + 4 * MSS, [MSS] * 2, ident=4)
    mixed = [a[0], b[0], a[1], b[1], a[2], b[2], a[3], b[3], c[0], c[1]]
    o1, o2, o3 = coalesce(mixed)
    assert_merge(o1, a)
    assert_merge(o2, b)
    assert_merge(o3, c)


def test_several_flows_interleaved_merge_separately_in_first_seen_order() -> None:
    flows = [F4, F4.but(sport=40001), F6, F6.but(dst="fd00:1::3"), F4.but(dst="10.1.0.9")]
    streams = [f.stream(1000 * k, [MSS] * 6) for k, f in enumerate(flows)]
    mixed = [s[i] for i in range(6) for s in streams]
    outs = coalesce(mixed)
    assert len(outs) == 5
    for o, s in zip(outs, streams):
        assert_merge(o, s)


@pytest.mark.parametrize("fam", [4, 6])
@pytest.mark.parametrize("where", [0, 2, 5])
def test_a_packet_with_a_bad_checksum_never_merges(fam: int, where: int) -> None:
    f = Flow(fam)
    pkts = f.stream(1, [MSS] * 6)
    bad = f.packet(1 + where * MSS, payload_of(pkts[where]), bad=True, ident=where)
    assert not l4_ok(bad)
    pkts[where] = bad
    outs = coalesce(pkts)
    before, after = pkts[:where], pkts[where + 1:]
    want: list[list[bytes]] = [g for g in (before, [bad], after) if g]
    assert len(outs) == len(want)
    for o, g in zip(outs, want):
        if len(g) == 1:
            assert_passed(o, g[0])
        else:
            assert_merge(o, g)


def test_bad_checksums_pass_through_even_in_pairs() -> None:
    f = F4
    pkts = [f.packet(1 + i * MSS, bytes(MSS), bad=True, ident=i) for i in range(3)]
    outs = coalesce(pkts)
    assert [o.ip for o in outs] == pkts and not any(o.merged for o in outs)


def test_a_bad_ipv4_header_checksum_is_not_a_candidate() -> None:
    pkts = F4.stream(1, [MSS] * 3)
    broken = bytearray(pkts[1])
    broken[10] ^= 0xFF
    pkts[1] = bytes(broken)
    o1, o2, o3 = coalesce(pkts)
    assert_passed(o1, pkts[0])
    assert_passed(o2, pkts[1])
    assert_passed(o3, pkts[2])


@pytest.mark.parametrize("fam", [4, 6])
@pytest.mark.parametrize("order", ["reversed", "swapped", "shuffled"])
def test_out_of_order_segments_are_put_in_place(fam: int, order: str) -> None:
    pkts = Flow(fam).stream(55, [MSS] * 12)
    if order == "reversed":
        mixed = pkts[::-1]
    elif order == "swapped":
        mixed = [pkts[1], pkts[0]] + pkts[2:]
    else:
        mixed = pkts[:]
        random.Random(5).shuffle(mixed)
    (o,) = coalesce(mixed)
    assert_merge(o, pkts)


def test_out_of_order_with_a_gap_makes_two_runs() -> None:
    pkts = F4.stream(1, [MSS] * 6)
    mixed = [pkts[4], pkts[0], pkts[5], pkts[1]]  # 2 and 3 missing
    o1, o2 = coalesce(mixed)
    assert_merge(o1, [pkts[4], pkts[5]])  # first seen first
    assert_merge(o2, [pkts[0], pkts[1]])


def test_a_duplicate_segment_does_not_merge_twice() -> None:
    pkts = F4.stream(1, [MSS] * 3)
    outs = coalesce([pkts[0], pkts[1], pkts[1], pkts[2]])
    segs = [p for o in outs for p in resegment(o)]
    assert sorted(segs) == sorted([pkts[0], pkts[1], pkts[1], pkts[2]])
    assert sum(o.merged for o in outs) >= 1


@pytest.mark.parametrize("field, value", [("ttl", 63), ("tos", 0x10), ("df", False),
                                          ("src", "10.1.0.7"), ("dst", "10.1.0.8"),
                                          ("sport", 1), ("dport", 2), ("ack", 1001),
                                          ("window", 503), ("urg_ptr", 1),
                                          ("options", b"\x01\x01\x08\x0a" + bytes(8))])
def test_ipv4_flows_differing_in_one_field_never_merge(field: str, value: Any) -> None:
    a = F4.stream(1, [MSS] * 2)
    b = F4.but(**{field: value}).packet(1 + 2 * MSS, bytes(MSS), ident=2)
    o1, o2 = coalesce(a + [b])
    assert_merge(o1, a)
    assert_passed(o2, b)


@pytest.mark.parametrize("field, value", [("hlim", 63), ("tc", 4), ("label", 0x12345),
                                          ("src", "fd00:1::7"), ("ack", 7)])
def test_ipv6_flows_differing_in_one_field_never_merge(field: str, value: Any) -> None:
    a = F6.stream(1, [MSS] * 2)
    b = F6.but(**{field: value}).packet(1 + 2 * MSS, bytes(MSS))
    o1, o2 = coalesce(a + [b])
    assert_merge(o1, a)
    assert_passed(o2, b)


def test_equal_tcp_options_merge_and_are_kept() -> None:
    f = F4.but(options=b"\x01\x01\x08\x0a" + struct.pack("!II", 123456, 654321))
    pkts = f.stream(1, [MSS - 12] * 5)
    (o,) = coalesce(pkts)
    assert_merge(o, pkts)
    assert o.hdr_len == 52


def test_timestamps_differing_split_the_run() -> None:
    ts = [F4.but(options=b"\x01\x01\x08\x0a" + struct.pack("!II", t, 9)) for t in (1, 1, 2, 2)]
    pkts = [f.packet(1 + i * 1000, bytes(1000), ident=i) for i, f in enumerate(ts)]
    o1, o2 = coalesce(pkts)
    assert_merge(o1, pkts[:2])
    assert_merge(o2, pkts[2:])


def test_mf_set_is_not_a_candidate_and_df_must_match() -> None:
    f = F4
    frag = f.packet(1 + MSS, bytes(MSS), mf=True, ident=1)
    offset = f.packet(1 + 2 * MSS, bytes(MSS), frag=100, ident=2)
    a = f.packet(1, bytes(MSS))
    outs = coalesce([a, frag, offset])
    assert [o.ip for o in outs] == [a, frag, offset] and not any(o.merged for o in outs)
    nodf = F4.but(df=False).stream(1, [MSS] * 3)
    (o,) = coalesce(nodf)  # DF clear on all of them: merges
    assert_merge(o, nodf)


def test_sequence_numbers_wrap_around() -> None:
    pkts = F4.stream(0xFFFFFFFF - 2 * MSS + 100, [MSS] * 6)
    assert tcp_seq(pkts[-1]) < tcp_seq(pkts[0])
    (o,) = coalesce(pkts[::-1])
    assert_merge(o, pkts)


@pytest.mark.parametrize("fam", [4, 6])
def test_at_most_64_kb_per_superpacket(fam: int) -> None:
    pkts = Flow(fam).stream(1, [MSS] * 60)  # 84 KB of payload
    outs = coalesce(pkts)
    hl = 40 if fam == 4 else 60
    per = (65535 - hl) // MSS  # 46
    assert [len(o.ip) for o in outs] == [hl + per * MSS, hl + (60 - per) * MSS]
    assert_merge(outs[0], pkts[:per])
    assert_merge(outs[1], pkts[per:])


def test_max_size_and_max_segments_cap_a_merge() -> None:
    pkts = F4.stream(1, [1000] * 10)
    assert [o.ip for o in coalesce(pkts, max_size=40 + 3000)] == \
        [o.ip for o in coalesce(pkts, max_segments=3)]
    outs = coalesce(pkts, max_segments=3)
    assert [len(resegment(o)) for o in outs] == [3, 3, 3, 1]
    assert not outs[3].merged
    assert all(not o.merged for o in coalesce(pkts, max_segments=1))
    assert all(not o.merged for o in coalesce(pkts, max_size=1039))


def test_merges_fit_the_out_slot() -> None:
    pkts = F4.stream(1, [MSS] * 10)
    outs = coalesce(pkts, slot_size=10 + 40 + 3 * MSS)
    assert [len(resegment(o)) for o in outs] == [3, 3, 3, 1]


def test_a_shorter_segment_ends_the_run_and_a_longer_one_starts_a_new_one() -> None:
    f = F4
    sizes = [MSS, MSS, 500, MSS, MSS, 1500, 1500]
    pkts = f.stream(1, sizes)
    o1, o2, o3 = coalesce(pkts)
    assert_merge(o1, pkts[:3])
    assert_merge(o2, pkts[3:5])
    assert_merge(o3, pkts[5:])


@pytest.mark.parametrize("flags", [SYN | ACK, FIN | ACK, RST | ACK, URG | ACK, ACK | 0x40,
                                   ACK | 0x80, PSH, 0], ids=lambda f: hex(f))
def test_tcp_flags_other_than_ack_and_psh_pass_through(flags: int) -> None:
    pkts = F4.stream(1, [MSS] * 2)
    odd = F4.packet(1 + 2 * MSS, bytes(MSS), flags=flags, ident=2)
    o1, o2 = coalesce(pkts + [odd])
    assert_merge(o1, pkts)
    assert_passed(o2, odd)


def test_non_candidates_pass_through_in_place() -> None:
    pkts = F4.stream(1, [MSS] * 4)
    reverse_ack = F4.but(src=F4.dst, dst=F4.src, sport=F4.dport, dport=F4.sport).packet(1, b"")
    icmp = bytes.fromhex("4500001c0001000040017ce00a0100010a010002") + b"\x08\x00\xf7\xff" \
        + bytes(4)
    v6ext = bytearray(F6.packet(1, bytes(100)))
    v6ext[6] = 0  # next header: hop-by-hop
    garbage = [b"\x00", b"\x45" + bytes(10), b"\x60" + bytes(30), os.urandom(1500)]
    seq = [pkts[0], reverse_ack, pkts[1], icmp, bytes(v6ext), pkts[2], *garbage, pkts[3]]
    outs = coalesce(seq)
    assert_merge(outs[0], pkts)
    assert [o.ip for o in outs[1:]] == [reverse_ack, icmp, bytes(v6ext), *garbage]


@pytest.mark.parametrize("fam", [4, 6])
@pytest.mark.parametrize("flags", [ACK, FIN | ACK, RST | ACK, SYN | ACK, URG | ACK, ACK | 0x80],
                         ids=["pure-ack", "fin", "rst", "syn", "urg", "cwr"])
def test_a_packet_of_the_flow_that_cannot_merge_is_a_barrier(fam: int, flags: int) -> None:
    """As a flush in the kernel's GRO: nothing after it merges with anything before it,
    even when the sequence numbers would fit (and no reordering across it)."""
    f = Flow(fam)
    pkts = f.stream(1, [MSS] * 6)
    barrier = f.packet(1 + 6 * MSS, b"" if flags == ACK else b"x", flags=flags)
    o1, o2, o3 = coalesce(pkts[:3] + [barrier] + pkts[3:])
    assert_merge(o1, pkts[:3])
    assert_passed(o2, barrier)
    assert_merge(o3, pkts[3:])
    # out of order: put in place after the barrier, never across it
    o1, o2, o3, o4 = coalesce([pkts[1], barrier, pkts[0], pkts[3], pkts[2]])
    assert_passed(o1, pkts[1])
    assert_passed(o2, barrier)
    assert_passed(o3, pkts[0])
    assert_merge(o4, pkts[2:4])


def test_many_barriers_cut_a_flow_into_pieces() -> None:
    pkts = F4.stream(1, [100] * 200)
    ack = F4.packet(0, b"")
    seq = [p for i, p in enumerate(pkts) for p in ([p, ack] if i % 4 == 3 else [p])]
    outs = coalesce(seq, capacity=1024)
    merged = [o for o in outs if o.merged]
    assert len(merged) == 50
    for k, o in enumerate(merged):
        assert_merge(o, pkts[4 * k:4 * k + 4])


def test_ip_length_not_matching_the_buffer_passes_through() -> None:
    pkts = F4.stream(1, [MSS] * 3)
    padded = pkts[1] + b"\0\0"
    v6 = F6.stream(1, [MSS] * 2)
    v6pad = v6[1] + b"\0"
    outs = coalesce([pkts[0], padded, pkts[2], v6[0], v6pad])
    assert [o.ip for o in outs] == [pkts[0], padded, pkts[2], v6[0], v6pad]


def test_single_packets_pass_through_unchanged_with_a_zero_header() -> None:
    pkts = [F4.packet(1, bytes(MSS)), F6.packet(1, bytes(10)), F4.but(proto=UDP).packet(0, b"x")]
    outs = coalesce(pkts, udp=True)
    assert [o.ip for o in outs] == pkts
    assert all(o[:6] == (0, 0, 0, 0, 0, 0) for o in outs)


# -- UDP ------------------------------------------------------------------------------------

U4, U6 = F4.but(proto=UDP, dport=53), F6.but(proto=UDP, dport=53)


def udp_stream(f: Flow, sizes: list[int]) -> list[bytes]:
    return [f.packet(0, bytes([i]) * n, ident=i) for i, n in enumerate(sizes)]


@pytest.mark.parametrize("fam", [4, 6])
def test_udp_merges_only_when_asked(fam: int) -> None:
    pkts = udp_stream(U4 if fam == 4 else U6, [1200] * 5 + [300])
    assert [o.ip for o in coalesce(pkts)] == pkts
    (o,) = coalesce(pkts, udp=True)
    assert_merge(o, pkts)


def test_udp_is_never_reordered() -> None:
    a = udp_stream(U4, [1000] * 3)
    small = U4.packet(0, b"s" * 10, ident=3)
    b = [U4.packet(0, bytes([9]) * 1000, ident=4 + i) for i in range(2)]
    outs = coalesce(a + [small] + b, udp=True)
    assert_merge(outs[0], a + [small])  # a shorter datagram may end a run
    assert_merge(outs[1], b)            # but nothing joins after it


def test_udp_bad_checksum_keeps_its_place() -> None:
    pkts = udp_stream(U4, [800] * 5)
    bad = U4.packet(0, bytes([2]) * 800, bad=True, ident=2)
    pkts[2] = bad
    o1, o2, o3 = coalesce(pkts, udp=True)
    assert_merge(o1, pkts[:2])
    assert_passed(o2, bad)
    assert_merge(o3, pkts[3:])


def test_udp_zero_checksum_is_left_alone() -> None:
    pkts = udp_stream(U4, [500] * 3)
    zero = bytearray(pkts[1])
    zero[26:28] = b"\0\0"  # IPv4 UDP without a checksum
    outs = coalesce([pkts[0], bytes(zero), pkts[2]], udp=True)
    assert [o.ip for o in outs] == [pkts[0], bytes(zero), pkts[2]]


def test_udp_and_tcp_of_the_same_ports_are_different_flows() -> None:
    t = F4.stream(1, [MSS] * 3)
    u = udp_stream(F4.but(proto=UDP), [MSS] * 3)
    o1, o2 = coalesce([t[0], u[0], t[1], u[1], t[2], u[2]], udp=True)
    assert_merge(o1, t)
    assert_merge(o2, u)


# -- output layout ----------------------------------------------------------------------

@pytest.mark.parametrize("size", [10, 12, 20])
def test_vnet_hdr_size_is_honoured(size: int) -> None:
    pkts = F4.stream(1, [MSS] * 3)
    (o,) = coalesce(pkts, vnet_hdr_size=size)
    assert_merge(o, pkts)


def test_headroom_is_left_free_and_a_packetbatch_is_accepted() -> None:
    pkts = F6.stream(1, [MSS] * 4)
    src = tuntap.PacketBatch(8, 2048)
    for p in pkts:
        src.append(p)
    out = tuntap.PacketBatch(4, 65600, headroom=16)
    assert tuntap.coalesce(src, out) == 1
    assert bytes(out.slot(0)[:16]) == bytes(16)
    assert_merge(outputs(out)[0], pkts)


def test_any_bytes_like_items_and_tuples() -> None:
    pkts = F4.stream(1, [MSS] * 3)
    for seq in ([bytearray(pkts[0]), memoryview(pkts[1]), pkts[2]], tuple(pkts)):
        (o,) = coalesce(seq)
        assert_merge(o, pkts)


def test_empty_input_gives_nothing_and_clears_out() -> None:
    out = tuntap.PacketBatch(4, 2048)
    out.append(b"\x45" + bytes(30))
    assert tuntap.coalesce([], out) == 0
    assert len(out) == 0


def test_inputs_are_not_modified() -> None:
    pkts = [bytearray(p) for p in F4.stream(1, [MSS] * 5, psh_last=True)]
    before = [bytes(p) for p in pkts]
    coalesce(pkts)
    assert [bytes(p) for p in pkts] == before


# ---------------------------------------------------------------------------------------
# Bad arguments
# ---------------------------------------------------------------------------------------

def test_out_too_small_is_refused_and_left_as_it_was() -> None:
    out = tuntap.PacketBatch(2, 2048)
    out.append(b"\x45" + bytes(39))
    pkts = [F4.packet(1, bytes(10)), F6.packet(1, bytes(10)), b"\x45" + bytes(19)]
    with pytest.raises(ValueError, match="more output packets than the batch capacity"):
        tuntap.coalesce(pkts, out)
    assert len(out) == 1 and bytes(out[0]) == b"\x45" + bytes(39)


def test_a_passed_through_packet_larger_than_a_slot_is_refused() -> None:
    out = tuntap.PacketBatch(4, 1000)
    with pytest.raises(ValueError, match="does not fit in a batch slot"):
        tuntap.coalesce([F4.packet(1, bytes(980))], out)  # 1020 + 10 > 1000
    assert len(out) == 0
    assert tuntap.coalesce([F4.packet(1, bytes(950))], out) == 1  # 990 + 10 fits


@pytest.mark.parametrize("kw, msg", [
    (dict(vnet_hdr_size=9), "vnet_hdr_size must be between 10 and 64, not 9"),
    (dict(vnet_hdr_size=65), "vnet_hdr_size must be between 10 and 64, not 65"),
    (dict(max_size=0), "max_size must be between 1 and 65535, not 0"),
    (dict(max_size=65536), "max_size must be between 1 and 65535, not 65536"),
    (dict(max_segments=0), "max_segments must be between 1 and 65535, not 0"),
    (dict(max_segments=65536), "max_segments must be between 1 and 65535, not 65536"),
])
def test_bad_keyword_values_raise_valueerror(kw: dict[str, int], msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        tuntap.coalesce([F4.packet(1, b"x")], tuntap.PacketBatch(4, 2048), **kw)


def test_an_empty_packet_raises_valueerror() -> None:
    out = tuntap.PacketBatch(4, 2048)
    with pytest.raises(ValueError, match="an input packet is empty"):
        tuntap.coalesce([F4.packet(1, b"x"), b""], out)


def test_packets_inside_out_are_refused() -> None:
    out = tuntap.PacketBatch(4, 2048)
    out.append(F4.packet(1, b"x"))
    with pytest.raises(ValueError, match="the packets lie inside the destination batch"):
        tuntap.coalesce(out, out)
    with pytest.raises(ValueError, match="packet 1 lies inside the destination batch"):
        tuntap.coalesce([F4.packet(1, b"y"), out[0]], out)
    assert len(out) == 1


@pytest.mark.parametrize("packets, out, msg", [
    (b"\x45" * 40, tuntap.PacketBatch(4, 2048), "takes a PacketBatch or a sequence"),
    ("abc", tuntap.PacketBatch(4, 2048), "takes a PacketBatch or a sequence"),
    (5, tuntap.PacketBatch(4, 2048), "must be a PacketBatch or a sequence"),
    ([b"\x45" * 40, 7], tuntap.PacketBatch(4, 2048), "item 1 must be a bytes-like object"),
    ([b"\x45" * 40], [], "must be tuntap._tuntap.PacketBatch"),
])
def test_wrong_types_raise_typeerror(packets: Any, out: Any, msg: str) -> None:
    with pytest.raises(TypeError, match=msg):
        tuntap.coalesce(packets, out)


def test_keywords_are_keyword_only_and_typed() -> None:
    out = tuntap.PacketBatch(4, 2048)
    with pytest.raises(TypeError):
        tuntap.coalesce([], out, 10)  # type: ignore[misc]
    with pytest.raises(TypeError):
        tuntap.coalesce([], out, max_size="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        tuntap.coalesce([], out, bogus=1)  # type: ignore[call-arg]


# ---------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------

FLOW_BASES = [F4, F6, F4.but(dst="10.1.0.3"), F6.but(sport=7), F4.but(ack=99), U4, U6,
              F4.but(options=b"\x01\x01\x08\x0a" + bytes(8))]


@st.composite
def traffic(draw: Any, udp: bool) -> tuple[list[bytes], list[tuple[Flow, list[bytes]]], bool]:
    """Random flows, each a run of segments; interleaved, maybe reordered, some spoiled."""
    bases = FLOW_BASES if udp else [f for f in FLOW_BASES if f.proto == TCP]
    nflows = draw(st.integers(1, 4))
    chosen = draw(st.lists(st.sampled_from(bases), min_size=nflows, max_size=nflows,
                           unique_by=lambda f: f.key + (f.ack, f.options)))
    flows = []
    for f in chosen:
        mss = draw(st.sampled_from([1, 7, 100, 536, 1400, 1448]))
        n = draw(st.integers(1, 24))
        sizes = [mss] * n
        if draw(st.booleans()):
            sizes[-1] = draw(st.integers(1, mss))
        if draw(st.integers(0, 3)) == 0:  # a shorter one in the middle
            sizes[draw(st.integers(0, n - 1))] = draw(st.integers(1, mss))
        seq = draw(st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([2**32 - 50, 0])))
        pkts = []
        off = 0
        for i, s in enumerate(sizes):
            psh = draw(st.integers(0, 9)) == 0 or (i == n - 1 and draw(st.booleans()))
            bad = draw(st.integers(0, 15)) == 0
            data = bytes((seq + off + k) & 0xFF for k in range(s))
            pkts.append(f.packet(seq + off, data, flags=ACK | (PSH if psh else 0),
                                 ident=i, bad=bad))
            off += s
        flows.append((f, pkts))
    reorder = draw(st.booleans()) and not udp
    streams = [list(p) for _, p in flows]
    if reorder:
        for s in streams:
            rnd = random.Random(draw(st.integers(0, 2**16)))
            if len(s) > 1:
                i = rnd.randrange(len(s) - 1)
                s[i], s[i + 1] = s[i + 1], s[i]
    order = draw(st.permutations([k for k, s in enumerate(streams) for _ in s]))
    pos = [0] * len(streams)
    mixed = []
    for k in order:
        mixed.append(streams[k][pos[k]])
        pos[k] += 1
    return mixed, flows, reorder


def flow_of(pkt: bytes) -> tuple[Any, ...]:
    off = 20 if pkt[0] >> 4 == 4 else 40
    proto = pkt[9] if off == 20 else pkt[6]
    hdr = pkt[:2] + pkt[6:10] + pkt[12:20] if off == 20 else pkt[:4] + pkt[6:40]
    if proto == TCP:
        return (hdr, pkt[off:off + 4], pkt[off + 8:off + 13], pkt[off + 14:off + 16],
                pkt[off + 18:off + (pkt[off + 12] >> 4) * 4])
    return (hdr, pkt[off:off + 4])


def check_properties(mixed: list[bytes], outs: list[Out], reorder: bool, udp: bool,
                     max_size: int = 65535, max_segments: int = 64) -> None:
    got: list[list[bytes]] = [resegment(o) for o in outs]
    flat = [p for g in got for p in g]
    # every packet comes back exactly once (IPv4 ids of merged ones renumbered)
    assert len(flat) == len(mixed)
    remaining = list(mixed)
    for o, g in zip(outs, got):
        for p in g:
            match = next((i for i, q in enumerate(remaining)
                          if (q == p if not o.merged else same_but_ipv4_id(q, p))), None)
            assert match is not None, "an output packet that was not in the input"
            del remaining[match]
    for o, g in zip(outs, got):
        if not o.merged:
            continue
        # one flow per merge; all members valid; sizes and caps; stream order
        assert len({flow_of(p) for p in g}) == 1, "packets of different flows merged"
        assert all(l4_ok(p) for p in g), "a packet with a bad checksum merged"
        assert len(o.ip) <= max_size and len(g) <= max_segments
        assert o.ip[9 if o.ip[0] >> 4 == 4 else 6] == (UDP if udp and o.gso_type == 5 else TCP)
        if o.gso_type != 5:
            seqs = [tcp_seq(p) for p in g]
            assert all((b - a) & 0xFFFFFFFF == len(payload_of(p))
                       for a, b, p in zip(seqs, seqs[1:], g))
            assert all(not tcp_flags(p) & PSH for p in g[:-1])
    # per flow: the data comes out in the order it went in (in sequence order when the
    # input was reordered)
    for key in {flow_of(p) for p in mixed}:
        sent = [payload_of(p) for p in mixed if flow_of(p) == key]
        recv = [payload_of(p) for p in flat if flow_of(p) == key]
        if reorder:
            assert sorted(sent) == sorted(recv)
        else:
            assert sent == recv


@given(traffic(udp=False))
def test_property_segment_of_coalesce_gives_the_tcp_packets_back(
        t: tuple[list[bytes], list[Any], bool]) -> None:
    mixed, _, reorder = t
    check_properties(mixed, coalesce(mixed), reorder, False)


@given(traffic(udp=True), st.sampled_from([65535, 3000, 200]), st.integers(2, 64))
def test_property_with_udp_and_caps(t: tuple[list[bytes], list[Any], bool], max_size: int,
                                    max_segments: int) -> None:
    mixed, _, reorder = t
    outs = coalesce(mixed, udp=True, max_size=max_size, max_segments=max_segments)
    check_properties(mixed, outs, reorder, True, max_size, max_segments)


@given(traffic(udp=False))
def test_property_in_order_clean_flows_merge_maximally(
        t: tuple[list[bytes], list[Any], bool]) -> None:
    """Without reordering, spoiled packets, PSH or short segments in the middle, each flow
    becomes ceil(size / 64 KB) super-packets."""
    _, flows, _ = t
    for f, pkts in flows:
        clean = [f.packet(tcp_seq(p), payload_of(p), ident=i) for i, p in enumerate(pkts)]
        sizes = [len(payload_of(p)) for p in clean]
        if any(s != sizes[0] for s in sizes[:-1]) or len(sizes) < 2 or sizes[-1] > sizes[0]:
            continue
        outs = coalesce(clean)
        hl = len(clean[0]) - sizes[0]
        per = min(64, (65535 - hl) // sizes[0])
        assert len(outs) == -(-len(clean) // per)
        assert [p for o in outs for p in resegment(o)] == clean
