"""The terminal scatter plot (embscope.render.scatter): dots decoded back from the braille cells
land where the coordinates say, on one scale for both axes; labels sit beside their points and
never cover a dot or another label; every line fits the width."""

from __future__ import annotations

import numpy as np
import pytest
from rich.cells import cell_len
from rich.console import Console

from embscope.render.scatter import HIGHLIGHT_RGB, scatter

# braille dot bit -> (dot column, dot row) within a cell (Unicode's braille pattern numbering)
BITS = {0x01: (0, 0), 0x02: (0, 1), 0x04: (0, 2), 0x40: (0, 3), 0x08: (1, 0), 0x10: (1, 1), 0x20: (1, 2),
        0x80: (1, 3)}


def plain_lines(group) -> list:
    return list(group.renderables)


def plot_rows(group) -> list[str]:
    """The plot's lines, without the y-axis gutter (up to its ┤ or │)."""
    rows = []
    for t in group.renderables:
        s = t.plain
        for mark in ("┤", "│"):
            if mark in s:
                rows.append(s[s.index(mark) + 1:])
                break
    return rows


def dots(rows: list[str]) -> set[tuple[int, int]]:
    """(dot column, dot row) of every braille dot."""
    out = set()
    for r, row in enumerate(rows):
        for c, ch in enumerate(row):
            code = ord(ch) - 0x2800
            if 0 < code <= 0xFF:
                for bit, (dc, dr) in BITS.items():
                    if code & bit:
                        out.add((2 * c + dc, 4 * r + dr))
    return out


def test_points_land_on_one_scale():
    x = np.array([0.0, 10.0, 0.0, 5.0])
    y = np.array([0.0, 0.0, 5.0, 2.5])
    g = scatter(x, y, labels=["", "", "", ""], max_width=80, max_height=12, color="none", title="t",
                x_label="x", y_label="y")
    found = dots(plot_rows(g))
    assert len(found) == 4
    cols = sorted({c for c, _ in found})
    rows = sorted({r for _, r in found})
    left, right, top, bottom = cols[0], cols[-1], rows[0], rows[-1]
    assert (left, bottom) in found and (right, bottom) in found and (left, top) in found
    # the same number of dots per unit across and down: 10 units wide, 5 high
    assert abs((right - left) / 10 - (bottom - top) / 5) <= 0.2
    middle = ((left + right) / 2, (top + bottom) / 2)
    assert any(abs(c - middle[0]) <= 1 and abs(r - middle[1]) <= 1 for c, r in found)
    assert (bottom - top) == 4 * 12 - 1  # y is the binding axis: the full height is used


@pytest.mark.parametrize("width", [12, 30, 80, 200])
def test_every_line_fits(width):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((2, 500))
    labels = [f"token{i}" for i in range(500)]
    g = scatter(x, y, labels=labels, max_width=width, max_height=15, color="truecolor", title="a long title " * 5,
                x_label="pc1 (12.3% of the variance)", y_label="pc2", footer=["a footnote " * 10])
    for t in g.renderables:
        assert cell_len(t.plain) <= width


def is_dot(ch: str) -> bool:
    return 0x2800 <= ord(ch) <= 0x28FF


def label_runs(row: str) -> list[tuple[int, str]]:
    """(first cell, text) of each run of characters that are neither braille nor spaces."""
    runs, start = [], None
    for c, ch in enumerate(row + " "):
        inside = not is_dot(ch) and ch != " "
        if inside and start is None:
            start = c
        elif not inside and start is not None:
            runs.append((start, row[start:c]))
            start = None
    return runs


def test_labels_beside_their_points_and_apart():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((2, 60))
    labels = [f"w{i}" for i in range(60)]
    g = scatter(x, y, labels=labels, max_width=80, max_height=20, color="none", title="t", x_label="", y_label="")
    rows = plot_rows(g)
    shown = []
    for row in rows:
        for start, text in label_runs(row):
            assert text in labels  # one whole label: none runs into another
            before = row[start - 1] if start else " "
            after = row[start + len(text)] if start + len(text) < len(row) else " "
            assert is_dot(before) or is_dot(after)  # beside a point's cell
            shown.append(text)
    assert len(shown) == len(set(shown)) >= 20
    assert g.renderables[-1].plain == f"60 points, {len(shown)} labelled"
    assert len(dots(rows)) >= 55  # labels cover no dot (a few points may share one)


def test_highlight_is_labelled_first_in_red():
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((2, 300))
    labels = [f"t{i}" for i in range(300)]
    g = scatter(x, y, labels=labels, max_width=60, max_height=10, color="truecolor", title="t", x_label="",
                y_label="", highlight=[123])
    console = Console(width=60, color_system="truecolor", force_terminal=True, record=True)
    console.print(g)
    text = "".join(t.plain for t in g.renderables)
    assert "t123" in text
    red = [s for t in g.renderables for s in t.spans if t.plain[s.start:s.end] == "t123"]
    assert red and red[0].style.color.triplet == HIGHLIGHT_RGB and red[0].style.bold


def test_no_colour_means_no_styles():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((2, 40))
    g = scatter(x, y, labels=[str(i) for i in range(40)], max_width=60, max_height=10, color="none", title="t",
                x_label="x", y_label="y", values=np.arange(40), value_label="position", highlight=[0])
    assert all(not t.spans and not t.style for t in g.renderables)
    assert not any("position:" in t.plain for t in g.renderables)  # no colour scale without colour


def test_colour_scale_line():
    x, y = np.arange(10.0), np.arange(10.0) ** 2
    g = scatter(x, y, labels=[""] * 10, max_width=60, max_height=10, color="truecolor", title="t", x_label="",
                y_label="", values=np.arange(100, 110), value_label="position", joined=True)
    scale = [t.plain for t in g.renderables if t.plain.startswith("position: ")]
    assert scale == ["position: 100 ████████████████ 109"]


def test_labels_are_escaped_and_cut():
    g = scatter(np.array([0.0, 1.0, 2.0]), np.array([0.0, 1.0, 0.5]),
                labels=["\x1b[31mred", " a very long token label indeed", "tab\there"], max_width=80,
                max_height=8, color="none", title="t", x_label="", y_label="")
    text = "\n".join(t.plain for t in g.renderables)
    assert "\x1b" not in text and "\t" not in text
    assert "\\x1b[31mred" in text and "\u2423a\u2423very\u2423long\u2423…" in text and "tab\\there" in text


def test_joined_draws_the_curve():
    x = np.array([0.0, 10.0])
    y = np.array([0.0, 10.0])
    apart = dots(plot_rows(scatter(x, y, labels=["", ""], max_width=40, max_height=10, color="none", title="t",
                                   x_label="", y_label="")))
    joined = dots(plot_rows(scatter(x, y, labels=["", ""], max_width=40, max_height=10, color="none", title="t",
                                    x_label="", y_label="", joined=True)))
    assert len(apart) == 2 and len(joined) >= 35  # a diagonal of 40 dots
