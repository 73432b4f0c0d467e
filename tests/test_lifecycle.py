"""Persistence, reopen, delete, and IPv4/IPv6 addresses checked with ip(8) and traffic."""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct

import pytest

import tuntap
from netutil import (
    ETH_P_IP,
    PI_SIZE,
    WAIT,
    addr_json,
    is_udp4_to,
    link_exists,
    link_json,
    parse_udp4,
    read_matching,
    udp_socket,
    unique_name,
    unique_net,
    unique_net6,
    wait_ipv6_routes,
)

pytestmark = pytest.mark.needs_tun


def test_persist_reopen_delete(cleanup_links):
    name = unique_name()
    cleanup_links.append(name)
    dev = tuntap.Device(name)
    ifindex = dev.ifindex
    dev.persist()
    assert tuntap.Flags.PERSIST in dev.flags
    dev.close()
    info = link_json(name)
    assert info is not None, "persistent device vanished on close"
    assert info["linkinfo"]["info_data"]["persist"] is True
    assert info["ifindex"] == ifindex

    with tuntap.Device(name) as again:
        assert again.ifindex == ifindex
        assert tuntap.Flags.PERSIST in again.flags
    assert link_exists(name)

    tuntap.delete(name)
    assert not link_exists(name)


def test_persist_off_removes_device_on_close():
    name = unique_name()
    dev = tuntap.Device(name)
    dev.persist(True)
    dev.persist(False)
    assert tuntap.Flags.PERSIST not in dev.flags
    dev.close()
    assert not link_exists(name)


def test_delete_of_a_persistent_tap(cleanup_links):
    name = unique_name()
    cleanup_links.append(name)
    with tuntap.Device(name, tuntap.Flags.TAP | tuntap.Flags.NO_PI) as dev:
        dev.persist()
    assert link_exists(name)
    tuntap.delete(name)
    assert not link_exists(name)


def test_delete_missing_device_is_file_not_found():
    with pytest.raises(FileNotFoundError):
        tuntap.delete(unique_name())


def test_delete_of_a_non_tun_interface_is_value_error():
    with pytest.raises(ValueError, match="^'lo' is not a TUN/TAP device$"):
        tuntap.delete("lo")


def test_delete_rejects_bad_name():
    with pytest.raises(ValueError, match="^interface name 'a/b' must not contain"):
        tuntap.delete("a/b")


def test_reopening_persistent_no_pi_device_without_no_pi_turns_pi_on(cleanup_links):
    """Attaching replaces the feature flags (docs/kernel.md, "Flags"): .flags must tell
    the truth, and the packets do carry packet info again."""
    name = unique_name()
    cleanup_links.append(name)
    net = unique_net()
    with tuntap.Device(name, tuntap.Flags.TUN | tuntap.Flags.NO_PI) as dev:
        dev.persist()
        assert tuntap.Flags.NO_PI in dev.flags
    with tuntap.Device(name, tuntap.Flags.TUN) as dev:
        assert tuntap.Flags.NO_PI not in dev.flags
        assert link_json(name)["linkinfo"]["info_data"]["pi"] is True
        dev.add_address(net.cidr)
        dev.up()
        with udp_socket() as s:
            s.sendto(b"pi again", (net.remote, 7500))
        pkt = read_matching(dev, lambda p: len(p) > PI_SIZE
                            and is_udp4_to(p[PI_SIZE:], net.remote, 7500))
        assert pkt[:PI_SIZE] == struct.pack("!HH", 0, ETH_P_IP)
        dev.persist(False)
    assert not link_exists(name)


# --- addresses ----------------------------------------------------------------------


def inet(name: str, family: str) -> list[dict]:
    return [a for a in addr_json(name) if a["family"] == family]


def test_add_and_remove_ipv4_address_with_prefix(tun):
    addrs = inet(tun.name, "inet")
    assert [(a["local"], a["prefixlen"]) for a in addrs] == [(tun.local, 24)]
    # Real traffic to the subnet goes through the device, from the address we set.
    with udp_socket() as s:
        s.sendto(b"v4", (tun.remote, 7600))
    pkt = read_matching(tun.dev, lambda p: is_udp4_to(p, tun.remote, 7600))
    ip4, udp = parse_udp4(pkt)
    assert ip4.src == tun.local and udp.payload == b"v4"

    tun.dev.remove_address(tun.cidr)
    assert inet(tun.name, "inet") == []
    with udp_socket() as s, pytest.raises(OSError) as ei:
        s.sendto(b"gone", (tun.remote, 7600))
    assert ei.value.errno == errno.ENETUNREACH


