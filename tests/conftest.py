"""Test infrastructure: a private network namespace for the whole session, device fixtures.

Tests marked ``needs_tun`` run with the main thread inside a fresh network namespace
(``unshare(CLONE_NEWNET)``), entered lazily before the first such test. Threads and
subprocesses (``ping``, ``ip``) started afterwards inherit it, so nothing the tests do can
touch the host's interfaces. The namespace is left (``setns`` back) when the session ends,
which also destroys every device a failed test may have left behind.

Whether TUN is usable is decided by a probe that does not use the library under test:
``/dev/net/tun`` missing, ``unshare`` refused (EPERM) or a raw ``TUNSETIFF`` refused (EPERM)
skip the ``needs_tun`` tests with the reason. With ``TUNTAP_REQUIRE_TUN=1`` (set by
``.ci/run``) every one of those skips, and any other skip of a ``needs_tun`` test, is turned
into a failure, so a skip can never hide a failure on a capable machine.
"""

from __future__ import annotations

import errno
import fcntl
import os
import secrets
import shutil
import stat
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from netutil import (
    IFF_NO_PI,
    IFF_TUN,
    IFREQ,
    TUN_PATH,
    TUNSETIFF,
    Net,
    current_netns,
    ip,
    setns_net,
    unique_name,
    unique_net,
    unshare_net,
)

REQUIRE_TUN = os.environ.get("TUNTAP_REQUIRE_TUN") == "1"

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # the property tests skip through importorskip
    pass
