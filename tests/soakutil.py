"""Budgets and figures for the reliability tests (leaks, races, loss, fuzzing).

The default suite runs each loop with a small count so the whole suite stays fast;
``tools/soak.sh`` sets ``TUNTAP_SOAK=1`` for the long counts the figures in
``tests/README.md`` quote, and ``TUNTAP_FIGURES=<file>`` to collect every figure a
test measured as one JSON line (``record()``).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Any

SOAK = os.environ.get("TUNTAP_SOAK") == "1"
# Set by tools/test_sanitized.sh: ASan keeps freed memory in quarantine, so RSS grows by
# design there and slow paths (huge failed allocations) cost far more.
SANITIZED = os.environ.get("TUNTAP_SANITIZED") == "1"


def budget(default: int, soak: int) -> int:
    """The iteration count for this run: ``soak`` under tools/soak.sh, else ``default``."""
    return soak if SOAK else default


def record(test: str, **figures: Any) -> None:
    """Append one JSON line of measured figures to $TUNTAP_FIGURES (if set)."""
    path = os.environ.get("TUNTAP_FIGURES")
    if not path:
        return
    line = {"test": test, "soak": SOAK, "time": time.strftime("%Y-%m-%d %H:%M:%S"),
            **figures}
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(line, sort_keys=True) + "\n")


# -- kernel counters ---------------------------------------------------------------------

def link_stats(name: str) -> dict[str, int]:
    """rtnetlink counters of one link (``ip -s -j link``): rx_/tx_ packets and dropped."""
    r = subprocess.run(["ip", "-s", "-j", "link", "show", "dev", name], capture_output=True,
                       text=True, check=True, timeout=10)
    st = json.loads(r.stdout)[0]["stats64"]
    return {f"{d}_{k}": st[d][k] for d in ("rx", "tx") for k in ("packets", "dropped")}


def qdisc_drops(name: str) -> int:
    """Packets the device's root qdisc dropped (``tc -s -j qdisc``)."""
    r = subprocess.run(["tc", "-s", "-j", "qdisc", "show", "dev", name], capture_output=True,
                       text=True, check=True, timeout=10)
    return sum(int(q.get("drops", 0)) for q in json.loads(r.stdout))


def udp_socket_drops(port: int) -> int:
    """The kernel's drop counter of the UDP socket bound to ``port`` (/proc/net/udp, the
    calling thread's namespace): datagrams refused because its receive buffer was full."""
    with open("/proc/thread-self/net/udp", encoding="ascii") as f:
        next(f)
        for line in f:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port:
                return int(fields[-1])
    raise LookupError(f"no UDP socket on port {port}")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise LookupError("VmRSS")
