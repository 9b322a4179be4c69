"""Writing records to stdout: a Rich table for people, TSV / CSV / JSON / JSONL for programs.

The format is decided once: `-f` when given, else `table` when stdout is a terminal and `tsv`
when it is not. Writers stream (except `table` and `json`, which need all rows).
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import tempfile
from typing import IO, Any

from embscope.display import visible_spaces
from embscope.errors import UsageError

FORMATS = ("table", "tsv", "csv", "json", "jsonl")


def resolve_format(fmt: str | None, stream: IO | None = None) -> str:
    if fmt is None:
        stream = stream or sys.stdout
        return "table" if stream.isatty() else "tsv"
    if fmt not in FORMATS:
        raise UsageError(f"unknown format '{fmt}' (choose from {', '.join(FORMATS)})")
    return fmt


def text_value(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return str(v)
        return f"{v:.6g}"
    if v is None:
        return ""
    return str(v)


def json_value(v: Any) -> Any:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None  # JSON has no NaN/Infinity
    return v


def stdout_console(**kwargs):
    from rich.console import Console

    return Console(file=sys.stdout, highlight=False, soft_wrap=False, **kwargs)


def stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


class RecordWriter:
    """Rows of {column: value}. Token columns (`token_columns`) get visible spaces in tables."""

    def __init__(self, fmt: str, columns: list[str], *, title: str | None = None,
                 token_columns: tuple[str, ...] = ("token",), stream: IO | None = None):
        self.fmt, self.columns, self.title = fmt, columns, title
        self.token_columns = token_columns
        self.stream = stream or sys.stdout
        self._rows: list[dict] = []
        self._csv = None
        if fmt == "tsv":
            self.stream.write("\t".join(columns) + "\n")
        elif fmt == "csv":
            self._csv = csv.writer(self.stream, lineterminator="\n")
            self._csv.writerow(columns)

    def write(self, row: dict) -> None:
        if self.fmt == "tsv":
            self.stream.write("\t".join(text_value(row.get(c)) for c in self.columns) + "\n")
        elif self.fmt == "csv":
            self._csv.writerow([text_value(row.get(c)) for c in self.columns])
        elif self.fmt == "jsonl":
            self.stream.write(json.dumps({c: json_value(row.get(c)) for c in self.columns},
                                         ensure_ascii=False) + "\n")
        else:
            self._rows.append(row)

    def close(self) -> None:
        if self.fmt == "json":
            json.dump([{c: json_value(r.get(c)) for c in self.columns} for r in self._rows],
                      self.stream, ensure_ascii=False, indent=1)
            self.stream.write("\n")
        elif self.fmt == "table":
            self._table()
        self.stream.flush()

    def _table(self) -> None:
        from rich.table import Table
        from rich.text import Text

        from embscope.display import sanitize

        # The title holds the user's query: plain text, never Rich markup ("[/x]" would raise).
        title = Text(sanitize(self.title)) if self.title else None
        table = Table(title=title, title_justify="left", box=None, pad_edge=False,
                      header_style="bold")
        for c in self.columns:
            numeric = any(isinstance(r.get(c), (int, float)) for r in self._rows[:5])
            table.add_column(c, justify="right" if numeric else "left", no_wrap=True, min_width=len(c))
        for r in self._rows:
            cells = []
            for c in self.columns:
                s = text_value(r.get(c))
                cells.append(Text(visible_spaces(s) if c in self.token_columns else s))
            table.add_row(*cells)
        stdout_console().print(table)


def atomic_write(path: str, write_bytes) -> None:
    """Call write_bytes(file) on a temporary file beside `path`, then rename it onto `path`:
    readers see the whole file or none of it."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".embscope-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write_bytes(f)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
