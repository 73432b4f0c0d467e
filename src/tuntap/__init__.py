"""tuntap: fast, correct Linux TUN/TAP devices for Python."""

from . import _tuntap
from ._device import Device, DeviceInfo, delete, list_devices, open_queues
from ._flags import IFF_ALIASES, Flags, Offload, features
from ._include import get_include
from ._tuntap import PacketBatch, checksum, coalesce, segment
from ._version import __version__
from ._vnet import VirtioNetHdr

globals().update(IFF_ALIASES)

__all__ = [
    "Device",
    "DeviceInfo",
    "Flags",
    "Offload",
    "PacketBatch",
    "VirtioNetHdr",
    "checksum",
    "coalesce",
    "delete",
    "features",
    "get_include",
    "list_devices",
    "open_queues",
    "segment",
    "__version__",
    *sorted(IFF_ALIASES),
]

del IFF_ALIASES, _tuntap
