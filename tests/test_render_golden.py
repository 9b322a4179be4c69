"""Golden outputs of the terminal pictures: the exact bytes each chart renders to, per colour mode.

The expected strings were captured from embscope 0.1's single-module renderer before it was split
by chart, so any change in layout, ticks, number formatting, shading or colour codes shows here.
The inputs are closed-form (no random numbers) and small, to keep the goldens readable.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from rich.console import Console
from rich.style import Style

from embscope.render.colors import SHADES
from embscope.render.heatmap import heatmap
from embscope.render.histogram import histogram
from embscope.render.lineplot import line_plot


def rendered(renderable) -> list[str]:
    """The picture as a truecolor terminal shows it: one string per line, escape codes included.
    A colour console, so that "none" pictures prove they carry no style and "256" pictures prove
    they were reduced to the palette by embscope, not by the console."""
    getattr(Style._add, "cache_clear", lambda: None)()  # see tests/test_render.py: render()
    buf = io.StringIO()
    Console(file=buf, width=400, color_system="truecolor", force_terminal=True,
            legacy_windows=False).print(renderable)
    return buf.getvalue().rstrip("\n").split("\n")


def decay(n: int) -> np.ndarray:
    d = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])  # (n, n)
    return np.exp(-d / 3.0) * np.cos(d / 2.0)


def with_nan(a: np.ndarray, *index: int) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    a[index] = np.nan
    return a


WAVE = np.sin(np.arange(200) * 0.37) * 3 + np.arange(200) / 50  # (200,)
MARKERS = {"p1": -2.5, "p50": 0.75, "p99": 4.5}

CASES = {
    # heatmaps: every colour mode; NaN; pooling; labels that are not consecutive; constant; narrow
    "heatmap_nan_truecolor": lambda: heatmap(with_nan(decay(4), 1, 2), labels=np.arange(4),
                                             max_width=20, color="truecolor",
                                             title="t [b]\x1b", value_label="cos"),
    "heatmap_nan_256": lambda: heatmap(with_nan(decay(4), 1, 2), labels=np.arange(4),
                                       max_width=20, color="256", title="t", value_label="cos"),
    "heatmap_nan_none": lambda: heatmap(with_nan(decay(4), 1, 2), labels=np.arange(4),
                                        max_width=20, color="none", title="t [b]\x1b",
                                        value_label="cos"),
    "heatmap_pooled_truecolor": lambda: heatmap(decay(9), labels=np.arange(9), max_width=6,
                                                color="truecolor", title="pooled",
                                                value_label=""),
    "heatmap_pooled_none": lambda: heatmap(decay(9), labels=np.arange(9), max_width=6,
                                           color="none", title="pooled", value_label=""),
    "heatmap_step_labels_none": lambda: heatmap(decay(6), labels=[0, 4, 8, 12, 16, 20],
                                                max_width=30, color="none", title="step 4",
                                                value_label="euclidean distance"),
    "heatmap_constant_truecolor": lambda: heatmap(np.full((2, 2), 0.25), labels=[7, 8],
                                                  max_width=40, color="truecolor", title="c",
                                                  value_label="v"),
    "heatmap_narrow_none": lambda: heatmap(decay(3), labels=[100, 101, 102], max_width=3,
                                           color="none", title="too narrow", value_label="v"),
    # histograms: every colour mode with inline markers; markers in the footer; scientific
    # edges; nothing finite
    "histogram_truecolor": lambda: histogram(np.append(WAVE, [np.nan, np.inf]), bins=6,
                                             max_width=60, color="truecolor", title="norms",
                                             markers=MARKERS),
    "histogram_256": lambda: histogram(WAVE, bins=6, max_width=60, color="256", title="norms",
                                       markers=MARKERS),
    "histogram_none": lambda: histogram(np.append(WAVE, [np.nan, np.inf]), bins=6,
                                        max_width=60, color="none", title="norms",
                                        markers=MARKERS),
    "histogram_footer_markers_none": lambda: histogram(WAVE, bins=4, max_width=30,
                                                       color="none", title="n",
                                                       markers=MARKERS),
    "histogram_scientific_none": lambda: histogram(WAVE * 1e8, bins=3, max_width=50,
                                                   color="none", title="big", markers=None),
    "histogram_all_nan_truecolor": lambda: histogram(np.full(3, np.nan), bins=3, max_width=50,
                                                     color="truecolor", title="x", markers=None),
    # line plots (no colour modes): a NaN break; constant; one point; narrow; fractional x
    "line_nan_break": lambda: line_plot(np.arange(21), with_nan(np.arange(21.0), 10),
                                        max_width=46, height=5, title="mean by offset",
                                        x_label="offset |i - j|", y_label="mean cosine"),
    "line_decay": lambda: line_plot(np.arange(31), np.exp(-np.arange(31) / 8.0), max_width=40,
                                    height=5, title="", x_label="offset", y_label=""),
    "line_constant": lambda: line_plot(np.arange(10), np.full(10, 0.5), max_width=30,
                                       height=3, title="", x_label="x", y_label=""),
    "line_one_point": lambda: line_plot([3], [2.0], max_width=20, height=2, title="one",
                                        x_label="", y_label="y"),
    "line_narrow": lambda: line_plot(np.arange(5), np.arange(5.0), max_width=4, height=2,
                                     title="narrow", x_label="a long x label", y_label="y"),
    "line_fractional_x": lambda: line_plot(np.linspace(0, 1.5e-3, 16), np.cos(np.arange(16.0)),
                                           max_width=50, height=4, title="t", x_label="x",
                                           y_label="y"),
}

GOLDEN: dict[str, list[str]] = {
    'heatmap_constant_truecolor': [
        '\x1b[1mc\x1b[0m',
        '7 \x1b[38;2;32;144;140;48;2;32;144;140m▀\x1b[0m'
         '\x1b[38;2;32;144;140;48;2;32;144;140m▀\x1b[0m',
        '  ┴─',
        '  7',
        '0.250 \x1b[38;2;68;1;84m█\x1b[0m\x1b[38;2;71;17;99m█\x1b[0m\x1b[38;2;72;32;113m█'
         '\x1b[0m\x1b[38;2;71;46;124m█\x1b[0m\x1b[38;2;68;60;132m█\x1b[0m'
         '\x1b[38;2;63;72;136m█\x1b[0m\x1b[38;2;58;85;140m█\x1b[0m\x1b[38;2;52;96;141m█'
         '\x1b[0m\x1b[38;2;47;107;142m█\x1b[0m\x1b[38;2;43;118;142m█\x1b[0m'
         '\x1b[38;2;39;128;142m█\x1b[0m\x1b[38;2;35;139;141m█\x1b[0m\x1b[38;2;31;149;139m█'
         '\x1b[0m\x1b[38;2;31;160;135m█\x1b[0m\x1b[38;2;36;170;131m█\x1b[0m'
         '\x1b[38;2;49;181;123m█\x1b[0m\x1b[38;2;66;190;113m█\x1b[0m\x1b[38;2;87;198;102m█'
         '\x1b[0m\x1b[38;2;113;207;87m█\x1b[0m\x1b[38;2;139;213;70m█\x1b[0m'
         '\x1b[38;2;167;219;53m█\x1b[0m\x1b[38;2;198;224;34m█\x1b[0m\x1b[38;2;227;228;26m█'
         '\x1b[0m\x1b[38;2;253;231;37m█\x1b[0m 0.250  v',
    ],
    'heatmap_nan_256': [
        '\x1b[1mt\x1b[0m',
        '0 \x1b[38;5;220;48;5;36m▀\x1b[0m\x1b[38;5;36;48;5;220m▀\x1b[0m'
         '\x1b[38;5;60;48;5;160m▀\x1b[0m\x1b[38;5;53;48;5;60m▀\x1b[0m',
        '  \x1b[38;5;60;48;5;53m▀\x1b[0m\x1b[38;5;36;48;5;60m▀\x1b[0m\x1b[38;5;220;48;5;36m'
         '▀\x1b[0m\x1b[38;5;36;48;5;220m▀\x1b[0m',
        '  ┴───',
        '  0',
        '0.026 \x1b[38;5;53m█\x1b[0m\x1b[38;5;60m█\x1b[0m\x1b[38;5;60m█\x1b[0m\x1b[38;5;30m'
         '█\x1b[0m\x1b[38;5;36m█\x1b[0m\x1b[38;5;71m█\x1b[0m\x1b[38;5;149m█\x1b[0m'
         '\x1b[38;5;220m█\x1b[0m 1.00…',
        '\x1b[2mred = NaN/inf\x1b[0m',
    ],
    'heatmap_nan_none': [
        't [b]\\x1b',
        '0 █▓░ ',
        '  ▓█?░',
        '  ░▓█▓',
        '   ░▓█',
        '  ┴───',
        '  0',
        '0.026 [ ░▒▓█] 1.000…',
        '? = NaN/inf',
    ],
    'heatmap_nan_truecolor': [
        '\x1b[1mt [b]\\x1b\x1b[0m',
        '0 \x1b[38;2;253;231;37;48;2;39;172;129m▀\x1b[0m'
         '\x1b[38;2;39;172;129;48;2;253;231;37m▀\x1b[0m\x1b[38;2;58;84;140;48;2;228;26;28m▀'
         '\x1b[0m\x1b[38;2;68;1;84;48;2;58;84;140m▀\x1b[0m',
        '  \x1b[38;2;58;84;140;48;2;68;1;84m▀\x1b[0m\x1b[38;2;39;172;129;48;2;58;84;140m▀'
         '\x1b[0m\x1b[38;2;253;231;37;48;2;39;172;129m▀\x1b[0m'
         '\x1b[38;2;39;172;129;48;2;253;231;37m▀\x1b[0m',
        '  ┴───',
        '  0',
        '0.026 \x1b[38;2;68;1;84m█\x1b[0m\x1b[38;2;70;50;127m█\x1b[0m\x1b[38;2;55;92;141m█'
         '\x1b[0m\x1b[38;2;39;127;142m█\x1b[0m\x1b[38;2;31;161;135m█\x1b[0m'
         '\x1b[38;2;74;194;109m█\x1b[0m\x1b[38;2;159;217;58m█\x1b[0m\x1b[38;2;253;231;37m█'
         '\x1b[0m 1.00…',
        '\x1b[2mred = NaN/inf\x1b[0m',
    ],
    'heatmap_narrow_none': [
        'to…',
        '█▒ ',
        '▒█▒',
        ' ▒█',
        '┴──',
        '100',
        '0.…',
    ],
    'heatmap_pooled_none': [
        'pooled',
        '0 █░ ',
        '  ░█░',
        '   ░█',
        '  ┴──',
        '  0',
        '-0.11…',
        'each …',
    ],
    'heatmap_pooled_truecolor': [
        '\x1b[1mpooled\x1b[0m',
        '0 \x1b[38;2;253;231;37;48;2;56;88;140m▀\x1b[0m\x1b[38;2;56;88;140;48;2;253;231;37m'
         '▀\x1b[0m\x1b[38;2;68;1;84;48;2;56;88;140m▀\x1b[0m',
        '  \x1b[38;2;68;1;84m▀\x1b[0m\x1b[38;2;56;88;140m▀\x1b[0m\x1b[38;2;253;231;37m▀'
         '\x1b[0m',
        '  ┴──',
        '  0',
        '-0.11…',
        '\x1b[2meach …\x1b[0m',
    ],
    'heatmap_step_labels_none': [
        'step 4',
        ' 0 █▓░   ',
        '   ▓█▓░  ',
        '   ░▓█▓░ ',
        '    ░▓█▓░',
        '     ░▓█▓',
        '      ░▓█',
        '   ┴─────',
        '   0',
        '-0.15 [ ░▒▓█] 1.00  euclidean…',
    ],
    'histogram_256': [
        '\x1b[1mnorms\x1b[0m',
        '-2.7 – -1.1 │\x1b[38;5;30m███████████████▋\x1b[0m                │ 21\x1b[1m ◂ p1='
         '-2.5\x1b[0m',
        '-1.1 –  0.5 │\x1b[38;5;30m█████████████████████████████\x1b[0m   │ 39',
        ' 0.5 –  2.0 │\x1b[38;5;30m█████████████████████████████▊\x1b[0m  │ 40\x1b[1m ◂ p50'
         '=0.75\x1b[0m',
        ' 2.0 –  3.6 │\x1b[38;5;30m████████████████████████████████\x1b[0m│ 43',
        ' 3.6 –  5.2 │\x1b[38;5;30m██████████████████████████▊\x1b[0m     │ 36\x1b[1m ◂ p99'
         '=4.5\x1b[0m',
        ' 5.2 –  6.8 │\x1b[38;5;30m███████████████▋\x1b[0m                │ 21',
        '\x1b[2mn = 200\x1b[0m',
    ],
    'histogram_all_nan_truecolor': [
        '\x1b[1mx\x1b[0m',
        'no finite values (3 non-finite)',
    ],
    'histogram_footer_markers_none': [
        'n',
        '-2.7 – -0.3 │███████▋     │ 37',
        '-0.3 –  2.0 │█████████████│ 63',
        ' 2.0 –  4.4 │████████████▊│ 62',
        ' 4.4 –  6.8 │███████▉     │ 38',
        'n = 200; p1=-2.5, p50=0.75, p…',
    ],
    'histogram_none': [
        'norms',
        '-2.7 – -1.1 │███████████████▋                │ 21 ◂ p1=-2.5',
        '-1.1 –  0.5 │█████████████████████████████   │ 39',
        ' 0.5 –  2.0 │█████████████████████████████▊  │ 40 ◂ p50=0.75',
        ' 2.0 –  3.6 │████████████████████████████████│ 43',
        ' 3.6 –  5.2 │██████████████████████████▊     │ 36 ◂ p99=4.5',
        ' 5.2 –  6.8 │███████████████▋                │ 21',
        'n = 200 (2 non-finite left out)',
    ],
    'histogram_scientific_none': [
        'big',
        '-2.726e+08 –  4.561e+07 │███████████████▏     │ 60',
        ' 4.561e+07 –  3.638e+08 │█████████████████████│ 83',
        ' 3.638e+08 –  6.820e+08 │██████████████▍      │ 57',
        'n = 200',
    ],
    'histogram_truecolor': [
        '\x1b[1mnorms\x1b[0m',
        '-2.7 – -1.1 │\x1b[38;2;37;132;142m███████████████▋\x1b[0m                │ 21'
         '\x1b[1m ◂ p1=-2.5\x1b[0m',
        '-1.1 –  0.5 │\x1b[38;2;37;132;142m█████████████████████████████\x1b[0m   │ 39',
        ' 0.5 –  2.0 │\x1b[38;2;37;132;142m█████████████████████████████▊\x1b[0m  │ 40'
         '\x1b[1m ◂ p50=0.75\x1b[0m',
        ' 2.0 –  3.6 │\x1b[38;2;37;132;142m████████████████████████████████\x1b[0m│ 43',
        ' 3.6 –  5.2 │\x1b[38;2;37;132;142m██████████████████████████▊\x1b[0m     │ 36'
         '\x1b[1m ◂ p99=4.5\x1b[0m',
        ' 5.2 –  6.8 │\x1b[38;2;37;132;142m███████████████▋\x1b[0m                │ 21',
        '\x1b[2mn = 200 (2 non-finite left out)\x1b[0m',
    ],
    'line_constant': [
        '',
        '     │                        ',
        '0.500┤⠒⠒⠒⠒⠒⠒⠒⠒⠒⠒⠒⠒⠒⠒⠒⠒⠒⠒⠒⠒⠒⠒⠒⠒',
        '     │                        ',
        '     └┬────────────┬──────────',
        '      0            5',
        '                             x',
    ],
    'line_decay': [
        '',
        '1.000┤⠑⢄                                ',
        '     │  ⠑⠢⡀                             ',
        '0.512┤    ⠈⠒⠤⢄⡀                         ',
        '     │        ⠈⠑⠢⠤⣀⣀                    ',
        '0.024┤              ⠉⠉⠉⠑⠒⠒⠢⠤⠤⠤⠤⠤⠤⢄⣀⣀⣀⣀⣀⣀',
        '     └┬──────────┬──────────┬──────────┬',
        '      0         10         20         30',
        '                                  offset',
    ],
    'line_fractional_x': [
        '\x1b[1mt\x1b[0m',
        'y',
        ' 1.00┤⠑⠢⢄⡀           ⢀⠤⠊⠑⠒⠤⡀            ⡠⠒⠒⠒⢄     ',
        '     │   ⠈⢆        ⢀⠔⠁     ⠑⢄         ⢀⠜     ⠑⢄   ',
        '     │     ⠱⡀     ⡠⠃        ⠈⠢⡀     ⢀⠔⠁        ⠑⢄ ',
        '-0.99┤      ⠈⠒⢄⠤⠒⠉            ⠈⠑⠤⠤⠤⠔⠁            ⠑',
        '     └┬─────────────┬──────────────┬─────────────┬',
        '      0.0000     0.0005         0.0010      0.0015',
        '                                                 x',
    ],
    'line_nan_break': [
        '\x1b[1mmean by offset\x1b[0m',
        'mean cosine',
        '20.0┤                                 ⢀⣀⡠⠤⠔⠒⠊⠉',
        '    │                         ⢀⣀⡠⠤⠔⠒⠊⠉⠁       ',
        '10.0┤               ⣀⣀⠤⠄   ⠐⠊⠉⠁               ',
        '    │       ⣀⣀⠤⠤⠒⠒⠉⠉                          ',
        ' 0.0┤⣀⠤⠤⠒⠒⠉⠉                                  ',
        '    └┬─────────┬─────────┬─────────┬─────────┬',
        '     0         5        10        15        20',
        '                                offset |i - j|',
    ],
    'line_narrow': [
        '\x1b[1mnar…\x1b[0m',
        'y',
        '  ⢠⠊',
        '⡠⠊⠁ ',
        '┬───',
        '0',
        'a l…',
    ],
    'line_one_point': [
        '\x1b[1mone\x1b[0m',
        'y',
        '2.00┤       ⡀       ',
        '    │               ',
        '    └───────┬───────',
        '            3',
    ],
}



@pytest.mark.parametrize("name", sorted(CASES))
def test_rendered_output_is_unchanged(name):
    assert rendered(CASES[name]()) == GOLDEN[name]


# Text in pictures is escaped as display.sanitize specifies for every message: control, format,
# surrogate, private-use (Co) and unassigned (Cn) characters and line/paragraph separators as
# \xNN / \uNNNN / \UNNNNNNNN; backslashes kept.
ODD = "a\x1b\u200b\ue000\U000f0000\u0378\u2028\\z"
ODD_SHOWN = "a\\x1b\\u200b\\ue000\\U000f0000\\u0378\\u2028\\z"


def test_picture_text_is_escaped_like_every_message():
    lines = rendered(heatmap(np.eye(2), labels=[0, 1], max_width=80, color="none", title=ODD,
                             value_label=ODD))
    assert lines[0] == ODD_SHOWN and lines[-1] == f"0.00 [{SHADES}] 1.00  {ODD_SHOWN}"
    lines = rendered(histogram(np.arange(4.0), bins=2, max_width=80, color="none", title=ODD,
                               markers={ODD: 0.5}))
    assert lines[0] == ODD_SHOWN and lines[1].endswith(f" ◂ {ODD_SHOWN}=0.5")
    lines = rendered(line_plot([0, 1], [0, 1], max_width=80, height=2, title=ODD, x_label=ODD,
                               y_label=ODD))
    assert lines[0] == f"\x1b[1m{ODD_SHOWN}\x1b[0m" and lines[1] == ODD_SHOWN
    assert lines[-1] == ODD_SHOWN.rjust(80)
