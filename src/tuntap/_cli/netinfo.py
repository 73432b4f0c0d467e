"""Interface state without attaching to the device: rtnetlink dumps and ethtool features.

``tuntap show`` and ``tuntap list`` must not open the device (attaching replaces its
flags, and a single-queue device held by a program cannot be attached at all), so the
link state, addresses and counters come from an ``RTM_GETLINK``/``RTM_GETADDR`` dump over
a ``NETLINK_ROUTE`` socket, and the offloads from ``SIOCETHTOOL``. Both speak for the
network namespace the socket was opened in (see :func:`.common.run_in_netns`).
"""

from __future__ import annotations

import array
import fcntl
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass, field

__all__ = ["Addr", "Link", "dump_addresses", "dump_links", "offloads"]

# <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_link.h>, <linux/if_addr.h>
NETLINK_ROUTE = 0
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
RTM_NEWLINK, RTM_GETLINK, RTM_NEWADDR, RTM_GETADDR = 16, 18, 20, 22
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_TXQLEN, IFLA_OPERSTATE = 1, 3, 4, 13, 16
IFLA_STATS64, IFLA_CARRIER = 23, 33
IFA_ADDRESS, IFA_LOCAL = 1, 2
IFF_UP, IFF_LOWER_UP = 0x1, 0x10000
OPERSTATES = ("unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up")
STATS64_FIELDS = ("rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_errors",
                  "tx_errors", "rx_dropped", "tx_dropped")

# <linux/sockios.h>, <linux/ethtool.h>
SIOCETHTOOL = 0x8946
ETHTOOL_GSTRINGS, ETHTOOL_GSSET_INFO, ETHTOOL_GFEATURES = 0x1B, 0x37, 0x3A
ETH_SS_FEATURES = 4
ETH_GSTRING_LEN = 32
#: ethtool feature name -> the tuntap.Offload it stands for (drivers/net/tun.c:
#: tun_set_offload turns TUN_F_* into these netdev features).
OFFLOAD_FEATURES = {
    "tx-checksum-ip-generic": "CSUM",
    "tx-tcp-segmentation": "TSO4",
    "tx-tcp6-segmentation": "TSO6",
    "tx-tcp-ecn-segmentation": "TSO_ECN",
    "tx-udp-segmentation": "USO",
}


@dataclass
class Link:
    """One interface as an ``RTM_NEWLINK`` message describes it."""

    ifindex: int
    name: str
    up: bool
    lower_up: bool
    mtu: int = 0
    txqueuelen: int = 0
    operstate: str = "unknown"
    carrier: bool | None = None
    hwaddr: str | None = None
    stats: dict[str, int] = field(default_factory=dict)


@dataclass
class Addr:
    """One address: ``cidr`` as ``"10.0.0.1/24"``; ``peer`` for a point-to-point link."""

    ifindex: int
    cidr: str
    peer: str | None = None


def _attrs(data: bytes, offset: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        out[kind & 0x3FFF] = data[offset + 4:offset + length]
        offset += (length + 3) & ~3
    return out


def _dump(msg_type: int, body: bytes, want: int) -> list[tuple[bytes, int]]:
    """Send one dump request; return (message payload, payload offset) for each answer."""
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        sock.settimeout(5)
        sock.send(struct.pack("=IHHII", 16 + len(body), msg_type, NLM_F_REQUEST | NLM_F_DUMP,
                              1, 0) + body)
        out: list[tuple[bytes, int]] = []
        for _ in range(100000):  # a dump ends with NLMSG_DONE
            data = sock.recv(1 << 16)
            offset = 0
            while offset + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, offset)
                if kind == NLMSG_DONE:
                    return out
                if kind == NLMSG_ERROR:
                    (err,) = struct.unpack_from("=i", data, offset + 16)
                    if err:
                        raise OSError(-err, f"rtnetlink dump: {os.strerror(-err)}")
                elif kind == want:
                    out.append((data[offset:offset + length], 16))
                offset += (length + 3) & ~3
        raise OSError("rtnetlink dump did not end")


