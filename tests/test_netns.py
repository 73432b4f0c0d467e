"""netns=: create the device inside another namespace and use it from ours."""

from __future__ import annotations

import errno
import os
import pathlib
import socket

import pytest

import tuntap
from netutil import (
    WAIT,
    addr_json,
    build_udp4,
    current_netns,
    in_netns,
    is_udp4_to,
    link_exists,
    link_json,
    parse_udp4,
    read_matching,
    udp_socket,
    unique_name,
    unique_net,
)

pytestmark = pytest.mark.needs_tun


@pytest.fixture(params=["name", "path", "pathlike", "fd"])
def netns_arg(request, named_netns):
    path = f"/var/run/netns/{named_netns}"
    if request.param == "name":
        yield named_netns, named_netns
    elif request.param == "path":
        yield named_netns, path
    elif request.param == "pathlike":
        yield named_netns, pathlib.Path(path)
    else:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            yield named_netns, fd
        finally:
            os.close(fd)


def test_device_created_in_other_namespace_and_io_works_from_ours(open_device, netns_arg):
    nsname, arg = netns_arg
    before = current_netns()
    name = unique_name()
    net = unique_net()
    dev = open_device(name, netns=arg)
    assert current_netns() == before
    assert dev.name == name
    assert not link_exists(name)
    info = link_json(name, netns=nsname)
    assert info is not None
    assert info["ifindex"] == dev.ifindex
    assert name not in {i.name for i in tuntap.list_devices()}
    if isinstance(arg, int):
        os.fstat(arg)  # the caller's fd is left open

    # Lifecycle calls act in the device's namespace.
    dev.add_address(net.cidr)
    dev.up()
    dev.mtu = 1400
    assert dev.is_up
    assert [a["local"] for a in addr_json(name, netns=nsname)
            if a["family"] == "inet"] == [net.local]
    assert link_json(name, netns=nsname)["mtu"] == 1400
    assert current_netns() == before

    # A socket in the other namespace sends through the device; we read it here.
    path = f"/var/run/netns/{nsname}"
    with in_netns(path):
        s = udp_socket()
        r = udp_socket()
    with s, r:
        s.sendto(b"from the other side", (net.remote, 7800))
        pkt = read_matching(dev, lambda p: is_udp4_to(p, net.remote, 7800))
        ip4, udp = parse_udp4(pkt)
        assert (ip4.src, udp.payload) == (net.local, b"from the other side")

        # And what we write arrives at a socket over there.
        r.bind((net.local, 0))
        pkt = build_udp4(net.remote, net.local, 1111, r.getsockname()[1], b"to the other side")
        assert dev.write(pkt) == len(pkt)
        assert r.recvfrom(100) == (b"to the other side", (net.remote, 1111))
    assert current_netns() == before


def test_sysfs_speaks_for_the_namespace_that_mounted_it_so_it_is_never_asked(open_device):
    """The session entered its namespace with a plain unshare, so /sys/class/net still
    shows the namespace sysfs was mounted in: our device is missing there. rtnetlink (ip)
    and the device's own answers speak for our namespace."""
    dev = open_device(unique_name())
    assert not os.path.exists(f"/sys/class/net/{dev.name}")
    info = link_json(dev.name)
    assert info is not None and info["ifindex"] == dev.ifindex
    dev.mtu = 1400
    assert dev.mtu == link_json(dev.name)["mtu"] == 1400
    assert dev.name in {i.name for i in tuntap.list_devices()}


def test_device_in_other_namespace_disappears_on_close(named_netns):
    name = unique_name()
    dev = tuntap.Device(name, netns=named_netns)
    assert link_exists(name, netns=named_netns)
    dev.close()
    assert not link_exists(name, netns=named_netns)


def test_missing_namespace_is_file_not_found_and_leaves_thread_alone():
    before = current_netns()
    with pytest.raises(FileNotFoundError):
        tuntap.Device(unique_name(), netns="tt-no-such-netns-xyz")
    with pytest.raises(FileNotFoundError):
        tuntap.Device(unique_name(), netns="/nonexistent/netns")
    assert current_netns() == before


def test_netns_fd_that_is_not_a_namespace_is_an_error():
    before = current_netns()
    fd = os.open("/dev/null", os.O_RDONLY)
    try:
        with pytest.raises(OSError) as ei:
            tuntap.Device(unique_name(), netns=fd)
    finally:
        os.close(fd)
    assert type(ei.value) is OSError and ei.value.errno == errno.EINVAL
    assert "setns(CLONE_NEWNET)" in str(ei.value)
    assert current_netns() == before


def test_netns_of_wrong_type_is_type_error():
    with pytest.raises(TypeError):
        tuntap.Device(unique_name(), netns=1.5)


def test_netns_from_another_thread_leaves_that_thread_alone(named_netns):
    import threading

    result = {}

    def run() -> None:
        before = current_netns()
        try:
            with tuntap.Device(unique_name(), netns=named_netns) as dev:
                result["ifindex"] = dev.ifindex
        except BaseException as e:
            result["exc"] = e
        result["same"] = current_netns() == before

    t = threading.Thread(target=run)
    t.start()
    t.join(WAIT)
    assert "exc" not in result, result
    assert result["same"] is True
    assert result["ifindex"] > 0


def test_socket_in_our_namespace_cannot_reach_device_elsewhere(up_device, named_netns):
    t = up_device(netns=named_netns)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(OSError) as ei:
        s.sendto(b"x", (t.remote, 7801))  # no route here: the device is not ours
    assert ei.value.errno == errno.ENETUNREACH
