"""Render the chart of benchmarks/README.md from the JSON lines of ``bench_io.py``.

    python benchmarks/chart.py benchmarks/results/io-2026-12-01.jsonl -o benchmarks/io.png

One panel per operation (read, write): a horizontal bar per method and payload size, its
length the method's time per packet divided by the C loop's in the same round (the
paired ``ratio_to_c``; 1.0 is the floor, shorter is better), labelled with the median ns
per packet. Bars past ``--clip`` (default 2.5x: scapy is ~100x) are drawn to the edge
and labelled with their value. Methods reported missing or in error are left out.

Needs matplotlib (``pip install '.[bench]'``); the data handling below does not.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from typing import Any, NamedTuple


class Bar(NamedTuple):
    method: str
    payload: int
    ratio: float
    median_ns: float


def load(lines: Iterable[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(the ``meta`` object, the result objects) of bench_io.py's output."""
    meta: dict[str, Any] = {}
    results: list[dict[str, Any]] = []
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue  # the markdown tables after the JSON lines
        obj = json.loads(line)
        if "meta" in obj:
            meta = obj["meta"]
        elif "bench" in obj:
            results.append(obj)
    return meta, results


def bars(results: list[dict[str, Any]], bench: str, k: int | None = None) -> list[Bar]:
    """The bars of one panel, in the order the methods first appear, payloads ascending.

    Only results with a paired ratio (not missing, no error) and of batch size ``k``
    (default: the smallest K present) are kept.
    """
    rows = [r for r in results if r.get("bench") == bench and r.get("ratio_to_c") is not None
            and r.get("median_ns") is not None and not r.get("error") and not r.get("missing")]
    if not rows:
        return []
    k = min(r["K"] for r in rows) if k is None else k
    order: list[str] = []
    for r in rows:
        if r["method"] not in order:
            order.append(r["method"])
    picked = [r for r in rows if r["K"] == k]
    picked.sort(key=lambda r: (order.index(r["method"]), r["payload"]))
    return [Bar(r["method"], r["payload"], float(r["ratio_to_c"]), float(r["median_ns"]))
            for r in picked]


def render(meta: dict[str, Any], results: list[dict[str, Any]], out: str,
           clip: float = 2.5) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(b, bars(results, b)) for b in ("read", "write")]
    panels = [(b, bs) for b, bs in panels if bs]
    if not panels:
        raise ValueError("no results with a ratio to the C floor in the input")
    payloads = sorted({bar.payload for _, bs in panels for bar in bs})
    colours = dict(zip(payloads, ["#4C72B0", "#DD8452", "#55A868", "#C44E52"]))
    heights = [len({b.method for b in bs}) for _, bs in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 1.2 + 0.55 * sum(heights)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    band = 0.8 / len(payloads)
    for ax, (bench, bs) in zip(axes[:, 0], panels):
        methods: list[str] = []
        for b in bs:
            if b.method not in methods:
                methods.append(b.method)
        for b in bs:
            y = methods.index(b.method) + (payloads.index(b.payload) - (len(payloads) - 1) / 2) \
                * band
            width = min(b.ratio, clip)
            ax.barh(y, width, height=band * 0.9, color=colours[b.payload],
                    label=f"{b.payload}-byte payload")
            text = f"{b.ratio:.2f}x  {b.median_ns:,.0f} ns"
            if b.ratio > clip:
                ax.text(clip - 0.02, y, text + " >", va="center", ha="right", fontsize=8,
                        color="white", fontweight="bold")
            else:
                # Right of the bar, and of the 1.0 line, so the line never crosses a label.
                ax.text(max(width, 1.0) + 0.03, y, text, va="center", ha="left", fontsize=8)
        ax.axvline(1.0, color="black", linewidth=1, linestyle="--")
        ax.set_yticks(range(len(methods)))
        ax.set_yticklabels(methods, fontsize=9)
        ax.invert_yaxis()
        ax.set_xlim(0, clip + 0.55)
        ax.set_title(f"{bench}: time per packet / the C loop's (lower is better)",
                     fontsize=10, loc="left")
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    kk = min(r["K"] for r in results if r.get("K"))
    where = (f"{meta.get('date', '?')}, {meta.get('cpus', '?')} CPUs {meta.get('cpu_model', '')}"
             f", Linux {meta.get('kernel', '?')}, Python {meta.get('python', '?')}, K={kk}")
    fig.suptitle(f"tuntap vs the C floor and the peers\n{where}", fontsize=9, y=0.995)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    top = 1 - 0.55 / fig.get_figheight()  # room for two title lines and the legend
    fig.legend(unique.values(), unique.keys(), fontsize=8, loc="upper center",
               bbox_to_anchor=(0.5, top + 0.2 / fig.get_figheight()), ncol=len(unique),
               frameon=False)
    fig.tight_layout(rect=(0, 0, 1, top - 0.05 / fig.get_figheight()))
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", help="a file of bench_io.py output (JSON lines)")
    ap.add_argument("-o", "--out", default="benchmarks/io.png", help="the PNG to write")
    ap.add_argument("--clip", type=float, default=2.5,
                    help="ratios past this are drawn to the edge (default 2.5)")
    args = ap.parse_args(argv)
    with open(args.results) as f:
        meta, results = load(f)
    try:
        render(meta, results, args.out, args.clip)
    except ImportError:
        print("chart.py: needs matplotlib (pip install matplotlib, or pip install "
              "'.[bench]')", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"chart.py: {args.results}: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
