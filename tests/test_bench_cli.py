"""The command line and `tuntap bench`: complete tables, exact packet counts, clear usage
errors, the progress bar only on a terminal, honest ratio columns, help, --version."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

import tuntap
from tuntap import _bench
from tuntap.__main__ import main
from tuntap._bench import cli, env, report

QUICK = [sys.executable, "-m", "tuntap", "bench", "--quick", "--packets", "128", "--rounds", "2"]
HAVE_CC = bool(shutil.which("cc") or shutil.which("gcc"))
READS = ["tuntap readinto", "tuntap read_batch(64)", "ctypes os.read"]
WRITES = ["tuntap write", "tuntap write_batch(64)", "ctypes os.write"]


def _run(argv: list[str], timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)


def _tables(stdout: str) -> dict[str, dict[str, list[str]]]:
    """{"read": {method: [median, min-max, paired, of medians]}, "write": {...}}."""
    tables: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for line in stdout.splitlines():
        if not line.startswith("|"):
            current = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[1] == "median ns/packet":
            assert cells[2:] == ["min-max", "x C, paired", "x C, of medians"], line
            current = tables.setdefault(cells[0].split()[0], {})
        elif current is not None and not cells[0].startswith("---"):
            current[cells[0]] = cells[1:]
    return tables


def _num(cell: str) -> float:
    return float(cell.replace(",", "").rstrip("x"))


def _json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


# --------------------------------------------------------------------------- full runs
@pytest.mark.needs_tun
def test_quick_bench_prints_every_method_with_a_number_and_exits_0() -> None:
    proc = _run(QUICK)
    assert proc.returncode == 0, proc.stderr
    tables = _tables(proc.stdout)
    assert set(tables) == {"read", "write"}
    expected = {"read": READS + (["C read()"] if HAVE_CC else []),
                "write": WRITES + (["C write()"] if HAVE_CC else [])}
    for kind, names in expected.items():
        for name in names:
            median, spread, paired, of_medians = tables[kind][name]
            lo, hi = (_num(x) for x in spread.split("-"))
            assert 0 < lo <= _num(median) <= hi < 10_000_000, (name, tables[kind][name])
            if HAVE_CC:
                assert re.fullmatch(r"\d+\.\d\dx", paired) and re.fullmatch(r"\d+\.\d\dx",
                                                                             of_medians)
            else:
                assert paired == of_medians == "-"
    if HAVE_CC:
        assert tables["read"]["C read()"][2:] == ["1.00x", "1.00x"]
        assert tables["write"]["C write()"][2:] == ["1.00x", "1.00x"]
    assert "K=128 packets, 64-byte UDP payload, 2 rounds" in proc.stderr


@pytest.mark.needs_tun
@pytest.mark.skipif(not HAVE_CC, reason="no C compiler: no C floor, no ratios")
def test_ratio_columns_are_labelled_and_of_medians_is_the_ratio_of_printed_medians() -> None:
    proc = _run(QUICK)
    assert proc.returncode == 0, proc.stderr
    tables = _tables(proc.stdout)
    for kind, floor in (("read", "C read()"), ("write", "C write()")):
        base = _num(tables[kind][floor][0])
        for name, (median, _, _, of_medians) in tables[kind].items():
            # printed medians are rounded to 1 ns (+-0.5 each), the ratio to 0.01 (+-0.005):
            # |d(m/b)| <= 0.5/b + 0.5*m/b**2
            m = _num(median)
            bound = 0.005 + 0.5 / base + 0.5 * m / base**2 + 1e-9
            assert abs(_num(of_medians) - m / base) <= bound, name
    # the table says what each ratio column is
    assert ("x C, paired: the median over the 2 rounds of (this method's time / the C "
            "loop's\n  time in the same round)") in proc.stdout
    assert "x C, of medians: this row's median / the C row's median" in proc.stdout


@pytest.mark.needs_tun
def test_quick_bench_json_has_one_object_per_method() -> None:
    proc = _run([*QUICK, "--json"])
    assert proc.returncode == 0, proc.stderr
    results = _json_lines(proc.stdout)
    names = {r["method"] for r in results}
    assert set(READS + WRITES) <= names
    for r in results:
        assert r["K"] == 128 and r["payload"] == 64 and r["bench"] in ("read", "write")
        assert "error" not in r, r
        if "missing" not in r:
            assert r["rounds"] == 2
            assert 0 < r["min_ns"] <= r["median_ns"] <= r["max_ns"] < 10_000_000
            if HAVE_CC:
                assert r["ratio_to_c"] > 0 and r["ratio_of_medians"] > 0


@pytest.mark.needs_tun
@pytest.mark.parametrize("k", [1, 63, 65, 1000])
def test_any_packet_count_is_moved_exactly_by_every_method(k: int) -> None:
    # write_batch used to write whole batches of 64: 1024 packets for K=1000, so the sink
    # check failed and the bench exited 3.
    proc = _run([sys.executable, "-m", "tuntap", "bench", "-k", str(k), "-r", "1", "--json"])
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    results = _json_lines(proc.stdout)
    by_name = {r["method"]: r for r in results}
    for name in READS + WRITES:
        assert by_name[name]["K"] == k and by_name[name]["rounds"] == 1, by_name[name]


@pytest.mark.needs_tun
def test_a_method_that_fails_its_check_is_reported_and_exits_3() -> None:
    # "tuntap write" replaced by one that writes one packet too few: the sink count must
    # catch it, the row must say error, the other methods must still have numbers.
    code = (
        "import sys, tuntap\n"
        "from tuntap._bench import cli, methods\n"
        "def short(dev, k, packet):\n"
        "    return methods.loop1(dev.write, packet, k - 1)\n"
        "def patched():\n"
        "    return [methods.Method(m.name, 'write', tuntap.Device, short)\n"
        "            if m.name == 'tuntap write' else m for m in methods.tuntap_methods()]\n"
        "cli.tuntap_methods = patched\n"
        "from tuntap.__main__ import main\n"
        "sys.exit(main(['bench', '--quick', '-k', '128', '-r', '2']))\n"
    )
    proc = _run([sys.executable, "-c", code])
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    tables = _tables(proc.stdout)
    assert tables["write"]["tuntap write"] == ["error", "", "", ""]
    assert "- tuntap write: RuntimeError: the sink received 127 packets of 128 written" \
        in proc.stdout
    assert _num(tables["write"]["tuntap write_batch(64)"][0]) > 0


@pytest.mark.needs_tun
def test_bench_runs_outside_the_source_tree(tmp_path: Path) -> None:
    # The C floor comes from the package (importlib.resources), not from benchmarks/.
    proc = _run([*QUICK, "--json"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    names = {r["method"] for r in _json_lines(proc.stdout) if "missing" not in r}
    if HAVE_CC:
        assert {"C read()", "C write()"} <= names
    assert list(tmp_path.iterdir()) == []


@pytest.mark.needs_tun
def test_ctrl_c_exits_130_with_one_line_and_no_traceback() -> None:
    argv = [sys.executable, "-m", "tuntap", "bench", "-k", "65536", "-r", "50"]  # ~10 s
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # printed once the C floor is built: timing starts
        assert first.startswith("tuntap bench: K=65536"), first
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()  # our own child, by its Popen handle
            proc.wait()
    assert proc.returncode == 130, err
    assert err == "python -m tuntap: interrupted\n"
    assert out == ""


# --------------------------------------------------------------------------- progress bar
def _run_on_pty(argv: list[str]) -> tuple[int, str, str]:
    """Run with stderr on a pseudo-terminal; return (status, stdout, what the pty got)."""
    master, slave = pty.openpty()
    got = bytearray()

    def reader() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: every copy of the slave side is closed
                return
            if not data:
                return
            got.extend(data)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=slave, text=True,
                              timeout=120)
    finally:
        os.close(slave)
    t.join(10)
    os.close(master)
    return proc.returncode, proc.stdout, got.decode(errors="replace")


@pytest.mark.needs_tun
def test_progress_bar_is_drawn_when_stderr_is_a_terminal() -> None:
    status, stdout, tty = _run_on_pty(QUICK)
    assert status == 0, tty
    assert re.search(r"\r\[#+\.*\] \d+/\d+ ", tty), tty
    assert "#" not in stdout


@pytest.mark.needs_tun
def test_no_progress_turns_the_bar_off_on_a_terminal() -> None:
    status, stdout, tty = _run_on_pty([*QUICK, "--no-progress"])
    assert status == 0, tty
    assert "#" not in tty and "\r" not in tty.replace("\r\n", "\n"), tty
    assert "tuntap bench: K=128" in tty


@pytest.mark.needs_tun
@pytest.mark.parametrize("extra", [[], ["--json"]], ids=["table", "json"])
def test_no_progress_bar_when_stderr_is_not_a_terminal(extra: list[str]) -> None:
    proc = _run([*QUICK, *extra])
    assert proc.returncode == 0, proc.stderr
    assert "#" not in proc.stderr and "\r" not in proc.stderr, proc.stderr
    # just the one line saying what runs
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("tuntap bench: K=128")


# --------------------------------------------------------------------------- usage errors
def _bad_cpu() -> int:
    return max(env.allowed_cpus()) + 1


ALLOWED = env.format_cpus(env.allowed_cpus())


@pytest.mark.parametrize(("args", "message"), [
    (["-k", "0"], "argument -k/--packets: must be from 1 to 65536, got 0"),
    (["-k", "-5"], "argument -k/--packets: must be from 1 to 65536, got -5"),
    (["--packets", "65537"], "argument -k/--packets: must be from 1 to 65536, got 65537"),
    (["-k", "1e3"], "argument -k/--packets: not an integer: '1e3'"),
    (["--payload", "-1"], "argument -s/--payload: must be from 0 to 1400, got -1"),
    (["-s", "1401"], "argument -s/--payload: must be from 0 to 1400, got 1401"),
    (["--rounds", "0"], "argument -r/--rounds: must be >= 1, got 0"),
    (["--cpu", "-1"], "argument --cpu: must be >= 0, got -1"),
    (["--cpu", str(_bad_cpu())],
     f"argument --cpu: CPU {_bad_cpu()} is not available to this process; "
     f"allowed CPUs: {ALLOWED}"),
])
def test_bad_bench_arguments_are_usage_errors(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", *args]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines()[-1] == f"python -m tuntap bench: error: {message}"
    assert err.splitlines()[0].startswith("usage: python -m tuntap bench ")


def test_cpu_not_allowed_exits_2_with_one_line_and_no_traceback() -> None:
    proc = _run([sys.executable, "-m", "tuntap", "bench", "--cpu", str(_bad_cpu())],
                timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert proc.stderr.splitlines()[-1] == (
        f"python -m tuntap bench: error: argument --cpu: CPU {_bad_cpu()} is not available "
        f"to this process; allowed CPUs: {ALLOWED}")


def test_pin_cpu_refuses_a_cpu_outside_the_affinity_mask() -> None:
    with pytest.raises(ValueError, match=rf"^CPU {_bad_cpu()} is not available to this "
                                         rf"process; allowed CPUs: {ALLOWED}$"):
        env.pin_cpu(_bad_cpu())
    assert env.allowed_cpus() == sorted(os.sched_getaffinity(0))  # nothing changed


@pytest.mark.parametrize(("cpus", "text"), [
    ([0], "0"), ([0, 1], "0-1"), ([0, 1, 2, 5], "0-2, 5"), ([1, 3, 4, 5, 7], "1, 3-5, 7"),
])
def test_format_cpus_uses_taskset_ranges(cpus: list[int], text: str) -> None:
    assert env.format_cpus(cpus) == text


@pytest.mark.parametrize(("packets", "payload", "rounds"), [
    (0, 64, 1), (2**20 + 1, 64, 1), (8, -1, 1), (8, 1401, 1), (8, 64, 0),
])
def test_engine_rejects_out_of_range_values_before_touching_anything(
    packets: int, payload: int, rounds: int,
) -> None:
    with pytest.raises(ValueError, match="^need 1 <= packets <= 1048576, 0 <= payload"):
        cli.run(packets, payload, rounds)
    with pytest.raises(ValueError, match="^need fewer than 250 methods"):
        _bench.run_bench([], [packets], [payload], rounds)


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "python -m tuntap: error: the following arguments are required: COMMAND")


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
        "import tuntap._bench.cli\n"
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


# --------------------------------------------------------------------------- help, version
def test_help_is_user_facing_and_documents_the_exit_status() -> None:
    for argv in (["--help"], ["bench", "--help"]):
        proc = _run([sys.executable, "-m", "tuntap", *argv], timeout=60)
        assert proc.returncode == 0 and proc.stderr == ""
        text = proc.stdout
        assert "Argument parsing only" not in text and ":mod:" not in text
        assert "exit status:" in text
        for line in ("  0    success", "  1    failure: the command cannot do its job here",
                     "  2    usage error", "  3    bench: a measured method failed a check"):
            assert line in text, (argv, line)
    assert "Needs root" in proc.stdout and "--no-progress" in proc.stdout
    # the codes the help promises are the ones the bench returns
    assert (cli.EXIT_OK, cli.EXIT_FAILURE, cli.EXIT_CHECK) == (0, 1, 3)


def test_version_prints_the_package_version() -> None:
    proc = _run([sys.executable, "-m", "tuntap", "--version"], timeout=60)
    assert proc.returncode == 0
    assert proc.stdout == f"tuntap {tuntap.__version__}\n"


def test_main_returns_the_status_instead_of_exiting(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"tuntap {tuntap.__version__}\n"
    assert main(["nosuchcommand"]) == 2


# --------------------------------------------------------------------------- engine parts
def test_udp_packet_has_a_valid_ipv4_header_checksum() -> None:
    pkt = _bench.udp4_packet("10.0.0.2", "10.0.0.1", 4000, 9999, b"x" * 64)
    assert len(pkt) == 20 + 8 + 64
    assert tuntap.checksum(pkt[:20]) == 0  # a correct header sums to 0xffff
    assert pkt[10:12] == bytes.fromhex("268f")  # what scapy computes for this header
    assert pkt[9] == 17 and pkt[16:20] == bytes([10, 0, 0, 1])
    assert pkt[2:4] == (92).to_bytes(2, "big") and pkt[24:26] == (72).to_bytes(2, "big")


class _Writer:
    """Counts the packets of each write_batch call; ``short`` makes one call come up short."""

    def __init__(self, short: bool = False) -> None:
        self.calls: list[int] = []
        self.short = short

    def __call__(self, batch: list[bytes]) -> int:
        self.calls.append(len(batch))
        return len(batch) - 1 if self.short and len(self.calls) == 2 else len(batch)


@pytest.mark.parametrize(("k", "calls"), [(1, [1]), (64, [64]), (65, [64, 1]),
                                          (1000, [64] * 15 + [40])])
def test_loop_write_batch_writes_exactly_k(k: int, calls: list[int]) -> None:
    w = _Writer()
    full, tail = [b"p"] * 64, [b"p"] * (k % 64)
    assert _bench.loop_write_batch(w, full, tail, k) > 0
    assert w.calls == calls and sum(w.calls) == k


def test_loop_write_batch_reports_a_short_batch() -> None:
    with pytest.raises(RuntimeError, match="^write_batch wrote 199 of 200 packets$"):
        _bench.loop_write_batch(_Writer(short=True), [b"p"] * 64, [b"p"] * 8, 200)


@pytest.mark.parametrize(("full", "tail"), [(0, 0), (64, 7), (64, 0)])
def test_loop_write_batch_rejects_a_tail_of_the_wrong_size(full: int, tail: int) -> None:
    with pytest.raises(ValueError, match="need a non-empty full batch and a tail of"):
        _bench.loop_write_batch(_Writer(), [b"p"] * full, [b"p"] * tail, 200)


def test_cfloor_source_is_the_file_shipped_in_the_package() -> None:
    shipped = Path(_bench.__file__).parent / "cfloor.c"
    assert _bench.source() == shipped.read_text(encoding="utf-8")
    assert "int cfloor_run(int fd" in _bench.source()


def test_point_table_marks_missing_and_failed_methods() -> None:
    ok = _bench.Result("C read()", "read", 8, 64)
    ok.per_packet, ok.ratio, ok.ratio_of_medians = [100.0, 90.0, 120.0], 1.0, 1.0
    gone = _bench.Result("peer read", "read", 8, 64)
    gone.missing = "peer not installed"
    bad = _bench.Result("bad read", "read", 8, 64)
    bad.error = "RuntimeError: read 7 packets of 8"
    text = report.format_point_table([ok, gone, bad], "read")
    assert text.splitlines() == [
        "| read (K=8, 64 B payload) | median ns/packet | min-max | x C, paired "
        "| x C, of medians |",
        "|---|---:|---:|---:|---:|",
        "| C read() | 100 | 90-120 | 1.00x | 1.00x |",
        "| peer read | missing |  |  |  |",
        "| bad read | error |  |  |  |",
        "",
        "- bad read: RuntimeError: read 7 packets of 8",
        "- peer read: peer not installed",
    ]
