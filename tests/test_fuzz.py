"""Property tests (hypothesis) over every public entry point: garbage in, only documented
exceptions out, never a crash.

Every generated call runs in a worker process (tests/fuzz_worker.py) so that a segfault
or abort is a test failure that names the input, and the worker is started again. The
properties: the call returns, or raises one of the exceptions its documentation lists
(an AssertionError raised by a check inside the worker is a failure too).

Example counts: 150 per property, derandomized under CI (conftest.py's ``ci`` profile);
randomized elsewhere; 10,000 under TUNTAP_SOAK=1 (tools/soak.sh).
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import tuntap  # noqa: E402
from netutil import unique_name  # noqa: E402
from soakutil import SOAK, record  # noqa: E402

# On top of conftest.py's profile (derandomized, no example database under CI): this
# module's example count, 150, or 10,000 under tools/soak.sh.
PROFILE = "soak" if SOAK else "ci" if os.environ.get("CI") else "dev"
EXAMPLES = 10_000 if SOAK else 150
fuzz = settings(max_examples=EXAMPLES, deadline=None, database=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])

WORKER = Path(__file__).with_name("fuzz_worker.py")
VALUE = {"ValueError", "TypeError", "OverflowError"}
OS = VALUE | {"OSError"}


class Worker:
    """The worker process and its device names; restarted after a crash."""

    def __init__(self) -> None:
        self.prefix = unique_name("fz")[:10]
        self.proc: subprocess.Popen[bytes] | None = None
        self.calls = 0
        self.crashes: list[str] = []
        self.outcomes: Counter[str] = Counter()   # "op: ok" / "op: ValueError" ...

    def start(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
        self.proc = subprocess.Popen([sys.executable, str(WORKER), self.prefix],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        return self.proc

    def call(self, op: str, *args: Any) -> tuple[Any, ...]:
        proc = self.proc if self.proc and self.proc.poll() is None else self.start()
        assert proc.stdin and proc.stdout
        data = pickle.dumps((op, args))
        self.calls += 1
        try:
            proc.stdin.write(struct.pack("!I", len(data)) + data)
            proc.stdin.flush()
            head = proc.stdout.read(4)
            if len(head) == 4:
                return pickle.loads(proc.stdout.read(struct.unpack("!I", head)[0]))
        except BrokenPipeError:
            pass
        rc = proc.wait(10)
        err = proc.stderr.read().decode(errors="replace")[-3000:] if proc.stderr else ""
        self.close()
        self.crashes.append(op)
        pytest.fail(f"the worker died (exit {rc}) running {op}{args!r}\n{err}", pytrace=False)

    def close(self) -> None:
        if self.proc is None:
            return
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f:
                f.close()
        self.proc.wait(10)
        self.proc = None


@pytest.fixture(scope="module")
def worker(_tun_env: Any) -> Iterator[Worker]:
    # module scope: set up before the namespace guard, so ask for the namespace itself
    if not _tun_env.available:
        pytest.skip(_tun_env.reason)
    w = Worker()
    yield w
    w.close()
    record(f"fuzz ({PROFILE} profile)", calls=w.calls,
           crashes=len(w.crashes), examples_per_property=EXAMPLES,
           outcomes=dict(sorted(w.outcomes.items())))


def check(worker: Worker, allowed: set[str], op: str, *args: Any) -> tuple[Any, ...]:
    """Run op in the worker: it returns, or raises one of `allowed` (class names)."""
    reply = worker.call(op, *args)
    worker.outcomes[f"{op}: {'ok' if reply[0] == 'ok' else reply[1][0]}"] += 1
    if reply[0] == "exc":
        mro, msg = reply[1], reply[2]
        assert allowed & set(mro), f"{op}{args!r} raised {mro[0]}: {msg}"
        assert msg, f"{op}{args!r} raised {mro[0]} with an empty message"
    return reply


@pytest.mark.needs_tun
def test_a_crash_in_the_worker_fails_the_test_and_names_the_input(worker: Worker) -> None:
    """The harness itself: a call that kills the worker is a failure that shows the call.
    (SIGKILL stands for the crash: a SIGSEGV would be reported by ASan in the sanitized
    run, which counts every report as a failure.)"""
    with pytest.raises(pytest.fail.Exception) as ei:
        worker.call("selftest_crash", 9)
    assert "exit -9" in str(ei.value) and "selftest_crash(9,)" in str(ei.value)
    assert check(worker, VALUE, "vnet_parse", bytes(10), 10)[0] == "ok"   # restarted
    worker.crashes.remove("selftest_crash")


# -- strategies ----------------------------------------------------------------------

def alt(*strategies: Any) -> Any:
    """one_of() that counts as one branch inside another one_of() (which flattens nested
    ones, so the eight kinds of junk would outweigh everything else)."""
    return st.one_of(*strategies).map(lambda x: x)


def mostly(good: Any, bad: Any, percent_bad: int = 15) -> Any:
    """`good` values, and `bad` ones `percent_bad` % of the time: well-typed calls reach
    the code behind the type checks; the junk still gets its share."""
    # the simplest choice (0, what hypothesis falls back to and shrinks towards) is good
    return st.integers(0, 99).flatmap(lambda i: bad if i >= 100 - percent_bad else good)


ints = alt(st.integers(-3, 70_000), st.integers(-(2**70), 2**70),
                 st.sampled_from([0, 1, -1, 2**31 - 1, 2**31, 2**32 - 1, 2**63 - 1, 2**63,
                                  -(2**63), 2**64]))
floats = alt(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(
    [float("nan"), float("inf"), -float("inf"), -0.0, 1e-12, 9.2e9, 1e300]))
junk = alt(st.none(), st.booleans(), ints, floats, st.text(max_size=20),
           st.binary(max_size=64), st.tuples(st.integers()), st.just(object))
small_bytes = st.binary(min_size=0, max_size=1600)
bytes_like = alt(small_bytes, small_bytes.map(lambda b: ("ba", b)),
                       small_bytes.map(lambda b: ("mv", b)))
roomy = st.tuples(st.sampled_from([64, 70, 128]), st.sampled_from([1500, 2048, 9100]),
                  st.sampled_from([0, 12, 64]))
geometry = alt(st.tuples(st.integers(1, 70), st.integers(1, 2100), st.integers(0, 64)),
               roomy)


@st.composite
def batches(draw: Any, packets: Any = small_bytes,
            shape: Any = geometry) -> tuple[str, tuple[Any, ...]]:
    cap, slot, head = draw(shape)
    return ("batch", (cap, slot, head, draw(st.lists(packets, max_size=min(cap, 8)))))


def ipv4(proto: int, l4: bytes, draw: Any, sane: bool) -> bytes:
    ihl = 5 if sane else draw(st.sampled_from([5, 6, 0, 4, 15]))
    total = 20 + len(l4) if sane else draw(st.sampled_from([0, 65535, 20 + len(l4) + 1,
                                                            draw(st.integers(0, 65535))]))
    frag = draw(st.sampled_from([0x4000, 0]) if sane else st.sampled_from([0x2000, 0x1fff,
                                                                          0xffff]))
    hdr = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, draw(st.integers(0, 255)), total & 0xFFFF,
                      draw(st.integers(0, 65535)), frag, 64, proto, 0,
                      bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    return hdr + bytes(max(ihl * 4 - 20, 0)) + l4


def ipv6(proto: int, l4: bytes, draw: Any, sane: bool) -> bytes:
    plen = len(l4) if sane else draw(st.sampled_from([0, 65535, len(l4) + 1,
                                                      draw(st.integers(0, 65535))]))
    nh = proto if sane else draw(st.sampled_from([0, 43, 44, 60, 59, proto]))
    return struct.pack("!IHBB16s16s", 0x60000000, plen & 0xFFFF, nh, 64,
                       bytes(15) + b"\1", bytes(15) + b"\2") + l4


@st.composite
def packets(draw: Any) -> bytes:
    """A virtio-net header, an IPv4/IPv6 header and a TCP/UDP header, and a payload: most
    of them consistent (a real GSO super-packet or partial checksum), the rest with any
    field wrong in any way; one in ten plain random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=200))
    sane = draw(st.integers(0, 2)) > 0
    payload = draw(st.binary(max_size=3000))
    proto = draw(st.sampled_from([6, 17]) if sane else st.sampled_from([6, 17, 1, 255]))
    if proto == 6:
        off = 5 if sane else draw(st.sampled_from([5, 8, 15, 0, 4]))
        l4 = struct.pack("!HHIIBBHHH", 1, 2, draw(st.integers(0, 2**32 - 1)), 0, off << 4,
                         draw(st.integers(0, 255)), 65535, 0, 0) + bytes(max(off * 4 - 20, 0))
    elif proto == 17:
        ulen = 8 + len(payload) if sane else draw(st.sampled_from([0, 7, 65535, 8]))
        l4 = struct.pack("!HHHH", 1, 2, ulen & 0xFFFF, 0)
    else:
        l4 = b""
    v4 = draw(st.booleans())
    ip = (ipv4 if v4 else ipv6)(proto, l4 + payload, draw, sane)
    iphl = 20 if v4 else 40
    if sane:
        gso = draw(st.sampled_from([0, (1 if v4 else 4) if proto == 6 else 5]))
        if proto == 6 and draw(st.booleans()):
            gso |= 0x80
        flags = draw(st.sampled_from([0, 1]))
        hdr_len = draw(st.sampled_from([0, iphl + len(l4)]))
        gso_size = draw(st.sampled_from([1, 8, 100, 536, 1000, 1448, 9000])) if gso else 0
        csum_start, csum_offset = iphl, 16 if proto == 6 else 6
    else:
        flags = draw(st.sampled_from([0, 1, 2, 3, 4, 255]))
        gso = draw(st.sampled_from([0, 1, 4, 5, 3, 0x81, 0x84, 0x85, 2, 6, 255]))
        hdr_len = draw(st.sampled_from([0, 40, 54, 60, 65535, draw(st.integers(0, 65535))]))
        gso_size = draw(st.sampled_from([0, 1, 8, 1448, 65535, draw(st.integers(0, 65535))]))
        csum_start = draw(st.sampled_from([0, 20, 40, 65535, draw(st.integers(0, 65535))]))
        csum_offset = draw(st.sampled_from([6, 16, 0, 65535, draw(st.integers(0, 65535))]))
    vnet = struct.pack("=BBHHHH", flags, gso, hdr_len, gso_size, csum_start, csum_offset)
    return vnet + ip


