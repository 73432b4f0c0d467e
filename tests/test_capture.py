"""``tuntap capture`` and ``tuntap replay``, and the pcap reader/writer under them.

Captures are checked with the tools people will open them with: tshark (Debian's
package, installed by .ci/run), tcpdump when it is there, and scapy's ``rdpcap``.
"""

from __future__ import annotations

import io
import json
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import tuntap
from netutil import (
    ETH_P_IP,
    WAIT,
    build_eth,
    build_udp4,
    link_json,
    mac_bytes,
    parse_udp4,
    udp_socket,
    unique_name,
    unique_net,
)
from tuntap._cli.pcap import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_RAW,
    Packet,
    PcapError,
    PcapWriter,
    read_packets,
)

TUNTAP = [sys.executable, "-m", "tuntap"]
F = tuntap.Flags
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)


def tt(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TUNTAP, *args], capture_output=True, text=True, timeout=timeout)


def start_capture(*args: str) -> subprocess.Popen[str]:
    """Start ``tuntap capture ARGS`` and wait until it holds the device (carrier on)."""
    proc = subprocess.Popen([*TUNTAP, "capture", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    name = args[0]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        link = link_json(name)
        if link is not None and "LOWER_UP" in link["flags"]:
            break
        time.sleep(0.02)
    return proc


def finish(proc: subprocess.Popen[str], timeout: float = 15) -> tuple[int, str]:
    _out, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def add_device(name: str, *flags: str, address: str | None = None) -> None:
    args = ["add", name, *flags, "--up"]
    if address:
        args += ["--address", address]
    r = tt(*args)
    assert r.returncode == 0, r.stderr


def pcap_packets(path: Path) -> list[Packet]:
    return list(read_packets(io.BytesIO(path.read_bytes())))


@pytest.fixture
def ptun(cleanup_links: list[str]) -> Any:
    """A persistent TUN (NO_PI) device, up, with ``local``/24, that no process holds."""
    name, net = unique_name(), unique_net()
    cleanup_links.append(name)
    add_device(name, "--no-pi", address=net.cidr)

    class P:
        pass

    p = P()
    p.name, p.local, p.remote = name, net.local, net.remote  # type: ignore[attr-defined]
    return p


def tshark_fields(path: Path, *fields: str) -> list[list[str]]:
    args = ["tshark", "-r", str(path), "-T", "fields"]
    for f in fields:
        args += ["-e", f]
    r = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [line.split("\t") for line in r.stdout.splitlines()]


# --------------------------------------------------------------------------- pcap files
def test_writer_makes_the_libpcap_header_and_records() -> None:
    buf = io.BytesIO()
    w = PcapWriter(buf, LINKTYPE_RAW)
    w.write(b"\x45" + bytes(19), 1_700_000_000_123_456_789)
    data = buf.getvalue()
    assert data[:24] == struct.pack("=IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 101)
    assert data[24:40] == struct.pack("=IIII", 1_700_000_000, 123_456, 20, 20)
    assert data[40:] == b"\x45" + bytes(19)


def test_reader_reads_back_what_the_writer_wrote() -> None:
    buf = io.BytesIO()
    w = PcapWriter(buf, LINKTYPE_ETHERNET)
    frames = [bytes([i]) * (14 + i) for i in range(1, 6)]
    for i, f in enumerate(frames):
        w.write(f, (1000 + i) * 1_000_000_000 + 5000)
    got = list(read_packets(io.BytesIO(buf.getvalue())))
    assert got == [Packet((1000 + i) * 1_000_000_000 + 5000, LINKTYPE_ETHERNET, f)
                   for i, f in enumerate(frames)]


def test_writer_cuts_to_snaplen_and_keeps_the_original_length() -> None:
    buf = io.BytesIO()
    PcapWriter(buf, LINKTYPE_RAW, snaplen=8).write(bytes(range(20)), 0)
    assert struct.unpack_from("=II", buf.getvalue(), 24 + 8) == (8, 20)
    assert [p.data for p in read_packets(io.BytesIO(buf.getvalue()))] == [bytes(range(8))]


def test_reader_takes_big_endian_nanosecond_pcap() -> None:
    data = struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, LINKTYPE_LINUX_SLL)
    data += struct.pack(">IIII", 7, 999, 3, 3) + b"abc"
    assert list(read_packets(io.BytesIO(data))) == [
        Packet(7_000_000_999, LINKTYPE_LINUX_SLL, b"abc")]


def _pcapng_block(kind: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    length = 12 + len(body)
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)


def test_reader_takes_pcapng_with_its_interfaces_and_resolutions() -> None:
    shb = _pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    idb0 = _pcapng_block(1, struct.pack("<HHI", LINKTYPE_RAW, 0, 0))  # microseconds
    tsresol_ns = struct.pack("<HHB3x", 9, 1, 9) + struct.pack("<HH", 0, 0)
    idb1 = _pcapng_block(1, struct.pack("<HHI", LINKTYPE_ETHERNET, 0, 0) + tsresol_ns)
    epb0 = _pcapng_block(6, struct.pack("<IIIII", 0, 0, 2_000_000, 5, 5) + b"\x45abcd")
    ticks = 3_000_000_007
    epb1 = _pcapng_block(6, struct.pack("<IIIII", 1, ticks >> 32, ticks & 0xFFFFFFFF, 14, 14)
                         + bytes(14))
    other = _pcapng_block(5, b"statistics")  # skipped
    got = list(read_packets(io.BytesIO(shb + idb0 + idb1 + other + epb0 + epb1)))
    assert got == [Packet(2_000_000_000, LINKTYPE_RAW, b"\x45abcd"),
                   Packet(3_000_000_007, LINKTYPE_ETHERNET, bytes(14))]


@pytest.mark.parametrize("data, message", [
    (b"", "not a pcap file: shorter than a header"),
    (b"root:x:0:0:root", "not a pcap or pcapng file (magic 726f6f74)"),
    (struct.pack("=I", 0xA1B2C3D4) + bytes(10),
     "truncated file: file header cut short (10 of 20 bytes)"),
    (struct.pack("=IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101) + bytes(9),
     "truncated file: record 1 header cut short"),
    (struct.pack("=IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)
     + struct.pack("=IIII", 0, 0, 100, 100) + bytes(10),
     "truncated file: record 1 cut short (10 of 100 bytes)"),
    (_pcapng_block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
     + _pcapng_block(6, struct.pack("<IIIII", 0, 0, 0, 1, 1) + b"x"),
     "block 2: packet for unknown interface or too long"),
])
def test_reader_rejects_damaged_files_with_where(data: bytes, message: str) -> None:
    with pytest.raises(PcapError) as exc:
        list(read_packets(io.BytesIO(data)))
    assert str(exc.value) == message
    assert isinstance(exc.value, ValueError)


# --------------------------------------------------------------------------- capture
pytestmark_tun = pytest.mark.needs_tun


@pytestmark_tun
@pytest.mark.needs_tool("tshark")
def test_capture_of_a_tun_device_opens_in_tshark_and_scapy(tmp_path: Path,
                                                           cleanup_links: list[str]) -> None:
    name, net = unique_name(), unique_net()
    cleanup_links.append(name)
    add_device(name, "--no-pi", address=net.cidr)
    out = tmp_path / "tun.pcap"
    proc = start_capture(name, "-w", str(out), "-c", "3", "--timeout", "10")
    with udp_socket() as s:
        for i in range(3):
            s.sendto(b"hello %d" % i, (net.remote, 7000 + i))
    rc, err = finish(proc)
    assert rc == 0, err
    assert err.endswith(f"tuntap capture: 3 packets (105 bytes) from {name} written to "
                        f"{out}\n")
    rows = tshark_fields(out, "frame.protocols", "ip.src", "ip.dst", "udp.dstport", "data")
    assert rows == [["raw:ip:udp:data", net.local, net.remote, str(7000 + i),
                     (b"hello %d" % i).hex()] for i in range(3)]

    from scapy.all import UDP, rdpcap  # the test extra

    pkts = rdpcap(str(out))
    assert [bytes(p[UDP].payload) for p in pkts] == [b"hello %d" % i for i in range(3)]
    if shutil.which("tcpdump"):
        r = subprocess.run(["tcpdump", "-nr", str(out)], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0 and "link-type RAW" in r.stderr
        assert r.stdout.count(f"IP {net.local}.") == 3


@pytestmark_tun
@pytest.mark.needs_tool("tshark")
def test_capture_of_a_tap_device_records_ethernet_frames(tmp_path: Path,
                                                         cleanup_links: list[str]) -> None:
    name, net = unique_name(), unique_net()
    cleanup_links.append(name)
    add_device(name, "--tap", "--no-pi", address=net.cidr)
    out = tmp_path / "tap.pcap"
    proc = start_capture(name, "-w", str(out), "-c", "1", "--timeout", "10")
    with udp_socket() as s:
        s.sendto(b"x", (net.remote, 9))  # needs the neighbour: an ARP request goes out
    rc, err = finish(proc)
    assert rc == 0, err
    rows = tshark_fields(out, "frame.protocols", "arp.dst.proto_ipv4", "eth.dst")
    assert rows == [["eth:ethertype:arp", net.remote, "ff:ff:ff:ff:ff:ff"]]


@pytestmark_tun
def test_capture_strips_packet_info_and_keeps_the_packet_exact(tmp_path: Path,
                                                               cleanup_links: list[str]) -> None:
    name, net = unique_name(), unique_net()
    cleanup_links.append(name)
    add_device(name, address=net.cidr)  # packet info on
    (info,) = [i for i in tuntap.list_devices() if i.name == name]
    assert not info.flags & F.NO_PI
    out = tmp_path / "pi.pcap"
    proc = start_capture(name, "-w", str(out), "-c", "1", "--timeout", "10")
    with udp_socket() as s:
        s.bind((net.local, 4444))
        s.sendto(b"exact", (net.remote, 5555))
    rc, err = finish(proc)
    assert rc == 0, err
    (pkt,) = pcap_packets(out)
    assert pkt.linktype == LINKTYPE_RAW
    ip4, udp = parse_udp4(pkt.data)
    assert (ip4.src, ip4.dst, udp.sport, udp.dport, udp.payload) == (
        net.local, net.remote, 4444, 5555, b"exact")
    assert udp.checksum_ok and ip4.header_ok and len(pkt.data) == ip4.total_length


def _offload_device(name: str, net: Any) -> None:
    """A persistent VNET_HDR device (the capture takes the offloads: --offload)."""
    add_device(name, "--no-pi", "--vnet-hdr", address=net.cidr)


def _send_super_datagram(net: Any, size: int, gso: int) -> None:
    with udp_socket() as s:
        s.setsockopt(socket.SOL_UDP, UDP_SEGMENT, gso)
        s.sendto(bytes(range(256)) * (size // 256), (net.remote, 6000))


@pytestmark_tun
def test_capture_records_a_gso_super_packet_whole(tmp_path: Path,
                                                  cleanup_links: list[str]) -> None:
    name, net = unique_name(), unique_net()
    cleanup_links.append(name)
    _offload_device(name, net)
    out = tmp_path / "gso.pcap"
    proc = start_capture(name, "-w", str(out), "-c", "1", "--timeout", "10",
                         "--offload", "csum,uso")
    _send_super_datagram(net, 4096, 1024)
    rc, err = finish(proc)
    assert rc == 0, err
    (pkt,) = pcap_packets(out)
    assert pkt.data[0] >> 4 == 4  # the vnet header is gone: an IP packet
    assert len(pkt.data) == 20 + 8 + 4096  # one IP packet holding the whole datagram


@pytestmark_tun
@pytest.mark.needs_tool("tshark")
def test_capture_segment_records_what_the_wire_would_carry(tmp_path: Path,
                                                           cleanup_links: list[str]) -> None:
    name, net = unique_name(), unique_net()
    cleanup_links.append(name)
    _offload_device(name, net)
    out = tmp_path / "seg.pcap"
    proc = start_capture(name, "-w", str(out), "-c", "4", "--timeout", "10", "--segment",
                         "--offload", "csum,uso4,uso6")
    _send_super_datagram(net, 4096, 1024)
    rc, err = finish(proc)
    assert rc == 0, err
    pkts = list(pcap_packets(out))
    assert [len(p.data) for p in pkts] == [20 + 8 + 1024] * 4
    for p in pkts:
        ip4, udp = parse_udp4(p.data)
        assert ip4.header_ok and udp.checksum_ok and len(udp.payload) == 1024
    rows = tshark_fields(out, "udp.length", "ip.src")
    assert rows == [["1032", net.local]] * 4


@pytestmark_tun
def test_capture_segment_needs_a_vnet_hdr_device(ptun: Any) -> None:
    tun = ptun
    r = tt("capture", tun.name, "-w", "/dev/null", "--segment", "--timeout", "1")
    assert r.returncode == 1
    assert r.stderr.endswith(f"error: --segment needs a VNET_HDR device; {tun.name} has no "
                             "vnet header\n")


@pytestmark_tun
def test_capture_without_offload_records_what_the_kernel_segmented(
        tmp_path: Path, cleanup_links: list[str]) -> None:
    name, net = unique_name(), unique_net()
    cleanup_links.append(name)
    _offload_device(name, net)
    out = tmp_path / "plain.pcap"
    proc = start_capture(name, "-w", str(out), "-c", "4", "--timeout", "10")
    _send_super_datagram(net, 4096, 1024)
    rc, err = finish(proc)
    assert rc == 0, err
    assert [len(p.data) for p in pcap_packets(out)] == [20 + 8 + 1024] * 4


@pytestmark_tun
def test_capture_offload_needs_a_vnet_hdr_device(ptun: Any) -> None:
    r = tt("capture", ptun.name, "-w", "/dev/null", "--offload", "csum", "--timeout", "1")
    assert r.returncode == 1
    assert r.stderr.endswith(f"error: --offload needs a VNET_HDR device; {ptun.name} has no "
                             f"vnet header (tuntap add {ptun.name} --vnet-hdr)\n")


def test_capture_offload_names_are_checked() -> None:
    from tuntap._cli.capture import parse_offloads

    o = tuntap.Offload
    assert parse_offloads("csum, TSO4,uso") == o.CSUM | o.TSO4 | o.USO4 | o.USO6
    assert parse_offloads("") == o(0)
    r = tt("capture", "t0", "-w", "x", "--offload", "csum,gro")
    assert r.returncode == 2
    assert "argument --offload: unknown offload 'gro' (known: csum, tso4" in r.stderr


@pytestmark_tun
def test_capture_timeout_ends_an_idle_capture_with_an_empty_valid_file(
        tmp_path: Path, cleanup_links: list[str]) -> None:
    name = unique_name()
    cleanup_links.append(name)
    add_device(name, "--no-pi")
    out = tmp_path / "idle.pcap"
    t0 = time.monotonic()
    r = tt("capture", name, "-w", str(out), "--timeout", "0.5")
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert 0.5 <= took < 5
    assert list(pcap_packets(out)) == []
    assert out.stat().st_size == 24


@pytestmark_tun
def test_ctrl_c_ends_a_capture_cleanly_with_status_0(tmp_path: Path,
                                                     cleanup_links: list[str]) -> None:
    name, net = unique_name(), unique_net()
    cleanup_links.append(name)
    add_device(name, "--no-pi", address=net.cidr)
    out = tmp_path / "int.pcap"
    proc = start_capture(name, "-w", str(out))
    with udp_socket() as s:
        s.sendto(b"one", (net.remote, 9))
    deadline = time.monotonic() + WAIT
    while out.stat().st_size <= 24 and time.monotonic() < deadline:
        time.sleep(0.02)  # written on arrival? not necessarily: buffered; just give it time
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    rc, err = finish(proc)
    assert rc == 0, err
    assert "Traceback" not in err
    assert [parse_udp4(p.data)[1].payload for p in pcap_packets(out)] == [b"one"]


@pytestmark_tun
def test_capture_of_a_device_another_program_holds_exits_1(tun: Any) -> None:
    r = tt("capture", tun.name, "-w", "/dev/null", "-c", "1")
    assert r.returncode == 1
    assert r.stderr == (f"python -m tuntap capture: error: cannot attach to {tun.name}: "
                        f"another process holds it (a single-queue device has one endpoint "
                        "at a time)\n")


@pytestmark_tun
def test_capture_of_a_missing_device_says_how_to_make_one() -> None:
    r = tt("capture", "ttnothere0", "-w", "/dev/null")
    assert r.returncode == 1
    assert r.stderr == ("python -m tuntap capture: error: no TUN/TAP device 'ttnothere0' "
                        "(make one with: tuntap add ttnothere0 --address CIDR --up)\n")


# --------------------------------------------------------------------------- replay
def _pcap(path: Path, linktype: int, packets: list[bytes]) -> Path:
    with path.open("wb") as f:
        w = PcapWriter(f, linktype)
        for i, p in enumerate(packets):
            w.write(p, i * 1000)
    return path


@pytestmark_tun
@pytest.mark.parametrize("flags", [["--no-pi"], [], ["--no-pi", "--vnet-hdr"]],
                         ids=["no-pi", "packet-info", "vnet-hdr"])
def test_replay_into_tun_delivers_every_packet_to_a_socket(tmp_path: Path, flags: list[str],
                                                           cleanup_links: list[str]) -> None:
    name, net = unique_name(), unique_net()
    cleanup_links.append(name)
    add_device(name, *flags, address=net.cidr)
    with udp_socket() as s:
        s.bind((net.local, 0))
        port = s.getsockname()[1]
        pcap = _pcap(tmp_path / "in.pcap", LINKTYPE_RAW,
                     [build_udp4(net.remote, net.local, 4000 + i, port, b"replayed %d" % i)
                      for i in range(5)])
        r = tt("replay", name, str(pcap))
        assert r.returncode == 0, r.stderr
        assert r.stderr.startswith(f"tuntap replay: 5 packets (190 bytes) written into {name} "
                                   "in ")
        got = [s.recvfrom(100) for _ in range(5)]
    assert got == [(b"replayed %d" % i, (net.remote, 4000 + i)) for i in range(5)]


@pytestmark_tun
def test_replay_of_an_ethernet_capture_into_tun_drops_the_link_header_and_skips_arp(
        tmp_path: Path, ptun: Any) -> None:
    tun = ptun
    with udp_socket() as s:
        s.bind((tun.local, 0))
        port = s.getsockname()[1]
        mac = mac_bytes("02:00:00:00:00:01")
        frames = [build_eth(mac, mac, ETH_P_IP,
                            build_udp4(tun.remote, tun.local, 4000, port, b"from eth")),
                  build_eth(b"\xff" * 6, mac, 0x0806, bytes(28))]
        r = tt("replay", tun.name, str(_pcap(tmp_path / "eth.pcap", LINKTYPE_ETHERNET,
                                             frames)))
        assert r.returncode == 0, r.stderr
        assert "1 packets (36 bytes)" in r.stderr and "1 skipped (no IP packet in them)" in r.stderr
        assert s.recvfrom(100) == (b"from eth", (tun.remote, 4000))


@pytestmark_tun
def test_replay_into_tap_delivers_frames_to_the_kernel(tmp_path: Path,
                                                       cleanup_links: list[str]) -> None:
    name, net = unique_name(), unique_net()
    cleanup_links.append(name)
    add_device(name, "--tap", "--no-pi", address=net.cidr)
    hw = mac_bytes(link_json(name)["address"])
    with udp_socket() as s:
        s.bind((net.local, 0))
        port = s.getsockname()[1]
        frame = build_eth(hw, mac_bytes("02:00:00:00:00:09"), ETH_P_IP,
                          build_udp4(net.remote, net.local, 4100, port, b"over tap"))
        r = tt("replay", name, str(_pcap(tmp_path / "tap.pcap", LINKTYPE_ETHERNET, [frame])))
        assert r.returncode == 0, r.stderr
        assert s.recvfrom(100) == (b"over tap", (net.remote, 4100))
    r = tt("replay", name, str(_pcap(tmp_path / "raw.pcap", LINKTYPE_RAW, [bytes(20)])))
    assert r.returncode == 1
    assert r.stderr.endswith(f"error: cannot replay a raw IP capture into TAP device {name}: "
                             "it takes Ethernet frames\n")


@pytestmark_tun
def test_replay_rate_paces_the_packets(tmp_path: Path, ptun: Any) -> None:
    tun = ptun
    pcap = _pcap(tmp_path / "rate.pcap", LINKTYPE_RAW,
                 [build_udp4(tun.remote, tun.local, 1, 9, b"x")] * 6)
    t0 = time.monotonic()
    r = tt("replay", tun.name, str(pcap), "--rate", "10")
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert 0.5 <= took < 5  # 6 packets at 10/s: the last one 0.5 s after the first


@pytestmark_tun
def test_replay_into_a_down_device_or_of_a_bad_file_exits_1(tmp_path: Path,
                                                            cleanup_links: list[str]) -> None:
    name = unique_name()
    cleanup_links.append(name)
    assert tt("add", name, "--no-pi").returncode == 0
    pcap = _pcap(tmp_path / "p.pcap", LINKTYPE_RAW, [bytes([0x45]) + bytes(19)])
    r = tt("replay", name, str(pcap))
    assert (r.returncode, r.stderr) == (1, f"python -m tuntap replay: error: {name} is down: "
                                           "the kernel takes no packets from a device that is "
                                           f"down (ip link set {name} up)\n")
    assert tt("add", name[:14] + "u", "--no-pi", "--up").returncode == 0
    cleanup_links.append(name[:14] + "u")
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"GIF89a....")
    r = tt("replay", name[:14] + "u", str(bad))
    assert r.returncode == 1
    assert r.stderr.endswith(f"error: {bad}: not a pcap or pcapng file (magic 47494638)\n")
    r = tt("replay", name, str(tmp_path / "missing.pcap"))
    assert r.returncode == 1
    assert r.stderr.endswith(f"error: cannot read {tmp_path / 'missing.pcap'}: No such file "
                             "or directory\n")


@pytestmark_tun
def test_what_capture_records_replays_into_another_device(tmp_path: Path,
                                                          cleanup_links: list[str]) -> None:
    a, b, net_a, net_b = unique_name(), unique_name(), unique_net(), unique_net()
    cleanup_links += [a, b]
    add_device(a, "--no-pi", address=net_a.cidr)
    add_device(b, "--no-pi", address=net_b.cidr)
    out = tmp_path / "a.pcap"
    proc = start_capture(a, "-w", str(out), "-c", "2", "--timeout", "10")
    with udp_socket() as s:
        s.sendto(b"first", (net_a.remote, 8000))
        s.sendto(b"second", (net_a.remote, 8000))
    rc, err = finish(proc)
    assert rc == 0, err
    # The captured packets go from net_a.local to net_a.remote; replayed into b, the kernel
    # receives them there (b's rx counter moves), though it does not own the address.
    r = tt("replay", b, str(out))
    assert r.returncode == 0, r.stderr
    assert "2 packets" in r.stderr
    stats = subprocess.run(["ip", "-j", "-s", "link", "show", "dev", b], capture_output=True,
                           text=True, timeout=10).stdout
    assert json.loads(stats)[0]["stats64"]["rx"]["packets"] == 2
