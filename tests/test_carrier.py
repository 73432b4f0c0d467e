"""Device.carrier: read from rtnetlink (IFLA_CARRIER), set with TUNSETCARRIER.

With the carrier off the kernel sends nothing to the device (the link is DOWN for the
stack); with it on again traffic flows. Turning it on needs an attached queue
(drivers/net/tun.c: tun_net_change_carrier), which a multi-queue device whose only
queue is detached does not have.
"""

from __future__ import annotations

import errno
import re
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

import tuntap
from netutil import WAIT, in_netns, is_udp4_to, link_json, unique_name, unique_net

pytestmark = pytest.mark.needs_tun

Flags = tuntap.Flags
PORT = 7831


def _up(dev: Any) -> str:
    net = unique_net()
    dev.add_address(net.cidr)
    dev.up()
    return net.remote


def _probe(dev: Any, remote: str, sock: socket.socket | None = None,
           wait: float = 0.2) -> bool:
    """Send one datagram towards ``remote``; True when the device reads it in ``wait`` s."""
    s = sock or socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.sendto(b"probe", (remote, PORT))
    finally:
        if sock is None:
            s.close()
    deadline = time.monotonic() + wait
    old = dev.gettimeout()
    try:
        for _ in range(1000):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            dev.settimeout(left)
            try:
                pkt = dev.read()
            except TimeoutError:
                return False
            if is_udp4_to(pkt, remote, PORT):
                return True
    finally:
        dev.settimeout(old)
    return False


def _until_received(dev: Any, remote: str, sock: socket.socket | None = None) -> bool:
    """Probe until one arrives (the qdisc comes back a moment after carrier on)."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if _probe(dev, remote, sock, wait=0.1):
            return True
    return False


def test_carrier_off_stops_the_traffic_and_on_brings_it_back(
        open_device: Callable[..., Any]) -> None:
    dev = open_device(unique_name())
    remote = _up(dev)
    assert dev.carrier is True
    assert _probe(dev, remote)

    dev.carrier = False
    assert dev.carrier is False
    info = link_json(dev.name)
    assert info is not None and "NO-CARRIER" in info["flags"]
    assert info["operstate"] == "DOWN"
    assert not any(_probe(dev, remote) for _ in range(3)), "traffic with the carrier off"

    dev.carrier = True
    assert dev.carrier is True
    assert _until_received(dev, remote), "no traffic after carrier on"
    info = link_json(dev.name)
    assert info is not None and "NO-CARRIER" not in info["flags"]


def test_no_carrier_flag_opens_with_the_carrier_off(open_device: Callable[..., Any]) -> None:
    dev = open_device(unique_name(), Flags.TUN | Flags.NO_PI | Flags.NO_CARRIER)
    remote = _up(dev)
    assert dev.carrier is False
    assert not _probe(dev, remote)
    dev.carrier = 1  # an int is a bool here
    assert dev.carrier is True
    assert _until_received(dev, remote)


def test_turning_the_carrier_on_needs_an_attached_queue() -> None:
    (q,) = tuntap.open_queues(unique_name(), 1)
    try:
        q.detach_queue()
        with pytest.raises(PermissionError) as ei:
            q.carrier = True
        assert ei.value.errno == errno.EPERM
        assert str(ei.value) == (
            f"[Errno 1] Operation not permitted: ioctl(TUNSETCARRIER) on '{q.name}' (no "
            "queue is attached: the kernel turns the carrier on only while one is; "
            "attach_queue() first)")
        q.carrier = False  # off needs nothing
        assert q.carrier is False
        q.attach_queue()
        q.carrier = True
        assert q.carrier is True
    finally:
        q.close()


def test_carrier_of_a_device_in_another_namespace(named_netns: str) -> None:
    path = f"/var/run/netns/{named_netns}"
    with tuntap.Device(unique_name(), netns=named_netns) as dev:
        remote = _up(dev)
        with in_netns(path):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sock:
            assert _until_received(dev, remote, sock)
            dev.carrier = False
            info = link_json(dev.name, netns=named_netns)
            assert info is not None and "NO-CARRIER" in info["flags"]
            assert dev.carrier is False
            assert not _probe(dev, remote, sock)
            dev.carrier = True
            assert _until_received(dev, remote, sock)


@pytest.mark.parametrize("value, exc, msg", [
    ("yes", TypeError, "carrier must be bool, not str"),
    (None, TypeError, "carrier must be bool, not NoneType"),
    (1.0, TypeError, "carrier must be bool, not float"),
])
def test_carrier_bad_values(open_device: Callable[..., Any], value: object,
                            exc: type[Exception], msg: str) -> None:
    dev = open_device(unique_name())
    with pytest.raises(exc, match=f"^{re.escape(msg)}$"):
        dev.carrier = value
    assert dev.carrier is True


def test_carrier_cannot_be_deleted_and_needs_an_open_device(
        open_device: Callable[..., Any]) -> None:
    dev = open_device(unique_name())
    with pytest.raises(AttributeError, match="cannot delete carrier"):
        del dev.carrier
    dev.close()
    closed = re.escape("I/O operation on closed device")
    with pytest.raises(ValueError, match=closed):
        dev.carrier  # noqa: B018
    with pytest.raises(ValueError, match=closed):
        dev.carrier = True
