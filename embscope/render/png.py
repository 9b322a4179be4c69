"""PNG pictures with matplotlib (the optional "plot" extra), written atomically.

matplotlib is imported inside each function, and only its Agg canvas is used (no pyplot, no
global backend switch). Each file is rendered to a temporary file in the target's directory and
moved onto the target with os.replace, so a failure never leaves a partial PNG behind.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path

import numpy as np

from embscope.errors import missing_extra

DPI = 120
NAN_COLOR = "#e41a1c"  # red, as in the terminal heatmap (not on the viridis path)
PLAIN = {"parse_math": False}  # titles hold paths: '$' is a dollar sign, never mathtext


def require_matplotlib() -> None:
    """Fail now, before any output, when the "plot" extra is not installed."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise missing_extra("matplotlib", "plot", "Writing a PNG") from None


def _new_figure(figsize: tuple[float, float]):
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _quiet(draw):
    """Run a drawing function with matplotlib's warnings (about a legend with nothing to show, a
    layout a long title does not fit...) kept off stderr: the PNG is written either way."""

    @functools.wraps(draw)
    def quiet(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return draw(*args, **kwargs)

    return quiet


def _label(ax, title: str, x_label: str, y_label: str) -> None:
    """Title and axis labels, as plain text."""
    ax.set_xlabel(x_label, **PLAIN)
    ax.set_ylabel(y_label, **PLAIN)
    ax.set_title(title, **PLAIN)


def _save_atomic(fig, path: str | os.PathLike) -> Path:
    """The figure as a PNG at `path`, whole or not at all (embscope.atomic.atomic_write)."""
    from embscope.atomic import atomic_write

    atomic_write(str(path), lambda f: fig.savefig(f, format="png", dpi=DPI))
    return Path(path)


def _evenly_spaced(labels: np.ndarray) -> float | None:
    """The step of an evenly spaced numeric label array, else None."""
    if labels.size < 2:
        return 1.0
    d = np.diff(labels.astype(np.float64))  # (n - 1,)
    return float(d[0]) if d[0] != 0 and np.allclose(d, d[0]) else None


@_quiet
def save_heatmap_png(
    matrix: np.ndarray,
    labels: np.ndarray | list[int],
    path: str | os.PathLike,
    *,
    title: str,
    value_label: str,
) -> Path:
    """Write a viridis heatmap of a square (n, n) matrix; both axes show the real position
    numbers `labels`; colour bar labelled `value_label`; NaN cells red. Returns the path."""
    m = np.asarray(matrix, dtype=np.float64)  # (n, n)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"heatmap needs a non-empty square matrix, got shape {m.shape}")
    labels = np.asarray(labels)
    if labels.shape != (m.shape[0],):
        raise ValueError(f"labels must have length {m.shape[0]}, got shape {labels.shape}")

    fig = _new_figure((7.2, 6.0))
    import matplotlib

    cmap = matplotlib.colormaps["viridis"].with_extremes(bad=NAN_COLOR)
    ax = fig.add_subplot()
    step = _evenly_spaced(labels)
    if step is not None:
        lo, hi = float(labels[0]) - step / 2, float(labels[-1]) + step / 2
        extent = (lo, hi, hi, lo)  # row 0 at the top
    else:
        extent = None  # index coordinates; tick labels mapped to the labels below
    masked = np.ma.masked_invalid(m)
    im = ax.imshow(masked, cmap=cmap, extent=extent, origin="upper", aspect="equal")
    if step is None:
        from matplotlib.ticker import FuncFormatter, MaxNLocator

        def fmt(v, _pos):
            i = int(round(v))
            return str(labels[i]) if 0 <= i < labels.size else ""

        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(MaxNLocator(integer=True))
            axis.set_major_formatter(FuncFormatter(fmt))
    _label(ax, title, "position", "position")
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    cbar.set_label(value_label, **PLAIN)
    fig.tight_layout()
    return _save_atomic(fig, path)


@_quiet
def save_histogram_png(
    values: np.ndarray,
    path: str | os.PathLike,
    *,
    bins: int,
    title: str,
    x_label: str,
    markers: dict[str, float] | None = None,
) -> Path:
    """Write a histogram of the finite values (numpy.histogram bins) with optional vertical
    marker lines (e.g. {"p50": x}) labelled in a legend. Returns the path."""
    v = np.asarray(values, dtype=np.float64).ravel()  # (N,)
    v = v[np.isfinite(v)]
    fig = _new_figure((7.2, 4.2))
    ax = fig.add_subplot()
    if v.size:
        counts, edges = np.histogram(v, bins=bins)
        ax.stairs(counts, edges, fill=True, color="#2a788e", alpha=0.9)
    else:
        ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes)
    styles = ("--", ":", "-.", (0, (5, 1, 1, 1)))
    colors = ("#d62728", "#000000", "#ff7f0e", "#9467bd")
    drawn = 0
    for k, (name, x) in enumerate((markers or {}).items()):
        if x is not None and np.isfinite(x):
            ax.axvline(float(x), color=colors[k % len(colors)],
                       linestyle=styles[k % len(styles)], linewidth=1.5,
                       label=f"{name} = {float(x):.4g}")
            drawn += 1
    if drawn:  # no finite marker (all values NaN): no legend, and no matplotlib warning about it
        ax.legend(loc="best", frameon=True)
    _label(ax, title, x_label, "count")
    fig.tight_layout()
    return _save_atomic(fig, path)


