"""``tuntap capture``: be a device's endpoint and record what the kernel sends to it.

What is recorded: each packet exactly as the kernel handed it to the device's fd, minus the
per-packet headers tuntap itself deals with. The 4-byte packet-info header (devices
without ``NO_PI``) and the virtio-net header (``VNET_HDR`` devices) are stripped, so the
file holds IP packets (``LINKTYPE_RAW``) for TUN and Ethernet frames for TAP. The
offloads are the endpoint's choice (each new fd on a device starts with none): with
``--offload`` on a ``VNET_HDR`` device the kernel hands over GSO super-packets: each is recorded
whole, up to 64 KiB, as tcpdump records TSO traffic on a network card, and a packet whose
checksum the kernel left to userspace (``NEEDS_CSUM``) is recorded with the partial
checksum in it (Wireshark flags it only if checksum validation is turned on). ``--segment``
records instead the MTU-sized packets with complete checksums that
:func:`tuntap.segment` makes of them, what the wire would have carried.
"""

from __future__ import annotations

import sys
import time
from typing import BinaryIO, TextIO

import tuntap

from .common import EXIT_OK, CliError, Status, attach
from .pcap import LINKTYPE_ETHERNET, LINKTYPE_RAW, PcapWriter

__all__ = ["capture"]

F = tuntap.Flags


def parse_offloads(text: str) -> tuntap.Offload:
    """``"csum,tso4,uso"`` as Offload flags (``uso`` is USO4|USO6); ValueError if unknown."""
    mask = tuntap.Offload(0)
    for word in (w.strip().upper() for w in text.split(",") if w.strip()):
        names = ["USO4", "USO6"] if word == "USO" else [word]
        for n in names:
            if n not in tuntap.Offload.__members__:
                known = ", ".join(m.lower() for m in tuntap.Offload.__members__)
                raise ValueError(f"unknown offload {word.lower()!r} (known: {known}, uso)")
            mask |= tuntap.Offload[n]
    return mask


def capture(name: str, path: str, *, count: int | None = None, timeout: float | None = None,
            netns: str | None = None, segment: bool = False,
            offload: tuntap.Offload | None = None, progress: bool | None = None,
            err: TextIO | None = None) -> int:
    """Record packets from ``name`` into the pcap file ``path`` (``-``: standard output).

    Stops after ``count`` packets, after ``timeout`` seconds, or on Ctrl-C (which is a
    normal end here: the file is complete and the exit status 0).
    """
    err = err if err is not None else sys.stderr
    dev, info = attach(name, netns)
    with dev:
        vnet = bool(info.flags & F.VNET_HDR)
        if segment and not vnet:
            raise CliError(f"--segment needs a VNET_HDR device; {name} has no vnet header")
        if offload is not None:
            if not vnet:
                raise CliError(f"--offload needs a VNET_HDR device; {name} has no vnet "
                               f"header (tuntap add {name} --vnet-hdr)")
            try:
                dev.set_offload(offload)
            except (OSError, ValueError) as exc:
                raise CliError(f"cannot set the offloads of {name}: {exc}") from None
        if info.flags & F.MULTI_QUEUE:
            err.write(f"tuntap capture: {name} is multi-queue: this capture is one more queue "
                      "and sees only the flows the kernel steers to it\n")
        if not dev.is_up:
            err.write(f"tuntap capture: {name} is down: nothing arrives until it is up\n")
        linktype = LINKTYPE_ETHERNET if info.flags & F.TAP else LINKTYPE_RAW
        try:
            stream: BinaryIO = sys.stdout.buffer if path == "-" else open(path, "wb")
        except OSError as exc:
            raise CliError(f"cannot write {path}: {exc.strerror or exc}") from None
        try:
            packets, octets = _loop(dev, PcapWriter(stream, linktype), count, timeout,
                                    segment, Status(err, progress))
        finally:
            if path == "-":
                stream.flush()
            else:
                stream.close()
    where = "standard output" if path == "-" else path
    err.write(f"tuntap capture: {packets:,} packets ({octets:,} bytes) from {name} "
              f"written to {where}\n")
    return EXIT_OK


def _loop(dev: tuntap.Device, writer: PcapWriter, count: int | None,
          timeout: float | None, segment: bool, status: Status) -> tuple[int, int]:
    header = dev.header_size
    vnet_size = dev.vnet_hdr_size if header > 0 and segment else 0
    buf = bytearray(header + 65536)
    view = memoryview(buf)
    # A super-packet of 64 KiB in segments of 256 bytes or more; a plain packet whose
    # checksum is completed can be as long as the buffer.
    pieces = tuntap.PacketBatch(256, 16384) if segment else None
    whole = tuntap.PacketBatch(1, 65536) if segment else None
    deadline = None if timeout is None else time.monotonic() + timeout
    packets = octets = 0
    try:
        while count is None or packets < count:
            wait = 0.2
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    break
            dev.settimeout(wait)
            try:
                n = dev.readinto(buf)
            except TimeoutError:
                continue
            stamp = time.time_ns()
            if pieces is not None and whole is not None:
                # Packet info (if any) comes before the vnet header: skip it only.
                packet = view[header - vnet_size:n]
                out = pieces if tuntap.VirtioNetHdr.parse(packet).is_gso else whole
                tuntap.segment(packet, out, vnet_hdr_size=vnet_size)
                for p in out:
                    if count is not None and packets >= count:
                        break
                    writer.write(p, stamp)
                    packets += 1
                    octets += len(p)
            else:
                writer.write(view[header:n], stamp)
                packets += 1
                octets += n - header
            status.show(f"{packets:,} packets, {octets:,} bytes")
    except KeyboardInterrupt:
        pass  # the normal way to end an open-ended capture
    except ValueError as exc:
        if dev.closed:
            raise
        raise CliError(f"cannot segment a packet: {exc}") from None
    except OSError as exc:
        raise CliError(f"reading {dev.name} failed: {exc}") from None
    finally:
        status.clear()
    return packets, octets
