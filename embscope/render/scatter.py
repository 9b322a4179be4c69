"""The terminal scatter plot: points as braille dots (2 x 4 per character cell), both axes on one
scale, with as many labels beside their points as fit without overlapping anything."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from rich.cells import cell_len
from rich.console import Group
from rich.text import Text

from embscope.display import sanitize, visible_spaces
from embscope.render.axes import fmt, fmt_fixed, gutter_width, nice_ticks, resolution, x_axis
from embscope.render.colors import NAN_RGB, RGB, check_color, style, viridis
from embscope.render.lineplot import BRAILLE_BASE, _BRAILLE_BITS, _segment
from embscope.render.text import check_at_least_one, fit, fit_line, line, note_line, title_line

POINT_RGB: RGB = (33, 145, 140)  # viridis' middle: visible on dark and light backgrounds
HIGHLIGHT_RGB: RGB = NAN_RGB  # the query tokens of a neighbourhood
LABEL_CELLS = 14  # longer labels are cut with '…'
LABEL_TRIES = 4000  # labels tried at most (a big sample fills the picture long before)


@dataclass(frozen=True)
class _Canvas:
    """Where data lands: `scale` data units per dot on both axes, dot (0, 0) at (xmin, ymax)."""

    xmin: float
    ymax: float
    scale: float
    cols: int  # character cells across
    lines: int  # character lines down

    def dot(self, x: float, y: float) -> tuple[int, int]:
        return (min(2 * self.cols - 1, int(round((x - self.xmin) / self.scale))),
                min(4 * self.lines - 1, int(round((self.ymax - y) / self.scale))))


def scatter(
    x: np.ndarray,
    y: np.ndarray,
    *,
    labels: Sequence[str],
    max_width: int,
    max_height: int,
    color: str,
    title: str,
    x_label: str,
    y_label: str,
    values: np.ndarray | None = None,
    value_label: str = "",
    highlight: Sequence[int] = (),
    joined: bool = False,
    over_dots: bool = False,
    footer: Sequence[str] = (),
) -> Group:
    """A braille scatter plot of the points (x[i], y[i]), at most max_width cells wide and
    max_height plot lines high, one data unit the same number of dots across and down.

    With colour, points are one colour, or viridis of `values` (a colour scale line below says
    which `value_label` runs from which min to which max); points at the indices `highlight`
    are red and labelled first. `joined` draws a line from each point to the next (a curve
    such as the positions'); `over_dots` lets labels cover dots where no free place is left (a
    few labels on a dense curve). Labels (escaped, spaces shown as '␣', cut to LABEL_CELLS cells; ''
    for none)
    go right of their point, else left, on free cells only. Below the axes: x_label, then one
    footnote per entry of `footer` and how many points are labelled.
    Returns a Group of Text lines, each at most max_width cells."""
    check_color(color)
    check_at_least_one("max_width", max_width)
    check_at_least_one("max_height", max_height)
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)  # (n,), (n,)
    if xs.shape != ys.shape or xs.ndim != 1 or len(labels) != len(xs) or not len(xs):
        raise ValueError("scatter needs as many labels as points, and at least one point")
    canvas, y_ticks, label_w, gutter = _layout(xs, ys, max_width, max_height)
    dots = [canvas.dot(a, b) for a, b in zip(xs.tolist(), ys.tolist())]
    bits, tint = _draw(dots, _tints(len(xs), values, highlight, color), joined, canvas)
    placed = _place_labels(dots, labels, highlight, bits != 0, over_dots)
    lines = [title_line(title, max_width, color)]
    if y_label:
        lines.append(fit_line(sanitize(y_label), max_width))
    lines += _plot_lines(bits, tint, placed, set(highlight), _y_tick_lines(y_ticks, canvas), label_w, gutter,
                         color, max_width)
    lines += _x_axis(canvas, label_w, gutter, max_width)
    if x_label:
        xl, width = sanitize(x_label), gutter + canvas.cols
        lines.append(fit_line(xl.rjust(width) if cell_len(xl) <= width else xl, max_width))
    if values is not None and color != "none":
        lines.append(_scale_line(np.asarray(values, dtype=np.float64), value_label, color, max_width))
    shown = f"{len(xs)} points, {len(placed)} labelled"
    for note in [*footer, shown]:
        lines.append(note_line(note, max_width, color))
    return Group(*lines)


def _layout(xs: np.ndarray, ys: np.ndarray, max_width: int, max_height: int):
    """(canvas, y tick labels, their width, gutter): the canvas fills what the gutter leaves, and
    the gutter fits the labels of the canvas's y range (tried again if they came out wider)."""
    label_w = max(len(s) for s in _y_ticks(float(ys.min()), float(ys.max())).values())
    for _ in range(3):
        gutter = gutter_width(label_w, max_width)
        canvas = _canvas(xs, ys, max(1, max_width - gutter), max_height)
        y_ticks = _y_ticks(canvas.ymax - (4 * canvas.lines - 1) * canvas.scale, canvas.ymax)
        if max(len(s) for s in y_ticks.values()) <= label_w:
            break
        label_w = max(len(s) for s in y_ticks.values())
    return canvas, y_ticks, label_w, gutter