def dump_links() -> dict[int, Link]:
    """Every interface of the calling thread's namespace, by ifindex."""
    links: dict[int, Link] = {}
    for msg, off in _dump(RTM_GETLINK, struct.pack("=BxHiII", 0, 0, 0, 0, 0), RTM_NEWLINK):
        _family, _type, index, flags, _change = struct.unpack_from("=BxHiII", msg, off)
        a = _attrs(msg, off + 16)
        link = Link(index, a.get(IFLA_IFNAME, b"").rstrip(b"\0").decode(errors="replace"),
                    bool(flags & IFF_UP), bool(flags & IFF_LOWER_UP))
        if IFLA_MTU in a:
            link.mtu = struct.unpack("=I", a[IFLA_MTU][:4])[0]
        if IFLA_TXQLEN in a:
            link.txqueuelen = struct.unpack("=I", a[IFLA_TXQLEN][:4])[0]
        if IFLA_OPERSTATE in a:
            state = a[IFLA_OPERSTATE][0]
            link.operstate = OPERSTATES[state] if state < len(OPERSTATES) else str(state)
        if IFLA_CARRIER in a:
            link.carrier = bool(a[IFLA_CARRIER][0])
        if len(a.get(IFLA_ADDRESS, b"")) == 6:
            link.hwaddr = ":".join(f"{b:02x}" for b in a[IFLA_ADDRESS])
        raw = a.get(IFLA_STATS64, b"")
        if len(raw) >= 8 * len(STATS64_FIELDS):
            values = struct.unpack_from(f"={len(STATS64_FIELDS)}Q", raw)
            link.stats = dict(zip(STATS64_FIELDS, values))
        links[index] = link
    return links


def dump_addresses() -> list[Addr]:
    """Every IPv4 and IPv6 address of the calling thread's namespace."""
    addrs: list[Addr] = []
    for msg, off in _dump(RTM_GETADDR, struct.pack("=BBBBI", 0, 0, 0, 0, 0), RTM_NEWADDR):
        family, prefixlen, _flags, _scope, index = struct.unpack_from("=BBBBI", msg, off)
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        a = _attrs(msg, off + 8)
        local, address = a.get(IFA_LOCAL), a.get(IFA_ADDRESS)
        mine = local or address
        if mine is None:
            continue
        ip = ipaddress.ip_address(mine)
        peer = None
        if local is not None and address is not None and local != address:
            peer = str(ipaddress.ip_address(address))  # IPv4 point-to-point
        addrs.append(Addr(index, f"{ip}/{prefixlen}", peer))
    return addrs


def _ethtool(sock: socket.socket, name: str, request: array.array[int]) -> None:
    """SIOCETHTOOL with ``ifr_data`` pointing at ``request`` (filled in place)."""
    address, _ = request.buffer_info()
    ifr = struct.pack("16sP", name.encode(), address).ljust(40, b"\0")
    fcntl.ioctl(sock.fileno(), SIOCETHTOOL, ifr)


def offloads(name: str) -> list[str] | None:
    """The TUN offloads active on ``name`` (``["CSUM", "TSO4", ...]``), from ethtool.

    None when the kernel does not answer (no ethtool support, or not allowed).
    """
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            info = array.array("I", [ETHTOOL_GSSET_INFO, 0, 0, 0, 0])
            info[2], info[3] = 1 << ETH_SS_FEATURES, 0  # sset_mask (u64, low word first)
            _ethtool(sock, name, info)
            count = info[4]
            strings = array.array("B", struct.pack("=III", ETHTOOL_GSTRINGS, ETH_SS_FEATURES,
                                                   count) + bytes(count * ETH_GSTRING_LEN))
            _ethtool(sock, name, strings)
            raw = strings.tobytes()[12:]
            names = [raw[i * ETH_GSTRING_LEN:(i + 1) * ETH_GSTRING_LEN].split(b"\0")[0]
                     .decode() for i in range(count)]
            blocks = (count + 31) // 32
            feats = array.array("I", [ETHTOOL_GFEATURES, blocks] + [0] * (4 * blocks))
            _ethtool(sock, name, feats)
    except OSError:
        return None
    active = [feats[2 + 4 * (i // 32) + 2] >> (i % 32) & 1 for i in range(count)]
    return [OFFLOAD_FEATURES[n] for n, on in zip(names, active)
            if on and n in OFFLOAD_FEATURES]
