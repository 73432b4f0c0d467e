"""Coalesced super-packets through the kernel: ``Device.write_batch(coalesce=True)``.

- Argument and device checks: exact exception classes and messages, nothing written.
- UDP: datagrams of several flows written coalesced into a ``VNET_HDR`` device with USO
  reach UDP sockets byte-exact and in order, and the device's rx counters show one packet
  per super-packet; an 8 MB transfer arrives whole (sha256). The kernel refuses a USO
  super-packet of more than ``UDP_MAX_SEGMENTS`` (128 on 6.18, 64 before) with EINVAL:
  that turns UDP merging off for the device
  (``coalesce_disabled``) and the datagrams are written one by one, none lost.
- TCP: an 8 MB transfer from namespace A (plain TUN, MTU-sized packets) to namespace B
  (``VNET_HDR`` + TSO) through a forwarder that coalesces A's packets before writing them
  to B arrives byte-exact (sha256), with B's rx counters showing fewer, larger packets;
  once through ``write_batch(coalesce=True)`` (IPv4, IPv6) and once through
  ``tuntap.coalesce()`` + ``write_batch()`` of its output (IPv4).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest

import tuntap
from grobuild import Flow, checksum, payload_of
from netutil import (
    ip,
    tcp_transfer,
    unique_name,
    unique_net,
    unique_net6,
    wait_ipv6_routes,
)

Flags = tuntap.Flags
Offload = tuntap.Offload
VNET_TUN = Flags.TUN | Flags.NO_PI | Flags.VNET_HDR
TSO = Offload.CSUM | Offload.TSO4 | Offload.TSO6
USO = Offload.CSUM | Offload.USO4 | Offload.USO6


def payload(pkt: bytes) -> bytes:
    return payload_of(pkt)


def checksum_ok(data: bytes) -> bool:
    return checksum(data) == 0


def rx(name: str, netns: str | None = None) -> tuple[int, int]:
    """(rx packets, rx bytes) of a link: for a TUN device, one packet per write."""
    r = ip("-s", "-j", "link", "show", "dev", name, netns=netns)
    stats = json.loads(r.stdout)[0]["stats64"]["rx"]
    return int(stats["packets"]), int(stats["bytes"])


def vnet_dev(open_device: Callable[..., Any], fam: int, offload: int) -> tuple[Any, str, str]:
    """A VNET_HDR TUN, up, with a local address and a remote one routed through it."""
    dev = open_device(unique_name("tco"), VNET_TUN)
    dev.set_offload(offload)
    ip("link", "set", dev.name, "addrgenmode", "none")
    dev.up()
    if fam == 4:
        net = unique_net()
        dev.add_address(f"{net.local}/32", peer=net.remote)
        return dev, net.local, net.remote
    local, remote = unique_net6()
    ip("addr", "add", f"{local}/128", "peer", f"{remote}/128", "dev", dev.name, "nodad")
    wait_ipv6_routes(dev.name, local, remote)
    return dev, local, remote


def recv_all(s: socket.socket, count: int) -> list[bytes]:
    got = []
    s.settimeout(2)
    try:
        while len(got) < count:
            got.append(s.recv(70000))
    except (TimeoutError, socket.timeout):  # socket.timeout: Python 3.9
        pass
    return got


def recv_iter(s: socket.socket, count: int) -> Any:
    """Up to ``count`` datagrams, ending early after 2 s of silence."""
    s.settimeout(2)
    for _ in range(count):
        try:
            yield s.recv(70000)
        except (TimeoutError, socket.timeout):
            return


def udp_socket(fam: int, local: str) -> socket.socket:
    s = socket.socket(socket.AF_INET if fam == 4 else socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
    s.bind((local, 0))
    return s


# ---------------------------------------------------------------------------------------
# Checks before anything is written
# ---------------------------------------------------------------------------------------

@pytest.mark.needs_tun
@pytest.mark.parametrize("flags", [Flags.TUN | Flags.NO_PI, Flags.TUN | Flags.VNET_HDR,
                                   Flags.TAP | Flags.NO_PI | Flags.VNET_HDR],
                         ids=["no-vnet", "packet-info", "tap"])
def test_coalesce_needs_a_tun_with_vnet_hdr_and_no_pi(open_device: Callable[..., Any],
                                                      flags: int) -> None:
    dev = open_device(unique_name(), flags)
    with pytest.raises(ValueError, match=f"needs a TUN device with VNET_HDR and NO_PI; "
                                         f"'{dev.name}' is not one"):
        dev.write_batch([Flow(4).packet(1, b"x")], coalesce=True)


@pytest.mark.needs_tun
def test_coalesce_needs_set_offload_first(open_device: Callable[..., Any]) -> None:
    dev = open_device(unique_name(), VNET_TUN)
    with pytest.raises(ValueError, match=r"call set_offload\(\) on '.*' first"):
        dev.write_batch([Flow(4).packet(1, b"x")], coalesce=True)


@pytest.mark.needs_tun
def test_write_batch_keyword_errors(open_device: Callable[..., Any]) -> None:
    dev, _, _ = vnet_dev(open_device, 4, TSO)
    pkt = [Flow(4).packet(1, b"x")]
    for bad in (0, 1024, -1):
        with pytest.raises(ValueError, match=f"max_segments must be between 1 and 1023, "
                                             f"not {bad}"):
            dev.write_batch(pkt, coalesce=True, max_segments=bad)
    with pytest.raises(ValueError, match=r"max_segments needs coalesce=True"):
        dev.write_batch(pkt, max_segments=8)
    with pytest.raises(TypeError, match="max_segments must be int, not str"):
        dev.write_batch(pkt, coalesce=True, max_segments="2")
    with pytest.raises(TypeError, match="unexpected keyword argument 'coalsce'"):
        dev.write_batch(pkt, coalsce=True)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="exactly one positional argument"):
        dev.write_batch(pkt, pkt)  # type: ignore[misc]
    with pytest.raises(TypeError, match="takes a PacketBatch or a sequence"):
        dev.write_batch(pkt[0], coalesce=True)
    with pytest.raises(TypeError, match="item 1 must be a bytes-like object"):
        dev.write_batch([pkt[0], 3], coalesce=True)


@pytest.mark.needs_tun
def test_an_empty_packet_is_refused_before_anything_is_written(
        open_device: Callable[..., Any]) -> None:
    dev, local, remote = vnet_dev(open_device, 4, TSO)
    before = rx(dev.name)
    pkts = Flow(4, src=remote, dst=local).stream(1, [1000] * 3)
    with pytest.raises(ValueError, match=r"write_batch\(\) of an empty packet \(item 3\)"):
        dev.write_batch(pkts + [b""], coalesce=True)
    assert rx(dev.name) == before


@pytest.mark.needs_tun
def test_coalesce_on_a_closed_device_raises_valueerror(open_device: Callable[..., Any]) -> None:
    dev, _, _ = vnet_dev(open_device, 4, TSO)
    dev.close()
    with pytest.raises(ValueError, match="I/O operation on closed device"):
        dev.write_batch([b"x"], coalesce=True)
    assert dev.coalesce_disabled == frozenset()  # plain state: still readable


# ---------------------------------------------------------------------------------------
# Which merges a device gets
# ---------------------------------------------------------------------------------------

@pytest.mark.needs_tun
@pytest.mark.parametrize("offload, fam, writes", [
    (TSO, 4, 1), (TSO, 6, 1),
    (Offload.CSUM | Offload.TSO4, 4, 1), (Offload.CSUM | Offload.TSO4, 6, 10),
    (Offload.CSUM | Offload.TSO6, 4, 10), (Offload.CSUM, 4, 10), (Offload(0), 6, 10),
], ids=["tso-4", "tso-6", "tso4-4", "tso4-6", "tso6-4", "csum-4", "none-6"])
def test_tcp_merges_follow_the_devices_tso_offloads(open_device: Callable[..., Any],
                                                    offload: int, fam: int,
                                                    writes: int) -> None:
    dev, local, remote = vnet_dev(open_device, fam, offload)
    # to a port nobody listens on: the kernel answers with RSTs, the writes still count
    pkts = Flow(fam, src=remote, dst=local, dport=9).stream(1, [1000] * 10)
    before = rx(dev.name)[0]
    assert dev.write_batch(pkts, coalesce=True) == 10
    assert rx(dev.name)[0] - before == writes
    assert dev.coalesce_disabled == frozenset()


@pytest.mark.needs_tun
@pytest.mark.parametrize("fam", [4, 6])
def test_udp_superpackets_reach_sockets_byte_exact_in_order(
        open_device: Callable[..., Any], fam: int) -> None:
    dev, local, remote = vnet_dev(open_device, fam, TSO | USO)
    socks = [udp_socket(fam, local) for _ in range(3)]
    try:
        flows = [Flow(fam, proto=17, src=remote, dst=local, sport=5000 + k,
                      dport=s.getsockname()[1]) for k, s in enumerate(socks)]
        sizes = [[1200] * 120, [1000] * 40 + [17], [1] * 90]
        sent = [[os.urandom(n) for n in sz] for sz in sizes]
        pkts = [[f.packet(0, d, ident=i) for i, d in enumerate(ds)] for f, ds in
                zip(flows, sent)]
        # interleave the flows, keeping each flow's order
        mixed = [p for i in range(120) for fp in pkts for p in fp[i:i + 1]]
        out = tuntap.PacketBatch(len(mixed), 65600)
        expect = tuntap.coalesce(mixed, out, udp=True)
        assert expect < len(mixed) // 10
        before = rx(dev.name)
        assert dev.write_batch(mixed, coalesce=True) == len(mixed)
        after = rx(dev.name)
        assert after[0] - before[0] == expect, "one rx packet per super-packet"
        assert after[1] - before[1] == sum(len(out[i]) - 10 for i in range(expect))
        for s, ds in zip(socks, sent):
            assert recv_all(s, len(ds)) == ds
        assert dev.coalesce_disabled == frozenset()
    finally:
        for s in socks:
            s.close()


@pytest.mark.needs_tun
@pytest.mark.parametrize("fam", [4, 6])
def test_an_8_mb_udp_transfer_of_superpackets_is_byte_exact(
        open_device: Callable[..., Any], fam: int) -> None:
    """8 MB of 1,400-byte datagrams written 64 at a time with coalesce=True reach a UDP
    socket complete and in order (sha256), as about one write per 46 datagrams."""
    dev, local, remote = vnet_dev(open_device, fam, TSO | USO)
    data = os.urandom(8 << 20)
    chunks = [data[i:i + 1400] for i in range(0, len(data), 1400)]
    got: dict[str, Any] = {}
    with udp_socket(fam, local) as s:
        s.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE (root): no overflow
        f = Flow(fam, proto=17, src=remote, dst=local, sport=6000, dport=s.getsockname()[1])

        def receive() -> None:
            h, n = hashlib.sha256(), 0
            for datagram in recv_iter(s, len(chunks)):
                h.update(datagram)
                n += 1
            got["sha"], got["n"] = h.hexdigest(), n

        rt = threading.Thread(target=receive)
        rt.start()
        before = rx(dev.name)[0]
        written = 0
        for i in range(0, len(chunks), 64):
            pkts = [f.packet(0, c, ident=i + k) for k, c in enumerate(chunks[i:i + 64])]
            written += dev.write_batch(pkts, coalesce=True)
        writes = rx(dev.name)[0] - before
        rt.join(30)
        assert not rt.is_alive()
    assert written == len(chunks)
    assert got["n"] == len(chunks)
    assert got["sha"] == hashlib.sha256(data).hexdigest()
    assert writes <= 2 * -(-len(chunks) // 64), writes  # two super-packets per 64 at most
    assert dev.coalesce_disabled == frozenset()


@pytest.mark.needs_tun
@pytest.mark.parametrize("fam", [4, 6])
def test_a_refused_udp_merge_turns_udp_off_and_loses_nothing(
        open_device: Callable[..., Any], fam: int) -> None:
    dev, local, remote = vnet_dev(open_device, fam, TSO | USO)
    with udp_socket(fam, local) as s:
        f = Flow(fam, proto=17, src=remote, dst=local, sport=4000, dport=s.getsockname()[1])
        sent = [os.urandom(8) for _ in range(600)]
        pkts = [f.packet(0, d, ident=i) for i, d in enumerate(sent)]
        before = rx(dev.name)[0]
        # 600 segments: more than any kernel's UDP_MAX_SEGMENTS, so virtio_net_hdr_to_skb
        # says EINVAL; the datagrams then go one by one
        assert dev.write_batch(pkts, coalesce=True, max_segments=600) == 600
        assert rx(dev.name)[0] - before == 600
        assert recv_all(s, 600) == sent
        assert dev.coalesce_disabled == frozenset({"udp"})
        # from now on UDP is written plain, TCP still merges
        before = rx(dev.name)[0]
        assert dev.write_batch(pkts[:50], coalesce=True) == 50
        assert rx(dev.name)[0] - before == 50
        assert recv_all(s, 50) == sent[:50]
        tcp = Flow(fam, src=remote, dst=local, dport=9).stream(1, [1000] * 5)
        before = rx(dev.name)[0]
        assert dev.write_batch(tcp, coalesce=True) == 5
        assert rx(dev.name)[0] - before == 1
        assert dev.coalesce_disabled == frozenset({"udp"})


@pytest.mark.needs_tun
def test_a_packet_the_kernel_refuses_raises_like_write_batch(
        open_device: Callable[..., Any]) -> None:
    dev, local, remote = vnet_dev(open_device, 4, TSO)
    good = Flow(4, src=remote, dst=local, dport=9).stream(1, [1000] * 3)
    with pytest.raises(OSError) as ei:  # IP version 0: the kernel's EINVAL, nothing merged
        dev.write_batch([b"\x00" * 40] + good, coalesce=True)
    assert ei.value.errno == errno.EINVAL
    assert "writev()" in str(ei.value) and dev.name in str(ei.value)
    assert dev.write_batch(good + [b"\x00" * 40], coalesce=True) == 3  # like send()
    assert dev.coalesce_disabled == frozenset()


# ---------------------------------------------------------------------------------------
# The kernel's own GSO splits our super-packets: every header field checked by the kernel
# ---------------------------------------------------------------------------------------

def _forwarding_pair(nsb: str, fam: int) -> tuple[Any, Any, str, str]:
    """In namespace nsb: a VNET_HDR TUN ``ingress`` (TSO, USO) and a plain TUN ``egress``
    without offloads, IP forwarding on. Returns them and the source / destination
    addresses of packets written into ingress that the kernel forwards out of egress."""
    dev_in = tuntap.Device(unique_name("gri"), VNET_TUN, netns=nsb)
    dev_out = tuntap.Device(unique_name("gre"), Flags.TUN | Flags.NO_PI, netns=nsb)
    dev_in.set_offload(TSO | USO)
    dev_out.set_offload(Offload(0))
    for dev in (dev_in, dev_out):
        ip("link", "set", dev.name, "addrgenmode", "none", netns=nsb)
        dev.up()
    if fam == 4:
        ip("netns", "exec", nsb, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        ip("netns", "exec", nsb, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0")
        dev_in.add_address("10.210.0.1/32", peer="10.210.0.2")
        dev_out.add_address("10.211.0.1/32", peer="10.211.0.2")
        return dev_in, dev_out, "10.210.0.2", "10.211.0.2"
    ip("netns", "exec", nsb, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
    for dev, a, b in ((dev_in, "fd00:210::1", "fd00:210::2"),
                      (dev_out, "fd00:211::1", "fd00:211::2")):
        ip("addr", "add", f"{a}/128", "peer", f"{b}/128", "dev", dev.name, "nodad", netns=nsb)
        wait_ipv6_routes(dev.name, a, b, netns=nsb)
    return dev_in, dev_out, "fd00:210::2", "fd00:211::2"


@pytest.mark.needs_tun
@pytest.mark.parametrize("fam", [4, 6])
@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_the_kernel_segments_forwarded_superpackets_back_into_the_originals(
        fam: int, proto: str, named_netns: str) -> None:
    """Super-packets forwarded by the kernel to a device without offloads are split by
    the kernel's software GSO, which completes the checksum from our csum_start/offset
    and pseudo-header sum: every packet read at the far side must be an original (TTL or
    hop limit one less) with valid checksums."""
    dev_in, dev_out, src, dst = _forwarding_pair(named_netns, fam)
    try:
        f = Flow(fam, proto=6 if proto == "tcp" else 17, src=src, dst=dst, dport=7)
        sizes = [1300] * 40 + [77]
        if proto == "tcp":
            pkts = f.stream(0xFFFFF000, sizes, data=os.urandom(sum(sizes)), psh_last=True)
        else:
            pkts = [f.packet(0, os.urandom(n), ident=i) for i, n in enumerate(sizes)]
        before = rx(dev_in.name, named_netns)[0]
        assert dev_in.write_batch(pkts, coalesce=True) == len(pkts)
        assert rx(dev_in.name, named_netns)[0] - before == 1
        dev_out.settimeout(2)
        got = []
        batch = tuntap.PacketBatch(64, 2048)
        while len(got) < len(pkts):
            try:
                n = dev_out.read_batch(batch)
            except TimeoutError:
                break
            got += [bytes(batch[i]) for i in range(n)]
        got = [p for p in got if (p[9] if fam == 4 else p[6]) == f.proto]
        hop = f.but(ttl=63, hlim=63)
        if proto == "tcp":
            want = hop.stream(0xFFFFF000, sizes, data=b"".join(payload(p) for p in pkts),
                              psh_last=True)
        else:
            want = [hop.packet(0, payload(p), ident=i) for i, p in enumerate(pkts)]
        assert len(got) == len(want)
        for g, w in zip(got, want):
            if fam == 4:  # the kernel numbers the ids of the segments itself
                assert g[:4] + g[6:10] + g[12:] == w[:4] + w[6:10] + w[12:]
                assert checksum_ok(g[:20])
            else:
                assert g == w
    finally:
        dev_in.close()
        dev_out.close()


# ---------------------------------------------------------------------------------------
# TCP through a coalescing forwarder
# ---------------------------------------------------------------------------------------

def _pump_coalesce(src: Any, dst: Any, stop: threading.Event, stats: dict[str, int],
                   via: str) -> None:
    """Plain device -> VNET_HDR device, coalescing what one read_batch() brings."""
    inb = tuntap.PacketBatch(64, 2048)
    out = tuntap.PacketBatch(64, 65600)
    src.settimeout(0.1)
    while not stop.is_set():
        try:
            n = src.read_batch(inb)
        except TimeoutError:
            continue
        stats["packets"] += n
        if via == "write_batch":
            dst.write_batch(inb, coalesce=True)
        else:
            stats["outputs"] += tuntap.coalesce(inb, out)
            dst.write_batch(out)


def _pump_segment(src: Any, dst: Any, stop: threading.Event) -> None:
    """VNET_HDR device -> plain device (the ACKs): segment() strips the header."""
    inb = tuntap.PacketBatch(16, 65600)
    out = tuntap.PacketBatch(64, 2048)
    src.settimeout(0.1)
    while not stop.is_set():
        try:
            n = src.read_batch(inb)
        except TimeoutError:
            continue
        for i in range(n):
            tuntap.segment(inb[i], out)
            dst.write_batch(out)


@pytest.mark.needs_tun
@pytest.mark.parametrize("fam, via", [(4, "write_batch"), (6, "write_batch"), (4, "coalesce")])
def test_a_tcp_transfer_through_a_coalescing_forwarder_is_byte_exact(
        fam: int, via: str, named_netns: str) -> None:
    if fam == 4:
        a_addr, b_addr, plen = "10.202.0.1", "10.202.0.2", 32
    else:
        a_addr, b_addr, plen = "fd00:202::1", "fd00:202::2", 128
    nsb = named_netns
    dev_a = tuntap.Device(unique_name("gra"), Flags.TUN | Flags.NO_PI)
    dev_b = tuntap.Device(unique_name("grb"), VNET_TUN, netns=nsb)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        dev_b.set_offload(TSO)
        for dev, ns in ((dev_a, None), (dev_b, nsb)):
            if fam == 6:
                ip("link", "set", dev.name, "addrgenmode", "none", netns=ns)
        dev_a.up()
        dev_b.up()
        if fam == 6:
            ip("addr", "add", f"{a_addr}/{plen}", "peer", f"{b_addr}/{plen}", "dev",
               dev_a.name, "nodad")
            ip("addr", "add", f"{b_addr}/{plen}", "peer", f"{a_addr}/{plen}", "dev",
               dev_b.name, "nodad", netns=nsb)
            wait_ipv6_routes(dev_a.name, a_addr, b_addr)
            wait_ipv6_routes(dev_b.name, b_addr, a_addr, netns=nsb)
        else:
            dev_a.add_address(f"{a_addr}/{plen}", peer=b_addr)
            dev_b.add_address(f"{b_addr}/{plen}", peer=a_addr)
        stats = {"packets": 0, "outputs": 0}
        threads = [
            threading.Thread(target=_pump_coalesce, args=(dev_a, dev_b, stop, stats, via)),
            threading.Thread(target=_pump_segment, args=(dev_b, dev_a, stop)),
        ]
        for t in threads:
            t.start()
        family = socket.AF_INET if fam == 4 else socket.AF_INET6
        data = os.urandom(8 << 20)
        rx0 = rx(dev_b.name, nsb)
        got = tcp_transfer(family, b_addr, f"/var/run/netns/{nsb}", data)
        rx1 = rx(dev_b.name, nsb)
        assert got["n"] == len(data)
        assert got["sha"] == hashlib.sha256(data).hexdigest()
        written, nbytes = rx1[0] - rx0[0], rx1[1] - rx0[1]
        # fewer, larger packets: the forwarder read MTU-sized ones
        assert written * 3 < stats["packets"], (written, stats)
        assert nbytes / written > 4000, (nbytes, written)
        if via == "coalesce":
            assert written == stats["outputs"]
        assert dev_b.coalesce_disabled == frozenset()
    finally:
        stop.set()
        for t in threads:
            t.join(10)
        dev_a.close()
        dev_b.close()


@pytest.mark.needs_tun
@pytest.mark.parametrize("fam", [4, 6])
def test_the_kernel_takes_gso_writes_whatever_the_offload_mask(
        open_device: Callable[..., Any], fam: int) -> None:
    """TUNSETOFFLOAD(0): the kernel hands out no super-packets, but takes written ones."""
    dev, local, remote = vnet_dev(open_device, fam, Offload(0))
    with udp_socket(fam, local) as s:
        f = Flow(fam, proto=17, src=remote, dst=local, dport=s.getsockname()[1])
        sent = [os.urandom(1000) for _ in range(20)]
        out = tuntap.PacketBatch(4, 65600)
        assert tuntap.coalesce([f.packet(0, d) for d in sent], out, udp=True) == 1
        before = rx(dev.name)[0]
        assert dev.write_batch(out) == 1
        assert rx(dev.name)[0] - before == 1
        assert recv_all(s, 20) == sent
