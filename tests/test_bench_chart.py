"""benchmarks/chart.py: what goes into the chart of benchmarks/README.md (no matplotlib)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

CHART = Path(__file__).resolve().parent.parent / "benchmarks" / "chart.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chart", CHART)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def result(method: str, k: int, payload: int, ratio: float | None,
           **extra: object) -> str:
    return json.dumps({"bench": extra.pop("bench", "read"), "method": method, "K": k,
                       "payload": payload, "median_ns": 100.0 * (ratio or 1),
                       "ratio_to_c": ratio, **extra})


def test_load_takes_meta_and_results_and_skips_the_tables() -> None:
    chart = load()
    lines = [json.dumps({"meta": {"date": "today"}}), result("C read()", 1024, 64, 1.0),
             "", "| read | K=1024 64B |", "|---|---:|"]
    meta, results = chart.load(lines)
    assert meta == {"date": "today"}
    assert [r["method"] for r in results] == ["C read()"]


def test_bars_keep_method_order_sort_payloads_and_drop_missing_and_errors() -> None:
    chart = load()
    _, results = chart.load([
        result("C read()", 1024, 1400, 1.0), result("C read()", 1024, 64, 1.0),
        result("tuntap readinto", 1024, 64, 1.1), result("tuntap readinto", 1024, 1400, 1.2),
        result("pytun read", 1024, 64, None, missing="not installed"),
        result("odd", 1024, 64, 2.0, error="wrong count"),
        result("C read()", 8192, 64, 1.0),
        result("C write()", 1024, 64, 1.0, bench="write"),
    ])
    bars = chart.bars(results, "read")
    assert [(b.method, b.payload, b.ratio) for b in bars] == [
        ("C read()", 64, 1.0), ("C read()", 1400, 1.0),
        ("tuntap readinto", 64, 1.1), ("tuntap readinto", 1400, 1.2)]
    assert [b.method for b in chart.bars(results, "read", k=8192)] == ["C read()"]
    assert [b.method for b in chart.bars(results, "write")] == ["C write()"]
    assert chart.bars(results, "neither") == []


def test_the_committed_results_feed_the_chart() -> None:
    results_dir = CHART.parent / "results"
    if not results_dir.is_dir():  # a copy of benchmarks/ without results/ (test_wheels)
        return
    chart = load()
    for path in sorted(results_dir.glob("io-*.jsonl")):
        meta, results = chart.load(path.read_text().splitlines())
        assert meta["command"].startswith("python benchmarks/bench_io.py")
        names = {b.method for b in chart.bars(results, "read")}
        assert {"C read()", "tuntap readinto", "tuntap read_batch(64)"} <= names