def test_two_ipv4_addresses(open_device):
    n1, n2 = unique_net(), unique_net()
    dev = open_device(unique_name())
    dev.add_address(n1.cidr)
    dev.add_address(f"{n2.local}/16")
    got = sorted((a["local"], a["prefixlen"]) for a in inet(dev.name, "inet"))
    assert got == sorted([(n1.local, 24), (n2.local, 16)])
    dev.remove_address(n1.cidr)
    assert [(a["local"], a["prefixlen"]) for a in inet(dev.name, "inet")] == [(n2.local, 16)]


def test_add_ipv4_address_with_peer(open_device):
    net = unique_net()
    dev = open_device(unique_name())
    dev.add_address(f"{net.local}/32", peer=net.remote)
    dev.up()
    addrs = inet(dev.name, "inet")
    assert len(addrs) == 1
    assert addrs[0]["local"] == net.local
    assert addrs[0]["address"] == net.remote
    assert addrs[0]["prefixlen"] == 32
    with udp_socket() as s:
        s.sendto(b"to peer", (net.remote, 7601))
    pkt = read_matching(dev, lambda p: is_udp4_to(p, net.remote, 7601))
    ip4, udp = parse_udp4(pkt)
    assert (ip4.src, ip4.dst, udp.payload) == (net.local, net.remote, b"to peer")
    # Only the peer is routed through the device, not the rest of the /24.
    with udp_socket() as s, pytest.raises(OSError) as ei:
        s.sendto(b"x", (net.other, 7601))
    assert ei.value.errno == errno.ENETUNREACH


def test_add_and_remove_ipv6_address(open_device):
    local, remote = unique_net6()
    dev = open_device(unique_name())
    dev.add_address(f"{local}/64")
    dev.up()
    addrs = inet(dev.name, "inet6")
    assert [(a["local"], a["prefixlen"]) for a in addrs] == [(local, 64)]
    wait_ipv6_routes(dev.name, local, str(ipaddress.ip_interface(f"{local}/64").network))

    with udp_socket(socket.AF_INET6) as s:
        s.sendto(b"over v6", (remote, 7602))

    def is_ours(p: bytes) -> bool:
        return (len(p) >= 48 and p[0] >> 4 == 6 and p[6] == 17
                and struct.unpack("!H", p[42:44])[0] == 7602)

    pkt = read_matching(dev, is_ours)
    assert socket.inet_ntop(socket.AF_INET6, pkt[8:24]) == local
    assert socket.inet_ntop(socket.AF_INET6, pkt[24:40]) == remote
    assert struct.unpack("!H", pkt[4:6])[0] == 8 + len(b"over v6")
    assert pkt[48:] == b"over v6"

    dev.remove_address(f"{local}/64")
    assert inet(dev.name, "inet6") == []


def test_add_address_to_a_down_device_then_up(open_device):
    net = unique_net()
    dev = open_device(unique_name())
    dev.add_address(net.cidr)
    assert not dev.is_up
    dev.up()
    with udp_socket() as s:
        s.sendto(b"late up", (net.remote, 7603))
    dev.settimeout(WAIT)
    assert parse_udp4(dev.read())[1].payload == b"late up"


@pytest.mark.parametrize("bad", ["not-an-address", "10.0.0.300/24", "10.0.0.1/33",
                                 "fd00::1/129", ""])
def test_add_address_rejects_malformed(open_device, bad):
    dev = open_device(unique_name())
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 interface"):
        dev.add_address(bad)
    assert addr_json(dev.name) == []


def test_add_address_twice_keeps_kernel_errno(open_device):
    net = unique_net()
    dev = open_device(unique_name())
    dev.add_address(net.cidr)
    with pytest.raises(FileExistsError) as ei:
        dev.add_address(net.cidr)
    assert ei.value.errno == errno.EEXIST


def test_remove_missing_address_is_oserror(open_device):
    net = unique_net()
    dev = open_device(unique_name())
    with pytest.raises(OSError) as ei:
        dev.remove_address(net.cidr)
    assert ei.value.errno == errno.EADDRNOTAVAIL
