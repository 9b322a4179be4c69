"""Axes shared by the terminal pictures: number formatting, round-number ticks, and laying tick
labels out on a line without overlaps."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from rich.cells import cell_len


def fmt(v: float, digits: int = 3) -> str:
    """A short number: integers as integers, others with `digits` significant digits."""
    if not math.isfinite(v):
        return str(v)
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    s = f"{v:.{digits}g}"
    return "0" if s in ("-0", "0") else s


def fmt_fixed(values: Sequence[float], resolution: float) -> list[str]:
    """Format values with one common number of decimals, enough to show `resolution`
    (scientific notation for very large or very small magnitudes)."""
    vals = [float(v) for v in values]
    finite = [abs(v) for v in vals if math.isfinite(v)]
    big = max(finite, default=0.0)
    if big >= 1e7 or (0 < big < 1e-4):
        return [f"{v:.3e}" for v in vals]
    if not (math.isfinite(resolution) and resolution > 0):
        return [fmt(v) for v in vals]
    decimals = min(10, max(0, -math.floor(math.log10(resolution))))
    out = []
    for v in vals:
        s = f"{v:.{decimals}f}" if math.isfinite(v) else str(v)
        out.append(s[1:] if s.startswith("-") and float(s) == 0 else s)  # no "-0.00"
    return out


def resolution(lo: float, hi: float) -> float:
    """The step to show between lo and hi: a hundredth of the range (of |lo| when it is empty)."""
    return (hi - lo) / 100 if hi > lo else abs(lo) / 100


def label_str(v) -> str:
    """An axis label: integers as they are, floats as `fmt` writes them."""
    v = float(v) if not isinstance(v, (int, np.integer)) else int(v)
    return fmt(v) if isinstance(v, float) else str(v)


def nice_ticks(lo: float, hi: float, max_ticks: int, integer: bool = False) -> list[float]:
    """Round tick values (1, 2, 5 x 10^k steps) inside [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, max_ticks)
    mag = 10.0 ** math.floor(math.log10(raw))
    step = 10 * mag
    for m in (1, 2, 5, 10):
        if m * mag >= raw:
            step = m * mag
            break
    if integer:
        step = max(1.0, round(step))
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    k = 0
    while True:
        v = first + k * step
        if v > hi + 1e-9 * abs(step):
            break
        ticks.append(round(v, 12))
        k += 1
    return ticks


def gutter_width(label_w: int, max_width: int) -> int:
    """Cells left of the picture for y labels `label_w` wide and one separator cell; 0 when
    that would leave no room for the picture."""
    gutter = label_w + 1
    return gutter if max_width - gutter >= 1 else 0


def _layout(width: int, items: Sequence[tuple[int, str]], align: str = "left"
           ) -> list[tuple[int, int, str]]:
    """Place each (column, text) on a line of `width` cells, left-aligned at its column or
    centred on it, shifted inwards at the edges. Items that would overlap an earlier one (with a
    one-cell gap) or do not fit are dropped. Returns the kept (start, column, text)."""
    kept = []
    taken = [False] * width
    for col, text in items:
        w = cell_len(text)
        if w > width or not 0 <= col < width:
            continue
        start = col - w // 2 if align == "center" else col
        start = max(0, min(start, width - w))
        lo, hi = max(0, start - 1), min(width, start + w + 1)
        if any(taken[lo:hi]):
            continue
        taken[start:start + w] = [True] * w
        kept.append((start, col, text))
    return kept


def _render_layout(width: int, kept: Sequence[tuple[int, int, str]]) -> str:
    buf = [" "] * width
    for start, _, text in kept:
        buf[start:start + len(text)] = list(text)
    return "".join(buf).rstrip()


def x_axis(width: int, ticks: Sequence[tuple[int, str]], *, mark: str, align: str,
           corner: str) -> tuple[str, str]:
    """The two lines of an x axis `width` cells wide: a rule with `mark` at each tick that fits
    (after `corner`, the cells under the y labels), then the tick labels (see `_layout`)."""
    kept = _layout(width, ticks, align)
    rule = ["─"] * width
    for _, col, _ in kept:
        rule[col] = mark
    return corner + "".join(rule), " " * len(corner) + _render_layout(width, kept)
