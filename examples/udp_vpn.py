#!/usr/bin/env python3
"""A UDP VPN between two network namespaces: TUN devices, one UDP socket per end.

Run as root::

    python examples/udp_vpn.py                          # ping + a 2 MB TCP transfer
    python examples/udp_vpn.py --offload                # the same with 64 KB super-packets
    python examples/udp_vpn.py --cipher chacha20-poly1305 --iperf 3

The script makes two namespaces joined by a veth pair, the "underlay" (192.0.2.1 and
192.0.2.2, a documentation range that only exists in them), and in each a TUN device
``vpn0``, the "overlay" (10.200.0.1 in A, 10.200.0.2 in B, point to point). Each end of
the VPN reads IP packets from its ``vpn0``, seals each into one UDP datagram to the
other end, and writes what it receives (once it opened it) into its ``vpn0``, where the
kernel takes it as if it came from the network. Both ends run in this one process, as
threads, because that is easy to demonstrate; on two hosts each would run one ``Tunnel``.

``--offload`` opens both devices with ``Flags.VNET_HDR`` and ``CSUM|TSO4|TSO6``: the
kernel then hands over TCP super-packets of up to 64 KB, which ``tuntap.segment()`` cuts
into MTU-sized packets on the way out (one datagram each; the underlay MTU is 1500). On
the way in every packet is written with an empty virtio-net header. Joining received
packets back into super-packets (GRO) is the job of ``tuntap.coalesce()``, not in this
tuntap yet: :meth:`Tunnel.deliver` is where it goes.

``--cipher``: ``none``; ``hmac-sha256`` (standard library only: every datagram carries a
counter and a 16-byte HMAC tag, so forged or damaged datagrams are dropped, but the
traffic is NOT encrypted); ``chacha20-poly1305`` (authenticated encryption from the
``cryptography`` package: ``pip install '.[vpn]'``). The demo makes a random key for both
ends; a real VPN exchanges keys (and keeps a replay window, which this one does not).
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import hashlib
import hmac
import json
import os
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from typing import Any, Callable, TypeVar

import tuntap

PROG = "udp_vpn.py"
UNDERLAY_A, UNDERLAY_B, PORT = "192.0.2.1", "192.0.2.2", 51820
OVERLAY_A, OVERLAY_B = "10.200.0.1", "10.200.0.2"
UNDERLAY_MTU = 1500
CLONE_NEWNET = 0x40000000
T = TypeVar("T")


# --------------------------------------------------------------------------- ciphers
class Plain:
    """No protection: the datagram is the packet."""

    overhead = 0

    def seal(self, packet: bytes | memoryview) -> bytes:
        return bytes(packet)

    def open(self, datagram: bytes) -> bytes | None:
        return datagram


class HmacSha256:
    """Authentication only (standard library): 8-byte counter + packet + 16-byte tag."""

    overhead = 8 + 16

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.counter = 0
        self.lock = threading.Lock()

    def seal(self, packet: bytes | memoryview) -> bytes:
        with self.lock:
            self.counter += 1
            head = struct.pack("!Q", self.counter)
        body = head + bytes(packet)
        return body + hmac.new(self.key, body, hashlib.sha256).digest()[:16]

    def open(self, datagram: bytes) -> bytes | None:
        if len(datagram) < self.overhead:
            return None
        body, tag = datagram[:-16], datagram[-16:]
        if not hmac.compare_digest(tag, hmac.new(self.key, body, hashlib.sha256).digest()[:16]):
            return None
        return body[8:]


class ChaCha20Poly1305:
    """Authenticated encryption (``cryptography``): 12-byte nonce + ciphertext + tag."""

    overhead = 12 + 16

    def __init__(self, key: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import (
            ChaCha20Poly1305 as Aead,  # the vpn extra
        )

        self.aead = Aead(key)
        self.prefix = secrets.token_bytes(4)  # per sender: nonces never repeat across ends
        self.counter = 0
        self.lock = threading.Lock()

    def seal(self, packet: bytes | memoryview) -> bytes:
        with self.lock:
            self.counter += 1
            nonce = self.prefix + struct.pack("!Q", self.counter)
        return nonce + self.aead.encrypt(nonce, bytes(packet), None)

    def open(self, datagram: bytes) -> bytes | None:
        from cryptography.exceptions import InvalidTag

        if len(datagram) < self.overhead:
            return None
        try:
            plain: bytes = self.aead.decrypt(datagram[:12], datagram[12:], None)
        except InvalidTag:
            return None
        return plain


def make_cipher(name: str, key: bytes) -> Plain | HmacSha256 | ChaCha20Poly1305:
    if name == "hmac-sha256":
        return HmacSha256(key)
    if name == "chacha20-poly1305":
        return ChaCha20Poly1305(key)
    return Plain()


# --------------------------------------------------------------------------- one end
class Tunnel:
    """One end of the VPN: ``dev`` <-> datagrams on ``sock`` to and from ``peer``."""

    def __init__(self, dev: tuntap.Device, sock: socket.socket, peer: tuple[str, int],
                 cipher: Plain | HmacSha256 | ChaCha20Poly1305, offload: bool) -> None:
        self.dev, self.sock, self.peer, self.cipher = dev, sock, peer, cipher
        self.offload = offload
        self.vnet = bytes(dev.vnet_hdr_size) if offload else b""
        self.counts = {"packets_out": 0, "super_packets_out": 0, "packets_in": 0,
                       "dropped_in": 0}

    def outbound(self, stop: threading.Event) -> None:
        """Device -> network: read a packet (or super-packet), seal, send."""
        buf = bytearray(65536 + 64)
        view = memoryview(buf)
        pieces = tuntap.PacketBatch(256, 2048) if self.offload else None
        self.dev.settimeout(0.2)
        while not stop.is_set():
            try:
                n = self.dev.readinto(buf)
            except TimeoutError:
                continue
            except ValueError:  # closed
                return
            if pieces is not None:
                # segment() also completes the checksum the kernel left to us (CSUM).
                count = tuntap.segment(view[:n], pieces)
                if count > 1:
                    self.counts["super_packets_out"] += 1
                packets = [pieces[i] for i in range(count)]
            else:
                packets = [view[:n]]
            for p in packets:
                self.sock.sendto(self.cipher.seal(p), self.peer)
                self.counts["packets_out"] += 1

    def inbound(self, stop: threading.Event) -> None:
        """Network -> device: receive a datagram, open it, write the packet."""
        self.sock.settimeout(0.2)
        while not stop.is_set():
            try:
                datagram, sender = self.sock.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:  # closed
                return
            packet = self.cipher.open(datagram) if sender == self.peer else None
            if packet is None:
                self.counts["dropped_in"] += 1
                continue
            self.deliver([packet])

    def deliver(self, packets: list[bytes]) -> None:
        """Write received packets into the device.

        GRO hook: with ``tuntap.coalesce()`` (a later tuntap) and ``--offload``, the
        packets of one burst would be joined into super-packets here (``coalesce(packets,
        out)`` then ``dev.write_batch(out)``), so the kernel's TCP sees 64 KB at a time.
        """
        for packet in packets:
            try:
                self.dev.write(self.vnet + packet if self.vnet else packet)
            except OSError:  # malformed or the device went down: a tunnel drops it
                self.counts["dropped_in"] += 1
                continue
            self.counts["packets_in"] += 1


# --------------------------------------------------------------------------- namespaces
def _setns(fd: int) -> None:
    if hasattr(os, "setns"):
        os.setns(fd, CLONE_NEWNET)
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns")


def in_netns(ns: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a thread inside namespace ``ns``; sockets it makes stay there."""
    box: dict[str, Any] = {}

    def body() -> None:
        fd = os.open(f"/var/run/netns/{ns}", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(fd)
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc
        finally:
            os.close(fd)

    t = threading.Thread(target=body)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=20)