# -- properties ----------------------------------------------------------------------

plausible = st.text(alphabet="abcdefxyz0123456789%d-_.", min_size=1, max_size=15)
names = mostly(st.one_of(plausible, st.text(max_size=20), st.sampled_from(
    ["", "tun%d", "tap%d", "%d%d", "lo", ".", "..", "a/b", "a b", "x" * 15, "x" * 16, "é" * 8,
     "a\x00b", "a:b", "\t"])), alt(st.binary(max_size=8), st.none(), ints))
_extra = [int(f) for f in tuntap.Flags if f not in (tuntap.Flags.TUN, tuntap.Flags.TAP)]
good_flags = st.sampled_from([0x0001, 0x0002]).flatmap(lambda base: st.sets(
    st.sampled_from(_extra)).map(lambda extra: base | sum(extra)))
flag_values = mostly(good_flags, ints, 30) | st.sampled_from(
    [int(f) for f in tuntap.Flags] + [0x0001 | 0x1000, 0x0002 | 0x1000, 0x0003, 0x0800 | 1,
                                       0x0001 | 0x0100 | 0x1000, 0xFFFF, 0x10000])
paths = st.sampled_from(["/dev/net/tun"] * 6 + ["/nonexistent/tun", "", "/dev/null",
                                                  "relative", "a\x00b", b"/dev/net/tun", 5,
                                                  None])
