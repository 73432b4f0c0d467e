"""The privilege boundary, measured: what a uid without capabilities can and cannot do
with a persistent device it owns, and with one it does not own.

The kernel checks privileges once, when a file descriptor attaches (TUNSETIFF:
drivers/net/tun.c tun_not_capable). An attached owner can then do everything the fd
allows, TUN ioctls included (it can give the device away with set_owner), but nothing
that needs CAP_NET_ADMIN on the interface (up/down, MTU, addresses). Anyone else never
gets an fd: not to read, not to change the owner, not to delete it.
(test_permissions.py covers reading as owner or group member and creation.)
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable
from typing import Any

import pytest

import tuntap
from netutil import link_json, unique_name

pytestmark = pytest.mark.needs_tun

NOBODY = 65534

CHILD = textwrap.dedent("""
    import json, os, sys, tuntap
    node, name, steps = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    os.setgroups([]); os.setgid(65534); os.setuid(65534)
    out = {}
    def attempt(label, fn):
        try:
            r = fn()
            out[label] = ["ok", r]
        except BaseException as e:
            out[label] = [type(e).__name__, getattr(e, "errno", None), str(e)]
    dev = None
    def attach():
        global dev
        dev = tuntap.Device(name, tuntap.Flags.TUN | tuntap.Flags.NO_PI, path=node)
        return dev.name
    for step in steps:
        if step == "attach":
            attempt(step, attach)
        elif step == "delete":
            attempt(step, lambda: tuntap.delete(name))
        elif step == "create":
            attempt(step, lambda: tuntap.Device(name + "n", path=node).close())
        elif dev is not None:
            attempt(step, {
                "set_owner": lambda: dev.set_owner(65533),
                "set_group": lambda: dev.set_group(65533),
                "persist": lambda: dev.persist(True),
                "up": dev.up,
                "mtu": lambda: setattr(dev, "mtu", 1400),
                "add_address": lambda: dev.add_address("10.99.99.1/24"),
                "flags": lambda: int(dev.flags),
                "close": dev.close,
            }[step])
    print(json.dumps(out))
""")


def as_nobody(node: str, name: str, *steps: str) -> dict[str, Any]:
    r = subprocess.run([sys.executable, "-c", CHILD, node, name, json.dumps(steps)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.fixture
def persistent(cleanup_links: list[str]) -> Callable[..., str]:
    def make(owner: int | None = None) -> str:
        name = unique_name("pv")
        cleanup_links.append(name)
        with tuntap.Device(name) as dev:
            dev.persist()
            if owner is not None:
                dev.set_owner(owner)
        return name
    return make


def info(name: str) -> dict[str, Any]:
    data = link_json(name)
    assert data is not None, f"{name} is gone"
    return data["linkinfo"]["info_data"]


def test_owner_can_use_tun_ioctls_but_not_configure_the_interface(
        persistent: Callable[..., str], tun_node: str) -> None:
    name = persistent(owner=NOBODY)
    out = as_nobody(tun_node, name, "attach", "flags", "persist", "up", "mtu",
                    "add_address", "close")
    assert out["attach"] == ["ok", name]
    assert out["flags"][0] == "ok" and out["persist"][0] == "ok"
    for step in ("up", "mtu", "add_address"):      # CAP_NET_ADMIN on the interface
        assert out[step][:2] == ["PermissionError", 1], (step, out[step])
        assert name in out[step][2]
    assert not link_json(name)["flags"].count("UP")


def test_owner_can_give_the_device_away_and_is_then_refused(
        persistent: Callable[..., str], tun_node: str) -> None:
    """Privileges are checked at attach time only: the attached owner may TUNSETOWNER."""
    name = persistent(owner=NOBODY)
    out = as_nobody(tun_node, name, "attach", "set_owner", "close")
    assert out["set_owner"] == ["ok", None]
    assert str(info(name)["user"]) == "65533"
    again = as_nobody(tun_node, name, "attach")
    assert again["attach"][:2] == ["PermissionError", 1]


def test_a_stranger_cannot_attach_change_the_owner_or_delete(
        persistent: Callable[..., str], tun_node: str) -> None:
    name = persistent(owner=NOBODY - 1)
    before = info(name)
    out = as_nobody(tun_node, name, "attach", "set_owner", "delete", "create")
    assert out["attach"][:2] == ["PermissionError", 1]
    assert "set_owner" not in out                   # no fd, nothing to change it with
    assert out["delete"][0] == "PermissionError"   # EACCES: /dev/net/tun is 0600
    assert out["create"][:2] == ["PermissionError", 1]
    assert info(name) == before                     # owner, persistence: untouched
    assert not link_json(name + "n")


def test_a_device_without_owner_or_group_is_attachable_by_anyone_but_not_configurable(
        persistent: Callable[..., str], tun_node: str) -> None:
    """No owner and no group: anyone who can open the node may attach (kernel rule)."""
    name = persistent()
    out = as_nobody(tun_node, name, "attach", "up", "close")
    assert out["attach"] == ["ok", name]
    assert out["up"][:2] == ["PermissionError", 1]
