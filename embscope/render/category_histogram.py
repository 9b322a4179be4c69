"""A PNG histogram of one value per token, a line per token category, with a threshold marked
(`embscope glitch -o indicators.png`). matplotlib's object API on an Agg canvas, as png.py."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from embscope.render.png import _label, _new_figure, _quiet, _save_atomic

# One colour per category (embscope.token_categories.CATEGORIES); normal tokens in grey.
COLORS = {"special": "#9467bd", "byte-ascii": "#1f77b4", "byte-continuation": "#17becf", "byte-lead": "#2ca02c",
          "byte-not-utf8": "#d62728", "partial-utf8": "#ff7f0e", "unreachable": "#8c564b", "normal": "#7f7f7f",
          "padding": "#e377c2"}


@_quiet
def save_category_histogram_png(
    values: dict[str, np.ndarray],
    path: str | os.PathLike,
    *,
    bins: int,
    title: str,
    x_label: str,
    threshold: float,
) -> Path:
    """Write a histogram of the finite values of each category (`values`: name -> (n,)), all on
    the same bins, as outlines on a log count axis so that small categories show beside the
    large one, with a dashed line at `threshold`. Returns the path."""
    finite = {name: v[np.isfinite(v)] for name, v in values.items()}
    every = np.concatenate([v for v in finite.values()] + [np.zeros(0)])  # (N,)
    fig = _new_figure((7.2, 4.4))
    ax = fig.add_subplot()
    if every.size:
        edges = np.histogram_bin_edges(every, bins=bins)  # (bins + 1,)
        for name, v in finite.items():
            if v.size:
                counts, _ = np.histogram(v, bins=edges)
                ax.stairs(counts, edges, color=COLORS.get(name, "#000000"), linewidth=1.4,
                          label=f"{name} ({v.size})")
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes)
    if np.isfinite(threshold):
        ax.axvline(float(threshold), color="#000000", linestyle="--", linewidth=1.2,
                   label=f"threshold = {float(threshold):.4g}")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="best", frameon=True, fontsize="small")
    _label(ax, title, x_label, "tokens")
    fig.tight_layout()
    return _save_atomic(fig, path)
