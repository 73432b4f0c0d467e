"""Every program in examples/ runs as written: --help, a plain message without privileges,
and a real run whose output and exit status are checked."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from netutil import checksum, parse_ipv4, run_unprivileged

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"
EXAMPLES = sorted(p.name for p in EXAMPLES_DIR.glob("*.py")) if EXAMPLES_DIR.exists() else []


def run(name: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(EXAMPLES_DIR / name), *args],
                          capture_output=True, text=True, timeout=timeout)


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name[:-3], EXAMPLES_DIR / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_examples_are_next_to_the_tests() -> None:
    assert {"ping_responder.py", "tap_responder.py", "udp_vpn.py", "forward.py",
            "typed_usage.py"} <= set(EXAMPLES), f"examples missing in {EXAMPLES_DIR}"


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_has_help(name: str) -> None:
    r = run(name, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: ")
    assert "Traceback" not in r.stderr


@pytest.mark.needs_tun
@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_says_plainly_that_it_needs_root(name: str) -> None:
    r = run_unprivileged([sys.executable, str(EXAMPLES_DIR / name)])
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "needs root" in r.stderr or "CAP_NET_ADMIN" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


# --------------------------------------------------------------------------- real runs
@pytest.mark.needs_tun
@pytest.mark.needs_tool("ping")
def test_ping_responder_answers_every_echo_request() -> None:
    r = run("ping_responder.py", "--count", "3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 packets transmitted, 3 received" in r.stdout
    assert r.stdout.rstrip().endswith("answered 3 echo requests in userspace")


def test_ping_responder_builds_replies_with_valid_checksums() -> None:
    from netutil import IPPROTO_ICMP, build_ipv4

    mod = load("ping_responder.py")
    icmp = bytearray(b"\x08\x00\x00\x00\x12\x34\x00\x07" + b"payload!")
    icmp[2:4] = checksum(bytes(icmp)).to_bytes(2, "big")
    request = build_ipv4("10.99.0.1", "10.99.0.2", IPPROTO_ICMP, bytes(icmp))
    reply = mod.echo_reply(request)
    ip = parse_ipv4(reply)
    assert (ip.src, ip.dst, ip.header_ok) == ("10.99.0.2", "10.99.0.1", True)
    assert ip.payload[0] == 0 and ip.payload[4:] == bytes(icmp[4:])
    assert checksum(ip.payload) == 0
    assert mod.echo_reply(request[:27]) is None
    assert mod.echo_reply(build_ipv4("1.1.1.1", "2.2.2.2", 17, bytes(8))) is None


@pytest.mark.needs_tun
@pytest.mark.needs_tool("ping")
def test_tap_responder_answers_arp_and_ping_with_scapy() -> None:
    r = run("tap_responder.py", "--count", "3")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 packets transmitted, 3 received" in r.stdout
    assert "answered 1 ARP requests and 3 echo requests as 10.97.0.2" in r.stdout


@pytest.mark.needs_tun
@pytest.mark.needs_tool("ping")
@pytest.mark.parametrize("args", [
    [],
    ["--offload"],
    ["--cipher", "hmac-sha256"],
    ["--offload", "--cipher", "chacha20-poly1305"],
], ids=["plain", "offload", "hmac", "offload-chacha"])
def test_udp_vpn_carries_ping_and_tcp_intact(args: list[str]) -> None:
    r = run("udp_vpn.py", *args, "--count", "2", "--transfer", "1000000")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 packets transmitted, 2 received" in r.stdout
    assert "TCP 1,000,000 bytes A -> B: intact (SHA-256)" in r.stdout
    counts = {}
    for line in r.stdout.splitlines():
        if line.startswith("end "):
            counts[line[4]] = dict(kv.rsplit(" ", 1) for kv in line[7:].split(", "))
    assert int(counts["A"]["packets_out"]) > 600  # 1 MB in <= 1472-byte packets
    assert int(counts["B"]["dropped_in"]) == 0
    if "--offload" in args:
        # The kernel handed over TCP super-packets and segment() cut them up.
        assert int(counts["A"]["super_packets_out"]) > 0
    else:
        assert counts["A"]["super_packets_out"] == "0"


@pytest.mark.parametrize("cipher", ["hmac-sha256", "chacha20-poly1305"])
def test_udp_vpn_ciphers_refuse_forged_or_damaged_datagrams(cipher: str) -> None:
    mod = load("udp_vpn.py")
    key = bytes(range(32))
    a, b = mod.make_cipher(cipher, key), mod.make_cipher(cipher, key)
    packet = b"\x45" + bytes(19) + b"secret payload"
    sealed = a.seal(packet)
    assert len(sealed) == len(packet) + a.overhead
    assert b.open(sealed) == packet
    damaged = bytearray(sealed)
    damaged[len(damaged) // 2] ^= 1
    assert b.open(bytes(damaged)) is None
    assert b.open(sealed[: a.overhead - 1]) is None
    assert mod.make_cipher(cipher, bytes(32)).open(sealed) is None  # another key
    if cipher == "chacha20-poly1305":
        assert b"secret payload" not in sealed  # encrypted, not just signed
        assert a.seal(packet) != sealed  # a fresh nonce every time


@pytest.mark.needs_tun
@pytest.mark.needs_tool("ping")
@pytest.mark.parametrize("args, directions", [
    ([], 2),
    (["--queues", "2", "--mode", "threads"], 4),
    (["--queues", "2", "--mode", "epoll"], 4),
], ids=["epoll", "multi-queue-threads", "multi-queue-epoll"])
def test_forward_carries_ping_between_namespaces(args: list[str], directions: int) -> None:
    import json

    r = run("forward.py", *args)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ping A -> B: 3 packets transmitted, 3 received" in r.stdout
    result: dict[str, Any] = json.loads(r.stdout.splitlines()[-1])
    assert len(result["directions"]) == directions
    assert sum(d["packets"] for d in result["directions"]) >= 6  # 3 requests, 3 replies


@pytest.mark.needs_tun
@pytest.mark.needs_tool("ping", "iperf3")
def test_forward_with_offloads_runs_iperf3_and_says_so_first() -> None:
    r = run("forward.py", "--offload", "--iperf", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    start = lines.index("iperf3 A -> B for 1 s ...")
    assert lines[start + 1].startswith("iperf3 A -> B: ") and "Gbps" in lines[start + 1]


@pytest.mark.needs_tun
def test_typed_usage_reads_both_datagrams() -> None:
    r = run("typed_usage.py")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "readinto: 33 bytes, UDP payload b'hello'" in r.stdout
    assert "UDP payloads [b'batch']" in r.stdout
