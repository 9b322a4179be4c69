"""Lines of a terminal picture: one `rich.text.Text` per line, cropped to the picture's width.

Text that comes from the user or a file (titles, labels, marker names) is escaped with
`embscope.display.sanitize`, the one escaping every message goes through.
"""

from __future__ import annotations

from rich.style import Style
from rich.text import Text

from embscope.display import sanitize


def check_at_least_one(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name} must be at least 1")


def line(text: str = "", style: Style | str | None = None) -> Text:
    return Text(text, style=style or "", no_wrap=True, overflow="crop", end="\n")


def fit(t: Text, max_width: int) -> Text:
    """Crop a line to max_width cells (ellipsis when something is cut)."""
    if t.cell_len > max_width:
        t.truncate(max_width, overflow="ellipsis")
    return t


def fit_line(text: str, max_width: int, style: Style | str | None = None) -> Text:
    return fit(line(text, style), max_width)


def title_line(title: str, max_width: int, color: str) -> Text:
    """The title, bold unless color is "none"."""
    return fit_line(sanitize(title), max_width, "bold" if color != "none" else None)


def note_line(text: str, max_width: int, color: str) -> Text:
    """A footnote under a picture, dim unless color is "none"."""
    return fit_line(text, max_width, "dim" if color != "none" else None)
