"""IntFlag classes built from the constants the C module was compiled with.

A member exists only where the kernel headers at build time define it (psutil
style): test with ``hasattr(tuntap.Flags, "NAPI")``.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from . import _tuntap

_FLAG_NAMES = (
    "TUN", "TAP", "NO_PI", "ONE_QUEUE", "VNET_HDR", "TUN_EXCL", "MULTI_QUEUE",
    "NAPI", "NAPI_FRAGS", "NO_CARRIER", "PERSIST", "NOFILTER",
)
_OFFLOAD_NAMES = ("CSUM", "TSO4", "TSO6", "TSO_ECN", "UFO", "USO4", "USO6")

if TYPE_CHECKING:
    # What a type checker sees: every member the API defines. At run time the
    # classes below hold only the members the build's kernel headers define.
    class Flags(enum.IntFlag):
        """TUN/TAP interface flags (``IFF_*`` from <linux/if_tun.h>)."""

        TUN = 0x0001
        TAP = 0x0002
        NAPI = 0x0010
        NAPI_FRAGS = 0x0020
        NO_CARRIER = 0x0040
        NO_PI = 0x1000
        ONE_QUEUE = 0x2000
        VNET_HDR = 0x4000
        TUN_EXCL = 0x8000
        MULTI_QUEUE = 0x0100
        PERSIST = 0x0800
        NOFILTER = 0x1000

    class Offload(enum.IntFlag):
        """Offloads userspace can take (``TUN_F_*`` from <linux/if_tun.h>)."""

        CSUM = 0x01
        TSO4 = 0x02
        TSO6 = 0x04
        TSO_ECN = 0x08
        UFO = 0x10
        USO4 = 0x20
        USO6 = 0x40
else:
    #: ``IFF_*`` TUNSETIFF flags. ``NOFILTER`` has the same value as ``NO_PI`` (an alias).
    Flags = enum.IntFlag(
        "Flags",
        [(n, getattr(_tuntap, "IFF_" + n)) for n in _FLAG_NAMES
         if hasattr(_tuntap, "IFF_" + n)],
        module=__name__,
    )
    Flags.__doc__ = "TUN/TAP interface flags (``IFF_*`` from <linux/if_tun.h>)."

    #: ``TUN_F_*`` offloads for :meth:`Device.set_offload`.
    Offload = enum.IntFlag(
        "Offload",
        [(n, getattr(_tuntap, "TUN_F_" + n)) for n in _OFFLOAD_NAMES
         if hasattr(_tuntap, "TUN_F_" + n)],
        module=__name__,
    )
    Offload.__doc__ = "Offloads userspace can take (``TUN_F_*`` from <linux/if_tun.h>)."

#: Module-level aliases: ``IFF_TUN is Flags.TUN`` and so on.
IFF_ALIASES = {"IFF_" + name: member for name, member in Flags.__members__.items()}


def features(path: str = "/dev/net/tun") -> Flags:
    """Return the flags this kernel supports (``TUNGETFEATURES``).

    Parameters
    ----------
    path : str
        The clone device, ``/dev/net/tun`` by default.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    PermissionError
        If ``path`` cannot be opened.
    """
    return Flags(_tuntap.features(path))
