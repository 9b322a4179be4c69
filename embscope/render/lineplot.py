"""The terminal line plot: y against x drawn with braille dots (2 x 4 dots per character cell)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from rich.cells import cell_len
from rich.console import Group
from rich.text import Text

from embscope.display import sanitize
from embscope.render.axes import fmt_fixed, gutter_width, nice_ticks, resolution, x_axis
from embscope.render.text import check_at_least_one, fit_line, line, title_line

BRAILLE_BASE = 0x2800
# Braille dot bit for (dot column 0/1, dot row 0..3) inside one character cell.
_BRAILLE_BITS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))


def line_plot(
    x: np.ndarray,
    y: np.ndarray,
    *,
    max_width: int,
    height: int,
    title: str,
    x_label: str,
    y_label: str,
) -> Group:
    """A braille line plot of y against x (points joined in x order; non-finite points break
    the line). Layout: title, y_label, `height` plot lines with the y axis labelled at max,
    middle and min, an x axis with round-number ticks, and x_label right-aligned below.
    No colour (plain text). Returns a Group of Text lines, each at most max_width cells.
    """
    xs, ys = _points(x, y, max_width, height)  # (N,), (N,) in x order
    lines: list[Text] = [title_line(title, max_width, "truecolor")]
    fin = np.isfinite(ys)
    if not fin.any():
        lines.append(fit_line("no finite values", max_width))
        return Group(*lines)
    if y_label:
        lines.append(fit_line(sanitize(y_label), max_width))

    ymin, ymax = float(ys[fin].min()), float(ys[fin].max())
    y_ticks = _y_ticks(ymin, ymax, height)
    label_w = max(len(s) for s in y_ticks.values())
    gutter = gutter_width(label_w, max_width)  # 0: too narrow for y labels, plot only
    w = max_width - gutter  # plot columns
    frame = _Frame(float(xs.min()), float(xs.max()), ymin, ymax, 2 * w, 4 * height)

    lines += _plot_lines(_draw(xs, ys, frame), y_ticks, label_w, gutter)
    lines += _x_axis(xs, frame, label_w, gutter, max_width)
    if x_label:
        xl = sanitize(x_label)
        lines.append(fit_line(xl.rjust(max_width) if cell_len(xl) <= max_width else xl,
                              max_width))
    return Group(*lines)


def _points(x, y, max_width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """The points with a finite x, sorted by x (stable)."""
    check_at_least_one("max_width", max_width)
    check_at_least_one("height", height)
    xs = np.asarray(x, dtype=np.float64).ravel()  # (N,)
    ys = np.asarray(y, dtype=np.float64).ravel()  # (N,)
    if xs.shape != ys.shape:
        raise ValueError(f"x and y differ in length: {xs.size} vs {ys.size}")
    keep = np.isfinite(xs)
    xs, ys = xs[keep], ys[keep]
    order = np.argsort(xs, kind="stable")
    return xs[order], ys[order]


def _y_ticks(ymin: float, ymax: float, height: int) -> dict[int, str]:
    """{plot line: label}: max on the top line, min on the bottom one, the middle from 5 lines
    up; a constant y gets one label, on the line its points are drawn on."""
    if ymax > ymin:
        ticks = {0: ymax, height - 1: ymin}
        if height >= 5:
            ticks[(height - 1) // 2] = (ymax + ymin) / 2
    else:
        ticks = {(4 * height - 1) // 2 // 4: ymax}
    return dict(zip(ticks, fmt_fixed(list(ticks.values()), resolution(ymin, ymax))))


@dataclass(frozen=True)
class _Frame:
    """Where data lands on a canvas of dots_w x dots_h braille dots (row 0 at the top)."""

    xmin: float
    xmax: float
    ymin: float
    ymax: float
    dots_w: int
    dots_h: int

    def col(self, v: float) -> int:
        if self.xmax == self.xmin:
            return (self.dots_w - 1) // 2
        return int(round((v - self.xmin) / (self.xmax - self.xmin) * (self.dots_w - 1)))

    def row(self, v: float) -> int:
        if self.ymax == self.ymin:
            return (self.dots_h - 1) // 2
        return int(round((self.ymax - v) / (self.ymax - self.ymin) * (self.dots_h - 1)))


def _segment(c0: int, r0: int, c1: int, r1: int):
    """Bresenham line between two dots, inclusive."""
    dc, dr = abs(c1 - c0), -abs(r1 - r0)
    sc, sr = (1 if c1 >= c0 else -1), (1 if r1 >= r0 else -1)
    err = dc + dr
    while True:
        yield c0, r0
        if c0 == c1 and r0 == r1:
            return
        e2 = 2 * err
        if e2 >= dr:
            err += dr
            c0 += sc
        if e2 <= dc:
            err += dc
            r0 += sr


def _draw(xs: np.ndarray, ys: np.ndarray, frame: _Frame) -> np.ndarray:
    """Braille bits of each character cell, (lines, columns): consecutive points joined by
    straight segments, a non-finite y breaking the line."""
    cells = np.zeros((frame.dots_h // 4, frame.dots_w // 2), dtype=np.int64)  # (height, w)
    prev = None
    for xv, yv in zip(xs, ys):
        if not math.isfinite(yv):
            prev = None
            continue
        cur = (frame.col(xv), frame.row(yv))
        pts = _segment(*prev, *cur) if prev is not None else [cur]
        for dc, dr in pts:
            cells[dr // 4, dc // 2] |= _BRAILLE_BITS[dc % 2][dr % 4]
        prev = cur
    return cells


def _plot_lines(cells: np.ndarray, y_ticks: dict[int, str], label_w: int,
                gutter: int) -> list[Text]:
    lines = []
    for li, row in enumerate(cells):
        t = line()
        if gutter:
            t.append(y_ticks.get(li, "").rjust(label_w) + ("┤" if li in y_ticks else "│"))
        t.append("".join(chr(BRAILLE_BASE + b) if b else " " for b in row))
        lines.append(t)
    return lines


def _x_axis(xs: np.ndarray, frame: _Frame, label_w: int, gutter: int,
            max_width: int) -> list[Text]:
    """Round-number ticks centred under their dot column (integers when every x is one)."""
    w = frame.dots_w // 2
    ticks = nice_ticks(frame.xmin, frame.xmax, max(1, w // 8),
                       integer=bool(np.all(xs == np.round(xs))))
    if not ticks:
        ticks = [frame.xmin]
    x_step = ticks[1] - ticks[0] if len(ticks) > 1 else abs(ticks[0]) or 1.0
    items = [(frame.col(v) // 2, s) for v, s in zip(ticks, fmt_fixed(ticks, x_step))]
    rule, tick_labels = x_axis(w, items, mark="┬", align="center",
                               corner=" " * label_w + "└" if gutter else "")
    return [fit_line(rule, max_width), fit_line(tick_labels, max_width)]
