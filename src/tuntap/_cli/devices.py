"""``tuntap add``, ``del``, ``list`` and ``show``: persistent devices and what they look like."""

from __future__ import annotations

import grp
import json
import pwd
import sys
from dataclasses import dataclass
from typing import Any, TextIO

import tuntap

from . import netinfo
from .common import EXIT_OK, CliError, Style, explain, netns_path, run_in_netns

__all__ = ["Row", "add", "collect", "delete", "flag_names", "list_", "show"]

F = tuntap.Flags
#: Flags shown by list/show, in this order (TUN/TAP is the "type" column).
SHOWN_FLAGS = ("NO_PI", "VNET_HDR", "MULTI_QUEUE", "PERSIST")


def flag_names(flags: int) -> list[str]:
    """The names of the interesting flags set in ``flags``, e.g. ``["NO_PI", "PERSIST"]``."""
    return [n for n in SHOWN_FLAGS if flags & getattr(F, n, 0)]


def user_id(text: str) -> int:
    """A user name or numeric uid as a uid (ValueError if there is no such user)."""
    if text.isdigit():
        return int(text)
    try:
        return pwd.getpwnam(text).pw_uid
    except KeyError:
        raise ValueError(f"no such user: {text!r}") from None


def group_id(text: str) -> int:
    """A group name or numeric gid as a gid (ValueError if there is no such group)."""
    if text.isdigit():
        return int(text)
    try:
        return grp.getgrnam(text).gr_gid
    except KeyError:
        raise ValueError(f"no such group: {text!r}") from None


def _user_name(uid: int | None) -> str:
    if uid is None:
        return "-"
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int | None) -> str:
    if gid is None:
        return "-"
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


# --------------------------------------------------------------------------- add / del
def add(name: str, *, tap: bool = False, no_pi: bool = False, multi_queue: bool = False,
        vnet_hdr: bool = False, user: int | None = None, group: int | None = None,
        netns: str | None = None, mtu: int | None = None, addresses: list[str] | None = None,
        up: bool = False, out: TextIO | None = None) -> int:
    """Create the persistent device ``name``; on any failure nothing is left behind."""
    out = out if out is not None else sys.stdout
    flags = (F.TAP if tap else F.TUN) | F.TUN_EXCL
    if no_pi:
        flags |= F.NO_PI
    if multi_queue:
        flags |= F.MULTI_QUEUE
    if vnet_hdr:
        flags |= F.VNET_HDR
    if netns is not None:
        netns_path(netns)
    try:
        dev = tuntap.Device(name, flags, netns=netns)
    except FileExistsError:
        raise CliError(f"{name} already exists (tuntap show {name}; tuntap del {name} "
                       "removes a persistent TUN/TAP device)") from None
    except OSError as exc:
        raise explain(exc, f"create {name}") from None
    with dev:  # closed without persist() if a step fails: the device disappears
        step = ""
        try:
            if user is not None:
                step = f"set the owner of {name} to {user}"
                dev.set_owner(user)
            if group is not None:
                step = f"set the group of {name} to {group}"
                dev.set_group(group)
            if mtu is not None:
                step = f"set the MTU of {name} to {mtu}"
                dev.mtu = mtu
            for cidr in addresses or []:
                step = f"add the address {cidr} to {name}"
                dev.add_address(cidr)
            if up:
                step = f"bring {name} up"
                dev.up()
            step = f"make {name} persistent"
            dev.persist(True)
        except OSError as exc:
            raise explain(exc, step) from None
        kind = "TAP" if tap else "TUN"
        where = f" in network namespace {netns!r}" if netns else ""
    out.write(f"{name}: persistent {kind} device created{where}"
              f"{' and up' if up else ''} (remove it with: tuntap del {name}"
              f"{' --netns ' + netns if netns else ''})\n")
    return EXIT_OK


def delete(name: str, *, netns: str | None = None) -> int:
    """Remove the persistent TUN/TAP device ``name``."""
    if netns is not None:
        netns_path(netns)  # the plain message for a missing namespace
    try:
        tuntap.delete(name, netns=netns)
    except FileNotFoundError:
        where = f" in network namespace {netns!r}" if netns else ""
        raise CliError(f"no TUN/TAP device {name!r}{where} (tuntap list shows them)") from None
    except ValueError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise explain(exc, f"delete {name}") from None
    return EXIT_OK


# --------------------------------------------------------------------------- list / show
@dataclass
class Row:
    """One device with everything list/show print about it."""

    info: tuntap.DeviceInfo
    link: netinfo.Link | None
    addrs: list[netinfo.Addr]
    offloads: list[str] | None = None

    @property
    def queues(self) -> int:
        """fds attached. The kernel counts queues only for MULTI_QUEUE devices
        (drivers/net/tun.c: tun_fill_info); a single-queue one has carrier while held."""
        if self.info.flags & F.MULTI_QUEUE:
            return self.info.queues
        return 1 if self.link is not None and self.link.lower_up else 0

    def as_json(self, detail: bool) -> dict[str, Any]:
        i, link = self.info, self.link
        d: dict[str, Any] = {
            "name": i.name,
            "ifindex": i.ifindex,
            "type": "tap" if i.flags & F.TAP else "tun",
            "flags": flag_names(i.flags),
            "packet_info": not i.flags & F.NO_PI,
            "persistent": i.persistent,
            "owner": i.owner,
            "group": i.group,
            "queues": self.queues,
            "disabled_queues": i.disabled_queues,
            "up": link.up if link else None,
            "carrier": link.lower_up if link else None,
            "mtu": link.mtu if link else None,
            "addresses": [a.cidr + (f" peer {a.peer}" if a.peer else "") for a in self.addrs],
        }
        if detail:
            d["operstate"] = link.operstate if link else None
            d["txqueuelen"] = link.txqueuelen if link else None
            d["hwaddr"] = link.hwaddr if link else None
            d["offloads"] = self.offloads
            d["counters"] = link.stats if link else {}
        return d