netns = mostly(st.none(), alt(st.integers(-2, 100), st.sampled_from(
    ["", "no-such-netns", "/proc/self/ns/net", "/proc/self/ns/uts", "a\x00b", b"x"]), floats),
    30)


@pytest.mark.needs_tun
@fuzz
@given(name=names, flags=flag_values, blocking=mostly(st.booleans(), junk), ns=netns,
       path=paths)
def test_device_arguments(worker: Worker, name: Any, flags: Any, blocking: Any, ns: Any,
                          path: Any) -> None:
    kw: dict[str, Any] = {"name": name, "flags": flags, "blocking": blocking, "netns": ns,
                          "path": path}
    if blocking is object:
        kw.pop("blocking")
    check(worker, OS, "device_new", kw)


@pytest.mark.needs_tun
@fuzz
@given(args=st.lists(mostly(st.integers(-2, 5000), alt(ints, junk)), max_size=3),
       headroom=mostly(st.one_of(st.none(), st.integers(-2, 5000)), alt(ints, junk)))
def test_packet_batch_geometry(worker: Worker, args: list[Any], headroom: Any) -> None:
    kw = {} if headroom is None else {"headroom": headroom}
    clean = [a for a in args if a is not object]
    check(worker, VALUE | {"MemoryError"}, "batch_new", tuple(clean), kw)


