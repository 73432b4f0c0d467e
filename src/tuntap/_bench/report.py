"""What the user sees: the progress bar and the result tables (markdown)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from .runner import Result

__all__ = ["PAIRED", "OF_MEDIANS", "Progress", "format_point_table", "format_table",
           "ratio_note"]

PAIRED = "x C, paired"
OF_MEDIANS = "x C, of medians"


class Progress:
    """A one-line progress bar redrawn in place on ``stream`` (None draws nothing).

    Only meant for a terminal: the caller passes None when the stream is a pipe or file.
    """

    def __init__(self, total: int, stream: TextIO | None, width: int = 30) -> None:
        self.total = max(total, 1)
        self.done = 0
        self.stream = stream
        self.width = width

    def step(self, label: str) -> None:
        self.done += 1
        if self.stream is None:
            return
        filled = self.width * self.done // self.total
        bar = "#" * filled + "." * (self.width - filled)
        self.stream.write(f"\r[{bar}] {self.done}/{self.total} {label[:40]:<40}")
        self.stream.flush()

    def finish(self) -> None:
        if self.stream is not None:
            # Wipe the bar so that what follows starts on a clean line.
            self.stream.write("\r" + " " * (self.width + 60) + "\r")
            self.stream.flush()


def _rounds(rs: list[Result]) -> int:
    return max((len(r.per_packet) for r in rs), default=0)


def ratio_note(rounds: int) -> str:
    """What the two ratio columns of :func:`format_point_table` mean, for under the tables."""
    rounds_text = "the round" if rounds == 1 else f"the {rounds} rounds"
    return (
        f"{PAIRED}: the median over {rounds_text} of (this method's time / the C loop's\n"
        "  time in the same round); load that drifts between rounds cancels out of it.\n"
        f"{OF_MEDIANS}: this row's median / the C row's median (the printed medians).\n"
    )


def _notes(rs: list[Result]) -> list[str]:
    notes = sorted({f"{r.method}: {r.missing or r.error}" for r in rs if r.missing or r.error})
    return ["", *[f"- {n}" for n in notes]] if notes else []


def _names(rs: list[Result]) -> list[str]:
    names: list[str] = []
    for r in rs:
        if r.method not in names:
            names.append(r.method)
    return names


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def format_point_table(results: Iterable[Result], kind: str) -> str:
    """A markdown table for one (K, payload) point: one row per method, one value a column.

    Columns: the median ns per packet, its min-max over the rounds, the paired ratio to
    the C floor and the ratio of the medians (both explained by :func:`ratio_note`).

    Raises
    ------
    ValueError
        The results of ``kind`` span more than one (K, payload) point.
    """
    rs = [r for r in results if r.kind == kind]
    points = sorted({(r.k, r.payload) for r in rs})
    if len(points) > 1:
        raise ValueError(f"{len(points)} points: use format_table")
    where = f" (K={points[0][0]}, {points[0][1]} B payload)" if points else ""
    lines = [f"| {kind}{where} | median ns/packet | min-max | {PAIRED} | {OF_MEDIANS} |",
             "|---|---:|---:|---:|---:|"]
    for r in rs:
        if r.missing or r.error or not r.per_packet:
            cells = ["missing" if r.missing else "error" if r.error else "-", "", "", ""]
        else:
            cells = [f"{r.median:,.0f}",
                     f"{min(r.per_packet):,.0f}-{max(r.per_packet):,.0f}",
                     _ratio(r.ratio), _ratio(r.ratio_of_medians)]
        lines.append(f"| {r.method} | " + " | ".join(cells) + " |")
    return "\n".join(lines + _notes(rs))


def format_table(results: Iterable[Result], kind: str) -> str:
    """A markdown table: one row per method, one column per (K, payload).

    Each cell is the median ns per packet and, in parentheses, the paired ratio to the C
    floor of the same point; the line under the table says so.
    """
    rs = [r for r in results if r.kind == kind]
    points = sorted({(r.k, r.payload) for r in rs})
    by = {(r.method, r.k, r.payload): r for r in rs}
    head = f"| {kind}: median ns/packet ({PAIRED}) | " + " | ".join(
        f"K={k} {p}B" for k, p in points) + " |"
    lines = [head, "|---|" + "---:|" * len(points)]
    for name in _names(rs):
        cells = []
        for k, p in points:
            r = by[(name, k, p)]
            if r.missing:
                cells.append("missing")
            elif r.error:
                cells.append("error")
            elif r.per_packet:
                ratio = f" ({r.ratio:.2f}x)" if r.ratio is not None else ""
                cells.append(f"{r.median:,.0f}{ratio}")
            else:
                cells.append("-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", f"({PAIRED}): the median over the {_rounds(rs)} rounds of (method time / "
              "C floor time in the same round);",
              "not the ratio of the medians shown (that is ratio_of_medians in the JSON)."]
    return "\n".join(lines + _notes(rs))
