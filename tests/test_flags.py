"""Flags / Offload enums and their IFF_* aliases (no device needed)."""

from __future__ import annotations

import enum

import pytest

import tuntap

# include/uapi/linux/if_tun.h
KERNEL_FLAGS = {
    "TUN": 0x0001,
    "TAP": 0x0002,
    "NAPI": 0x0010,
    "NAPI_FRAGS": 0x0020,
    "NO_CARRIER": 0x0040,
    "NO_PI": 0x1000,
    "ONE_QUEUE": 0x2000,
    "VNET_HDR": 0x4000,
    "TUN_EXCL": 0x8000,
    "MULTI_QUEUE": 0x0100,
    "PERSIST": 0x0800,
    "NOFILTER": 0x1000,
}
KERNEL_OFFLOADS = {
    "CSUM": 0x01,
    "TSO4": 0x02,
    "TSO6": 0x04,
    "TSO_ECN": 0x08,
    "UFO": 0x10,
    "USO4": 0x20,
    "USO6": 0x40,
}
ALWAYS = ("TUN", "TAP", "NO_PI", "ONE_QUEUE", "VNET_HDR", "TUN_EXCL", "MULTI_QUEUE", "PERSIST")


def test_flags_is_intflag():
    assert issubclass(tuntap.Flags, enum.IntFlag)
    assert issubclass(tuntap.Offload, enum.IntFlag)


@pytest.mark.parametrize("name", sorted(KERNEL_FLAGS))
def test_flag_values_match_kernel_headers(name):
    member = getattr(tuntap.Flags, name, None)
    if member is None:
        assert name not in ALWAYS, f"Flags.{name} must exist on any supported kernel"
        return
    assert int(member) == KERNEL_FLAGS[name]


@pytest.mark.parametrize("name", ALWAYS)
def test_core_flags_exist(name):
    assert hasattr(tuntap.Flags, name)


@pytest.mark.parametrize("name", sorted(KERNEL_FLAGS))
def test_iff_aliases_are_the_members(name):
    if not hasattr(tuntap.Flags, name):
        assert not hasattr(tuntap, "IFF_" + name)
        return
    alias = getattr(tuntap, "IFF_" + name)
    assert alias == getattr(tuntap.Flags, name)
    assert isinstance(alias, tuntap.Flags)


@pytest.mark.parametrize("name", sorted(KERNEL_OFFLOADS))
def test_offload_values_match_kernel_headers(name):
    # Every bit exists on every build: USO4/USO6 are defined by the C module when
    # the build's headers predate Linux 6.2 (the values are kernel ABI).
    assert int(getattr(tuntap.Offload, name)) == KERNEL_OFFLOADS[name]


def test_flags_combine_as_ints():
    f = tuntap.Flags.TUN | tuntap.Flags.NO_PI
    assert int(f) == 0x1001
    assert tuntap.Flags.NO_PI in f
    assert tuntap.Flags.TAP not in f


def test_public_names_exported():
    for name in ("Device", "Flags", "Offload", "features", "open_queues", "delete",
                 "list_devices", "DeviceInfo"):
        assert hasattr(tuntap, name), name
        assert name in tuntap.__all__, name
