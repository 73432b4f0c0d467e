"""Flags / Offload enums and their IFF_* aliases (no device needed)."""

from __future__ import annotations

import enum

import pytest

import tuntap
from netutil import (
    IFF_MULTI_QUEUE,
    IFF_NAPI,
    IFF_NAPI_FRAGS,
    IFF_NO_CARRIER,
    IFF_NO_PI,
    IFF_NOFILTER,
    IFF_ONE_QUEUE,
    IFF_PERSIST,
    IFF_TAP,
    IFF_TUN,
    IFF_TUN_EXCL,
    IFF_VNET_HDR,
    TUN_F_CSUM,
    TUN_F_TSO4,
    TUN_F_TSO6,
    TUN_F_TSO_ECN,
    TUN_F_UFO,
    TUN_F_USO4,
    TUN_F_USO6,
)

# include/uapi/linux/if_tun.h, written out in netutil
KERNEL_FLAGS = {
    "TUN": IFF_TUN,
    "TAP": IFF_TAP,
    "NAPI": IFF_NAPI,
    "NAPI_FRAGS": IFF_NAPI_FRAGS,
    "NO_CARRIER": IFF_NO_CARRIER,
    "NO_PI": IFF_NO_PI,
    "ONE_QUEUE": IFF_ONE_QUEUE,
    "VNET_HDR": IFF_VNET_HDR,
    "TUN_EXCL": IFF_TUN_EXCL,
    "MULTI_QUEUE": IFF_MULTI_QUEUE,
    "PERSIST": IFF_PERSIST,
    "NOFILTER": IFF_NOFILTER,
}
KERNEL_OFFLOADS = {
    "CSUM": TUN_F_CSUM,
    "TSO4": TUN_F_TSO4,
    "TSO6": TUN_F_TSO6,
    "TSO_ECN": TUN_F_TSO_ECN,
    "UFO": TUN_F_UFO,
    "USO4": TUN_F_USO4,
    "USO6": TUN_F_USO6,
}
ALWAYS = ("TUN", "TAP", "NO_PI", "ONE_QUEUE", "VNET_HDR", "TUN_EXCL", "MULTI_QUEUE", "PERSIST")


def test_no_pi_and_nofilter_are_the_same_bit():
    """Why TUNGETIFF cannot tell packet info apart from "no filter" (docs/kernel.md)."""
    assert tuntap.Flags.NO_PI == tuntap.Flags.NOFILTER == IFF_NO_PI == IFF_NOFILTER


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
    assert int(f) == IFF_TUN | IFF_NO_PI
    assert tuntap.Flags.NO_PI in f
    assert tuntap.Flags.TAP not in f


def test_public_names_exported():
    for name in ("Device", "Flags", "Offload", "features", "open_queues", "delete",
                 "list_devices", "DeviceInfo"):
        assert hasattr(tuntap, name), name
        assert name in tuntap.__all__, name
