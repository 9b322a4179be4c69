"""Tests for embscope.render: terminal pictures (widths, pooling, colours) and PNG files."""

from __future__ import annotations

import io
import re
import sys

import numpy as np
import pytest
from rich.cells import cell_len
from rich.color import Color, ColorSystem
from rich.console import Console
from rich.style import Style

from embscope.errors import EmbscopeError
from embscope.render.colors import NAN_RGB, SHADES, viridis
from embscope.render.heatmap import heatmap, pool_blocks
from embscope.render.histogram import EIGHTHS, histogram
from embscope.render.lineplot import line_plot

ANSI = re.compile(r"\x1b\[[0-9;]*m")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # everything but \t and \n


def render(renderable, color_system: str | None, force_terminal: bool = True) -> str:
    # rich memoises combined Styles (Style._add is an lru_cache) together with the escape codes
    # of the first colour system they were rendered for; clear it so consoles with different
    # colour systems in one test process do not see each other's codes.
    getattr(Style._add, "cache_clear", lambda: None)()
    buf = io.StringIO()
    console = Console(file=buf, width=400, color_system=color_system,
                      force_terminal=force_terminal, legacy_windows=False)
    console.print(renderable)
    return buf.getvalue()


def plain_lines(renderable) -> list[str]:
    return render(renderable, None, force_terminal=False).rstrip("\n").split("\n")


def cells(line, console=Console(color_system="truecolor", width=400)):
    """(fg rgb, bg rgb or None) of each '▀' in a heatmap line."""
    out = []
    for seg in line.render(console):
        if seg.text and set(seg.text) == {"▀"}:
            bg = seg.style.bgcolor
            pair = (tuple(seg.style.color.get_truecolor()),
                    tuple(bg.get_truecolor()) if bg is not None else None)
            out.extend([pair] * len(seg.text))
    return out


def sim_matrix(n: int) -> np.ndarray:
    pos = np.arange(n)
    d = np.abs(pos[:, None] - pos[None, :])  # (n, n)
    return np.exp(-d / 10.0) * np.cos(d / 7.0)


