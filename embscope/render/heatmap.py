"""The terminal heatmap of a square matrix (position similarities), pooled to fit the width."""

from __future__ import annotations

import math

import numpy as np
from rich.cells import cell_len
from rich.console import Group
from rich.text import Text

from embscope.display import sanitize
from embscope.render.axes import (fmt_fixed, gutter_width, label_str, nice_ticks, resolution,
                                  x_axis)
from embscope.render.colors import RGB, SHADES, cell_rgb, check_color, shade, style, viridis
from embscope.render.text import (check_at_least_one, fit, fit_line, line, note_line,
                                  title_line)

HALF_BLOCK = "▀"


def pool_blocks(matrix: np.ndarray, block: int) -> np.ndarray:
    """Mean over block x block tiles (the last row/column of tiles may be smaller).

    NaN/inf propagate: a tile that contains a NaN is NaN, so a bad value is never averaged away.
    """
    m = np.asarray(matrix, dtype=np.float64)  # (n, n)
    n_r, n_c = m.shape
    r_starts = np.arange(0, n_r, block)  # (R,)
    c_starts = np.arange(0, n_c, block)  # (C,)
    with np.errstate(invalid="ignore", over="ignore"):
        sums = np.add.reduceat(np.add.reduceat(m, r_starts, axis=0), c_starts, axis=1)  # (R, C)
        r_cnt = np.diff(np.append(r_starts, n_r))  # (R,)
        c_cnt = np.diff(np.append(c_starts, n_c))  # (C,)
        return sums / (r_cnt[:, None] * c_cnt[None, :])


def heatmap(
    matrix: np.ndarray,
    *,
    labels: np.ndarray | list[int],
    max_width: int,
    color: str,
    title: str,
    value_label: str,
) -> Group:
    """A terminal heatmap of a square (n, n) matrix whose rows/columns are `labels`.

    The matrix is pooled (mean over b x b blocks, b as small as fits) so the picture, including
    the y-axis labels, is at most `max_width` cells wide. With colour, each character is '▀'
    with foreground = pooled row 2k and background = row 2k+1 (two rows per line, viridis);
    with color="none" each pooled cell is one shade character of " ░▒▓█", one row per line.
    NaN/inf cells are red (colour) or '?' (none). Below: x ticks, then a colour scale line
    (min -> max of the shown cells, value_label) and a note on pooling / NaN.
    Returns a Group of Text lines.
    """
    m, labels = _checked(matrix, labels, max_width, color)  # (n, n), (n,)
    label_w = max(cell_len(label_str(v)) for v in labels)
    gutter = gutter_width(label_w, max_width)  # 0: too narrow for y labels, picture only
    block = max(1, math.ceil(m.shape[0] / (max_width - gutter)))
    pooled = pool_blocks(m, block)  # (c, c), c <= max_width - gutter
    vmin, vmax, norm = _normalised(pooled)  # norm: (c, c) in [0, 1], NaN where not finite

    lines = [title_line(title, max_width, color)]
    lines += _picture(norm, _y_labels(labels, block, len(norm), label_w, gutter, color), color)
    lines += _x_axis(labels, block, len(norm), label_w, gutter, max_width)
    lines.append(_scale_line(vmin, vmax, value_label, max_width, color))
    notes = _notes(block, not bool(np.isfinite(pooled).all()), color)
    if notes:
        lines.append(note_line(notes, max_width, color))
    return Group(*lines)


def _checked(matrix, labels, max_width: int, color: str) -> tuple[np.ndarray, np.ndarray]:
    check_color(color)
    check_at_least_one("max_width", max_width)
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"heatmap needs a non-empty square matrix, got shape {m.shape}")
    n = m.shape[0]
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must have length {n}, got shape {labels.shape}")
    return m, labels


