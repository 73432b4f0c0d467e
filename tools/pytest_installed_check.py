"""pytest plugin for tools/test_wheels.sh: fail the run unless `tuntap` is the installed copy.

Loaded with ``-p pytest_installed_check`` (tools/ on PYTHONPATH). ``TUNTAP_EXPECT_PREFIX``
names the directory the imported package must live under (the venv's site-packages).
"""

from __future__ import annotations

import os
import sys

import pytest


def _where() -> str:
    import tuntap

    return os.path.realpath(os.path.dirname(tuntap.__file__ or ""))


def pytest_sessionstart(session: pytest.Session) -> None:
    prefix = os.path.realpath(os.environ["TUNTAP_EXPECT_PREFIX"])
    where = _where()
    if not where.startswith(prefix + os.sep):
        raise pytest.UsageError(f"tuntap imported from {where}, not from {prefix}")
    sys.stderr.write(f"[installed-check] tuntap from {where}\n")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    prefix = os.path.realpath(os.environ["TUNTAP_EXPECT_PREFIX"])
    for name in ("tuntap", "tuntap._tuntap"):
        m = sys.modules.get(name)
        if m is None:
            continue
        path = os.path.realpath(getattr(m, "__file__", "") or "")
        if not path.startswith(prefix + os.sep):
            sys.stderr.write(f"[installed-check] {name} came from {path}, not {prefix}\n")
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
