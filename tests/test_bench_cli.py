"""`python -m tuntap bench`: the quick run prints a complete table; failures are clear."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tuntap import _bench

ROOT = Path(__file__).resolve().parents[1]
QUICK = [sys.executable, "-m", "tuntap", "bench", "--quick", "--packets", "128", "--rounds", "2"]
HAVE_CC = bool(shutil.which("cc") or shutil.which("gcc"))


def _run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def _rows(table: str) -> dict[str, str]:
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and not cells[0].startswith(("read:", "write:", "---")):
            rows[cells[0]] = cells[1]
    return rows


@pytest.mark.needs_tun
def test_quick_bench_prints_every_method_with_a_number_and_exits_0() -> None:
    proc = _run(QUICK)
    assert proc.returncode == 0, proc.stderr
    rows = _rows(proc.stdout)
    expected = ["tuntap readinto", "tuntap read_batch(64)", "ctypes os.read",
                "tuntap write", "tuntap write_batch(64)", "ctypes os.write"]
    if HAVE_CC:
        expected += ["C read()", "C write()"]
    for name in expected:
        assert name in rows, (name, proc.stdout)
        # "1,234 (1.05x)" with the C floor, "1,234" without it
        pattern = r"[\d,]+ \(\d+\.\d\dx\)" if HAVE_CC else r"[\d,]+"
        assert re.fullmatch(pattern, rows[name]), (name, rows[name])
    if HAVE_CC:
        assert rows["C read()"] == rows["C read()"].split()[0] + " (1.00x)"
    # the progress bar went to stderr, not into the table
    assert "[" in proc.stderr and "#" in proc.stderr and "/" in proc.stderr
    assert "#" not in proc.stdout


@pytest.mark.needs_tun
def test_quick_bench_json_has_one_object_per_method() -> None:
    proc = _run([*QUICK, "--json"])
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    names = {r["method"] for r in results}
    assert {"tuntap readinto", "tuntap write", "ctypes os.read", "ctypes os.write"} <= names
    for r in results:
        assert r["K"] == 128 and r["payload"] == 64 and r["bench"] in ("read", "write")
        assert "error" not in r, r
        if "missing" not in r:
            assert r["rounds"] == 2
            assert 0 < r["min_ns"] <= r["median_ns"] <= r["max_ns"] < 10_000_000
            if HAVE_CC:
                assert r["ratio_to_c"] > 0


def test_bench_as_non_root_fails_with_a_clear_message() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to uid 65534")
    # /root is not readable by nobody, so import everything first, then drop privileges.
    code = (
        "import os, sys\n"
        # argparse's gettext imports locale lazily on 3.9/3.10: load it while the
        # interpreter's stdlib (under /root/.pyenv) is still readable.
        "import gettext, locale\n"
        "from tuntap.__main__ import main\n"
        "from tuntap import _bench\n"
        "os.setgroups([]); os.setgid(65534); os.setuid(65534)\n"
        "sys.exit(main(['bench', '--quick']))\n"
    )
    proc = _run([sys.executable, "-c", code], timeout=60)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "needs root" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_missing_tun_device_is_a_bench_error() -> None:
    with pytest.raises(_bench.BenchError, match="no TUN support"):
        _bench.check_tun("/nonexistent/net/tun")


def test_bad_arguments_exit_2() -> None:
    proc = _run([sys.executable, "-m", "tuntap", "bench", "--payload", "5000"], timeout=60)
    assert proc.returncode == 2
    assert "payload" in proc.stderr


def test_udp_packet_has_a_valid_ipv4_header_checksum() -> None:
    pkt = _bench.udp4_packet("10.0.0.2", "10.0.0.1", 4000, 9999, b"x" * 64)
    assert len(pkt) == 20 + 8 + 64
    assert _bench._checksum(pkt[:20]) == 0  # a correct header sums to 0xffff
    assert pkt[9] == 17 and pkt[16:20] == bytes([10, 0, 0, 1])