def collect(netns: str | None = None, name: str | None = None) -> list[Row]:
    """Every TUN/TAP device (or just ``name``) of the namespace, with link state."""

    def gather() -> list[Row]:
        infos = [i for i in tuntap.list_devices() if name is None or i.name == name]
        if not infos:
            return []
        links = netinfo.dump_links()
        addrs = netinfo.dump_addresses()
        rows = [Row(i, links.get(i.ifindex), [a for a in addrs if a.ifindex == i.ifindex])
                for i in infos]
        if name is not None:
            for r in rows:
                r.offloads = netinfo.offloads(r.info.name)
        return rows

    try:
        return run_in_netns(netns, gather)
    except OSError as exc:
        raise explain(exc, "read the interfaces") from None


def _state(link: netinfo.Link | None, style: Style) -> str:
    if link is None:
        return "?"
    if not link.up:
        return style.bad("down")
    return style.good("up") if link.lower_up else style.good("up") + ", no carrier"


def _queues(row: Row) -> str:
    text = str(row.queues)
    detached = row.info.disabled_queues
    return text + (f" (+{detached} detached)" if detached else "")


def list_(*, netns: str | None = None, as_json: bool = False, out: TextIO | None = None) -> int:
    """Print every TUN/TAP device of the namespace as a table (or a JSON list)."""
    out = out if out is not None else sys.stdout
    rows = collect(netns)
    if as_json:
        out.write(json.dumps([r.as_json(False) for r in rows], indent=2) + "\n")
        return EXIT_OK
    if not rows:
        where = f" in network namespace {netns!r}" if netns else ""
        out.write(f"no TUN/TAP devices{where} (tuntap add NAME makes one)\n")
        return EXIT_OK
    style = Style(out)
    head = ["NAME", "TYPE", "FLAGS", "STATE", "MTU", "OWNER", "GROUP", "QUEUES", "ADDRESSES"]
    table = [head]
    for r in rows:
        i = r.info
        table.append([
            i.name, "tap" if i.flags & F.TAP else "tun", "|".join(flag_names(i.flags)) or "-",
            _state(r.link, style), str(r.link.mtu) if r.link else "?", _user_name(i.owner),
            _group_name(i.group), _queues(r), ", ".join(a.cidr for a in r.addrs) or "-",
        ])
    _print_table(table, out, style)
    return EXIT_OK


def _visible_len(text: str) -> int:
    import re

    return len(re.sub(r"\033\[[0-9;]*m", "", text))


def _print_table(table: list[list[str]], out: TextIO, style: Style) -> None:
    widths = [max(_visible_len(row[c]) for row in table) for c in range(len(table[0]))]
    for n, row in enumerate(table):
        cells = [cell + " " * (w - _visible_len(cell)) for cell, w in zip(row, widths)]
        line = "  ".join(cells).rstrip()
        out.write((style.bold(line) if n == 0 else line) + "\n")


def show(name: str, *, netns: str | None = None, as_json: bool = False,
         out: TextIO | None = None) -> int:
    """Print everything about one device: flags, owner, queues, offloads, addresses, counters."""
    out = out if out is not None else sys.stdout
    rows = collect(netns, name)
    if not rows:
        where = f" in network namespace {netns!r}" if netns else ""
        raise CliError(f"no TUN/TAP device {name!r}{where} (tuntap list shows them)")
    r = rows[0]
    if as_json:
        out.write(json.dumps(r.as_json(True), indent=2) + "\n")
        return EXIT_OK
    style = Style(out)
    i, link = r.info, r.link
    kind = "TAP" if i.flags & F.TAP else "TUN"
    lines = [f"{style.bold(i.name)}: {kind}, ifindex {i.ifindex}, {_state(link, style)}"]

    def item(key: str, value: str) -> None:
        lines.append(f"  {key:<10} {value}")

    item("flags", "|".join(flag_names(i.flags)) or "-")
    item("packet info", "off (NO_PI)" if i.flags & F.NO_PI else
         "on (4 bytes before every packet)")
    item("persistent", "yes" if i.persistent else "no (goes away with its last fd)")
    item("owner", _user_name(i.owner) + (f" (uid {i.owner})" if i.owner is not None else ""))
    item("group", _group_name(i.group) + (f" (gid {i.group})" if i.group is not None else ""))
    item("queues", _queues(r) + (" (no process holds it)" if r.queues == 0 else ""))
    if r.offloads is None:
        item("offloads", "? (ethtool refused)")
    else:
        item("offloads", " ".join(r.offloads) or "none")
    if link is not None:
        item("mtu", str(link.mtu))
        item("txqueuelen", str(link.txqueuelen))
        if link.hwaddr:
            item("hwaddr", link.hwaddr)
        item("operstate", link.operstate)
    for n, a in enumerate(r.addrs):
        item("addresses" if n == 0 else "", a.cidr + (f" peer {a.peer}" if a.peer else ""))
    if not r.addrs:
        item("addresses", "-")
    if link is not None and link.stats:
        s = link.stats
        for d in ("rx", "tx"):
            item(d, f"{s[d + '_packets']:,} packets, {s[d + '_bytes']:,} bytes, "
                    f"{s[d + '_errors']:,} errors, {s[d + '_dropped']:,} dropped")
        lines.append(style.dim("  (rx: written into the device by a program; tx: sent by "
                               "the kernel, for a program to read)"))
    out.write("\n".join(lines) + "\n")
    return EXIT_OK
