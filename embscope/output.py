"""Writing records to stdout: a Rich table for people, TSV / CSV / JSON / JSONL for programs.

The format is decided once: `-f` when given, else `table` when stdout is a terminal and `tsv`
when it is not. Writers stream (except `table` and `json`, which need all rows).
"""

from __future__ import annotations

import csv
import errno
import json
import math
import os
import re
import shutil
import sys
import tempfile
import unicodedata
from typing import Any

from embscope.display import visible_spaces
from embscope.errors import UsageError

FORMATS = ("table", "tsv", "csv", "json", "jsonl")


def resolve_format(fmt: str | None) -> str:
    if fmt is None:
        return "table" if sys.stdout.isatty() else "tsv"
    if fmt not in FORMATS:
        raise UsageError(f"unknown format '{fmt}' (choose from {', '.join(FORMATS)})")
    return fmt


def text_value(v: Any) -> str:
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


_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x7e\n]")  # "\n": json.dumps' own indentation


def _json_char(m: re.Match) -> str:
    ch = m.group()
    if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
        return ch
    cp = ord(ch)
    if cp > 0xFFFF:  # JSON spells these as a surrogate pair
        cp -= 0x10000
        return f"\\u{0xD800 + (cp >> 10):04x}\\u{0xDC00 + (cp & 0x3FF):04x}"
    return f"\\u{cp:04x}"


def json_text(obj: Any, **kwargs) -> str:
    """json.dumps, readable (ensure_ascii off) yet safe for a terminal: DEL, C1 controls, bidi and
    zero-width marks and line separators inside strings are written as \\uNNNN escapes, which
    parse back to the very same strings."""
    return _NOT_PRINTABLE_ASCII.sub(_json_char, json.dumps(obj, ensure_ascii=False, **kwargs))


def json_floats(values) -> list:
    """A (nested) float array as lists for JSON: NaN and Inf become null (JSON has neither)."""
    import numpy as np

    array = np.asarray(values, dtype=float)
    return np.where(np.isfinite(array), array, None).tolist()


def json_value(v: Any) -> Any:
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None  # JSON has no NaN/Infinity
    return v


def stdout_console(**kwargs):
    from rich.console import Console

    return Console(file=sys.stdout, highlight=False, soft_wrap=False, **kwargs)


def stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)  # one message, one line


class RecordWriter:
    """Rows of {column: value} to stdout. Token columns get visible spaces in tables."""

    TOKEN_COLUMNS = ("token", "neighbor")

    def __init__(self, fmt: str, columns: list[str], *, title: str | None = None):
        self.fmt, self.columns, self.title = fmt, columns, title
        self.stream = sys.stdout
        self._rows: list[dict] = []
        self._csv = None
        if fmt == "tsv":
            self.stream.write("\t".join(columns) + "\n")
        elif fmt == "csv":
            self._csv = csv.writer(self.stream, lineterminator="\n")
            self._csv.writerow(columns)

    def write(self, row: dict) -> None:
        if self.fmt in ("table", "json"):
            self._rows.append(row)
        else:
            self.write_values([row.get(c) for c in self.columns])

    def write_rows(self, rows) -> None:
        """Many rows of values in column order; TSV ones go out in one write."""
        if self.fmt == "tsv":
            self.stream.write("".join(["\t".join(map(text_value, r)) + "\n" for r in rows]))
        else:
            for r in rows:
                self.write_values(r)

    def write_values(self, values) -> None:
        """One row given as values in column order (no dict: the fast path for big outputs)."""
        if self.fmt == "tsv":
            self.stream.write("\t".join(map(text_value, values)) + "\n")
        elif self.fmt == "csv":
            self._csv.writerow(list(map(text_value, values)))
        elif self.fmt == "jsonl":
            self.stream.write(json_text({c: json_value(v) for c, v in zip(self.columns, values)}) + "\n")
        else:
            self._rows.append(dict(zip(self.columns, values)))

    def close(self) -> None:
        if self.fmt == "json":
            self.stream.write(json_text([{c: json_value(r.get(c)) for c in self.columns} for r in self._rows],
                                        indent=1))
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
                cells.append(Text(visible_spaces(s) if c in self.TOKEN_COLUMNS else s))
            table.add_row(*cells)
        stdout_console().print(table)


def _usual_mode(path: str) -> None:
    """mkstemp makes 0600 files; give ours the mode any new file gets (0666 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def check_writable(path: str) -> None:
    """Fail now, before any output, if `path` cannot be written as atomic_write writes it: a
    directory, a missing directory, or a directory where no file can be made (read-only, no
    permission). A nameless file is made there and closed (on Linux it never gets a name)."""
    from embscope.errors import EmbscopeError

    directory = _check_target(path)
    try:
        tempfile.TemporaryFile(dir=directory, prefix=".embscope-").close()
    except OSError as e:
        raise EmbscopeError(f"Cannot write {path}: {e.strerror or e}") from None


def _check_target(path: str) -> str:
    """The directory `path` goes in, after the checks atomic_write makes first."""
    from embscope.errors import EmbscopeError

    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise EmbscopeError(f"Cannot write {path}: it is a directory")
    if not os.path.isdir(directory):
        raise EmbscopeError(f"Cannot write {path}: directory {os.path.dirname(path) or '.'} does not exist")
    return directory


def atomic_write(path: str, write_bytes) -> None:
    """Call write_bytes(file) on a file with no name yet, in `path`'s directory, then give it
    `path`: readers see the whole file or none of it, and nothing is left behind on failure.

    On Linux the file is opened with O_TMPFILE: until it is linked it has no name, so even a
    process killed mid-write (SIGKILL, SIGXFSZ at a file size limit) leaves no temporary file.
    It is then linked under a temporary name and renamed onto `path` (rename replaces
    atomically). Elsewhere a named temporary file is used, removed on any exception."""
    from embscope.errors import EmbscopeError

    def fail(why: str) -> EmbscopeError:
        return EmbscopeError(f"Cannot write {path}: {why}")

    directory = _check_target(path)
    tmp = None
    try:
        fd = _anonymous_file(directory)
        if fd is None:
            fd, tmp = tempfile.mkstemp(prefix=".embscope-", dir=directory)
            _usual_mode(tmp)
        with os.fdopen(fd, "w+b") as f:
            write_bytes(f)
            f.flush()
            if tmp is None:  # give the finished file a (temporary) name
                tmp = _name_anonymous(f, directory)
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        if isinstance(e, OSError):
            raise fail(e.strerror or str(e)) from None
        raise


def _anonymous_file(directory: str) -> int | None:
    """An O_TMPFILE descriptor in `directory` (mode 0o666 less the umask), or None where the OS
    or the file system has none."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        return os.open(directory, flag | os.O_RDWR, 0o666)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
            return None
        raise


def _name_anonymous(f, directory: str) -> str:
    """Link the O_TMPFILE file `f` into `directory` under a fresh temporary name. Where the
    link is refused, copy it into a named temporary file instead."""
    name = f".embscope-{os.urandom(6).hex()}"
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:  # a dir fd makes os.link call linkat(AT_SYMLINK_FOLLOW): /proc/self/fd/N is a magic link
        os.link(f"/proc/self/fd/{f.fileno()}", name, dst_dir_fd=dir_fd, follow_symlinks=True)
        return os.path.join(directory, name)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EACCES, errno.ENOENT, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(dir_fd)
    fd, tmp = tempfile.mkstemp(prefix=".embscope-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            f.seek(0)
            shutil.copyfileobj(f, out)
        _usual_mode(tmp)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp
