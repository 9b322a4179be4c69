"""The terminal histogram: one horizontal bar per bin, with markers such as percentiles."""

from __future__ import annotations

import math

import numpy as np
from rich.cells import cell_len
from rich.console import Group
from rich.text import Text

from embscope.display import sanitize
from embscope.render.axes import fmt, fmt_fixed
from embscope.render.colors import check_color, style, viridis
from embscope.render.text import check_at_least_one, fit, fit_line, line, note_line, title_line

EIGHTHS = "▏▎▍▌▋▊▉"  # 1/8 .. 7/8 of a cell


def bar_eighths(count: int, max_count: int, bar_width: int) -> int:
    """Bar length in eighths of a cell: proportional to count, at least 1/8 for a nonzero count."""
    if count <= 0 or max_count <= 0:
        return 0
    return max(1, int(round(count / max_count * bar_width * 8)))


def histogram(
    values: np.ndarray,
    *,
    bins: int,
    max_width: int,
    color: str,
    title: str,
    markers: dict[str, float] | None = None,
) -> Group:
    """A horizontal-bar histogram: one line per bin (numpy.histogram edges over the finite
    values): "lo – hi │bar│ count  ◂ marker=value". Bars use '█' and eighth blocks, scaled so
    the largest count fills the bar column. Markers (e.g. {"p50": x}) are annotated on the bin
    that holds them. Non-finite values are left out and counted in the footer.
    Returns a Group of Text lines, each at most max_width cells.
    """
    check_color(color)
    check_at_least_one("max_width", max_width)
    check_at_least_one("bins", bins)
    v = np.asarray(values, dtype=np.float64).ravel()  # (N,)
    finite = np.isfinite(v)
    n_bad = int((~finite).sum())
    v = v[finite]
    lines: list[Text] = [title_line(title, max_width, color)]
    if v.size == 0:
        lines.append(fit_line("no finite values" + (f" ({n_bad} non-finite)" if n_bad else ""),
                              max_width))
        return Group(*lines)

    counts, edges = np.histogram(v, bins=bins)  # (bins,), (bins + 1,)
    edge_s = fmt_fixed(edges.tolist(), float(edges[1] - edges[0]) / 10)
    notes = _marker_notes(markers, edges)
    bar_w, inline = _bar_width(max_width, edge_s, counts, notes)
    lines += _bin_lines(counts, edge_s, notes if inline else [""] * bins, bar_w, color, max_width)
    lines.append(note_line(_footer(v.size, n_bad, [] if inline else notes), max_width, color))
    return Group(*lines)


def _marker_notes(markers: dict[str, float] | None, edges: np.ndarray) -> list[str]:
    """Per bin: '◂ name=value, ...' of the markers that fall in it, or ''. Markers outside the
    edges go to the end bins; non-finite ones are left out."""
    bins = len(edges) - 1
    notes: list[list[str]] = [[] for _ in range(bins)]
    for name, x in (markers or {}).items():
        if x is None or not math.isfinite(float(x)):
            continue
        x = float(x)
        i = int(np.searchsorted(edges, x, side="right") - 1)
        i = min(max(i, 0), bins - 1)  # the last bin is closed; clamp outliers to the end bins
        notes[i].append(f"{sanitize(name)}={fmt(x, 4)}")
    return [("◂ " + ", ".join(ns)) if ns else "" for ns in notes]


def _bar_width(max_width: int, edge_s: list[str], counts: np.ndarray,
               notes: list[str]) -> tuple[int, bool]:
    """Cells for the bars, and whether the marker notes fit beside them (else they go to the
    footer): notes inline only when that leaves bars of at least 8 cells."""
    ew = max(len(s) for s in edge_s)
    fixed = (ew + 3 + ew + 1) + 2 + 1 + len(str(int(counts.max())))  # "lo – hi " "││" " count"
    note_w = max(cell_len(s) for s in notes)
    bar_w = max_width - fixed - (note_w + 1 if note_w else 0)
    inline = note_w > 0 and bar_w >= 8
    if not inline:
        bar_w = max_width - fixed
    return max(1, bar_w), inline


def _bar(eighths: int) -> str:
    full, rem = divmod(int(eighths), 8)
    return "█" * full + (EIGHTHS[rem - 1] if rem else "")


def _bin_lines(counts: np.ndarray, edge_s: list[str], notes: list[str], bar_w: int, color: str,
               max_width: int) -> list[Text]:
    ew = max(len(s) for s in edge_s)
    cw = len(str(int(counts.max())))
    bar_style = style(color, fg=viridis(0.45))
    mark_style = style(color, bold=True)
    max_count = int(counts.max())
    lines = []
    for i, count in enumerate(counts.tolist()):
        t = line()
        t.append(f"{edge_s[i]:>{ew}} – {edge_s[i + 1]:>{ew}} ")
        t.append("│")
        bar = _bar(bar_eighths(count, max_count, bar_w))
        t.append(bar, style=bar_style)
        t.append(" " * (bar_w - cell_len(bar)) + "│")
        t.append(f" {count:>{cw}}")
        if notes[i]:
            t.append(" " + notes[i], style=mark_style)
        lines.append(fit(t, max_width))
    return lines


def _footer(n: int, n_bad: int, notes: list[str]) -> str:
    """'n = N', the non-finite values left out, and the marker notes that did not fit inline."""
    foot = f"n = {n}"
    if n_bad:
        foot += f" ({n_bad} non-finite left out)"
    if any(notes):
        foot += "; " + ", ".join(s[2:] for s in notes if s)
    return foot