def make_underlay(ns_a: str, ns_b: str) -> None:
    for ns in (ns_a, ns_b):
        sh("ip", "netns", "add", ns)
        sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "link", "add", "ul0", "netns", ns_a, "type", "veth", "peer", "name", "ul0",
       "netns", ns_b)
    for ns, addr in ((ns_a, UNDERLAY_A), (ns_b, UNDERLAY_B)):
        sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", "ul0")
        sh("ip", "-n", ns, "link", "set", "ul0", "up")


def open_end(ns: str, local: str, peer_overlay: str, underlay: str, mtu: int,
             offload: bool) -> tuple[tuntap.Device, socket.socket]:
    f = tuntap.Flags
    flags = f.TUN | f.NO_PI | (f.VNET_HDR if offload else 0)
    dev = tuntap.Device("vpn0", flags, netns=ns)
    if offload:  # TCP super-packets, checksums left to us: segment() does both
        o = tuntap.Offload
        dev.set_offload(o.CSUM | o.TSO4 | o.TSO6)
    dev.mtu = mtu
    dev.add_address(f"{local}/32", peer=peer_overlay)
    dev.up()

    def bound() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # bursts of 64 KB reads
        s.bind((underlay, PORT))
        return s

    return dev, in_netns(ns, bound)


# --------------------------------------------------------------------------- traffic
def transfer(ns_a: str, ns_b: str, size: int) -> tuple[bool, float]:
    """TCP from A to B through the VPN: ``size`` bytes, checked by SHA-256; (ok, seconds)."""
    data = secrets.token_bytes(size)
    server = in_netns(ns_b, lambda: socket.create_server((OVERLAY_B, 5201)))
    got: dict[str, str] = {}

    def serve() -> None:
        server.settimeout(20)
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(20)
            h = hashlib.sha256()
            for _ in range(1 << 20):
                chunk = conn.recv(1 << 16)
                if not chunk:
                    break
                h.update(chunk)
            got["digest"] = h.hexdigest()

    t = threading.Thread(target=serve)
    t.start()
    t0 = time.monotonic()
    try:
        client = in_netns(ns_a, lambda: socket.create_connection((OVERLAY_B, 5201), timeout=20))
        with client:
            client.sendall(data)
    finally:
        t.join(30)
        server.close()
    return got.get("digest") == hashlib.sha256(data).hexdigest(), time.monotonic() - t0


