"""Colours of the terminal pictures: the colour modes, viridis, and the shade ramp without colour.

`color` is one of:
  "truecolor"  24-bit colours (a 256-colour Console downgrades them itself);
  "256"        colours already reduced to the xterm 256-colour palette;
  "none"       no styles at all: shade characters / plain text, for NO_COLOR and dumb terminals.
"""

from __future__ import annotations

import math

import numpy as np
from rich.color import Color, ColorSystem
from rich.style import Style

RGB = tuple[int, int, int]

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


def viridis(t: float) -> RGB:
    """RGB of viridis at t in [0, 1] (clipped), by linear interpolation of the anchor table."""
    t = min(1.0, max(0.0, float(t)))
    x = t * (len(_VIRIDIS) - 1)
    i = min(int(x), len(_VIRIDIS) - 2)
    f = x - i
    rgb = _VIRIDIS[i] * (1.0 - f) + _VIRIDIS[i + 1] * f  # (3,)
    return (int(round(rgb[0])), int(round(rgb[1])), int(round(rgb[2])))


def cell_rgb(t: float, cache: dict[float, RGB]) -> RGB:
    """The colour of a cell whose value is t in [0, 1]: viridis of t rounded to 4 decimals
    (memoised in `cache`: a picture has a few thousand cells but far fewer colours), NAN_RGB for
    NaN/inf."""
    if not math.isfinite(t):
        return NAN_RGB
    key = round(t, 4)
    if key not in cache:
        cache[key] = viridis(key)
    return cache[key]


def shade(t: float) -> str:
    """The "none" mode character of a cell whose value is t in [0, 1] ('?' for NaN/inf)."""
    if not math.isfinite(t):
        return NAN_SHADE
    return SHADES[min(len(SHADES) - 1, int(t * len(SHADES)))]


def check_color(color: str) -> None:
    if color not in COLOR_MODES:
        raise ValueError(f"color must be one of {COLOR_MODES}, not {color!r}")


def _rich_color(rgb: RGB, color: str) -> Color | None:
    if color == "none":
        return None
    c = Color.from_rgb(*rgb)
    if color == "256":
        c = c.downgrade(ColorSystem.EIGHT_BIT)
    return c


def style(color: str, fg: RGB | None = None, bg: RGB | None = None,
          bold: bool = False) -> Style | None:
    """A Rich style in colour mode `color` (None in "none" mode: no styles at all)."""
    if color == "none":
        return None
    return Style(
        color=_rich_color(fg, color) if fg is not None else None,
        bgcolor=_rich_color(bg, color) if bg is not None else None,
        bold=bold or None,
    )