@pytest.mark.needs_tun
@fuzz
@given(spec=batches(), data=mostly(bytes_like, junk))
def test_packet_batch_append(worker: Worker, spec: Any, data: Any) -> None:
    if data is object:
        data = None
    check(worker, VALUE | {"BufferError"}, "append", spec[1], data)


@pytest.mark.needs_tun
@fuzz
@given(kind=st.sampled_from(["tun", "vnet", "tap"]),
       arg=mostly(batches(), alt(junk.filter(lambda x: x is not object),
                                 st.lists(bytes_like, max_size=3))))
def test_read_batch_wrong_types_and_sizes(worker: Worker, kind: str, arg: Any) -> None:
    check(worker, OS, "read_batch", kind, arg)


good_packets = st.binary(min_size=20, max_size=1500).map(lambda b: b"\x45" + b[1:])
write_items = st.one_of(good_packets, good_packets, bytes_like, st.sampled_from(
    [b"\x45" + bytes(39), b"\x60" + bytes(47), b"", "str", 5, None]))


@pytest.mark.needs_tun
@fuzz
@given(kind=st.sampled_from(["tun", "vnet", "tap"]),
       arg=st.one_of(batches(good_packets), st.lists(good_packets, max_size=140),
                     batches(), st.lists(write_items, max_size=140),
                     st.lists(write_items, max_size=5).map(lambda x: ("tuple", x)),
                     junk.filter(lambda x: x is not object)))
def test_write_batch_wrong_types_and_sizes(worker: Worker, kind: str, arg: Any) -> None:
    check(worker, OS, "write_batch", kind, arg)


@pytest.mark.needs_tun
@fuzz
@given(packet=packets(), spec=batches(st.just(b""), mostly(roomy, geometry, 30)),
       hdr=mostly(st.sampled_from([None, 10]), alt(
           st.sampled_from([12, 9, 0, -1, 256, 257, 2**40]), st.integers(10, 40)), 20))
def test_segment_random_virtio_and_ip_headers(worker: Worker, packet: bytes, spec: Any,
                                              hdr: Any) -> None:
    kw = {} if hdr is None else {"vnet_hdr_size": hdr}
    check(worker, VALUE, "segment", packet, spec[1], kw)


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


SRC4, DST4 = bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2])
SRC6, DST6 = bytes(15) + b"\1", bytes(15) + b"\2"


def _segment(v4: bool, proto: int, l4: bytes, ident: int) -> bytes:
    """An IP packet with correct lengths and checksums (IP header and TCP/UDP)."""
    at = 16 if proto == 6 else 6
    if v4:
        pseudo = SRC4 + DST4 + struct.pack("!BBH", 0, proto, len(l4))
    else:
        pseudo = SRC6 + DST6 + struct.pack("!IxxxB", len(l4), proto)
    c = _csum(pseudo + l4) or (0xFFFF if proto == 17 else 0)
    l4 = l4[:at] + struct.pack("!H", c) + l4[at + 2:]
    if not v4:
        return struct.pack("!IHBB16s16s", 0x60000000, len(l4), proto, 64, SRC6, DST6) + l4
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), ident & 0xFFFF, 0x4000, 64,
                      proto, 0, SRC4, DST4)
    return hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:] + l4


@st.composite
def flow(draw: Any) -> list[bytes]:
    """Consecutive segments of one TCP (or UDP) flow that coalesce() can merge, now and
    then with a field broken (a sequence gap, other flags, another size, a bad
    checksum)."""
    v4, tcp = draw(st.booleans()), draw(st.booleans())
    mss = draw(st.sampled_from([1, 100, 536, 1448]))
    seq, ident = draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 65535))
    out = []
    for i in range(draw(st.integers(1, 12))):
        size = mss if draw(st.integers(0, 9)) else draw(st.integers(0, 2 * mss))
        payload = bytes([i]) * size
        if tcp:
            flags = 0x10 if draw(st.integers(0, 9)) else draw(st.sampled_from([0x18, 0x11,
                                                                                0x12, 0x14]))
            l4 = struct.pack("!HHIIBBHHH", 1000, 2000, seq & 0xFFFFFFFF, 0, 5 << 4, flags,
                             65535, 0, 0) + payload
            seq += size if draw(st.integers(0, 19)) else draw(st.integers(-5, 5))
        else:
            l4 = struct.pack("!HHHH", 1000, 2000, 8 + size, 0) + payload
        pkt = bytearray(_segment(v4, 6 if tcp else 17, l4, ident + i))
        if not draw(st.integers(0, 29)):
            pkt[-1] ^= 0xFF                  # a bad TCP/UDP checksum
        out.append(bytes(pkt))
    return out


