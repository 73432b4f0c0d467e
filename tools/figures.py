"""Summarize the JSON lines the reliability tests record (TUNTAP_FIGURES) as a table.

    python tools/figures.py build/soak-figures.jsonl

One row per measurement: the test, the run kind (soak or default) and its figures.
"""

from __future__ import annotations

import json
import sys


def main() -> int:
    rows = [json.loads(line) for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
    if not rows:
        print("no figures recorded")
        return 1
    print("| measurement | run | figures |")
    print("|---|---|---|")
    for r in rows:
        test, soak = r.pop("test"), r.pop("soak")
        r.pop("time", None)
        outcomes = r.pop("outcomes", None)
        figures = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}"
                            for k, v in sorted(r.items()))
        if outcomes:
            figures += f" ({len(outcomes)} outcome kinds)"
        print(f"| {test} | {'soak' if soak else 'default'} | {figures} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
