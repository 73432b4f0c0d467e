"""Write the seed corpora of the libFuzzer harnesses (tests/fuzz/corpus/<unit>/).

    python tests/fuzz/make_seeds.py            # gso and gro seeds (scapy)
    python tests/fuzz/make_seeds.py --netlink  # also a real RTM_GETLINK reply (root:
                                               # a TUN device in a private namespace)

The seeds are small valid inputs that take the fuzzer past the header checks at once:
GSO super-packets of every kind segment() handles, runs of packets of every kind
coalesce() merges, and what the kernel answers to the requests netlink.c sends. The
committed corpus was made by this script.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import subprocess
import sys
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))


def _vnet(flags: int, gso_type: int, hdr_len: int, gso_size: int, csum_start: int,
          csum_offset: int) -> bytes:
    return struct.pack("<BBHHHH", flags, gso_type, hdr_len, gso_size, csum_start, csum_offset)


def gso_seeds() -> dict[str, bytes]:
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop

    payload = bytes(range(256)) * 4  # 1,024 bytes
    # Parameter bytes: vnet size selector, capacity, slot size, headroom (fuzz_gso.c).
    params = bytes([0, 20, 20, 4])
    out: dict[str, bytes] = {}
    tcp4 = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2, flags="PA",
                                                         seq=1000) / payload)
    out["tcp4-gso"] = params + _vnet(1, 1, 40, 200, 20, 16) + tcp4
    out["tcp4-gso-ecn"] = params + _vnet(1, 0x81, 40, 300, 20, 16) + tcp4
    tcp6 = bytes(IPv6(src="fd00::1", dst="fd00::2") / IPv6ExtHdrHopByHop() /
                 TCP(sport=1, dport=2, flags="FA") / payload)
    out["tcp6-ext-gso"] = params + _vnet(1, 4, 68, 256, 48, 16) + tcp6
    udp4 = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP(sport=3, dport=4) / payload)
    out["udp4-uso"] = params + _vnet(1, 5, 28, 100, 20, 6) + udp4
    udp6 = bytes(IPv6(src="fd00::1", dst="fd00::2") / UDP(sport=3, dport=4) / payload)
    out["udp6-uso-vnet12"] = bytes([1, 20, 20, 0]) + _vnet(1, 5, 48, 333, 40, 6) + \
        bytes(2) + udp6
    out["udp4-needs-csum"] = bytes([0, 1, 0x80, 0]) + _vnet(1, 0, 0, 0, 20, 6) + udp4
    out["tcp4-plain"] = bytes([1, 1, 0x80, 0]) + _vnet(0, 0, 0, 0, 0, 0) + tcp4
    out["tcp4-big-slot"] = bytes([0, 1, 0x80, 0]) + _vnet(1, 1, 40, 1400, 20, 16) + tcp4
    return out


def gro_seeds() -> dict[str, bytes]:
    """Inputs of fuzz_gro.c: 4 parameter bytes, then [fix][len_hi][len_lo][packet]..."""
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6

    def rec(pkt: bytes, fix: int = 0) -> bytes:
        return struct.pack("!BH", fix, len(pkt)) + pkt

    def tcp(ip: Any, seq: int, n: int, flags: str = "A", sport: int = 1,
            opts: list[tuple[str, Any]] | None = None) -> bytes:
        seg = TCP(sport=sport, dport=2, seq=seq % 2**32, ack=7, flags=flags, options=opts or [])
        return bytes(ip / seg / (bytes(range(256)) * 8)[:n])

    v4, v6 = IP(src="10.0.0.1", dst="10.0.0.2", flags="DF"), IPv6(src="fd00::1", dst="fd00::2")
    # params: kinds (all) | vnet 10, max_segments 64, max_size 64 KB and 4 KB slots, capacity 64
    big = bytes([0x0F, 63, 0xFC, 63])
    # 64 KB slots, capacity 4
    huge = bytes([0x0F, 63, 0x00, 0x83])
    out: dict[str, bytes] = {}
    out["tcp4-run"] = huge + b"".join(rec(tcp(v4, 1000 + i * 500, 500)) for i in range(8))
    out["tcp6-run-psh"] = huge + b"".join(
        rec(tcp(v6, 5 + i * 300, 300, "PA" if i == 5 else "A")) for i in range(8))
    out["tcp4-reordered"] = huge + b"".join(
        rec(tcp(v4, 2**32 - 1000 + i * 400, 400)) for i in (3, 0, 2, 1, 4))
    out["tcp4-two-flows-ts"] = big + b"".join(
        rec(tcp(v4, 1 + (i // 2) * 200, 200, sport=1 + i % 2,
                opts=[("NOP", None), ("NOP", None), ("Timestamp", (1, 2))]))
        for i in range(10))
    # a pure ACK between contiguous segments: a barrier
    out["tcp4-barrier"] = huge + b"".join(
        rec(tcp(v4, 1 + (i - (i > 3)) * 300, 0 if i == 3 else 300)) for i in range(7))
    out["udp4-run"] = huge + b"".join(
        rec(bytes(v4 / UDP(sport=3, dport=4) / (bytes([i]) * 300))) for i in range(6))
    out["udp6-run-short"] = huge + b"".join(
        rec(bytes(v6 / UDP(sport=3, dport=4) / (bytes([i]) * (300 if i < 5 else 10))))
        for i in range(6))
    # lengths and checksums left for the harness to fix (fix = 3)
    raw = bytes(v4 / TCP(sport=1, dport=2, flags="A") / bytes(100))
    out["tcp4-fixups"] = huge + b"".join(
        rec(raw[:24] + struct.pack("!I", 100 * i) + raw[28:], 3) for i in range(4))
    return out


def netlink_seed(kind: str = "tun") -> bytes:
    """The kernel's answer to RTM_GETLINK for one TUN device (or a bridge: a link of
    another kind with its own IFLA_INFO_DATA), made in a private netns."""
    code = r"""
