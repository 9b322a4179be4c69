"""Terminal pictures as Rich renderables: heatmap, histogram and line plot.

Pure functions: they take arrays and return a `rich.console.Group` of `rich.text.Text` lines
(one Text per terminal line, never wider than `max_width` cells). They never print.

`color` is one of:
  "truecolor"  24-bit colours (a 256-colour Console downgrades them itself);
  "256"        colours already reduced to the xterm 256-colour palette;
  "none"       no styles at all: shade characters / plain text, for NO_COLOR and dumb terminals.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence

import numpy as np
from rich.cells import cell_len
from rich.color import Color, ColorSystem
from rich.console import Group
from rich.style import Style
from rich.text import Text

COLOR_MODES = ("truecolor", "256", "none")

# matplotlib's viridis sampled at 32 evenly spaced points (0 .. 1), as 8-bit RGB.
_VIRIDIS = np.array(
    [
        (68, 1, 84), (71, 13, 96), (72, 24, 106), (72, 35, 116),
        (71, 46, 124), (69, 56, 130), (66, 65, 134), (62, 74, 137),
        (58, 84, 140), (54, 93, 141), (50, 101, 142), (46, 109, 142),
        (43, 117, 142), (40, 125, 142), (37, 132, 142), (34, 140, 141),
        (31, 148, 140), (30, 156, 137), (32, 163, 134), (37, 171, 130),
        (46, 179, 124), (58, 186, 118), (72, 193, 110), (88, 199, 101),
        (108, 205, 90), (127, 211, 78), (147, 215, 65), (168, 219, 52),
        (192, 223, 37), (213, 226, 26), (234, 229, 26), (253, 231, 37),
    ],
    dtype=np.float64,
)  # (32, 3)

NAN_RGB = (228, 26, 28)  # red: far from every viridis colour, also after 256-colour reduction
SHADES = " ░▒▓█"  # "none" mode ramp, low -> high
NAN_SHADE = "?"
HALF_BLOCK = "▀"
EIGHTHS = "▏▎▍▌▋▊▉"  # 1/8 .. 7/8 of a cell
BRAILLE_BASE = 0x2800
# Braille dot bit for (dot column 0/1, dot row 0..3) inside one character cell.
_BRAILLE_BITS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))


# --------------------------------------------------------------------------- colours


def viridis(t: float) -> tuple[int, int, int]:
    """RGB of viridis at t in [0, 1] (clipped), by linear interpolation of the anchor table."""
    t = min(1.0, max(0.0, float(t)))
    x = t * (len(_VIRIDIS) - 1)
    i = min(int(x), len(_VIRIDIS) - 2)
    f = x - i
    rgb = _VIRIDIS[i] * (1.0 - f) + _VIRIDIS[i + 1] * f  # (3,)
    return (int(round(rgb[0])), int(round(rgb[1])), int(round(rgb[2])))


def _check_color(color: str) -> None:
    if color not in COLOR_MODES:
        raise ValueError(f"color must be one of {COLOR_MODES}, not {color!r}")


def _rich_color(rgb: tuple[int, int, int], color: str) -> Color | None:
    if color == "none":
        return None
    c = Color.from_rgb(*rgb)
    if color == "256":
        c = c.downgrade(ColorSystem.EIGHT_BIT)
    return c


def _style(color: str, fg: tuple[int, int, int] | None = None,
           bg: tuple[int, int, int] | None = None, bold: bool = False) -> Style | None:
    if color == "none":
        return None
    return Style(
        color=_rich_color(fg, color) if fg is not None else None,
        bgcolor=_rich_color(bg, color) if bg is not None else None,
        bold=bold or None,
    )


# --------------------------------------------------------------------------- text helpers


def _clean(s: str) -> str:
    """Replace control characters (ESC, CR, ...) in user-supplied text by visible escapes."""
    out = []
    for ch in str(s):
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out)


def _line(text: str = "", style: Style | str | None = None) -> Text:
    return Text(text, style=style or "", no_wrap=True, overflow="crop", end="\n")


def _fit(t: Text, max_width: int) -> Text:
    """Crop a line to max_width cells (ellipsis when something is cut)."""
    if t.cell_len > max_width:
        t.truncate(max_width, overflow="ellipsis")
    return t


def _title(title: str, max_width: int, color: str) -> Text:
    return _fit(_line(_clean(title), "bold" if color != "none" else None), max_width)


def _fmt(v: float, digits: int = 3) -> str:
    if not math.isfinite(v):
        return str(v)
    if float(v).is_integer() and abs(v) < 1e15:
        return str(int(v))
    s = f"{v:.{digits}g}"
    return "0" if s in ("-0", "0") else s


def _fmt_fixed(values: Sequence[float], resolution: float) -> list[str]:
    """Format values with one common number of decimals, enough to show `resolution`
    (scientific notation for very large or very small magnitudes)."""
    vals = [float(v) for v in values]
    finite = [abs(v) for v in vals if math.isfinite(v)]
    big = max(finite, default=0.0)
    if big >= 1e7 or (0 < big < 1e-4):
        return [f"{v:.3e}" for v in vals]
    if not (math.isfinite(resolution) and resolution > 0):
        return [_fmt(v) for v in vals]
    decimals = min(10, max(0, -math.floor(math.log10(resolution))))
    out = []
    for v in vals:
        s = f"{v:.{decimals}f}" if math.isfinite(v) else str(v)
        out.append(s[1:] if s.startswith("-") and float(s) == 0 else s)  # no "-0.00"
    return out


def _label_str(v) -> str:
    v = float(v) if not isinstance(v, (int, np.integer)) else int(v)
    return _fmt(v) if isinstance(v, float) else str(v)


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


def _nice_ticks(lo: float, hi: float, max_ticks: int, integer: bool = False) -> list[float]:
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


# --------------------------------------------------------------------------- heatmap


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
        for v in _nice_ticks(l0, int(labels[-1]), max_ticks, integer=True):
            out.append((int((int(v) - l0) // span), str(int(v))))
        return out
    every = max(1, math.ceil(n_slots / max(1, max_ticks)))
    return [(s, _label_str(labels[s * span])) for s in range(0, n_slots, every)]


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
    _check_color(color)
    if max_width < 1:
        raise ValueError("max_width must be at least 1")
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"heatmap needs a non-empty square matrix, got shape {m.shape}")
    n = m.shape[0]
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must have length {n}, got shape {labels.shape}")

    label_w = max(cell_len(_label_str(v)) for v in labels)
    gutter = label_w + 1
    if max_width - gutter < 1:
        gutter = 0  # too narrow for y labels: picture only
    avail = max_width - gutter
    block = max(1, math.ceil(n / avail))
    pooled = pool_blocks(m, block)  # (c, c), c <= avail
    c = pooled.shape[0]

    finite = np.isfinite(pooled)
    has_bad = not bool(finite.all())
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
    norm = np.where(finite, norm, np.nan)

    lines: list[Text] = [_title(title, max_width, color)]
    rows_per_line = 1 if color == "none" else 2
    n_lines = math.ceil(c / rows_per_line)
    y_ticks = dict()
    if gutter:
        for slot, text in _axis_ticks(labels, block, rows_per_line, n_lines,
                                      max(1, n_lines // 4)):
            if 0 <= slot < n_lines and slot not in y_ticks:
                y_ticks[slot] = text

    # cache styles per quantised colour pair: the picture has at most a few thousand cells
    rgb_cache: dict[float, tuple[int, int, int]] = {}

    def rgb_of(t: float) -> tuple[int, int, int]:
        if not math.isfinite(t):
            return NAN_RGB
        key = round(t, 4)
        if key not in rgb_cache:
            rgb_cache[key] = viridis(key)
        return rgb_cache[key]

    for li in range(n_lines):
        t = _line()
        if gutter:
            t.append(y_ticks.get(li, "").rjust(label_w) + " ")
        if color == "none":
            row = norm[li]  # (c,)
            chars = []
            for v in row:
                if not math.isfinite(v):
                    chars.append(NAN_SHADE)
                else:
                    chars.append(SHADES[min(len(SHADES) - 1, int(v * len(SHADES)))])
            t.append("".join(chars))
        else:
            top = norm[2 * li]  # (c,)
            bottom = norm[2 * li + 1] if 2 * li + 1 < c else None
            for j in range(c):
                fg = rgb_of(top[j])
                bg = rgb_of(bottom[j]) if bottom is not None else None
                t.append(HALF_BLOCK, style=_style(color, fg=fg, bg=bg))
        lines.append(t)

    # x axis: tick marks, then tick labels
    x_ticks = [(s, txt) for s, txt in _axis_ticks(labels, block, 1, c, max(1, c // (label_w + 3)))
               if 0 <= s < c]
    kept = _layout(c, x_ticks)
    mark_line = ["─"] * c
    for _, col, _ in kept:
        mark_line[col] = "┴"
    pad = " " * gutter
    lines.append(_fit(_line(pad + "".join(mark_line)), max_width))
    lines.append(_fit(_line(pad + _render_layout(c, kept)), max_width))

    lines.append(_scale_line(vmin, vmax, value_label, max_width, color))
    notes = []
    if block > 1:
        notes.append(f"each cell = mean of {block}×{block} positions")
    if has_bad:
        notes.append("? = NaN/inf" if color == "none" else "red = NaN/inf")
    if notes:
        lines.append(_fit(_line("; ".join(notes), "dim" if color != "none" else None), max_width))
    return Group(*lines)


def _scale_line(vmin: float, vmax: float, value_label: str, max_width: int, color: str) -> Text:
    lo_s, hi_s = _fmt_fixed([vmin, vmax], (vmax - vmin) / 100 if vmax > vmin else abs(vmin) / 100)
    label = _clean(value_label)
    t = _line()
    if color == "none":
        t.append(f"{lo_s} [{SHADES}] {hi_s}")
    else:
        room = max_width - len(lo_s) - len(hi_s) - 2
        label_room = room - (cell_len(label) + 2 if label else 0)
        ramp_w = max(1, min(24, label_room if label_room >= 8 else room))
        t.append(lo_s + " ")
        for k in range(ramp_w):
            frac = k / (ramp_w - 1) if ramp_w > 1 else 0.5
            t.append("█", style=_style(color, fg=viridis(frac)))
        t.append(" " + hi_s)
    if label:
        t.append("  " + label)
    return _fit(t, max_width)


# --------------------------------------------------------------------------- histogram


def _bar(eighths: int) -> str:
    full, rem = divmod(int(eighths), 8)
    return "█" * full + (EIGHTHS[rem - 1] if rem else "")


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
    _check_color(color)
    if max_width < 1:
        raise ValueError("max_width must be at least 1")
    if bins < 1:
        raise ValueError("bins must be at least 1")
    v = np.asarray(values, dtype=np.float64).ravel()  # (N,)
    finite = np.isfinite(v)
    n_bad = int((~finite).sum())
    v = v[finite]
    lines: list[Text] = [_title(title, max_width, color)]
    if v.size == 0:
        lines.append(_fit(_line("no finite values" + (f" ({n_bad} non-finite)" if n_bad else "")),
                          max_width))
        return Group(*lines)

    counts, edges = np.histogram(v, bins=bins)  # (bins,), (bins + 1,)
    edge_s = _fmt_fixed(edges.tolist(), float(edges[1] - edges[0]) / 10)
    ew = max(len(s) for s in edge_s)
    cw = len(str(int(counts.max())))

    notes: list[list[str]] = [[] for _ in range(bins)]
    for name, x in (markers or {}).items():
        if x is None or not math.isfinite(float(x)):
            continue
        x = float(x)
        i = int(np.searchsorted(edges, x, side="right") - 1)
        i = min(max(i, 0), bins - 1)  # the last bin is closed; clamp outliers to the end bins
        notes[i].append(f"{_clean(name)}={_fmt(x, 4)}")
    note_s = [("◂ " + ", ".join(ns)) if ns else "" for ns in notes]
    note_w = max(cell_len(s) for s in note_s)

    prefix_w = ew + 3 + ew + 1  # "lo – hi "
    fixed = prefix_w + 2 + 1 + cw  # "│" "│" " " count
    bar_w = max_width - fixed - (note_w + 1 if note_w else 0)
    inline_notes = note_w > 0 and bar_w >= 8
    if not inline_notes:
        bar_w = max_width - fixed
    bar_w = max(1, bar_w)

    bar_style = _style(color, fg=viridis(0.45))
    mark_style = _style(color, bold=True)
    max_count = int(counts.max())
    for i in range(bins):
        t = _line()
        t.append(f"{edge_s[i]:>{ew}} – {edge_s[i + 1]:>{ew}} ")
        t.append("│")
        bar = _bar(bar_eighths(int(counts[i]), max_count, bar_w))
        t.append(bar, style=bar_style)
        t.append(" " * (bar_w - cell_len(bar)) + "│")
        t.append(f" {int(counts[i]):>{cw}}")
        if inline_notes and note_s[i]:
            t.append(" " + note_s[i], style=mark_style)
        lines.append(_fit(t, max_width))

    foot = f"n = {v.size}"
    if n_bad:
        foot += f" ({n_bad} non-finite left out)"
    if (markers and not inline_notes) and any(note_s):
        foot += "; " + ", ".join(s[2:] for s in note_s if s)
    lines.append(_fit(_line(foot, "dim" if color != "none" else None), max_width))
    return Group(*lines)


# --------------------------------------------------------------------------- line plot


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
    if max_width < 1:
        raise ValueError("max_width must be at least 1")
    if height < 1:
        raise ValueError("height must be at least 1")
    xs = np.asarray(x, dtype=np.float64).ravel()  # (N,)
    ys = np.asarray(y, dtype=np.float64).ravel()  # (N,)
    if xs.shape != ys.shape:
        raise ValueError(f"x and y differ in length: {xs.size} vs {ys.size}")
    keep = np.isfinite(xs)
    xs, ys = xs[keep], ys[keep]
    order = np.argsort(xs, kind="stable")
    xs, ys = xs[order], ys[order]

    lines: list[Text] = [_title(title, max_width, "truecolor")]
    fin = np.isfinite(ys)
    if not fin.any():
        lines.append(_fit(_line("no finite values"), max_width))
        return Group(*lines)
    if y_label:
        lines.append(_fit(_line(_clean(y_label)), max_width))

    ymin, ymax = float(ys[fin].min()), float(ys[fin].max())
    xmin, xmax = float(xs.min()), float(xs.max())
    if ymax > ymin:
        y_ticks = {0: ymax, height - 1: ymin}
        if height >= 5:
            y_ticks[(height - 1) // 2] = (ymax + ymin) / 2
    else:  # constant: one label, on the line the points are drawn on
        y_ticks = {(4 * height - 1) // 2 // 4: ymax}
    y_res = (ymax - ymin) / 100 if ymax > ymin else abs(ymax) / 100
    tick_text = dict(zip(y_ticks, _fmt_fixed(list(y_ticks.values()), y_res)))
    label_w = max(len(s) for s in tick_text.values())
    gutter = label_w + 1  # labels + axis character
    if max_width - gutter < 1:
        gutter, label_w = 0, 0
    w = max_width - gutter  # plot columns
    dots_w, dots_h = 2 * w, 4 * height

    def col_of(v: float) -> int:
        if xmax == xmin:
            return (dots_w - 1) // 2
        return int(round((v - xmin) / (xmax - xmin) * (dots_w - 1)))

    def row_of(v: float) -> int:
        if ymax == ymin:
            return (dots_h - 1) // 2
        return int(round((ymax - v) / (ymax - ymin) * (dots_h - 1)))

    cells = np.zeros((height, w), dtype=np.int64)  # braille bits per cell
    prev = None
    for xv, yv in zip(xs, ys):
        if not math.isfinite(yv):
            prev = None
            continue
        cur = (col_of(xv), row_of(yv))
        pts = _segment(*prev, *cur) if prev is not None else [cur]
        for dc, dr in pts:
            cells[dr // 4, dc // 2] |= _BRAILLE_BITS[dc % 2][dr % 4]
        prev = cur

    for li in range(height):
        t = _line()
        if gutter:
            t.append(tick_text.get(li, "").rjust(label_w) + ("┤" if li in tick_text else "│"))
        t.append("".join(chr(BRAILLE_BASE + b) if b else " " for b in cells[li]))
        lines.append(t)

    # x axis
    ticks = _nice_ticks(xmin, xmax, max(1, w // 8), integer=bool(np.all(xs == np.round(xs))))
    if not ticks:
        ticks = [xmin]
    x_step = ticks[1] - ticks[0] if len(ticks) > 1 else abs(ticks[0]) or 1.0
    items = [(col_of(v) // 2, s) for v, s in zip(ticks, _fmt_fixed(ticks, x_step))]
    kept = _layout(w, items, align="center")
    axis = ["─"] * w
    for _, col, _ in kept:
        axis[col] = "┬"
    corner = " " * label_w + "└" if gutter else ""
    lines.append(_fit(_line(corner + "".join(axis)), max_width))
    lines.append(_fit(_line(" " * gutter + _render_layout(w, kept)), max_width))
    if x_label:
        xl = _clean(x_label)
        lines.append(_fit(_line(xl.rjust(max_width) if cell_len(xl) <= max_width else xl),
                          max_width))
    return Group(*lines)

