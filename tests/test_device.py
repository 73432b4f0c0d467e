"""Creating devices: names, flags, properties, features(), list_devices()."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import socket
import struct

import pytest

import tuntap
from netutil import (
    ETH_P_IP,
    IFF_NO_PI,
    IFF_TUN,
    IFREQ,
    NOBODY,
    PI_SIZE,
    TUN_PATH,
    TUNGETFEATURES,
    TUNGETIFF,
    WAIT,
    ip,
    link_json,
    parse_ipv4,
    parse_udp4,
    udp_socket,
    unique_name,
)

pytestmark = pytest.mark.needs_tun


def test_default_device_is_tun_no_pi_with_kernel_chosen_name(open_device):
    dev = open_device()
    assert re.fullmatch(r"tun\d+", dev.name), dev.name
    assert tuntap.Flags.TUN in dev.flags
    assert tuntap.Flags.NO_PI in dev.flags
    assert tuntap.Flags.TAP not in dev.flags
    assert tuntap.Flags.MULTI_QUEUE not in dev.flags
    assert isinstance(dev.flags, tuntap.Flags)
    info = link_json(dev.name)
    assert info is not None
    assert info["linkinfo"]["info_kind"] == "tun"
    assert info["linkinfo"]["info_data"]["type"] == "tun"
    assert info["linkinfo"]["info_data"]["pi"] is False


def test_name_template_is_filled_by_the_kernel(open_device):
    prefix = f"t{os.getpid() % 10000}q"
    a = open_device(prefix + "%d")
    b = open_device(prefix + "%d")
    assert re.fullmatch(re.escape(prefix) + r"\d+", a.name)
    assert re.fullmatch(re.escape(prefix) + r"\d+", b.name)
    assert a.name != b.name
    assert link_json(a.name) and link_json(b.name)


def test_explicit_name(open_device):
    name = unique_name()
    dev = open_device(name)
    assert dev.name == name
    assert isinstance(dev.name, str)


def test_flags_report_packet_info_both_ways(open_device):
    with_pi = open_device(unique_name(), tuntap.Flags.TUN)
    without = open_device(unique_name(), tuntap.Flags.TUN | tuntap.Flags.NO_PI)
    assert tuntap.Flags.NO_PI not in with_pi.flags
    assert tuntap.Flags.NO_PI in without.flags
    assert link_json(with_pi.name)["linkinfo"]["info_data"]["pi"] is True
    assert link_json(without.name)["linkinfo"]["info_data"]["pi"] is False
    tap = open_device(unique_name(), tuntap.Flags.TAP)
    assert tuntap.Flags.NO_PI not in tap.flags
    assert tuntap.Flags.TAP in tap.flags


def test_tungetiff_reports_0x1000_with_packet_info_on_but_flags_do_not(up_device):
    """TUNGETIFF sets IFF_NOFILTER (0x1000, the same bit as IFF_NO_PI) whenever no socket
    filter is attached, so it cannot say whether packet info is on (docs/kernel.md,
    "Flags"). The packets say it is; so does .flags, which asks rtnetlink."""
    t = up_device(tuntap.Flags.TUN)
    raw = IFREQ.unpack(fcntl.ioctl(t.dev.fileno(), TUNGETIFF, bytes(IFREQ.size)))[1]
    assert raw & IFF_NO_PI
    assert tuntap.Flags.NO_PI not in t.dev.flags
    with udp_socket() as s:
        s.sendto(b"pi is on", (t.remote, 7402))
    t.dev.settimeout(WAIT)
    pkt = t.dev.read()
    assert pkt[:PI_SIZE] == struct.pack("!HH", 0, ETH_P_IP)
    assert parse_udp4(pkt[PI_SIZE:])[1].payload == b"pi is on"


def test_persist_in_the_flags_makes_a_persistent_device(cleanup_links):
    """The kernel ignores IFF_PERSIST in TUNSETIFF (it only reports it): the library sets
    it with TUNSETPERSIST right after."""
    name = unique_name()
    cleanup_links.append(name)
    with tuntap.Device(name, tuntap.Flags.TUN | tuntap.Flags.NO_PI | tuntap.Flags.PERSIST) as d:
        assert tuntap.Flags.PERSIST in d.flags
    info = link_json(name)
    assert info is not None and info["linkinfo"]["info_data"]["persist"] is True
    tuntap.delete(name)
    assert link_json(name) is None


def test_flags_accept_plain_ints(open_device):
    dev = open_device(unique_name(), IFF_TUN | IFF_NO_PI)
    assert dev.flags & (IFF_TUN | IFF_NO_PI) == IFF_TUN | IFF_NO_PI


def test_ifindex_matches_the_kernel(open_device):
    dev = open_device(unique_name())
    assert dev.ifindex == socket.if_nametoindex(dev.name)
    assert dev.ifindex == link_json(dev.name)["ifindex"]


def test_up_down_is_up(open_device):
    dev = open_device(unique_name())
    assert dev.is_up is False
    assert "UP" not in link_json(dev.name)["flags"]
    dev.up()
    assert dev.is_up is True
    assert "UP" in link_json(dev.name)["flags"]
    dev.down()
    assert dev.is_up is False
    assert "UP" not in link_json(dev.name)["flags"]


def test_mtu_get_and_set(open_device):
    dev = open_device(unique_name())
    assert dev.mtu == 1500 == link_json(dev.name)["mtu"]
    dev.mtu = 1400
    assert dev.mtu == 1400
    assert link_json(dev.name)["mtu"] == 1400


def test_mtu_is_enforced_on_real_traffic(tun):
    tun.dev.mtu = 1280
    with udp_socket() as s:
        s.sendto(b"m" * 2000, (tun.remote, 7400))  # fragmented by the stack
    tun.dev.settimeout(WAIT)
    first = tun.dev.read()
    assert len(first) == 1276  # 20 header + 1256 (multiple of 8) data
    ip4 = parse_ipv4(first)
    frag = struct.unpack("!H", first[6:8])[0]
    assert frag & 0x2000  # more fragments
    assert ip4.dst == tun.remote
    second = tun.dev.read()
    assert len(second) == 20 + 2008 - 1256


def test_mtu_invalid_value_is_an_error(open_device):
    dev = open_device(unique_name())
    with pytest.raises(ValueError, match="^mtu must be >= 0, not -5$"):
        dev.mtu = -5
    with pytest.raises(OverflowError, match="^mtu is out of range$"):
        dev.mtu = 1 << 40
    with pytest.raises(TypeError, match="^mtu must be int, not str$"):
        dev.mtu = "1400"
    # Below the kernel's minimum (68, drivers/net/tun.c: MIN_MTU): its EINVAL, kept.
    with pytest.raises(OSError) as ei:
        dev.mtu = 10
    assert type(ei.value) is OSError and ei.value.errno == errno.EINVAL
    assert f"ioctl(SIOCSIFMTU) on '{dev.name}'" in str(ei.value)
    assert dev.mtu == 1500


def test_txqueuelen_get_and_set(open_device):
    dev = open_device(unique_name())
    assert dev.txqueuelen == link_json(dev.name)["txqlen"] == 500
    dev.txqueuelen = 42
    assert dev.txqueuelen == 42
    assert link_json(dev.name)["txqlen"] == 42


@pytest.mark.parametrize("extra", [0, tuntap.Flags.ONE_QUEUE], ids=["plain", "ONE_QUEUE"])
def test_txqueuelen_bounds_the_device_queue_and_the_rest_is_tx_dropped(up_device, extra):
    """The kernel sizes each queue's ring to txqueuelen and drops (counting tx_dropped)
    what does not fit; IFF_ONE_QUEUE no longer changes any of it (docs/kernel.md)."""
    t = up_device(tuntap.Flags.TUN | tuntap.Flags.NO_PI | extra)
    assert (tuntap.Flags.ONE_QUEUE in t.dev.flags) == bool(extra)
    t.dev.txqueuelen = 5
    with udp_socket() as s:
        for i in range(20):
            s.sendto(b"q%d" % i, (t.remote, 7401))
    t.dev.setblocking(False)
    got = 0
    for _ in range(40):
        try:
            t.dev.read()
        except BlockingIOError:
            break
        got += 1
    assert 1 <= got <= 5, got
    stats = json.loads(ip("-j", "-s", "link", "show", "dev", t.name).stdout)[0]["stats64"]
    assert stats["tx"]["dropped"] >= 20 - got, stats


def test_features_matches_tungetfeatures():
    fd = os.open(TUN_PATH, os.O_RDWR | os.O_CLOEXEC)
    try:
        raw = struct.unpack("I", fcntl.ioctl(fd, TUNGETFEATURES, b"\0" * 4))[0]
    finally:
        os.close(fd)
    feats = tuntap.features()
    assert isinstance(feats, tuntap.Flags)
    assert int(feats) == raw
    for f in (tuntap.Flags.TUN, tuntap.Flags.TAP, tuntap.Flags.NO_PI,
              tuntap.Flags.MULTI_QUEUE, tuntap.Flags.VNET_HDR):
        assert f in feats


def test_list_devices_reports_every_tun_tap(open_device, cleanup_links):
    a = open_device(unique_name())
    b = open_device(unique_name(), tuntap.Flags.TAP)
    c = open_device(unique_name(), tuntap.Flags.TUN | tuntap.Flags.NO_PI
                    | tuntap.Flags.MULTI_QUEUE)
    cleanup_links.append(b.name)
    b.persist(True)
    b.set_owner(NOBODY)
    b.set_group(NOBODY - 1)
    infos = {i.name: i for i in tuntap.list_devices()}
    assert {a.name, b.name, c.name} <= set(infos)
    assert "lo" not in infos
    assert all(isinstance(i, tuntap.DeviceInfo) for i in infos.values())

    ia, ib, ic = infos[a.name], infos[b.name], infos[c.name]
    assert ia.ifindex == a.ifindex and ib.ifindex == b.ifindex and ic.ifindex == c.ifindex
    assert tuntap.Flags.TUN in ia.flags and tuntap.Flags.NO_PI in ia.flags
    assert tuntap.Flags.TAP in ib.flags and tuntap.Flags.NO_PI not in ib.flags
    assert tuntap.Flags.MULTI_QUEUE in ic.flags
    assert ia.persistent is False and ic.persistent is False
    assert ib.persistent is True
    assert ib.owner == NOBODY and ib.group == NOBODY - 1
    assert ia.owner in (None, -1) and ia.group in (None, -1)
    b.persist(False)
    infos = {i.name: i for i in tuntap.list_devices()}
    assert infos[b.name].persistent is False


def test_list_devices_forgets_closed_devices(open_device):
    name = unique_name()
    dev = tuntap.Device(name)
    assert name in {i.name for i in tuntap.list_devices()}
    dev.close()
    assert name not in {i.name for i in tuntap.list_devices()}


def test_repr_names_the_device(open_device):
    dev = open_device(unique_name())
    assert dev.name in repr(dev)


def test_device_is_subclassable(open_device):
    class MyDevice(tuntap.Device):
        pass

    with MyDevice(unique_name()) as dev:
        assert isinstance(dev, tuntap.Device)
        assert dev.ifindex > 0