@_quiet
def save_line_png(
    x: np.ndarray,
    y: np.ndarray,
    path: str | os.PathLike,
    *,
    title: str,
    x_label: str,
    y_label: str,
) -> Path:
    """Write a line plot of y against x (NaN breaks the line). Returns the path."""
    xs = np.asarray(x, dtype=np.float64).ravel()  # (N,)
    ys = np.asarray(y, dtype=np.float64).ravel()  # (N,)
    if xs.shape != ys.shape:
        raise ValueError(f"x and y differ in length: {xs.size} vs {ys.size}")
    order = np.argsort(xs, kind="stable")
    fig = _new_figure((7.2, 4.2))
    ax = fig.add_subplot()
    ax.plot(xs[order], ys[order], color="#21918c", linewidth=1.5)
    ax.grid(True, alpha=0.3)
    _label(ax, title, x_label, y_label)
    fig.tight_layout()
    return _save_atomic(fig, path)


@_quiet
def save_lines_png(
    x: np.ndarray,
    series: dict[str, np.ndarray],
    path: str | os.PathLike,
    *,
    title: str,
    x_label: str,
    y_label: str,
) -> Path:
    """Write several lines against one x (each labelled in a legend; NaN breaks a line, a
    single point is drawn as a dot). Returns the path."""
    xs = np.asarray(x, dtype=np.float64).ravel()  # (N,)
    fig = _new_figure((7.2, 4.2))
    ax = fig.add_subplot()
    colors = ("#21918c", "#d62728", "#3b528b", "#ff7f0e")
    styles = ("-", "--", "-.", ":")
    for n, (name, y) in enumerate(series.items()):
        ys = np.asarray(y, dtype=np.float64).ravel()  # (N,)
        if ys.shape != xs.shape:
            raise ValueError(f"x and {name} differ in length: {xs.size} vs {ys.size}")
        ax.plot(xs, ys, color=colors[n % len(colors)], linestyle=styles[n % len(styles)], marker="o",
                markersize=3, linewidth=1.5, label=name)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", frameon=True)
    _label(ax, title, x_label, y_label)
    fig.tight_layout()
    return _save_palette(fig, path)  # few colours: a third of the size


POINT_COLOR = "#21918c"  # as in the terminal scatter
LABEL_FONT = 7  # points


@_quiet
def save_scatter_png(
    x: np.ndarray,
    y: np.ndarray,
    labels: list[str],
    path: str | os.PathLike,
    *,
    title: str,
    x_label: str,
    y_label: str,
    values: np.ndarray | None = None,
    value_label: str = "",
    highlight: tuple[int, ...] = (),
    joined: bool = False,
) -> Path:
    """Write a scatter plot of the points (x[i], y[i]) on equal axes, labelled with `labels`
    (plain text; '' for none) where a label does not overlap another; coloured by `values`
    (viridis, with a colour bar) when given; `highlight` points red; `joined`: a line through the
    points in order. Returns the path."""
    xs, ys = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)  # (n,), (n,)
    fig = _new_figure((7.2, 6.0))
    ax = fig.add_subplot()
    if joined:
        ax.plot(xs, ys, color="#bbbbbb", linewidth=0.8, zorder=1)
    if values is not None:
        dots = ax.scatter(xs, ys, c=np.asarray(values, dtype=np.float64), cmap="viridis", s=12, zorder=2)
        fig.colorbar(dots, ax=ax, fraction=0.046, pad=0.04).set_label(value_label, **PLAIN)
    else:
        ax.scatter(xs, ys, color=POINT_COLOR, s=12, zorder=2)
    hi = list(highlight)
    if hi:
        ax.scatter(xs[hi], ys[hi], color=NAN_COLOR, s=30, zorder=3)
    ax.set_aspect("equal", adjustable="datalim")
    ax.grid(True, alpha=0.3)
    _label(ax, title, x_label, y_label)
    fig.tight_layout()
    fig.canvas.draw()  # fixes the layout, so data can be placed in pixels
    _scatter_labels(ax, xs, ys, labels, hi)
    return _save_palette(fig, path)


def _save_palette(fig, path: str | os.PathLike) -> Path:
    """The figure as a PNG of at most 256 colours (Pillow, which matplotlib depends on): a
    scatter plot has few, and the file is a third of the size."""
    import io

    from PIL import Image

    from embscope.atomic import atomic_write

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    buffer.seek(0)
    image = Image.open(buffer).convert("RGB").quantize(256)
    atomic_write(str(path), lambda f: image.save(f, format="PNG", optimize=True))
    return Path(path)


def _scatter_labels(ax, xs: np.ndarray, ys: np.ndarray, labels: list[str], highlight: list[int]) -> None:
    """Each label right of its point unless its box (estimated from the font size) would overlap
    a label already placed: highlighted points first, then in order."""
    px = ax.transData.transform(np.column_stack([xs, ys]))  # (n, 2) pixels, y up
    height = LABEL_FONT * DPI / 72
    boxes = np.empty((0, 4))  # (m, 4) x0, y0, x1, y1 of the labels placed
    rest = [i for i in range(len(xs)) if i not in set(highlight)]
    for i in [i for i in highlight + rest if labels[i]]:
        x0, y0 = px[i, 0] + 3, px[i, 1] - height / 2
        box = np.array([x0, y0, x0 + 0.62 * height * len(labels[i]), y0 + height])
        if len(boxes) and ((boxes[:, 0] < box[2]) & (box[0] < boxes[:, 2])
                           & (boxes[:, 1] < box[3]) & (box[1] < boxes[:, 3])).any():
            continue
        boxes = np.vstack([boxes, box])
        ax.annotate(labels[i], (xs[i], ys[i]), xytext=(3, 0), textcoords="offset points", va="center",
                    fontsize=LABEL_FONT, color=NAN_COLOR if i in highlight else "#222222",
                    fontweight="bold" if i in highlight else "normal", annotation_clip=True, **PLAIN)
