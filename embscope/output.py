"""Data on stdout, one writer class per format: a Rich table for people, TSV / CSV / JSON / JSONL
for programs.

The format is decided once per command (`resolve_format`: `-f` when given, else `table` on a
terminal and `tsv` elsewhere) and `writer_for` makes its writer, which every command uses for
everything it prints as data. A writer takes tables of records (`start(columns)`, rows,
`close()`); the JSON formats also take documents (`document`). TSV, CSV and JSONL stream; a
table and a JSON array need all their rows first. Text is escaped by `embscope.display`.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from embscope.display import json_safe, sanitize, visible_spaces
from embscope.errors import UsageError

FORMATS = ("table", "tsv", "csv", "json", "jsonl")


def resolve_format(fmt: str | None, stdout_isatty: bool) -> str:
    """`-f FMT` checked, or the default: a table on a terminal, TSV in a pipe or a file."""
    if fmt is None:
        return "table" if stdout_isatty else "tsv"
    if fmt not in FORMATS:
        raise UsageError(f"unknown format '{fmt}' (choose from {', '.join(FORMATS)})")
    return fmt


def text_value(v: Any) -> str:
    """A cell of a table, TSV or CSV row: floats to 6 significant digits, None as ''."""
    kind = type(v)
    if kind is str:
        return v
    if kind is int:
        return str(v)
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        return f"{v:.6g}"
    if v is None:
        return ""
    return str(v)


def text_column(values) -> list[str]:
    """`text_value` of every cell of a column (a numpy array or a list), column-wise: the fast
    path of big outputs (one format call per cell, no per-cell type dispatch for arrays)."""
    if hasattr(values, "dtype"):
        if values.dtype.kind in "iu":
            return list(map(str, values.tolist()))
        if values.dtype.kind == "f":
            return [format(v, ".6g") for v in values.tolist()]  # nan, inf, -inf as str() gives them
        values = values.tolist()
    if all(type(v) is str for v in values):
        return values if isinstance(values, list) else list(values)
    return list(map(text_value, values))


def json_column(values) -> list[str]:
    """Each cell of a column as the JSON text `json_text(json_value(v))` gives it."""
    if hasattr(values, "dtype") and values.dtype.kind in "iu":
        return list(map(str, values.tolist()))
    if hasattr(values, "dtype") and values.dtype.kind == "f":
        return [repr(v) if math.isfinite(v) else "null" for v in values.tolist()]
    values = values.tolist() if hasattr(values, "dtype") else values
    return [json_text(json_value(v)) for v in values]


def json_text(obj: Any, **kwargs) -> str:
    """json.dumps, readable (ensure_ascii off) yet safe for a terminal (`display.json_safe`)."""
    return json_safe(json.dumps(obj, ensure_ascii=False, **kwargs))


def json_value(v: Any) -> Any:
    """A record's value for JSON: NaN and Inf become null (JSON has neither)."""
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    return v


def json_floats(values) -> list:
    """A (nested) float array as lists for JSON: NaN and Inf become null."""
    import numpy as np

    array = np.asarray(values, dtype=float)
    return np.where(np.isfinite(array), array, None).tolist()


def plain(obj: Any) -> Any:
    """A document for json.dumps: numpy arrays as lists (float arrays through `json_floats`),
    tuples as lists, NaN and Inf as null."""
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if hasattr(obj, "dtype"):  # a numpy array or scalar
        return json_floats(obj) if obj.dtype.kind == "f" else obj.tolist()
    return json_value(obj)


class Writer:
    """Records in one format to one stream. `start(columns, title)` begins a table of records;
    `write` (a dict), `write_values` (one row in column order) and `write_rows` (many) add
    to it; `close()` finishes it (a command that prints several tables starts the next one)."""

    name = ""
    takes_documents = False  # json, jsonl: `document` writes JSON documents

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.columns: list[str] = []
        self.title: str | None = None

    def start(self, columns: Iterable[str], title: str | None = None) -> Writer:
        self.columns, self.title = list(columns), title
        self._begin()
        return self

    def _begin(self) -> None:
        pass

    def write(self, row: dict) -> None:
        self.write_values([row.get(c) for c in self.columns])

    def write_values(self, values) -> None:
        raise NotImplementedError

    def write_rows(self, rows) -> None:
        for r in rows:
            self.write_values(r)

    def write_columns(self, columns) -> None:
        """Rows given as columns in column order (numpy arrays or lists of equal length): the
        same output as `write_rows(zip(*columns))`, faster where the format allows."""
        self.write_rows(zip(*[c.tolist() if hasattr(c, "tolist") else c for c in columns]))

    def close(self) -> None:
        self.stream.flush()

    def document(self, whole: Any, parts: Iterable[Any]) -> None:
        """The output as JSON documents: `whole` as one (json), or each of `parts` on a line (jsonl)."""
        raise TypeError(f"{self.name} output holds records, not documents")


