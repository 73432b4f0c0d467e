"""Device.vnet_le / Device.vnet_be: the byte order of the virtio-net header.

Both exist only when the build's headers define TUNSETVNETLE / TUNSETVNETBE (test with
``hasattr``). Big-endian legacy headers on a little-endian host need a kernel built
with CONFIG_TUN_VNET_CROSS_LE; without it TUNSETVNETBE is EINVAL and the library says
why. The header of a real USO super-packet shows which order the kernel used.
"""

from __future__ import annotations

import re
import socket
import struct
import sys
from collections.abc import Callable
from typing import Any

import pytest

import tuntap
from netutil import ip, unique_name, unique_net

pytestmark = pytest.mark.needs_tun

Flags = tuntap.Flags
Offload = tuntap.Offload
VNET_TUN = Flags.TUN | Flags.NO_PI | Flags.VNET_HDR
PORT = 7841
GSO = 1000

needs_le = pytest.mark.skipif(not hasattr(tuntap.Device, "vnet_le"),
                              reason="built without TUNSETVNETLE")
needs_be = pytest.mark.skipif(not hasattr(tuntap.Device, "vnet_be"),
                              reason="built without TUNSETVNETBE")


def _gso_size_bytes(dev: Any) -> bytes:
    """Send a UDP_SEGMENT datagram through ``dev`` (USO on) and return the two
    gso_size bytes of the virtio-net header the kernel wrote."""
    ip("link", "set", dev.name, "addrgenmode", "none")
    dev.up()
    net = unique_net()
    dev.add_address(f"{net.local}/32", peer=net.remote)
    dev.set_offload(Offload.CSUM | Offload.USO4 | Offload.USO6)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(17, getattr(socket, "UDP_SEGMENT", 103), GSO)
        s.bind((net.local, 0))
        s.sendto(bytes(3 * GSO), (net.remote, PORT))
    dev.settimeout(2.0)
    for _ in range(100):
        raw = dev.read()
        pkt = raw[10:]
        if len(pkt) > 28 and pkt[9] == 17 and struct.unpack("!H", pkt[22:24])[0] == PORT:
            return raw[4:6]
    raise AssertionError("no datagram")


def test_both_are_compiled_in_on_this_build() -> None:
    # The uapi headers of every supported build define them (Linux >= 4.1).
    assert hasattr(tuntap.Device, "vnet_le") and hasattr(tuntap.Device, "vnet_be")


@needs_le
def test_vnet_le_is_off_at_open_and_round_trips(open_device: Callable[..., Any]) -> None:
    dev = open_device(unique_name(), VNET_TUN)
    assert dev.vnet_le is False
    dev.vnet_le = True
    assert dev.vnet_le is True
    dev.vnet_le = 0
    assert dev.vnet_le is False


@needs_le
def test_vnet_le_headers_are_little_endian(open_device: Callable[..., Any]) -> None:
    dev = open_device(unique_name(), VNET_TUN)
    dev.vnet_le = True
    assert _gso_size_bytes(dev) == struct.pack("<H", GSO)


@needs_le
def test_a_reopened_persistent_device_starts_in_the_hosts_order(
        cleanup_links: list[str]) -> None:
    name = unique_name()
    cleanup_links.append(name)
    with tuntap.Device(name, VNET_TUN | Flags.PERSIST) as dev:
        dev.vnet_le = True
    with tuntap.Device(name, VNET_TUN) as dev:
        assert dev.vnet_le is False
        assert _gso_size_bytes(dev) == struct.pack("=H", GSO)


@needs_be
def test_vnet_be_is_big_endian_or_refused_with_the_reason(
        open_device: Callable[..., Any]) -> None:
    dev = open_device(unique_name(), VNET_TUN)
    assert dev.vnet_be is False
    dev.vnet_be = False  # always allowed: it is the state on every kernel
    try:
        dev.vnet_be = True
    except OSError as e:
        # A kernel without CONFIG_TUN_VNET_CROSS_LE (this machine's, for one).
        assert type(e) is OSError and e.errno == 22
        assert str(e) == (
            f"[Errno 22] Invalid argument: ioctl(TUNSETVNETBE) on '{dev.name}' (this "
            "kernel was built without CONFIG_TUN_VNET_CROSS_LE: vnet headers stay in the "
            "host's byte order or little-endian)")
        assert dev.vnet_be is False
        assert _gso_size_bytes(dev) == struct.pack("=H", GSO)
        return
    assert dev.vnet_be is True
    want = struct.pack(">H", GSO) if sys.byteorder == "little" else struct.pack("=H", GSO)
    assert _gso_size_bytes(dev) == want


@pytest.mark.parametrize("attr", ["vnet_le", "vnet_be"])
def test_byteorder_bad_values_delete_and_closed(open_device: Callable[..., Any],
                                                attr: str) -> None:
    if not hasattr(tuntap.Device, attr):
        pytest.skip(f"built without {attr}")
    dev = open_device(unique_name(), VNET_TUN)
    with pytest.raises(TypeError, match=f"^{attr} must be bool, not str$"):
        setattr(dev, attr, "yes")
    with pytest.raises(AttributeError, match=f"cannot delete {attr}"):
        delattr(dev, attr)
    dev.close()
    closed = re.escape("I/O operation on closed device")
    with pytest.raises(ValueError, match=closed):
        getattr(dev, attr)
    with pytest.raises(ValueError, match=closed):
        setattr(dev, attr, False)