def _canvas(xs: np.ndarray, ys: np.ndarray, width: int, height: int) -> _Canvas:
    """The smallest canvas within width x height cells that holds every point at one scale."""
    xr, yr = float(xs.max() - xs.min()), float(ys.max() - ys.min())
    scale = max(xr / max(1, 2 * width - 1), yr / max(1, 4 * height - 1))
    if scale == 0:  # a single point (or all in one place)
        scale = 1.0
    cols = min(width, math.floor(xr / scale) // 2 + 1)
    lines = min(height, max(2, math.floor(yr / scale) // 4 + 1))
    # centre the data on the canvas along the axis with room to spare
    xmin = float(xs.min()) - (2 * cols - 1 - xr / scale) * scale / 2
    ymax = float(ys.max()) + (4 * lines - 1 - yr / scale) * scale / 2
    return _Canvas(xmin, ymax, scale, cols, lines)


def _tints(n: int, values, highlight: Sequence[int], color: str) -> list[RGB | None]:
    """The colour of each point (None without colour)."""
    if color == "none":
        return [None] * n
    if values is None:
        tints: list[RGB | None] = [POINT_RGB] * n
    else:
        v = np.asarray(values, dtype=np.float64)
        lo, hi = float(v.min()), float(v.max())
        tints = [viridis((t - lo) / (hi - lo) if hi > lo else 0.5) for t in v.tolist()]
    for i in highlight:
        tints[i] = HIGHLIGHT_RGB
    return tints


def _draw(dots, tints, joined: bool, canvas: _Canvas) -> tuple[np.ndarray, list[list[RGB | None]]]:
    """Braille bits of each cell (lines, cols) and the colour each cell shows: its last point's
    (a highlighted point keeps its cell)."""
    bits = np.zeros((canvas.lines, canvas.cols), dtype=np.int64)
    tint: list[list[RGB | None]] = [[None] * canvas.cols for _ in range(canvas.lines)]
    if joined:
        for (c0, r0), (c1, r1), t in zip(dots, dots[1:], tints):
            for c, r in _segment(c0, r0, c1, r1):
                bits[r // 4, c // 2] |= _BRAILLE_BITS[c % 2][r % 4]
                tint[r // 4][c // 2] = t
    for (c, r), t in zip(dots, tints):
        bits[r // 4, c // 2] |= _BRAILLE_BITS[c % 2][r % 4]
        if tint[r // 4][c // 2] != HIGHLIGHT_RGB:
            tint[r // 4][c // 2] = t
    return bits, tint


def _short(label: str) -> str:
    text = visible_spaces(sanitize(label))
    if cell_len(text) <= LABEL_CELLS:
        return text
    while cell_len(text) > LABEL_CELLS - 1:
        text = text[:-1]
    return text + "…"


def _place_labels(dots, labels: Sequence[str], highlight: Sequence[int], busy: np.ndarray, over_dots: bool
                  ) -> dict[tuple[int, int], tuple[str, int]]:
    """{(line, first cell): (text, point index)} for the labels that fit: right of the point's
    cell, else left of it, on cells with no dot and no other label (nor a label's neighbour);
    the highlighted points' labels first, over dots if need be (every label with `over_dots`)."""
    lines, cols = busy.shape
    taken = busy.copy()  # cells a label may not use
    labelled = np.zeros_like(busy)  # cells a label (or the gap beside it) uses
    placed = {}
    first = set(highlight)
    rest = [i for i in range(len(dots)) if i not in first]
    for i in [i for i in [*highlight, *rest] if labels[i]][:LABEL_TRIES]:
        text = _short(labels[i])
        w = cell_len(text)
        c, r = dots[i][0] // 2, dots[i][1] // 4
        # a highlighted label may cover dots (never another label) when no free place is left
        for free in (taken, labelled) if over_dots or i in first else (taken,):
            start = next((s for s in (c + 1, c - w) if 0 <= s and s + w <= cols and not free[r, s:s + w].any()), None)
            if start is not None:
                placed[(r, start)] = (text, i)
                taken[r, max(0, start - 1):start + w + 1] = True
                labelled[r, max(0, start - 1):start + w + 1] = True
                break
    return placed


def _y_ticks(ymin: float, ymax: float) -> dict[str, str]:
    """Labels of the top, middle and bottom of the y range."""
    values = [ymax, (ymin + ymax) / 2, ymin] if ymax > ymin else [ymax]
    return dict(zip(("top", "middle", "bottom"), fmt_fixed(values, resolution(ymin, ymax))))


def _y_tick_lines(ticks: dict[str, str], canvas: _Canvas) -> dict[int, str]:
    """{plot line: label} for the ticks: the lines that hold the top and bottom of the data."""
    out = {0: ticks["top"]}
    if "bottom" in ticks:
        out[canvas.lines - 1] = ticks["bottom"]
        if canvas.lines >= 5:
            out[(canvas.lines - 1) // 2] = ticks["middle"]
    return out


def _plot_lines(bits: np.ndarray, tint, placed, highlight: set[int], y_ticks: dict[int, str], label_w: int,
                gutter: int, color: str, max_width: int) -> list[Text]:
    """The plot's lines: y tick labels in the gutter, then dots (in their cell's colour) and labels
    (the highlighted ones bold and red)."""
    lines = []
    starts = {}
    for (r, c), item in placed.items():
        starts.setdefault(r, {})[c] = item
    for r, row in enumerate(bits.tolist()):
        t = line()
        if gutter:
            t.append(y_ticks.get(r, "").rjust(label_w) + ("┤" if r in y_ticks else "│"))
        c = 0
        while c < len(row):
            if c in starts.get(r, {}):
                text, i = starts[r][c]
                t.append(text, style=style(color, fg=HIGHLIGHT_RGB, bold=True) if i in highlight else None)
                c += cell_len(text)
                continue
            b = row[c]
            t.append(chr(BRAILLE_BASE + b) if b else " ", style=style(color, fg=tint[r][c]) if b else None)
            c += 1
        lines.append(fit(t, max_width))
    return lines


def _x_axis(canvas: _Canvas, label_w: int, gutter: int, max_width: int) -> list[Text]:
    """Round-number ticks under the cells that hold them."""
    xmax = canvas.xmin + (2 * canvas.cols - 1) * canvas.scale
    ticks = nice_ticks(canvas.xmin, xmax, max(2, canvas.cols // 8))
    step = ticks[1] - ticks[0] if len(ticks) > 1 else canvas.scale
    items = [(int(round((v - canvas.xmin) / canvas.scale)) // 2, s) for v, s in zip(ticks, fmt_fixed(ticks, step))]
    rule, labels = x_axis(canvas.cols, items, mark="┬", align="center",
                          corner=" " * label_w + "└" if gutter else "")
    return [fit_line(rule, max_width), fit_line(labels, max_width)]


def _scale_line(values: np.ndarray, value_label: str, color: str, max_width: int) -> Text:
    """'label: lo ████████ hi' with the bar in viridis from lo to hi."""
    ends = [float(values.min()), float(values.max())]
    lo, hi = [fmt(v) for v in ends] if np.all(values == np.round(values)) else fmt_fixed(ends, resolution(*ends))
    t = line(f"{sanitize(value_label)}: {lo} " if value_label else f"{lo} ")
    for j in range(16):
        t.append("█", style=style(color, fg=viridis(j / 15)))
    t.append(f" {hi}")
    return fit(t, max_width)
