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


# ---------------------------------------------------------------------------------------
# netns= on list_devices, delete and open_queues
# ---------------------------------------------------------------------------------------


def test_list_devices_in_another_namespace(open_device, netns_arg):
    nsname, arg = netns_arg
    there = open_device(unique_name(), tuntap.Flags.TAP | tuntap.Flags.NO_PI, netns=nsname)
    here = open_device(unique_name())
    names = {i.name for i in tuntap.list_devices(netns=arg)}
    assert there.name in names and here.name not in names
    (info,) = [i for i in tuntap.list_devices(arg) if i.name == there.name]
    assert info.ifindex == there.ifindex
    assert info.flags & (tuntap.Flags.TAP | tuntap.Flags.NO_PI) == \
        tuntap.Flags.TAP | tuntap.Flags.NO_PI
    assert here.name in {i.name for i in tuntap.list_devices()}
    assert there.name not in {i.name for i in tuntap.list_devices()}
    if isinstance(arg, int):
        os.fstat(arg)  # the caller's fd is left open


def test_delete_a_persistent_device_in_another_namespace(named_netns):
    name = unique_name()
    with tuntap.Device(name, netns=named_netns) as dev:
        dev.persist()
    assert link_exists(name, netns=named_netns)
    with pytest.raises(FileNotFoundError, match=f"No such TUN/TAP device: '{name}'"):
        tuntap.delete(name)  # not in our namespace
    assert link_exists(name, netns=named_netns)
    before = current_netns()
    tuntap.delete(name, netns=named_netns)
    assert current_netns() == before
    assert not link_exists(name, netns=named_netns)
    with pytest.raises(FileNotFoundError):
        tuntap.delete(name, netns=named_netns)


def test_delete_in_another_namespace_refuses_what_is_not_tun(named_netns):
    with pytest.raises(ValueError, match="^'lo' is not a TUN/TAP device$"):
        tuntap.delete("lo", netns=named_netns)
    from netutil import ip

    ip("link", "add", "ttbr0", "type", "bridge", netns=named_netns)
    with pytest.raises(ValueError,
                       match="^'ttbr0' is a 'bridge' interface, not a TUN/TAP device$"):
        tuntap.delete("ttbr0", netns=named_netns)
    assert link_exists("ttbr0", netns=named_netns)


def test_delete_and_list_in_a_missing_namespace_are_file_not_found():
    with pytest.raises(FileNotFoundError) as ei:
        tuntap.list_devices(netns="tt-no-such-netns-xyz")
    assert ei.value.filename == "/var/run/netns/tt-no-such-netns-xyz"
    with pytest.raises(FileNotFoundError):
        tuntap.delete("tun0", netns="tt-no-such-netns-xyz")
    with pytest.raises(FileNotFoundError):
        tuntap.open_queues(unique_name(), 2, netns="tt-no-such-netns-xyz")
    with pytest.raises(TypeError):
        tuntap.list_devices(netns=1.5)


def test_open_queues_in_another_namespace_reads_its_traffic(named_netns):
    net = unique_net()
    queues = tuntap.open_queues(unique_name(), 2, netns=named_netns)
    try:
        assert not link_exists(queues[0].name)
        (info,) = [i for i in tuntap.list_devices(named_netns) if i.name == queues[0].name]
        assert (info.queues, tuntap.Flags.MULTI_QUEUE in info.flags) == (2, True)
        queues[0].add_address(net.cidr)
        queues[0].up()
        with in_netns(f"/var/run/netns/{named_netns}"):
            socks = [udp_socket() for _ in range(16)]
        seen = set()
        for s in socks:
            with s:
                s.sendto(b"over there", (net.remote, 7802))
        for q in queues:
            q.setblocking(False)
        import time

        deadline = time.monotonic() + WAIT
        per_queue = [0, 0]
        while sum(per_queue) < 16 and time.monotonic() < deadline:
            for i, q in enumerate(queues):
                try:
                    pkt = q.read()
                except BlockingIOError:
                    continue
                if is_udp4_to(pkt, net.remote, 7802):
                    per_queue[i] += 1
                    seen.add(parse_udp4(pkt)[1].sport)
            time.sleep(0.001)
        assert sum(per_queue) == 16 and len(seen) == 16
        assert all(per_queue), f"16 flows all on one queue: {per_queue}"
    finally:
        for q in queues:
            q.close()
    assert not link_exists(queues[0].name, netns=named_netns)


def test_readme_netns_example_creates_and_deletes_there(named_netns):
    dev = tuntap.Device("tun1", netns=named_netns)
    dev.persist()
    dev.close()
    assert "tun1" in {i.name for i in tuntap.list_devices(netns=named_netns)}
    tuntap.delete("tun1", netns=named_netns)
    assert "tun1" not in {i.name for i in tuntap.list_devices(netns=named_netns)}


def test_filters_and_steering_act_on_a_device_in_another_namespace(named_netns):
    """The ioctls go to the fd, which belongs to the device's namespace: traffic sent
    over there is steered and cut as on a device of ours."""
    import bpfprog

    net = unique_net()
    queues = tuntap.open_queues(unique_name(), 2, netns=named_netns)
    fds = [bpfprog.load(bpfprog.return_constant(1)), bpfprog.load(bpfprog.return_constant(28))]
    try:
        queues[0].add_address(net.cidr)
        queues[0].up()
        queues[0].set_steering_program(fds[0])   # everything to queue 1
        queues[1].set_filter_program(fds[1])     # cut to the IPv4 + UDP headers
        with in_netns(f"/var/run/netns/{named_netns}"):
            s = udp_socket()
        with s:
            for _ in range(4):
                s.sendto(b"x" * 100, (net.remote, 7803))
        pkts = []
        queues[1].settimeout(WAIT)
        for _ in range(50):
            pkt = queues[1].read()
            if len(pkt) >= 28 and is_udp4_to(pkt, net.remote, 7803):
                pkts.append(pkt)
            if len(pkts) == 4:
                break
        assert [len(p) for p in pkts] == [28] * 4
        queues[0].setblocking(False)
        with pytest.raises(BlockingIOError):
            for _ in range(100):  # whatever queue 0 holds, none of it is ours
                assert not is_udp4_to(queues[0].read(), net.remote, 7803)
    finally:
        for fd in fds:
            os.close(fd)
        for q in queues:
            q.close()
