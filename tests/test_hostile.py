"""Regression tests for what a hostile (or just unlucky) user found: each one crashed,
hung, lied or accepted garbage before it was fixed (issue: reliability you can quote).

Whatever could crash the interpreter runs in a child process, so a segfault is a test
failure that shows the input instead of the end of the test session.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from netutil import unique_name, unique_net

pytestmark = pytest.mark.needs_tun


def run_child(code: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (inside the test namespace); fail on a crash."""
    r = subprocess.run([sys.executable, "-X", "faulthandler", "-c", textwrap.dedent(code),
                        *args], capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"child died with {r.returncode}:\n{r.stdout}\n{r.stderr}"
    return r


# -- write_batch(list) while another thread mutates the list --------------------------

def test_write_batch_of_a_list_another_thread_shrinks_does_not_crash() -> None:
    """The GIL is released between 64-packet chunks; the list used to be read past its
    new end (SIGSEGV within 0.2 s). Now the call writes a snapshot of the list."""
    net = unique_net()
    r = run_child("""
        import sys, threading, time, tuntap
        d = tuntap.Device(sys.argv[1])
        d.add_address(sys.argv[2]); d.up()
        pkt = bytes([0x45]) + bytes(39)     # dropped by the stack, accepted by TUN
        lst = [pkt] * 300
        stop = threading.Event()
        def mutate():
            while not stop.is_set():
                lst.clear(); lst.extend([pkt] * 300)
        t = threading.Thread(target=mutate); t.start()
        calls, counts = 0, set()
        end = time.monotonic() + 1.0
        try:
            while time.monotonic() < end:
                counts.add(d.write_batch(lst))
                calls += 1
        finally:
            stop.set(); t.join()
        # every call wrote the whole list as it was when the call began
        assert counts <= {0, 300}, counts
        print(calls)
    """, unique_name(), net.cidr)
    assert int(r.stdout) > 10