import socket, struct, subprocess, sys, tuntap
if sys.argv[1] == "tun":
    dev = tuntap.Device("fz0", tuntap.Flags.TUN | tuntap.Flags.VNET_HDR)
    ifindex = dev.ifindex
else:
    subprocess.run(["ip", "link", "add", "fzbr0", "type", "bridge"], check=True)
    ifindex = socket.if_nametoindex("fzbr0")
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
ifi = struct.pack("=BxHiII", 0, 0, ifindex, 0, 0)
attr = struct.pack("=HHI", 8, 29, 8)           # IFLA_EXT_MASK = RTEXT_FILTER_SKIP_STATS
msg = ifi + attr
hdr = struct.pack("=IHHII", 16 + len(msg), 18, 0x5, 77, 0)  # RTM_GETLINK, REQUEST|ACK
s.sendto(hdr + msg, (0, 0))
data = b""
while True:
    chunk = s.recv(65536)
    data += chunk
    if struct.unpack_from("=H", chunk, 4)[0] == 2:  # NLMSG_ERROR (the ACK)
        break
sys.stdout.buffer.write(data)
"""
    r = subprocess.run(["unshare", "-n", sys.executable, "-c", code, kind],
                       capture_output=True, check=True, timeout=30)
    return r.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--netlink", action="store_true")
    args = ap.parse_args()
    gdir = os.path.join(HERE, "corpus", "gso")
    os.makedirs(gdir, exist_ok=True)
    for name, data in gso_seeds().items():
        with open(os.path.join(gdir, name), "wb") as f:
            f.write(data)
    rdir = os.path.join(HERE, "corpus", "gro")
    os.makedirs(rdir, exist_ok=True)
    for name, data in gro_seeds().items():
        with open(os.path.join(rdir, name), "wb") as f:
            f.write(data)
    if args.netlink:
        ndir = os.path.join(HERE, "corpus", "netlink")
        os.makedirs(ndir, exist_ok=True)
        reply = netlink_seed()
        with open(os.path.join(ndir, "getlink-tun-reply"), "wb") as f:
            f.write(b"\x00" + reply)  # byte 0 < 0x80: drive the parser
        with open(os.path.join(ndir, "getlink-bridge-reply"), "wb") as f:
            f.write(b"\x00" + netlink_seed("bridge"))
        with open(os.path.join(ndir, "build-getlink-name"), "wb") as f:
            f.write(bytes([0x80, 2, 4, 24, 5, 10, 0, 1, 40]) + b"tun0")
        addr = socket.inet_aton("10.0.0.1")
        with open(os.path.join(ndir, "build-addr4"), "wb") as f:
            f.write(bytes([0x80, 2, 4, 24, 5]) + addr + bytes([40, 2, 3]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