def ping(ns: str, count: int) -> bool:
    r = subprocess.run(["ip", "netns", "exec", ns, "ping", "-n", "-c", str(count), "-i", "0.2",
                        "-W", "2", OVERLAY_B], capture_output=True, text=True,
                       timeout=10 + count)
    lines = r.stdout.strip().splitlines()
    print(f"ping {OVERLAY_A} -> {OVERLAY_B} through the VPN: "
          f"{lines[-2] if len(lines) >= 2 else r.stderr.strip()}")
    return r.returncode == 0


def iperf(ns_a: str, ns_b: str, seconds: float) -> bool:
    srv = subprocess.Popen(["ip", "netns", "exec", ns_b, "iperf3", "-s", "-1", "-B", OVERLAY_B],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        print(f"iperf3 for {seconds:g} s ...", flush=True)
        r = subprocess.run(["ip", "netns", "exec", ns_a, "iperf3", "-c", OVERLAY_B, "-t",
                            str(seconds), "-J"], capture_output=True, text=True,
                           timeout=seconds + 30)
        if r.returncode != 0:
            print("iperf3 failed:", r.stdout[-300:], r.stderr[-300:])
            return False
        end = json.loads(r.stdout)["end"]
        print(f"iperf3 A -> B: {end['sum_received']['bits_per_second'] / 1e6:.0f} Mbit/s")
        return True
    finally:
        srv.kill()
        srv.wait(5)


# --------------------------------------------------------------------------- main
def require_root() -> None:
    """Exit with a plain message unless this process may make namespaces and devices."""
    with open("/proc/self/status") as f:
        caps = int(next(line for line in f if line.startswith("CapEff:")).split()[1], 16)
    if not caps & (1 << 12) or not caps & (1 << 21):  # CAP_NET_ADMIN, CAP_SYS_ADMIN
        sys.exit(f"{PROG}: needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN, to make network "
                 f"namespaces and TUN devices); try: sudo {sys.executable} {sys.argv[0]}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                epilog="Exit status: 0 when all traffic went through, 1 "
                                       "otherwise or when it cannot run here.")
    p.add_argument("--offload", action="store_true",
                   help="VNET_HDR devices with CSUM|TSO4|TSO6: super-packets, segment() "
                        "on the way out")
    p.add_argument("--cipher", choices=("none", "hmac-sha256", "chacha20-poly1305"),
                   default="none", help="how datagrams are protected (default: none)")
    p.add_argument("--count", type=int, default=3, help="pings through the VPN (default 3)")
    p.add_argument("--transfer", type=int, default=2_000_000, metavar="BYTES",
                   help="TCP bytes sent A -> B and checked (default 2000000; 0: none)")
    p.add_argument("--iperf", type=float, default=0, metavar="SECONDS",
                   help="also run iperf3 A -> B through the VPN for this long")
    args = p.parse_args(argv)
    require_root()
    if not shutil.which("ip") or not shutil.which("ping"):
        sys.exit(f"{PROG}: needs the ip and ping commands (apt-get install iproute2 "
                 "iputils-ping)")
    if args.iperf and not shutil.which("iperf3"):
        sys.exit(f"{PROG}: --iperf needs iperf3 (apt-get install iperf3)")
    try:
        key = secrets.token_bytes(32)
        ciphers = [make_cipher(args.cipher, key) for _ in range(2)]
    except ImportError:
        sys.exit(f"{PROG}: --cipher chacha20-poly1305 needs the cryptography package "
                 "(pip install cryptography, or pip install '.[vpn]')")

    tag = f"{os.getpid()}"
    ns_a, ns_b = f"ttvpn-a-{tag}", f"ttvpn-b-{tag}"
    mtu = UNDERLAY_MTU - 20 - 8 - ciphers[0].overhead
    stop = threading.Event()
    devices: list[tuntap.Device] = []
    sockets: list[socket.socket] = []
    threads: list[threading.Thread] = []
    ok = True
    try:
        make_underlay(ns_a, ns_b)
        ends = []
        for ns, local, peer, ul, ul_peer, cipher in (
                (ns_a, OVERLAY_A, OVERLAY_B, UNDERLAY_A, UNDERLAY_B, ciphers[0]),
                (ns_b, OVERLAY_B, OVERLAY_A, UNDERLAY_B, UNDERLAY_A, ciphers[1])):
            dev, sock = open_end(ns, local, peer, ul, mtu, args.offload)
            devices.append(dev)
            sockets.append(sock)
            ends.append(Tunnel(dev, sock, (ul_peer, PORT), cipher, args.offload))
        for end in ends:
            for job in (end.outbound, end.inbound):
                threads.append(threading.Thread(target=job, args=(stop,), daemon=True))
                threads[-1].start()
        print(f"VPN up: {ns_a} {OVERLAY_A} <-> {ns_b} {OVERLAY_B} over UDP "
              f"{UNDERLAY_A}:{PORT} <-> {UNDERLAY_B}:{PORT}; MTU {mtu}, cipher {args.cipher}"
              f"{', offloads' if args.offload else ''}", flush=True)
        ok = ping(ns_a, args.count) if args.count else True
        if args.transfer:
            good, secs = transfer(ns_a, ns_b, args.transfer)
            print(f"TCP {args.transfer:,} bytes A -> B: "
                  f"{'intact' if good else 'DAMAGED OR INCOMPLETE'} (SHA-256), "
                  f"{args.transfer * 8 / secs / 1e6:.0f} Mbit/s", flush=True)
            ok = ok and good
        if args.iperf:
            ok = iperf(ns_a, ns_b, args.iperf) and ok
        for name, end in zip("AB", ends):
            print(f"end {name}: " + ", ".join(f"{k} {v}" for k, v in end.counts.items()))
    except PermissionError as exc:
        print(f"{PROG}: {exc}: needs root", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as exc:
        print(f"{PROG}: {' '.join(exc.cmd)} failed: {exc.stderr.decode().strip()}",
              file=sys.stderr)
        return 1
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        for d in devices:
            d.close()
        for s in sockets:
            s.close()
        for ns in (ns_a, ns_b):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=20)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
