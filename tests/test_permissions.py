"""Non-root use: a uid without CAP_NET_ADMIN attaches to a device it owns, not to others.

The child process imports tuntap as root, then drops to uid/gid 65534 (no capabilities,
no supplementary groups) before touching any device. It opens a private device node
(mknod c 10 200, mode 666) because /dev/net/tun is 0600 here.
"""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import textwrap

import pytest

import tuntap
from netutil import IFF_NO_PI, IFF_TUN, NOBODY, link_exists, unique_name, unique_net

pytestmark = pytest.mark.needs_tun

CHILD = textwrap.dedent(f"""
    import json, os, sys, tuntap
    node, name, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY})
    caps = [l for l in open("/proc/self/status") if l.startswith("CapEff:")][0].split()[1]
    out = {{"uid": os.getuid(), "capeff": int(caps, 16)}}
    try:
        flags = tuntap.Flags.TUN | tuntap.Flags.NO_PI
        if mode == "tap":
            flags = tuntap.Flags.TAP | tuntap.Flags.NO_PI
        with tuntap.Device(name, flags, path=node) as dev:
            out["name"] = dev.name
            out["flags"] = int(dev.flags)
            dev.settimeout(2.0)
            out["packet"] = dev.read().hex()
    except BaseException as e:
        out["exc"] = type(e).__name__
        out["errno"] = getattr(e, "errno", None)
        out["msg"] = str(e)
    print(json.dumps(out))
""")


def run_child(node: str, name: str, mode: str = "tun") -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, node, name, mode],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture
def persistent(cleanup_links):
    """Factory: a persistent, configured, closed device with the given owner/group."""
    def make(owner: int | None = None, group: int | None = None, flags=None):
        name = unique_name()
        cleanup_links.append(name)
        net = unique_net()
        flags = flags if flags is not None else tuntap.Flags.TUN | tuntap.Flags.NO_PI
        with tuntap.Device(name, flags) as dev:
            dev.persist()
            if owner is not None:
                dev.set_owner(owner)
            if group is not None:
                dev.set_group(group)
            dev.add_address(net.cidr)
            dev.up()
        return name, net
    return make


def send_soon(dst: str, port: int, payload: bytes) -> subprocess.Popen:
    """Keep sending a datagram every 50 ms for up to 3 s (the child reads one)."""
    code = ("import socket, time\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "for _ in range(60):\n"
            f"    s.sendto({payload!r}, ({dst!r}, {port}))\n"
            "    time.sleep(0.05)\n")
    return subprocess.Popen([sys.executable, "-c", code])


def test_nonroot_attaches_to_a_device_it_owns_and_reads(persistent, tun_node):
    name, net = persistent(owner=NOBODY)
    sender = send_soon(net.remote, 7900, b"for nobody")
    try:
        out = run_child(tun_node, name)
    finally:
        sender.kill()
        sender.wait(5)
    assert out["uid"] == NOBODY and out["capeff"] == 0
    assert "exc" not in out, out
    assert out["name"] == name
    assert out["flags"] & (IFF_TUN | IFF_NO_PI) == IFF_TUN | IFF_NO_PI
    pkt = bytes.fromhex(out["packet"])
    assert pkt[0] == 0x45 and pkt.endswith(b"for nobody")


def test_nonroot_attaches_via_group(persistent, tun_node):
    name, net = persistent(group=NOBODY)
    sender = send_soon(net.remote, 7901, b"for the group")
    try:
        out = run_child(tun_node, name)
    finally:
        sender.kill()
        sender.wait(5)
    assert "exc" not in out, out
    assert bytes.fromhex(out["packet"]).endswith(b"for the group")


def test_nonroot_is_refused_a_device_owned_by_another_uid(persistent, tun_node):
    name, _net = persistent(owner=NOBODY - 1)
    out = run_child(tun_node, name)
    assert out["capeff"] == 0
    assert out.get("exc") == "PermissionError", out
    assert out["errno"] == errno.EPERM
    assert "TUNSETIFF" in out["msg"] and name in out["msg"]
    assert out["msg"].endswith(f"(attaching needs CAP_NET_ADMIN, or to be its owner uid "
                               f"{NOBODY - 1})")
    assert link_exists(name)


def test_nonroot_is_refused_a_device_of_another_group(persistent, tun_node):
    name, _net = persistent(group=NOBODY - 1)
    out = run_child(tun_node, name)
    assert out.get("exc") == "PermissionError", out
    assert out["errno"] == errno.EPERM
    assert out["msg"].endswith(f"(attaching needs CAP_NET_ADMIN, or to be in its group gid "
                               f"{NOBODY - 1})")


def test_nonroot_refused_a_device_with_owner_and_group_is_told_both(persistent, tun_node):
    name, _net = persistent(owner=NOBODY, group=NOBODY - 1)
    out = run_child(tun_node, name)
    assert out.get("exc") == "PermissionError", out
    assert out["msg"].endswith(f"(attaching needs CAP_NET_ADMIN, or to be its owner uid "
                               f"{NOBODY} and in its group gid {NOBODY - 1})")


def test_nonroot_cannot_create_a_device(tun_node):
    name = unique_name()
    out = run_child(tun_node, name)
    assert out.get("exc") == "PermissionError", out
    assert out["errno"] == errno.EPERM
    assert "TUNSETIFF" in out["msg"]
    assert out["msg"].endswith("(creating a TUN/TAP device needs CAP_NET_ADMIN in its "
                               "network namespace)")
    assert not link_exists(name)


def test_nonroot_without_access_to_the_node_is_permission_error(persistent, tun_node):
    import os

    name, _net = persistent(owner=NOBODY)
    os.chmod(tun_node, 0o600)  # root only, like /dev/net/tun here: open() gives EACCES
    out = run_child(tun_node, name)
    assert out.get("exc") == "PermissionError", out
    assert out["errno"] == errno.EACCES
    assert out["msg"] == (
        "[Errno 13] Permission denied: open() (no read-write access to the TUN clone "
        "device: run as root or open a device node this user may use; attaching then "
        f"needs CAP_NET_ADMIN, or the device's owner or group): '{tun_node}'")


def test_set_owner_is_visible_to_the_kernel(persistent):
    from netutil import link_json

    name, _net = persistent(owner=NOBODY, group=NOBODY - 1)
    data = link_json(name)["linkinfo"]["info_data"]
    assert data["user"] in (NOBODY, "nobody")
    assert data["group"] in (NOBODY - 1, "nogroup", str(NOBODY - 1))
