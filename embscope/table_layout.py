"""A table of text cells laid out for a terminal width without cutting a value or a column name.

`lay_out` tries, in order:

1. the plain table, when it fits (or when there is no width: `-f table` into a pipe or a file);
2. the widest text column wrapped, when that column holds words (info's values, embed's
   previews) and keeps at least MIN_WRAP cells: cells break between words;
3. the columns split into several narrower tables, each led by the first column (the row's key);
4. the widest text column wrapped even without words to break at (a long token or path folds);
5. stacked: one `column  value` line per cell, a blank line between rows; a line longer than the
   width is left whole for the terminal to wrap.

A title longer than the width is shortened with '…' (a title is a heading, not data). Widths are
terminal cells (`rich.cells.cell_len`: a CJK character takes two).
"""

from __future__ import annotations

from rich.cells import cell_len

GAP = "  "  # between columns
MIN_WRAP = 20  # a wrapped column narrower than this reads badly: split or stack instead

Line = tuple[str, "str | None"]  # (text, style): "italic" the title, "bold" a header


def lay_out(title: str | None, columns: list[str], rows: list[list[str]], right: list[bool],
            width: int | None) -> list[Line]:
    """The lines of the table: `rows` of display-ready cells under `columns`, `right[j]` when
    column j is right-justified (numbers)."""
    lines: list[Line] = [(shorten(title, width), "italic")] if title else []
    widths = natural_widths(columns, rows)
    if width is None or total_width(widths) <= width:
        return lines + _grid(columns, rows, right, widths)
    wrap = _wrap_column(right, widths)
    room = None if wrap is None else width - (total_width(widths) - widths[wrap])
    fits_wrapped = room is not None and room >= min(MIN_WRAP, widths[wrap])
    if fits_wrapped and any(" " in r[wrap] for r in rows):
        return lines + _grid(columns, rows, right, _with(widths, wrap, room), wrap)
    groups = _groups(widths, width)
    if groups is not None:
        for n, group in enumerate(groups):
            lines += [("", None)] * (n > 0) + _grid([columns[j] for j in group], [[r[j] for j in group] for r in rows],
                                                   [right[j] for j in group], [widths[j] for j in group])
        return lines
    if fits_wrapped:
        return lines + _grid(columns, rows, right, _with(widths, wrap, room), wrap)
    return lines + _stacked(columns, rows)


def shorten(text: str, width: int | None) -> str:
    """`text`, or its first width - 1 cells and '…' when it is wider than `width`."""
    if width is None or cell_len(text) <= width:
        return text
    return _fold(text, max(width - 1, 1))[0] + "…"


def wrap(text: str, width: int) -> list[str]:
    """`text` in lines of at most `width` cells, broken between words where it can be and inside
    a word longer than a line; no character is lost but the spaces lines break at."""
    pieces, current = [], None
    for word in text.split(" "):
        joined = word if current is None else f"{current} {word}"
        if cell_len(joined) <= width:
            current = joined
            continue
        if current is not None:
            pieces.append(current)
        while cell_len(word) > width:
            head, word = _fold(word, width)
            pieces.append(head)
        current = word
    return pieces + [current or ""]


def _fold(text: str, width: int) -> tuple[str, str]:
    """(the longest start of `text` within `width` cells, at least one character; the rest)."""
    used = 0
    for i, ch in enumerate(text):
        used += cell_len(ch)
        if used > width and i > 0:
            return text[:i], text[i:]
    return text, ""


def natural_widths(columns: list[str], rows: list[list[str]]) -> list[int]:
    """Each column's width when nothing is wrapped: its widest cell or its name."""
    return [max([cell_len(c)] + [cell_len(r[j]) for r in rows]) for j, c in enumerate(columns)]


def total_width(widths: list[int]) -> int:
    """The width of a table with columns this wide."""
    return sum(widths) + len(GAP) * (len(widths) - 1)


def _with(widths: list[int], j: int, value: int) -> list[int]:
    return widths[:j] + [value] + widths[j + 1:]


def _wrap_column(right: list[bool], widths: list[int]) -> int | None:
    """The widest text (left-justified) column, the one that may wrap; None when all are numbers."""
    text = [j for j in range(len(widths)) if not right[j]]
    return max(text, key=lambda j: widths[j]) if text else None


def _groups(widths: list[int], width: int) -> list[list[int]] | None:
    """Column indices in groups that each fit `width` after the key column 0, or None when one
    column does not fit beside the key."""
    key, groups, current, used = widths[0], [], [], widths[0]
    for j, w in enumerate(widths[1:], 1):
        if key + len(GAP) + w > width:
            return None
        if current and used + len(GAP) + w > width:
            groups.append(current)
            current, used = [], key
        current.append(j)
        used += len(GAP) + w
    return [[0] + g for g in groups + [current]] if len(widths) > 1 else None


def _pad(cell: str, width: int, right: bool) -> str:
    space = " " * (width - cell_len(cell))
    return space + cell if right else cell + space


def _grid(columns, rows, right, widths, wrap_column: int | None = None) -> list[Line]:
    """Header and rows, columns GAP apart; cells of `wrap_column` wrapped onto more lines."""
    def joined(cells):
        return GAP.join(_pad(c, w, r) for c, w, r in zip(cells, widths, right)).rstrip()

    lines: list[Line] = [(joined(columns), "bold")]
    for row in rows:
        if wrap_column is None or cell_len(row[wrap_column]) <= widths[wrap_column]:
            lines.append((joined(row), None))
            continue
        pieces = wrap(row[wrap_column], widths[wrap_column])
        blank = [""] * len(row)
        lines += [(joined(_with(row if n == 0 else blank, wrap_column, piece)), None)
                  for n, piece in enumerate(pieces)]
    return lines


def _stacked(columns, rows) -> list[Line]:
    """One `column  value` line per cell, rows a blank line apart."""
    name_width = max(cell_len(c) for c in columns)
    lines: list[Line] = []
    for n, row in enumerate(rows):
        lines += [("", None)] * (n > 0)
        lines += [(_pad(c, name_width, False) + GAP + v, None) for c, v in zip(columns, row)]
    return lines
