"""The Python face of a TUN/TAP device: enums, repr, context manager, lifecycle.

The hot methods (``readinto``, ``read``, ``write``, ``read_batch``,
``write_batch``) are inherited unchanged from the C base class.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Literal, NamedTuple, Union

from . import _tuntap
from ._flags import Flags

__all__ = ["Device", "DeviceInfo", "delete", "list_devices", "open_queues"]

_DEFAULT_FLAGS = Flags.TUN | Flags.NO_PI
_IoBackend = Literal["auto", "uring", "syscall"]

#: A network namespace: a name under ``/var/run/netns``, a path, or an open fd.
NetNs = Union[str, bytes, int, os.PathLike[str], os.PathLike[bytes]]


class Device(_tuntap.Device):
    """A TUN or TAP device.

    ``Device(name="", flags=Flags.TUN | Flags.NO_PI, *, blocking=True, netns=None,
    path="/dev/net/tun", io="auto")``

    Opens ``path`` and creates or attaches the interface ``name`` with
    ``TUNSETIFF``. ``name`` may be empty or a template such as ``"tun%d"``; the
    kernel's choice is in :attr:`name`. ``netns`` creates (or attaches to) the
    device inside another network namespace (a name under ``/var/run/netns``, a
    path, or an open fd); the device keeps working from the caller's namespace.
    ``Flags.PERSIST`` in ``flags`` makes the device persistent at once.

    ``io`` picks the backend of :meth:`read_batch` and :meth:`write_batch`:
    ``"syscall"`` (one ``read()``/``write()`` per packet), ``"uring"`` (io_uring:
    batches of 8 or more packets cost one ``io_uring_enter`` per up to 64 packets;
    smaller ones still use ``read()``/``write()``) or ``"auto"`` (io_uring only when
    it is usable and measured faster on this machine: the first ``Device(io="auto")``
    of the process times an empty read both ways, about 0.2 ms). The environment
    variable ``TUNTAP_IO=uring|syscall`` overrides what ``"auto"`` picks.
    :attr:`io` says which backend the device got. Everything else (``readinto``,
    ``write``, blocking, timeouts, ``close`` from another thread) is the same on both.

    The fd is always non-blocking at the OS level; blocking mode and timeouts are
    emulated with ``poll()`` so that :meth:`close` from another thread wakes a
    blocked reader (it raises ``ValueError``).

    Raises
    ------
    ValueError
        Bad name (longer than 15 bytes, ``/``, ``:``, whitespace, NUL) or flags
        (unknown bits, not exactly one of TUN/TAP, ``NAPI_FRAGS`` without ``NAPI``
        and ``TAP``), before any syscall.
    FileExistsError
        ``Flags.TUN_EXCL`` and the interface exists.
    PermissionError
        No CAP_NET_ADMIN, or not the device's owner/group.
    FileNotFoundError
        ``path`` or the namespace does not exist.
    OSError
        Any other kernel refusal, errno kept, interface and syscall in the message;
        where the kernel gives only ``EINVAL`` the message says why (not a TUN/TAP
        interface, the other type, single- vs multi-queue, or a queue joining a
        multi-queue device with other packet info / ``VNET_HDR`` than it has); with
        ``io="uring"``, io_uring refused (``PermissionError`` under seccomp or
        ``kernel.io_uring_disabled``, ``ENOSYS`` without io_uring).

    Notes
    -----
    The offloads, the vnet header size and byte order belong to the device, not the
    fd. An fd without ``VNET_HDR`` always starts with no offloads; the first fd with
    ``VNET_HDR`` starts from the defaults (no offloads, 10-byte header, host order); a
    queue joining a multi-queue device keeps what the queues before it set.
    """

    __slots__ = ("__weakref__",)

    @property
    def flags(self) -> Flags:
        """The flags as the kernel holds them, packet info included.

        Packet info is read from rtnetlink: ``TUNGETIFF`` reports 0x1000 (``NOFILTER``,
        the same bit as ``NO_PI``) either way (docs/kernel.md, "Flags").
        """
        return Flags(_tuntap.Device.flags.__get__(self))

    def __enter__(self) -> Device:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        cls = type(self).__name__
        if self.closed:
            return f"<{cls} {self.name!r} closed>"
        try:
            kind = "TAP" if self.flags & Flags.TAP else "TUN"
        except OSError:
            kind = "?"
        return f"<{cls} {self.name!r} {kind} fd={self.fileno()}>"

    def add_address(self, cidr: str, *, peer: str | None = None) -> None:
        """Add an IPv4 or IPv6 address, e.g. ``"10.0.0.1/24"`` or ``"fd00::1/64"``.

        Parameters
        ----------
        cidr : str
            The address with an optional prefix length (default /32 or /128).
        peer : str, optional
            The remote end of a point-to-point link (same family).

        Raises
        ------
        ValueError
            Unparsable address, or ``peer`` of another family.
        FileExistsError
            The address is already present.
        """
        self._change_address(True, cidr, peer)

    def remove_address(self, cidr: str) -> None:
        """Remove an address added with :meth:`add_address`.

        Raises
        ------
        ValueError
            Unparsable address.
        OSError
            ``EADDRNOTAVAIL`` when the address is not on the interface.
        """
        self._change_address(False, cidr, None)

    def _change_address(self, add: bool, cidr: str, peer: str | None) -> None:
        if not isinstance(cidr, str):
            raise TypeError(f"address must be str, not {type(cidr).__name__}")
        iface = ipaddress.ip_interface(cidr)
        family = socket.AF_INET if iface.version == 4 else socket.AF_INET6
        peer_bytes = None
        if peer is not None:
            if not isinstance(peer, str):
                raise TypeError(f"peer must be str, not {type(peer).__name__}")
            peer_addr = ipaddress.ip_address(peer)
            if peer_addr.version != iface.version:
                raise ValueError(f"peer {peer} is not IPv{iface.version} like {cidr}")
            peer_bytes = peer_addr.packed
        self._address(add, family, iface.ip.packed, iface.network.prefixlen, peer_bytes)


class DeviceInfo(NamedTuple):
    """One TUN/TAP interface as :func:`list_devices` reports it."""

    name: str
    flags: Flags
    owner: int | None
    group: int | None
    persistent: bool
    ifindex: int
    queues: int
    disabled_queues: int


def list_devices(netns: NetNs | None = None) -> list[DeviceInfo]:
    """Every TUN/TAP interface in a network namespace.

    Read from rtnetlink (``RTM_GETLINK``) on a socket opened inside the namespace,
    which always speaks for it, unlike ``/sys/class/net`` after a plain ``unshare``.

    Parameters
    ----------
    netns : str, int or os.PathLike, optional
        The namespace, as for :class:`Device`: a name under ``/var/run/netns``, a
        path or an open fd. Default: the calling thread's.

    Raises
    ------
    FileNotFoundError
        ``netns`` does not exist.
    """
    return [
        DeviceInfo(name, Flags(flags), owner, group, persistent, ifindex, queues, disabled)
        for name, ifindex, flags, owner, group, persistent, queues, disabled
        in _tuntap._list_links(netns)
    ]


def delete(name: str, *, netns: NetNs | None = None) -> None:
    """Remove the persistent TUN/TAP device ``name`` (like ``ip tuntap del``).

    Attaches to it with its own flags, turns persistence off and closes: the
    interface disappears once no other fd holds it.

    Parameters
    ----------
    name : str
        The interface.
    netns : str, int or os.PathLike, optional
        The namespace it lives in, as for :class:`Device`. Default: the calling
        thread's.

    Raises
    ------
    FileNotFoundError
        No interface of that name in that namespace, or no such namespace.
    ValueError
        The interface exists but is not a TUN/TAP device, or ``name`` is invalid.
    OSError
        The kernel's refusal, e.g. ``EBUSY`` while another fd holds a
        single-queue device.
    """
    _tuntap._check_name(name)
    for info in list_devices(netns):
        if info.name == name:
            break
    else:
        kind = _tuntap._link_kind(name, netns)
        if kind:
            raise ValueError(f"{name!r} is a {kind!r} interface, not a TUN/TAP device")
        if kind is not None:
            raise ValueError(f"{name!r} is not a TUN/TAP device")
        raise FileNotFoundError(2, f"No such TUN/TAP device: {name!r}")
    keep = Flags.TUN | Flags.TAP | Flags.NO_PI | Flags.VNET_HDR | Flags.MULTI_QUEUE
    with Device(name, info.flags & keep, netns=netns) as dev:
        dev.persist(False)


def open_queues(name: str, count: int, flags: int = _DEFAULT_FLAGS, *,
                netns: NetNs | None = None, io: _IoBackend = "auto") -> list[Device]:
    """Open ``count`` queues of one multi-queue device (``MULTI_QUEUE`` is added).

    ``io`` is the batch I/O backend of every queue, as for :class:`Device`.

    With an empty name or a template, the first queue creates the device and the
    others attach to the name the kernel chose. On failure every queue opened so
    far is closed.

    Parameters
    ----------
    name : str
        The interface, a template such as ``"mq%d"``, or empty.
    count : int
        How many queues (the kernel allows 256 per device).
    flags : int
        As for :class:`Device`; every queue of a device must use the same packet
        info and ``VNET_HDR`` flags.
    netns : str, int or os.PathLike, optional
        Create or attach inside that network namespace, as for :class:`Device`.

    Raises
    ------
    ValueError
        ``count`` < 1, or the errors of :class:`Device`.
    OSError
        ``E2BIG`` past the kernel's 256 queues (detached ones count, docs/kernel.md
        "Multi-queue and detached queues"); ``EINVAL`` when ``name`` is a
        single-queue device or its open queues use other packet info/``VNET_HDR``
        (the message says which); and the errors of :class:`Device`.
    """
    if not isinstance(count, int):
        raise TypeError(f"count must be int, not {type(count).__name__}")
    if count < 1:
        raise ValueError(f"count must be >= 1, not {count}")
    flags = int(flags) | Flags.MULTI_QUEUE
    queues: list[Device] = []
    try:
        for _ in range(count):
            queues.append(Device(queues[0].name if queues else name, flags, netns=netns,
                                 io=io))
    except BaseException:
        for q in queues:
            q.close()
        raise
    return queues