def block_matrix(nb: int, b: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An (nb*b, nb*b) matrix of noise around distinct block levels, and its exact block means."""
    rng = np.random.default_rng(seed)
    n = nb * b
    m = rng.normal(size=(n, n)) + np.kron(rng.permutation(nb * nb).reshape(nb, nb), np.ones((b, b)))
    means = m.reshape(nb, b, nb, b).mean(axis=(1, 3))  # (nb, nb)
    return m, means


def norm01(a: np.ndarray) -> np.ndarray:
    return (a - np.nanmin(a)) / (np.nanmax(a) - np.nanmin(a))


# ----------------------------------------------------------------------------- widths


@pytest.mark.parametrize("n", [1, 7, 1024])
@pytest.mark.parametrize("max_width", [1, 4, 13, 80, 161])
@pytest.mark.parametrize("color", ["truecolor", "256", "none"])
def test_heatmap_never_wider_than_max_width(n, max_width, color):
    g = heatmap(sim_matrix(n), labels=np.arange(n), max_width=max_width, color=color,
                title="a rather long title for a position similarity heatmap",
                value_label="cosine similarity")
    for line in g.renderables:
        assert line.cell_len <= max_width
    for line in plain_lines(g):
        assert cell_len(line) <= max_width


@pytest.mark.parametrize("max_width", [1, 10, 40, 120])
@pytest.mark.parametrize("color", ["truecolor", "none"])
def test_histogram_never_wider_than_max_width(max_width, color):
    v = np.random.default_rng(1).lognormal(size=3000) * 1e3
    g = histogram(v, bins=15, max_width=max_width, color=color, title="norms of all rows",
                  markers={"p1": np.percentile(v, 1), "p50": np.median(v), "p99": np.percentile(v, 99)})
    for line in plain_lines(g):
        assert cell_len(line) <= max_width


@pytest.mark.parametrize("n", [1, 2, 7, 1024])
@pytest.mark.parametrize("max_width", [1, 9, 50, 120])
def test_line_plot_never_wider_than_max_width(n, max_width):
    x = np.arange(n)
    g = line_plot(x, np.exp(-x / 30.0), max_width=max_width, height=6, title="mean similarity",
                  x_label="offset |i-j|", y_label="mean cosine")
    for line in plain_lines(g):
        assert cell_len(line) <= max_width


def test_labels_and_title_are_never_markup_or_control_characters():
    title = "[bold]x[/bold] \x1b[31mred\x07"
    for color in ("truecolor", "none"):
        out = render(heatmap(np.eye(3), labels=[0, 1, 2], max_width=40, color=color, title=title,
                             value_label="[v]\r"), None, force_terminal=False)
        assert "[bold]x[/bold]" in out and "\\x1b[31mred\\x07" in out and "[v]\\r" in out
        assert not CONTROL.search(out)


# ----------------------------------------------------------------------------- pooling


def test_pool_blocks_is_block_mean_and_keeps_nan():
    m, means = block_matrix(5, 6)
    np.testing.assert_allclose(pool_blocks(m, 6), means)
    # partial last block: 7 = 3 + 3 + 1
    a = np.arange(49.0).reshape(7, 7)
    p = pool_blocks(a, 3)
    assert p.shape == (3, 3)
    assert p[2, 2] == a[6, 6] and p[0, 2] == a[0:3, 6].mean() and p[1, 1] == a[3:6, 3:6].mean()
    a[4, 4] = np.nan
    p = pool_blocks(a, 3)
    assert np.isnan(p[1, 1]) and np.isfinite(np.delete(p.ravel(), 4)).all()


def test_heatmap_none_mode_shades_are_block_means():
    m, means = block_matrix(5, 8)  # (40, 40): labels 0..39 take 2 cells + 1 gap, 5 cells left
    g = heatmap(m, labels=np.arange(40), max_width=8, color="none", title="t", value_label="v")
    grid = [line.plain[3:] for line in g.renderables[1:6]]
    expected = [
        "".join(SHADES[min(4, int(t * 5))] for t in row) for row in norm01(means)
    ]
    assert grid == expected
    assert g.renderables[1].plain[:3] == " 0 "  # y label of the first row


def test_heatmap_truecolor_cells_are_viridis_of_block_means():
    m, means = block_matrix(5, 8)
    g = heatmap(m, labels=np.arange(40), max_width=8, color="truecolor", title="t",
                value_label="v")
    t = norm01(means)  # (5, 5)
    got = [cells(line) for line in g.renderables[1:4]]  # 5 rows -> 3 lines
    for k, line in enumerate(got):
        assert len(line) == 5
        for j, (fg, bg) in enumerate(line):
            assert fg == viridis(t[2 * k, j])
            assert bg == (viridis(t[2 * k + 1, j]) if 2 * k + 1 < 5 else None)
    flat = [c for line in got for pair in line for c in pair if c is not None]
    assert (68, 1, 84) in flat and (253, 231, 37) in flat  # viridis ends: block min and max


def test_viridis_anchor_values():
    assert viridis(0) == (68, 1, 84)
    assert viridis(1) == (253, 231, 37)
    assert viridis(0.5) == (32, 144, 140)  # halfway between anchors 15 and 16
    assert viridis(-3) == viridis(0) and viridis(7) == viridis(1)


def test_heatmap_nan_cell_is_distinct():
    m = sim_matrix(6)
    m[2, 3] = np.nan
    g = heatmap(m, labels=np.arange(6), max_width=40, color="none", title="t", value_label="v")
    lines = [line.plain for line in g.renderables]
    assert [ln[2:].find("?") for ln in lines[1:7]] == [-1, -1, 3, -1, -1, -1]
    assert "? = NaN/inf" in lines[-1]
    g = heatmap(m, labels=np.arange(6), max_width=40, color="truecolor", title="t",
                value_label="v")
    row23 = cells(g.renderables[2])  # rows 2 (fg) and 3 (bg)
    assert row23[3][0] == NAN_RGB
    assert NAN_RGB not in [c for j, pair in enumerate(row23) if j != 3 for c in pair]


def test_heatmap_axis_ticks_show_positions():
    n = 300
    g = heatmap(sim_matrix(n), labels=np.arange(n), max_width=80, color="none", title="t",
                value_label="cosine")
    lines = plain_lines(g)
    # 300 positions in 76 columns -> 4 per cell; ticks at round positions
    x_labels = lines[-3].split()
    assert x_labels[0] == "0" and all(int(v) % 50 == 0 for v in x_labels)
    marks = lines[-4]
    for v in x_labels:  # each label starts under its tick mark
        assert marks[lines[-3].index(f" {v}" if v != "0" else "0") + (v != "0")] == "┴"
    y = [ln[:3].strip() for ln in lines[1:-4]]
    assert y[0] == "0" and y[(100 // 4)] == "100"
    assert lines[-2].startswith("-") and lines[-2].endswith("cosine")
    assert lines[-1] == "each cell = mean of 4×4 positions"


def test_heatmap_one_by_one():
    g = heatmap(np.array([[1.0]]), labels=[5], max_width=20, color="none", title="t",
                value_label="v")
    lines = plain_lines(g)
    assert lines[1] == "5 ▒"  # constant matrix: the middle of the ramp


# ----------------------------------------------------------------------------- colour modes


def test_none_mode_has_no_escapes():
    g = heatmap(sim_matrix(50), labels=np.arange(50), max_width=60, color="none", title="t",
                value_label="v")
    out = render(g, None, force_terminal=False)
    assert "\x1b" not in out and not CONTROL.search(out)
    assert set("".join(out.split("\n")[1:26])[3:]) <= set(SHADES) | set("0123456789 ")
    h = histogram(np.arange(100.0), bins=5, max_width=60, color="none", title="t", markers=None)
    assert "\x1b" not in render(h, None, force_terminal=False)
    # color="none" pictures carry no styles at all, so even a colour console adds nothing
    assert "\x1b" not in render(g, "truecolor")


def test_truecolor_mode_emits_24_bit_escapes():
    g = heatmap(sim_matrix(20), labels=np.arange(20), max_width=60, color="truecolor",
                title="t", value_label="v")
    out = render(g, "truecolor")
    assert re.search(r"\x1b\[38;2;\d+;\d+;\d+(;48;2;\d+;\d+;\d+)?m", out)
    assert re.search(r"48;2;\d+;\d+;\d+", out)
    assert not CONTROL.search(ANSI.sub("", out))


def test_256_mode_is_the_palette_and_matches_console_downgrade():
    g256 = heatmap(sim_matrix(20), labels=np.arange(20), max_width=60, color="256", title="t",
                   value_label="v")
    gtc = heatmap(sim_matrix(20), labels=np.arange(20), max_width=60, color="truecolor",
                  title="t", value_label="v")
    out = render(g256, "truecolor")
    assert re.search(r"\x1b\[38;5;\d+", out) and "38;2;" not in out and "48;2;" not in out
    # same bytes whether we reduce to 256 colours or a 256-colour console does
    assert render(g256, "256") == render(gtc, "256") == out
    fg, bg = cells(g256.renderables[1])[0]
    assert fg == tuple(Color.from_rgb(*viridis(1.0)).downgrade(ColorSystem.EIGHT_BIT)
                       .get_truecolor())


def test_output_is_deterministic():
    m = sim_matrix(100)
    a = render(heatmap(m, labels=np.arange(100), max_width=70, color="truecolor", title="t",
                       value_label="v"), "truecolor")
    b = render(heatmap(m.copy(), labels=list(range(100)), max_width=70, color="truecolor",
                       title="t", value_label="v"), "truecolor")
    assert a == b


def test_bad_arguments():
    with pytest.raises(ValueError):
        heatmap(np.zeros((2, 3)), labels=[0, 1], max_width=10, color="none", title="",
                value_label="")
    with pytest.raises(ValueError):
        heatmap(np.zeros((2, 2)), labels=[0, 1], max_width=10, color="16", title="",
                value_label="")


# ----------------------------------------------------------------------------- histogram


def parse_histogram(lines: list[str]):
    rows = []
    for line in lines:
        m = re.match(r"^(.*) – (.*) │(.*)│ +(\d+)(.*)$", line)
        if m:
            rows.append((m.group(3), int(m.group(4)), m.group(5)))
    return rows


def bar_to_eighths(bar: str) -> int:
    bar = bar.rstrip(" ")
    return sum(8 if ch == "█" else EIGHTHS.index(ch) + 1 for ch in bar)


@pytest.mark.parametrize("color", ["none", "truecolor"])
def test_histogram_bars_proportional_to_counts(color):
    v = np.random.default_rng(2).normal(size=10_000)
    v[:3] = [np.nan, np.inf, -np.inf]
    markers = {"p1": float(np.percentile(v[3:], 1)), "p50": float(np.median(v[3:])),
               "p99": float(np.percentile(v[3:], 99))}
    g = histogram(v, bins=20, max_width=100, color=color, title="t", markers=markers)
    lines = plain_lines(g)
    rows = parse_histogram(lines)
    counts, edges = np.histogram(v[3:], bins=20)
    assert [c for _, c, _ in rows] == counts.tolist()
    bar_w = len(rows[0][0])
    assert all(len(bar) == bar_w for bar, _, _ in rows)
    for bar, c, _ in rows:
        exact = c / counts.max() * bar_w * 8
        assert bar_to_eighths(bar) == (max(1, round(exact)) if c else 0)
        assert abs(bar_to_eighths(bar) - exact) <= 1
    assert bar_to_eighths(rows[int(np.argmax(counts))][0]) == bar_w * 8
    for name, x in markers.items():
        i = int(np.searchsorted(edges, x, side="right") - 1)
        assert [k for k, r in enumerate(rows) if f"{name}=" in r[2]] == [i]
    assert lines[-1] == "n = 9997 (3 non-finite left out)"


def test_histogram_edge_cases():
    g = histogram(np.full(10, 3.0), bins=4, max_width=60, color="none", title="t", markers=None)
    rows = parse_histogram(plain_lines(g))
    assert sum(c for _, c, _ in rows) == 10
    g = histogram(np.array([np.nan]), bins=4, max_width=60, color="none", title="t", markers=None)
    assert plain_lines(g)[1] == "no finite values (1 non-finite)"


# ----------------------------------------------------------------------------- line plot


def test_line_plot_layout():
    x = np.arange(101)
    y = 1.0 - x / 100.0  # from 1 (top left) to 0 (bottom right)
    g = line_plot(x, y, max_width=60, height=8, title="mean similarity vs offset",
                  x_label="offset |i-j|", y_label="mean cosine")
    lines = plain_lines(g)
    assert lines[0] == "mean similarity vs offset" and lines[1] == "mean cosine"
    plot = lines[2:10]
    assert plot[0].startswith("1.00┤") and plot[-1].startswith("0.00┤")
    assert plot[3].startswith("0.50┤")
    area = [ln[5:].ljust(55) for ln in plot]
    assert area[0][0] != " " and area[-1][54] != " "  # the line runs corner to corner
    assert all(ch == " " or 0x2800 <= ord(ch) <= 0x28FF for row in area for ch in row)
    assert lines[10].startswith("    └┬")
    assert lines[11].split() == ["0", "20", "40", "60", "80", "100"]
    assert lines[12].endswith("offset |i-j|") and cell_len(lines[12]) == 60


def test_line_plot_nan_breaks_line_and_all_nan():
    x = np.arange(20.0)
    y = x.copy()
    y[10] = np.nan
    g = line_plot(x, y, max_width=40, height=4, title="t", x_label="x", y_label="y")
    assert len(plain_lines(g)) == 1 + 1 + 4 + 3
    g = line_plot(x, np.full(20, np.nan), max_width=40, height=4, title="t", x_label="x",
                  y_label="y")
    assert plain_lines(g)[1] == "no finite values"


# ----------------------------------------------------------------------------- PNG

from embscope.render import png  # noqa: E402  (imports matplotlib lazily)


@pytest.fixture
def mpl_image():
    return pytest.importorskip("matplotlib.image")


def test_pngs_are_written(tmp_path, mpl_image):
    n = 64
    png.save_heatmap_png(sim_matrix(n), np.arange(100, 100 + n), tmp_path / "h.png",
                         title="wpe similarity", value_label="cosine")
    png.save_histogram_png(np.random.default_rng(0).normal(size=1000), tmp_path / "n.png",
                           bins=30, title="norms", x_label="L2 norm",
                           markers={"p1": -2.3, "p50": 0.0})
    png.save_line_png(np.arange(n), np.exp(-np.arange(n) / 9), tmp_path / "l.png",
                      title="offset", x_label="offset", y_label="mean cosine")
    shapes = {name: mpl_image.imread(tmp_path / name).shape for name in ("h.png", "n.png", "l.png")}
    assert shapes["h.png"][:2] == (720, 864)  # 7.2 x 6.0 inches at 120 dpi
    assert shapes["n.png"][:2] == shapes["l.png"][:2] == (504, 864)
    for name in shapes:
        img = mpl_image.imread(tmp_path / name)
        assert img[..., :3].std() > 0.05  # not a blank canvas
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.png", "l.png", "n.png"]


def test_heatmap_png_with_nan_and_uneven_labels(tmp_path, mpl_image):
    m = sim_matrix(5)
    m[1, 1] = np.nan
    png.save_heatmap_png(m, [0, 1, 2, 4, 8], tmp_path / "h.png", title="t", value_label="v")
    assert mpl_image.imread(tmp_path / "h.png").shape[:2] == (720, 864)


def test_failed_save_leaves_no_file(tmp_path, monkeypatch):
    Figure = pytest.importorskip("matplotlib.figure").Figure

    def broken_savefig(self, fname, **kwargs):
        fname.write(b"\x89PNG partial")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    target = tmp_path / "h.png"
    with pytest.raises(RuntimeError, match="disk on fire"):
        png.save_heatmap_png(np.eye(3), [0, 1, 2], target, title="t", value_label="v")
    assert list(tmp_path.iterdir()) == []
    # an existing file is left exactly as it was
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        png.save_line_png([0, 1], [0, 1], target, title="t", x_label="x", y_label="y")
    assert target.read_bytes() == b"old" and list(tmp_path.iterdir()) == [target]


def test_unwritable_directory_is_an_embscope_error(tmp_path):
    pytest.importorskip("matplotlib")
    with pytest.raises(EmbscopeError, match="does not exist"):
        png.save_line_png([0, 1], [0, 1], tmp_path / "nope" / "l.png", title="t", x_label="x",
                          y_label="y")


def test_missing_matplotlib_gives_install_hint(tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(EmbscopeError) as err:
        png.save_histogram_png(np.arange(5.0), tmp_path / "n.png", bins=3, title="t", x_label="x")
    assert str(err.value) == (
        "Writing a PNG needs matplotlib, which is not installed: pip install 'embscope[plot]'"
    )
    assert list(tmp_path.iterdir()) == []
