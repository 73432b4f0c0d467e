"""Typed use of the public API: CI checks this file with ``mypy --strict``.

It is also a runnable example. It makes a private network namespace for itself (the
host's interfaces are never touched), creates a TUN device with an address, sends one
UDP datagram to a peer address behind the device and reads the IP packet back, first
with ``readinto`` and then, after a second datagram, with ``read_batch``.

    sudo python examples/typed_usage.py
"""

from __future__ import annotations

import argparse
import ctypes
import os
import socket
import sys

import tuntap

CLONE_NEWNET = 0x40000000


def enter_private_netns() -> None:
    """Move this process into a fresh network namespace (needs CAP_SYS_ADMIN)."""
    if sys.version_info >= (3, 12):
        os.unshare(os.CLONE_NEWNET)
    else:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")


def udp_payload(packet: bytes | memoryview) -> bytes | None:
    """The payload of an IPv4 UDP packet, or None for anything else."""
    data = bytes(packet)
    if len(data) < 28 or data[0] >> 4 != 4 or data[9] != socket.IPPROTO_UDP:
        return None
    ihl = (data[0] & 0x0F) * 4
    return data[ihl + 8 :]


def open_device() -> tuntap.Device:
    flags: tuntap.Flags = tuntap.Flags.TUN | tuntap.Flags.NO_PI
    dev = tuntap.Device("typed%d", flags, blocking=True)
    dev.add_address("10.98.0.1/24")
    dev.mtu = 1400
    dev.up()
    dev.settimeout(2.0)
    return dev


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="typed_usage.py", description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    try:
        enter_private_netns()
    except PermissionError as exc:
        print(f"typed_usage.py: {exc}: needs root (CAP_SYS_ADMIN for a network namespace, "
              "CAP_NET_ADMIN for the device)", file=sys.stderr)
        return 1
    supported: tuntap.Flags = tuntap.features()
    print(f"tuntap {tuntap.__version__}; kernel features: {supported!r}")
    with open_device() as dev, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        name: str = dev.name
        granted: tuntap.Flags = dev.flags
        timeout: float | None = dev.gettimeout()
        print(f"{name}: flags={granted!r} ifindex={dev.ifindex} mtu={dev.mtu} timeout={timeout}")

        sock.sendto(b"hello", ("10.98.0.2", 9))
        buf = bytearray(2048)
        for _ in range(10):  # skip what the kernel sends on its own (IPv6 ND, MLD)
            n: int = dev.readinto(buf)
            payload = udp_payload(memoryview(buf)[:n])
            if payload is not None:
                print(f"readinto: {n} bytes, UDP payload {payload!r}")
                break

        batch = tuntap.PacketBatch(capacity=8, slot_size=2048)
        sock.sendto(b"batch", ("10.98.0.2", 9))
        count: int = dev.read_batch(batch)
        sizes = list(batch.sizes)
        payloads = [p for p in map(udp_payload, batch) if p is not None]
        print(f"read_batch: {count} packet(s), sizes {sizes}, UDP payloads {payloads}")

        # write-side GRO: what a VNET_HDR device would be written (one packet: no merge)
        out = tuntap.PacketBatch(capacity=8, slot_size=65536 + 64)
        merged: int = tuntap.coalesce(batch, out, udp=True, max_segments=64)
        hdr: tuntap.VirtioNetHdr = tuntap.VirtioNetHdr.parse(out[0])
        disabled: frozenset[str] = dev.coalesce_disabled
        print(f"coalesce: {count} -> {merged} packet(s), gso_type {hdr.gso_type}, {disabled}")

        infos: list[tuntap.DeviceInfo] = tuntap.list_devices(netns=None)
        print("devices:", [(info.name, info.ifindex) for info in infos])
        carrier: bool = dev.carrier
        dev.carrier = carrier
        dev.set_filter_program(None)  # no eBPF filter (an int fd attaches one)
        dev.set_steering_program(None)
        print(f"carrier={carrier}")
        return 0 if payloads == [b"batch"] else 1


if __name__ == "__main__":
    sys.exit(main())