if hasattr(tuntap, "coalesce"):
    coalesce_kw = st.fixed_dictionaries({}, optional={
        "vnet_hdr_size": mostly(st.sampled_from([10, 12]), alt(ints, st.integers(0, 300))),
        "udp": st.booleans(),
        "max_size": mostly(st.sampled_from([65535, 9000, 3000, 1500]), ints),
        "max_segments": mostly(st.integers(1, 70), ints)})

    @pytest.mark.needs_tun
    @fuzz
    @given(pkts=alt(flow(), st.lists(packets().map(lambda p: p[10:]), max_size=8),
                    st.tuples(flow(), flow()).map(lambda t: t[0] + t[1])),
           spec=batches(st.just(b""), mostly(roomy, geometry, 30)), kw=coalesce_kw)
    def test_coalesce_random_ip_headers(worker: Worker, pkts: list[bytes], spec: Any,
                                        kw: dict[str, Any]) -> None:
        check(worker, VALUE, "coalesce", pkts, spec[1], kw)


@pytest.mark.needs_tun
@fuzz
@given(data=mostly(alt(st.binary(min_size=12, max_size=300), bytes_like),
                   junk.filter(lambda x: x is not object)),
       size=mostly(st.one_of(st.sampled_from([10, 12]), st.integers(8, 300)),
                   alt(ints, floats, junk.filter(lambda x: x is not object))))
def test_virtio_net_hdr_parse(worker: Worker, data: Any, size: Any) -> None:
    check(worker, VALUE, "vnet_parse", data, size)


field = mostly(st.one_of(st.integers(0, 255), st.integers(0, 65535)),
               alt(st.integers(-1, 70_000), st.sampled_from([-1, 256, 65536]), floats,
                   st.none()), 5)


@pytest.mark.needs_tun
@fuzz
@given(fields=st.fixed_dictionaries({}, optional={
    k: field for k in ("flags", "gso_type", "hdr_len", "gso_size", "csum_start",
                       "csum_offset", "num_buffers")}),
       size=mostly(st.one_of(st.sampled_from([10, 12]), st.integers(8, 300)), floats, 5))
def test_virtio_net_hdr_pack_roundtrip(worker: Worker, fields: dict[str, Any],
                                       size: Any) -> None:
    check(worker, VALUE, "vnet_pack", fields, size)


@pytest.mark.needs_tun
@fuzz
@given(value=mostly(alt(floats, st.integers(-5, 10**10)), alt(ints, junk.filter(
    lambda x: x is not object))))
def test_settimeout_nan_inf_negative(worker: Worker, value: Any) -> None:
    check(worker, VALUE, "settimeout", value)


@pytest.mark.needs_tun
@fuzz
@given(value=mostly(st.integers(0, 0x7F), alt(ints, junk.filter(lambda x: x is not object))))
def test_set_offload(worker: Worker, value: Any) -> None:
    check(worker, OS, "set_offload", value)


@pytest.mark.needs_tun
@fuzz
@given(value=mostly(st.integers(0, 300), alt(ints, junk.filter(lambda x: x is not object))))
def test_vnet_hdr_size(worker: Worker, value: Any) -> None:
    check(worker, OS, "vnet_hdr_size", value)


prefixed = st.tuples(st.ip_addresses(), st.integers(-1, 140)).map(lambda t: f"{t[0]}/{t[1]}")
addresses = st.one_of(
    mostly(alt(prefixed, st.ip_addresses().map(str)),
           alt(st.text(max_size=40), junk.filter(lambda x: x is not object))),
    st.sampled_from(["10.77.0.1/24", "fd00:77::1/64", "10.77.0.1/33", "::/0", "0.0.0.0/0",
                     "1.2.3.4/24\x00", "10.0.0.1 /24", "fe80::1%lo/64", "224.0.0.1/4"]))


@pytest.mark.needs_tun
@fuzz
@given(kind=st.sampled_from(["tun", "tap"]), add=st.booleans(), cidr=addresses,
       peer=mostly(st.none(), addresses, 30))
def test_add_and_remove_address_garbage(worker: Worker, kind: str, add: bool, cidr: Any,
                                        peer: Any) -> None:
    check(worker, OS, "address", kind, add, cidr, peer)