else:
    # Bounded and fast everywhere; in CI also derandomized (the same examples every run,
    # no example database). TUNTAP_HYPOTHESIS_PROFILE picks one explicitly.
    _hyp = dict(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("ci", derandomize=True, database=None, **_hyp)
    settings.register_profile("dev", **_hyp)
    settings.register_profile("soak", **dict(_hyp, max_examples=5000))  # by hand only
    settings.load_profile(os.environ.get("TUNTAP_HYPOTHESIS_PROFILE")
                          or ("ci" if os.environ.get("CI") else "dev"))


@dataclass
class TunEnv:
    available: bool
    reason: str
    netns: str = ""  # identity of the private namespace, e.g. "net:[4026532300]"


def _probe_tunsetiff() -> str | None:
    """Create and drop a TUN device with raw syscalls; return why it failed, if it did."""
    try:
        fd = os.open(TUN_PATH, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return f"{TUN_PATH} is missing"
    except PermissionError as e:
        return f"cannot open {TUN_PATH}: {e}"
    try:
        ifr = IFREQ.pack(b"ttprobe%d", IFF_TUN | IFF_NO_PI)
        fcntl.ioctl(fd, TUNSETIFF, ifr)
    except OSError as e:
        if e.errno == errno.EPERM:
            return f"TUNSETIFF refused (no CAP_NET_ADMIN): {e}"
        raise
    finally:
        os.close(fd)
    return None


@pytest.fixture(scope="session")
def _tun_env() -> Iterator[TunEnv]:
    """Enter a private network namespace (main thread) if TUN can be used at all."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("the namespace fixture must run in the main thread")
    if not os.path.exists(TUN_PATH):
        yield TunEnv(False, f"{TUN_PATH} is missing")
        return
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            unshare_net()
        except PermissionError as e:
            yield TunEnv(False, f"unshare(CLONE_NEWNET) refused (no CAP_SYS_ADMIN): {e}")
            return
        try:
            ip("link", "set", "lo", "up")
            # Keep devices quiet: no automatic IPv6 link-local address, so no router
            # solicitations or DAD probes show up among the packets the tests read.
            subprocess.run(["sysctl", "-qw", "net.ipv6.conf.default.addr_gen_mode=1"],
                           capture_output=True, timeout=10, check=False)
            reason = _probe_tunsetiff()
            env = TunEnv(reason is None, reason or "", current_netns())
            yield env
        finally:
            setns_net(home)
    finally:
        os.close(home)


def _unavailable(reason: str) -> None:
    if REQUIRE_TUN:
        pytest.fail(f"TUNTAP_REQUIRE_TUN=1 but TUN is unusable here: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(autouse=True)
def _needs_tun_guard(request: pytest.FixtureRequest) -> Iterator[None]:
    if request.node.get_closest_marker("needs_tun") is None:
        yield
        return
    env: TunEnv = request.getfixturevalue("_tun_env")
    if not env.available:
        _unavailable(env.reason)
    # Never run a device test outside the private namespace (e.g. after a test that
    # forgot to setns back): that would touch the host's interfaces.
    assert current_netns() == env.netns, "main thread is not in the private namespace"
    yield
    assert current_netns() == env.netns, "the test left the main thread in another netns"


#: The Debian package that brings each system tool the tests may run (.ci/run installs them).
TOOL_PACKAGES = {"ping": "iputils-ping", "iperf3": "iperf3", "tshark": "tshark",
                 "tcpdump": "tcpdump", "ip": "iproute2"}


@pytest.fixture(autouse=True)
def _needs_tool_guard(request: pytest.FixtureRequest) -> None:
    """``@pytest.mark.needs_tool("ping", ...)``: skip with the reason when a tool is missing."""
    for marker in request.node.iter_markers("needs_tool"):
        for tool in marker.args:
            if shutil.which(tool) is None:
                pkg = TOOL_PACKAGES.get(tool, tool)
                pytest.skip(f"needs `{tool}`, which is not installed (apt-get install {pkg})")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if REQUIRE_TUN and report.skipped and item.get_closest_marker("needs_tun") is not None:
        # On a machine that must run them, a skipped TUN test is a failure.
        if not hasattr(report, "wasxfail"):
            report.outcome = "failed"
            report.longrepr = f"needs_tun test skipped under TUNTAP_REQUIRE_TUN=1: " \
                              f"{report.longrepr}"


# --------------------------------------------------------------------------------------
# Batch I/O backends: the I/O modules run on both (io_backend)
# --------------------------------------------------------------------------------------

IO_BACKENDS = ("syscall", "uring")
_io_backend: list[str] = []  # the backend of the running test, if it has one


def _probe_io_uring() -> str | None:
    """io_uring_setup() by hand (not through the library under test): why it fails."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    params = ctypes.create_string_buffer(120)  # struct io_uring_params
    fd = libc.syscall(425, 8, params)  # __NR_io_uring_setup (the same on x86_64 and arm64)
    if fd < 0:
        err = ctypes.get_errno()
        return f"io_uring unavailable here: io_uring_setup() says {errno.errorcode.get(err)}"
    os.close(fd)
    return None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "io_backend" in metafunc.fixturenames:
        metafunc.parametrize("io_backend", IO_BACKENDS, indirect=True)


@pytest.fixture
def io_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Run the test on one batch I/O backend: every ``Device(io="auto")`` it opens gets it.

    Through ``TUNTAP_IO`` (which overrides "auto"), so devices made anywhere in the test,
    also in subprocesses, are covered. On "uring" ``TUNTAP_URING_MIN=1`` sends every batch
    through the ring (by default batches under 8 packets keep read()/write(), which the
    "syscall" run already covers). Modules opt in with ``usefixtures("io_backend")``.
    """
    backend: str = request.param
    if backend == "uring":
        reason = _probe_io_uring()
        if reason is not None:
            pytest.skip(reason)  # a failure under TUNTAP_REQUIRE_TUN=1 (see the hook)
        monkeypatch.setenv("TUNTAP_URING_MIN", "1")
    monkeypatch.setenv("TUNTAP_IO", backend)
    _io_backend.append(backend)
    try:
        yield backend
    finally:
        _io_backend.pop()


# --------------------------------------------------------------------------------------
# Device fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture
def open_device() -> Iterator[Callable[..., Any]]:
    """Factory: ``open_device(name, flags, **kw)``; every device is closed at teardown."""
    import tuntap

    opened: list[Any] = []

    def factory(*args: Any, **kwargs: Any) -> Any:
        dev = tuntap.Device(*args, **kwargs)
        opened.append(dev)
        if _io_backend and kwargs.get("io", "auto") == "auto":
            # the parametrized run must really be on that backend
            assert dev.io == _io_backend[-1], (dev.io, _io_backend)
        return dev

    yield factory
    for dev in opened:
        dev.close()


@pytest.fixture
def cleanup_links() -> Iterator[list[str]]:
    """Names appended here are deleted (by exact name) at teardown, e.g. persistent ones."""
    names: list[str] = []
    yield names
    for name in names:
        ip("link", "del", "dev", name, check=False)


@dataclass
class UpDevice:
    """A device that is up with ``local``/24; ``remote`` and ``other`` route through it."""

    dev: Any
    name: str
    local: str
    remote: str
    other: str
    prefix: int = 24

    @property
    def cidr(self) -> str:
        return f"{self.local}/{self.prefix}"


@pytest.fixture
def up_device(open_device: Callable[..., Any]) -> Callable[..., UpDevice]:
    """Factory: ``up_device(flags=TUN|NO_PI, **kw)`` opens a device with a fresh name
    (``kw`` as for ``tuntap.Device``, e.g. ``netns=``), gives it a fresh /24 and brings it
    up. Closed at teardown."""

    def make(flags: int | None = None, **kwargs: Any) -> UpDevice:
        net = unique_net()
        args = () if flags is None else (flags,)
        dev = open_device(unique_name(), *args, **kwargs)
        dev.add_address(net.cidr)
        dev.up()
        return UpDevice(dev, dev.name, net.local, net.remote, net.other, net.prefix)

    return make


@pytest.fixture
def tun(up_device: Callable[..., UpDevice]) -> UpDevice:
    """A TUN (NO_PI) device, up, with ``local``/24; ``remote`` is routed through it."""
    return up_device()


@pytest.fixture
def tap(up_device: Callable[..., UpDevice]) -> UpDevice:
    """A TAP (NO_PI) device, up, with ``local``/24 (the peer's ARP is up to the test)."""
    import tuntap

    return up_device(tuntap.Flags.TAP | tuntap.Flags.NO_PI)


@pytest.fixture
def up_queues() -> Iterator[Callable[..., tuple[list[Any], Net]]]:
    """Factory: ``up_queues(count, flags=TUN|NO_PI)`` opens a multi-queue device
    (``tuntap.open_queues``), gives it a fresh /24 and brings it up; returns
    ``(queues, net)``. Every queue is closed at teardown."""
    import tuntap

    opened: list[Any] = []

    def make(count: int, flags: int | None = None) -> tuple[list[Any], Net]:
        net = unique_net()
        args = () if flags is None else (flags,)
        qs = tuntap.open_queues(unique_name(), count, *args)
        opened.extend(qs)
        qs[0].add_address(net.cidr)
        qs[0].up()
        return qs, net

    yield make
    for q in opened:
        q.close()


@pytest.fixture
def named_netns() -> Iterator[str]:
    """A fresh named namespace ``tt-<pid>-<random>``, deleted by exact name."""
    name = f"tt-{os.getpid()}-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True, timeout=10)
    try:
        ip("link", "set", "lo", "up", netns=name)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True,
                       timeout=10)


@pytest.fixture
def tun_node() -> Iterator[str]:
    """A private TUN device node (``c 10 200``, mode 666) any uid can open, in a 755 dir."""
    d = tempfile.mkdtemp(prefix="tuntap-node-")
    try:
        os.chmod(d, 0o755)
        node = os.path.join(d, "tun")
        os.mknod(node, 0o666 | stat.S_IFCHR, os.makedev(10, 200))
        os.chmod(node, 0o666)
        yield node
    finally:
        shutil.rmtree(d, ignore_errors=True)