def _normalised(pooled: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(min, max) of the finite cells, and the cells scaled to [0, 1] by them (0.5 where all are
    equal; NaN where a cell is not finite)."""
    finite = np.isfinite(pooled)  # (c, c)
    if finite.any():
        vmin = float(pooled[finite].min())
        vmax = float(pooled[finite].max())
    else:
        vmin = vmax = float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        if vmax > vmin:
            norm = (pooled - vmin) / (vmax - vmin)  # (c, c) in [0, 1]
        else:
            norm = np.where(finite, 0.5, np.nan)
    return vmin, vmax, np.where(finite, norm, np.nan)


def _consecutive(labels: np.ndarray) -> bool:
    return (labels.size > 0 and np.issubdtype(labels.dtype, np.integer)
            and bool(np.all(np.diff(labels) == 1)))


def _axis_ticks(labels: np.ndarray, block: int, per_slot: int, n_slots: int,
                max_ticks: int) -> list[tuple[int, str]]:
    """(slot, text) ticks. A slot is a character column (x) or line (y) holding `per_slot`
    pooled cells of `block` positions each."""
    if n_slots <= 0:
        return []
    span = block * per_slot  # positions per slot
    if _consecutive(labels):
        l0 = int(labels[0])
        out = []
        for v in nice_ticks(l0, int(labels[-1]), max_ticks, integer=True):
            out.append((int((int(v) - l0) // span), str(int(v))))
        return out
    every = max(1, math.ceil(n_slots / max(1, max_ticks)))
    return [(s, label_str(labels[s * span])) for s in range(0, n_slots, every)]


def _y_labels(labels: np.ndarray, block: int, c: int, label_w: int, gutter: int,
              color: str) -> list[str]:
    """The gutter of each picture line: a tick label right-aligned in `label_w` cells and a
    space, or '' when there is no gutter."""
    rows_per_line = 1 if color == "none" else 2
    n_lines = math.ceil(c / rows_per_line)
    if not gutter:
        return [""] * n_lines
    ticks: dict[int, str] = {}
    for slot, text in _axis_ticks(labels, block, rows_per_line, n_lines, max(1, n_lines // 4)):
        if 0 <= slot < n_lines and slot not in ticks:
            ticks[slot] = text
    return [ticks.get(li, "").rjust(label_w) + " " for li in range(n_lines)]


def _picture(norm: np.ndarray, gutters: list[str], color: str) -> list[Text]:
    """One line per entry of `gutters`: shade characters, one pooled row per line, in "none"
    mode; else half blocks, pooled rows 2k (foreground) and 2k+1 (background) on line k."""
    lines = []
    rgb_cache: dict[float, RGB] = {}
    for li, gutter in enumerate(gutters):
        t = line(gutter)
        if color == "none":
            t.append("".join(shade(v) for v in norm[li]))
        else:
            bottom = norm[2 * li + 1] if 2 * li + 1 < len(norm) else None  # (c,)
            for j, top in enumerate(norm[2 * li]):
                fg = cell_rgb(top, rgb_cache)
                bg = cell_rgb(bottom[j], rgb_cache) if bottom is not None else None
                t.append(HALF_BLOCK, style=style(color, fg=fg, bg=bg))
        lines.append(t)
    return lines


def _x_axis(labels: np.ndarray, block: int, c: int, label_w: int, gutter: int,
            max_width: int) -> list[Text]:
    ticks = [(s, txt) for s, txt in _axis_ticks(labels, block, 1, c, max(1, c // (label_w + 3)))
             if 0 <= s < c]
    rule, tick_labels = x_axis(c, ticks, mark="┴", align="left", corner=" " * gutter)
    return [fit_line(rule, max_width), fit_line(tick_labels, max_width)]


def _scale_line(vmin: float, vmax: float, value_label: str, max_width: int, color: str) -> Text:
    """'min ramp max  value_label': the shade ramp in "none" mode, else up to 24 viridis cells."""
    lo_s, hi_s = fmt_fixed([vmin, vmax], resolution(vmin, vmax))
    label = sanitize(value_label)
    t = line()
    if color == "none":
        t.append(f"{lo_s} [{SHADES}] {hi_s}")
    else:
        room = max_width - len(lo_s) - len(hi_s) - 2
        label_room = room - (cell_len(label) + 2 if label else 0)
        ramp_w = max(1, min(24, label_room if label_room >= 8 else room))
        t.append(lo_s + " ")
        for k in range(ramp_w):
            frac = k / (ramp_w - 1) if ramp_w > 1 else 0.5
            t.append("█", style=style(color, fg=viridis(frac)))
        t.append(" " + hi_s)
    if label:
        t.append("  " + label)
    return fit(t, max_width)


def _notes(block: int, has_bad: bool, color: str) -> str:
    notes = []
    if block > 1:
        notes.append(f"each cell = mean of {block}×{block} positions")
    if has_bad:
        notes.append("? = NaN/inf" if color == "none" else "red = NaN/inf")
    return "; ".join(notes)