class TsvWriter(Writer):
    name = "tsv"

    def _begin(self) -> None:
        self.stream.write("\t".join(self.columns) + "\n")

    def write_values(self, values) -> None:
        self.stream.write("\t".join(map(text_value, values)) + "\n")

    def write_rows(self, rows) -> None:
        """Many rows in one write: the fast path for big outputs (`neighbors --all`)."""
        self.stream.write("".join(["\t".join(map(text_value, r)) + "\n" for r in rows]))

    def write_columns(self, columns) -> None:
        cells = [text_column(c) for c in columns]
        if cells and cells[0]:
            self.stream.write("\n".join(map("\t".join, zip(*cells))) + "\n")


class CsvWriter(Writer):
    name = "csv"

    def _begin(self) -> None:
        self._csv = csv.writer(self.stream, lineterminator="\n")
        self._csv.writerow(self.columns)

    def write_values(self, values) -> None:
        self._csv.writerow(list(map(text_value, values)))

    def write_columns(self, columns) -> None:
        self._csv.writerows(zip(*[text_column(c) for c in columns]))


class JsonlWriter(Writer):
    name = "jsonl"
    takes_documents = True

    def write_values(self, values) -> None:
        self.stream.write(json_text({c: json_value(v) for c, v in zip(self.columns, values)}) + "\n")

    def write_columns(self, columns) -> None:
        keys = [json_text(c).replace("%", "%%") for c in self.columns]
        template = "{" + ", ".join(f"{key}: %s" for key in keys) + "}\n"
        cells = [json_column(c) for c in columns]
        if cells and cells[0]:
            self.stream.write("".join([template % row for row in zip(*cells)]))

    def document(self, whole: Any, parts: Iterable[Any]) -> None:
        for part in parts:
            self.stream.write(json_text(plain(part)) + "\n")
        self.stream.flush()


class JsonWriter(Writer):
    """One JSON array of the records, written when the table closes (indent 1: a record a line
    or so, for people who open the file)."""

    name = "json"
    takes_documents = True

    def _begin(self) -> None:
        self._rows: list[list] = []

    def write_values(self, values) -> None:
        self._rows.append(list(values))

    def close(self) -> None:
        records = [{c: json_value(v) for c, v in zip(self.columns, row)} for row in self._rows]
        self.stream.write(json_text(records, indent=1) + "\n")
        self.stream.flush()

    def document(self, whole: Any, parts: Iterable[Any]) -> None:
        self.stream.write(json_text(plain(whole)) + "\n")
        self.stream.flush()


class TableWriter(Writer):
    """A table for people, printed when it closes: numbers right-aligned, token columns with
    visible spaces, the title as plain text (it may hold the user's query, never Rich markup).
    It fits the width `width()` gives (None: any width) without cutting a value or a column
    name (`embscope.table_layout`)."""

    name = "table"
    TOKEN_COLUMNS = ("token", "neighbor", "in_other_tokens")

    def __init__(self, stream: TextIO, console: Callable[[], Any], width: Callable[[], int | None] | None = None):
        super().__init__(stream)
        self._console = console
        self._width = width or (lambda: self._console().width)

    def _begin(self) -> None:
        self._rows: list[list] = []

    def write_values(self, values) -> None:
        self._rows.append(list(values))

    def close(self) -> None:
        from rich.text import Text

        from embscope.table_layout import lay_out

        right = [any(isinstance(row[j], (int, float)) for row in self._rows[:5]) for j in range(len(self.columns))]
        cells = [[visible_spaces(s) if c in self.TOKEN_COLUMNS else s for c, s in zip(self.columns, map(text_value, row))]
                 for row in self._rows]
        lines = lay_out(sanitize(self.title) if self.title else None, self.columns, cells, right, self._width())
        text = Text("\n").join(Text(line, style or "") for line, style in lines)
        self._console().print(text, soft_wrap=True)  # soft wrap: the console never crops a line
        self.stream.flush()


WRITERS = {w.name: w for w in (TableWriter, TsvWriter, CsvWriter, JsonWriter, JsonlWriter)}


def writer_for(fmt: str, stream: TextIO, console: Callable[[], Any],
               width: Callable[[], int | None] | None = None) -> Writer:
    """The writer of a resolved format; `console` gives the Rich console tables print to, `width`
    the width they fit (default: the console's; None from it: any width)."""
    if fmt == "table":
        return TableWriter(stream, console, width)
    return WRITERS[fmt](stream)
