"""The device commands of the ``tuntap`` command line: add, del, list, show, help, colour.

Every command runs as a real subprocess (``python -m tuntap ...``) inside the session's
private namespace, and what it did is checked with ``ip`` and ``tuntap.list_devices()``.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
from typing import Any

import pytest

import tuntap
from netutil import (
    addr_json,
    ip,
    link_exists,
    link_json,
    run_unprivileged,
    unique_name,
    unique_net,
    unique_net6,
)

TUNTAP = [sys.executable, "-m", "tuntap"]
COMMANDS = ["add", "del", "list", "show", "capture", "replay", "bench"]


def tt(*args: str, timeout: float = 30, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TUNTAP, *args], capture_output=True, text=True, timeout=timeout,
                          **kw)


def info(name: str) -> tuntap.DeviceInfo:
    (found,) = [i for i in tuntap.list_devices() if i.name == name]
    return found


# --------------------------------------------------------------------------- help, version
def test_version_prints_the_package_version() -> None:
    r = tt("--version")
    assert (r.returncode, r.stdout.strip()) == (0, f"tuntap {tuntap.__version__}")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_user_help_with_exit_codes(command: str) -> None:
    r = tt(command, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"usage: python -m tuntap {command}")
    assert "exit status:" in r.stdout and "130" in r.stdout
    for developer_text in ("Argument parsing", "handler", "_run_", "argparse"):
        assert developer_text not in r.stdout


def test_top_level_help_lists_every_command() -> None:
    r = tt("--help")
    assert r.returncode == 0
    listed = [m.group(1) for m in re.finditer(r"^    (\w+)  +\w", r.stdout, re.M)]
    assert listed == COMMANDS


def test_no_command_is_a_usage_error() -> None:
    r = tt()
    assert r.returncode == 2
    assert "the following arguments are required: COMMAND" in r.stderr


@pytest.mark.parametrize("args, message", [
    (["add", "a b"], "argument NAME: interface name 'a b' must not contain"),
    (["add", "x" * 16], "argument NAME: interface name"),
    (["add", "tun%d"], "argument NAME: need a full interface name"),
    (["add", "t0", "--address", "10.0.0.300/24"], "argument --address: not an address/prefix"),
    (["add", "t0", "--mtu", "20"], "argument --mtu: must be from 68 to 65535, got 20"),
    (["add", "t0", "--user", "no-such-user-here"], "argument --user: no such user"),
    (["add", "t0", "--group", "no-such-group-here"], "argument --group: no such group"),
    (["capture", "t0"], "the following arguments are required: -w/--write"),
    (["capture", "t0", "-w", "x", "-c", "0"], "argument -c/--count: must be >= 1, got 0"),
    (["capture", "t0", "-w", "x", "--timeout", "-1"], "argument --timeout: must be a positive"),
    (["replay", "t0", "f", "--rate", "fast"], "argument --rate: not a number: 'fast'"),
])
def test_bad_command_lines_exit_2_with_the_reason(args: list[str], message: str) -> None:
    r = tt(*args)
    assert r.returncode == 2, r
    assert message in r.stderr.splitlines()[-1]
    assert "Traceback" not in r.stderr


# --------------------------------------------------------------------------- add / del
pytestmark_tun = pytest.mark.needs_tun


@pytestmark_tun
def test_add_makes_a_persistent_device_with_everything_asked(cleanup_links: list[str]) -> None:
    name = unique_name()
    cleanup_links.append(name)
    net, (v6, _) = unique_net(), unique_net6()
    r = tt("add", name, "--no-pi", "--address", net.cidr, "--address", f"{v6}/64",
           "--mtu", "1400", "--up", "--user", "nobody", "--group", "0")
    assert r.returncode == 0, r.stderr
    assert r.stdout == (f"{name}: persistent TUN device created and up (remove it with: "
                        f"tuntap del {name})\n")
    i = info(name)
    assert i.persistent and i.queues == 0
    assert i.flags & tuntap.Flags.TUN and i.flags & tuntap.Flags.NO_PI
    assert not i.flags & (tuntap.Flags.TAP | tuntap.Flags.VNET_HDR | tuntap.Flags.MULTI_QUEUE)
    assert (i.owner, i.group) == (65534, 0)
    link = link_json(name)
    assert link is not None and link["mtu"] == 1400 and "UP" in link["flags"]
    addrs = {(a["local"], a["prefixlen"]) for a in addr_json(name)}
    assert {(net.local, 24), (v6, 64)} <= addrs

    r = tt("del", name)
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert not link_exists(name)


@pytestmark_tun
def test_add_tap_multi_queue_vnet_hdr_and_packet_info(cleanup_links: list[str]) -> None:
    name = unique_name()
    cleanup_links.append(name)
    r = tt("add", name, "--tap", "--multi-queue", "--vnet-hdr")
    assert r.returncode == 0, r.stderr
    i = info(name)
    f = tuntap.Flags
    assert i.flags & f.TAP and i.flags & f.MULTI_QUEUE and i.flags & f.VNET_HDR
    assert not i.flags & f.NO_PI  # packet info: the kernel's default, as with ip tuntap
    assert link_json(name)["link_type"] == "ether"
    assert "UP" not in link_json(name)["flags"]


@pytestmark_tun
def test_add_an_existing_name_exits_1_and_leaves_it_alone(tun: Any) -> None:
    r = tt("add", tun.name, "--mtu", "1280")
    assert r.returncode == 1
    assert r.stderr == (f"python -m tuntap add: error: {tun.name} already exists (tuntap show "
                        f"{tun.name}; tuntap del {tun.name} removes a persistent TUN/TAP "
                        "device)\n")
    assert tun.dev.mtu == 1500


@pytestmark_tun
def test_add_that_fails_half_way_leaves_no_device() -> None:
    name = unique_name()
    net = unique_net()
    r = tt("add", name, "--address", net.cidr, "--address", net.cidr)  # the second: EEXIST
    assert r.returncode == 1
    assert f"cannot add the address {net.cidr} to {name}: " in r.stderr
    assert not link_exists(name)


@pytestmark_tun
def test_del_of_a_missing_or_foreign_interface_exits_1() -> None:
    r = tt("del", "ttnothere0")
    assert (r.returncode, r.stderr) == (1, "python -m tuntap del: error: no TUN/TAP device "
                                           "'ttnothere0' (tuntap list shows them)\n")
    r = tt("del", "lo")
    assert (r.returncode, r.stderr) == (1, "python -m tuntap del: error: 'lo' is not a "
                                           "TUN/TAP device\n")
    assert link_exists("lo")


@pytestmark_tun
def test_del_of_a_device_a_program_holds_removes_it_when_released(
        cleanup_links: list[str]) -> None:
    name = unique_name()
    cleanup_links.append(name)
    assert tt("add", name, "--no-pi").returncode == 0
    with tuntap.Device(name) as dev:
        r = tt("del", name)
        # A single-queue device held by a program cannot be attached: EBUSY, said plainly.
        assert r.returncode == 1
        assert "another process holds it" in r.stderr
        assert dev.name == name
    assert tt("del", name).returncode == 0
    assert not link_exists(name)


@pytestmark_tun
def test_add_without_cap_net_admin_says_what_is_needed() -> None:
    name = unique_name()
    r = run_unprivileged([*TUNTAP, "add", name])
    assert r.returncode == 1
    assert r.stderr.startswith(f"python -m tuntap add: error: cannot create {name}: ")
    assert r.stderr.rstrip().endswith("needs root or CAP_NET_ADMIN")
    assert "Traceback" not in r.stderr
    assert not link_exists(name)


# --------------------------------------------------------------------------- list / show
@pytestmark_tun
def test_list_json_has_every_device_with_state_and_addresses(tun: Any,
                                                             open_device: Any) -> None:
    tap = open_device(unique_name(), tuntap.Flags.TAP | tuntap.Flags.NO_PI)
    r = tt("list", "--json")
    assert r.returncode == 0, r.stderr
    rows = {d["name"]: d for d in json.loads(r.stdout)}
    assert set(rows) == {i.name for i in tuntap.list_devices()}
    mine = rows[tun.name]
    assert mine["type"] == "tun" and mine["flags"] == ["NO_PI"] and not mine["packet_info"]
    assert (mine["up"], mine["carrier"], mine["mtu"], mine["queues"]) == (True, True, 1500, 1)
    assert f"{tun.local}/24" in mine["addresses"]
    assert rows[tap.name]["type"] == "tap" and rows[tap.name]["up"] is False


@pytestmark_tun
def test_list_table_has_one_line_per_device_and_no_colour_in_a_pipe(tun: Any) -> None:
    r = tt("list")
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "TYPE", "FLAGS", "STATE", "MTU", "OWNER", "GROUP",
                                "QUEUES", "ADDRESSES"]
    (mine,) = [line for line in lines[1:] if line.split()[0] == tun.name]
    assert mine.split()[:5] == [tun.name, "tun", "NO_PI", "up", "1500"]
    assert f"{tun.local}/24" in mine
    assert "\033[" not in r.stdout


def _on_a_terminal(argv: list[str], env: dict[str, str]) -> str:
    """Run argv with stdout on a pseudo-terminal (never sized: 0 columns); return what it
    printed."""
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(argv, stdout=slave, stderr=subprocess.DEVNULL, env=env)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(30)
    finally:
        os.close(master)
    return b"".join(chunks).decode()


@pytestmark_tun
def test_list_uses_colour_on_a_terminal_unless_no_color(tun: Any) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    env["TERM"] = "xterm"
    shown = _on_a_terminal([*TUNTAP, "list"], env)
    assert "\033[32mup\033[0m" in shown and "\033[1mNAME" in shown
    shown = _on_a_terminal([*TUNTAP, "list"], {**env, "NO_COLOR": "1"})
    assert tun.name in shown and "\033[" not in shown


@pytestmark_tun
def test_show_reports_queues_offloads_addresses_and_counters(open_device: Any) -> None:
    f = tuntap.Flags
    net = unique_net()
    dev = open_device(unique_name(), f.TUN | f.NO_PI | f.VNET_HDR)
    dev.set_offload(tuntap.Offload.CSUM | tuntap.Offload.TSO4 | tuntap.Offload.TSO6)
    dev.add_address(f"{net.local}/32", peer=net.remote)
    dev.up()
    for _ in range(3):  # three packets into the kernel: rx_packets 3
        dev.write(bytes(10) + bytes([0x45]) + bytes(19))
    r = tt("show", dev.name, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["flags"] == ["NO_PI", "VNET_HDR"] and d["queues"] == 1
    assert d["offloads"] == ["CSUM", "TSO4", "TSO6"]
    assert d["addresses"] == [f"{net.local}/32 peer {net.remote}"]
    assert d["counters"]["rx_packets"] == 3
    assert d["counters"]["rx_bytes"] == 60
    assert d["txqueuelen"] == dev.txqueuelen and d["hwaddr"] is None

    r = tt("show", dev.name)
    assert r.returncode == 0
    text = r.stdout
    assert text.startswith(f"{dev.name}: TUN, ifindex {dev.ifindex}, up\n")
    assert "  offloads   CSUM TSO4 TSO6\n" in text
    assert "  queues     1\n" in text
    assert f"  addresses  {net.local}/32 peer {net.remote}\n" in text
    assert "  rx         3 packets, 60 bytes, 0 errors, 0 dropped\n" in text


@pytestmark_tun
def test_show_of_a_missing_device_exits_1() -> None:
    r = tt("show", "ttnothere0")
    assert (r.returncode, r.stderr) == (1, "python -m tuntap show: error: no TUN/TAP device "
                                           "'ttnothere0' (tuntap list shows them)\n")


@pytestmark_tun
def test_list_and_show_work_without_privileges(tun: Any) -> None:
    r = run_unprivileged([*TUNTAP, "show", tun.name, "--json"])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["name"] == tun.name


# --------------------------------------------------------------------------- --netns
@pytestmark_tun
def test_add_list_show_del_inside_another_namespace(named_netns: str) -> None:
    name = unique_name()
    net = unique_net()
    r = tt("add", name, "--netns", named_netns, "--address", net.cidr, "--up")
    assert r.returncode == 0, r.stderr
    assert f"in network namespace {named_netns!r}" in r.stdout
    assert not link_exists(name)  # not here ...
    assert link_exists(name, netns=named_netns)  # ... there

    r = tt("list", "--netns", named_netns, "--json")
    assert [d["name"] for d in json.loads(r.stdout)] == [name]
    r = tt("show", name, "--netns", named_netns, "--json")
    assert r.returncode == 0, r.stderr
    assert net.cidr in json.loads(r.stdout)["addresses"]
    assert tt("show", name).returncode == 1

    r = tt("del", name, "--netns", named_netns)
    assert r.returncode == 0, r.stderr
    assert not link_exists(name, netns=named_netns)


@pytestmark_tun
@pytest.mark.parametrize("command", [["add", "t0"], ["del", "t0"], ["list"], ["show", "t0"]])
def test_a_missing_namespace_exits_1_with_the_path(command: list[str]) -> None:
    r = tt(*command, "--netns", "tt-no-such-ns")
    assert r.returncode == 1
    assert r.stderr.endswith("error: no network namespace 'tt-no-such-ns' "
                             "(/var/run/netns/tt-no-such-ns does not exist; 'ip netns add "
                             "NAME' makes one)\n")


@pytestmark_tun
def test_ip_sees_what_show_reports(tun: Any) -> None:
    d = json.loads(tt("show", tun.name, "--json").stdout)
    link = link_json(tun.name)
    assert link is not None
    assert (d["ifindex"], d["mtu"], d["txqueuelen"]) == (link["ifindex"], link["mtu"],
                                                         link["txqlen"])
    stats = json.loads(ip("-j", "-s", "link", "show", "dev", tun.name).stdout)[0]["stats64"]
    assert d["counters"]["tx_packets"] == stats["tx"]["packets"]


@pytestmark_tun
def test_show_counts_queues_of_single_and_multi_queue_devices(cleanup_links: list[str]) -> None:
    single, multi = unique_name(), unique_name()
    cleanup_links += [single, multi]
    assert tt("add", single, "--no-pi", "--up").returncode == 0
    assert tt("add", multi, "--no-pi", "--multi-queue", "--up").returncode == 0
    assert json.loads(tt("show", single, "--json").stdout)["queues"] == 0
    with tuntap.Device(single):
        assert json.loads(tt("show", single, "--json").stdout)["queues"] == 1
    queues = tuntap.open_queues(multi, 3)
    try:
        queues[2].detach_queue()
        d = json.loads(tt("show", multi, "--json").stdout)
        assert (d["queues"], d["disabled_queues"]) == (2, 1)
        assert "  queues     2 (+1 detached)\n" in tt("show", multi).stdout
    finally:
        for q in queues:
            q.close()


def test_help_on_a_terminal_that_reports_zero_columns() -> None:
    # A pty nobody sized says 0 columns; before 3.11 shutil passes that on.
    shown = _on_a_terminal([*TUNTAP, "bench", "--help"], dict(os.environ, COLUMNS="0"))
    assert shown.startswith("usage: python -m tuntap bench")
    assert "Traceback" not in shown
