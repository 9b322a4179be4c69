"""What the CLI knows about where it runs, decided once in the entry point and handed to every
command (httpie's `context.Environment`): the three streams, whether stdout and stderr are
terminals, the colours pictures may use, and --debug. Nothing below the CLI reads these facts
for itself."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TextIO


@dataclass
class Environment:
    stdin: TextIO
    stdout: TextIO
    stderr: TextIO
    stdout_isatty: bool
    stderr_isatty: bool
    debug: bool = False  # --debug: tracebacks and loading details
    files: list = field(default_factory=list)  # -o data files being written: AtomicFile

    @classmethod
    def detect(cls) -> Environment:
        """The process's streams as they are now (CliRunner and pytest's capsys swap them). A
        stream closed before start (`>&-`: Python makes it None) is /dev/null, as for print()."""
        stdin, stdout, stderr = (stream if stream is not None else open(os.devnull, mode)  # noqa: SIM115
                                 for stream, mode in ((sys.stdin, "r"), (sys.stdout, "w"), (sys.stderr, "w")))
        return cls(stdin, stdout, stderr, stdout.isatty(), stderr.isatty())

    @cached_property
    def stdin_isatty(self) -> bool:
        """Whether stdin is a terminal (a person types the lines `-` reads)."""
        try:
            return self.stdin.isatty()
        except (AttributeError, ValueError):  # a closed or stand-in stream
            return False

    @cached_property
    def console(self):
        """The Rich console for data on stdout: tables and terminal pictures."""
        from rich.console import Console

        return Console(file=self.stdout, highlight=False, soft_wrap=False)

    @cached_property
    def error_console(self):
        """The Rich console for people-talk on stderr: one message, one line."""
        from rich.console import Console

        return Console(file=self.stderr, highlight=False, soft_wrap=True)

    @cached_property
    def color(self) -> str:
        """Colours for embscope.render pictures: "truecolor", "256", or "none" when stdout is not a
        terminal, TERM is dumb or NO_COLOR is set (as Rich decides for the console)."""
        system = self.console.color_system
        if system is None or self.console.no_color:
            return "none"
        return "truecolor" if system == "truecolor" else "256"

    def writer(self, fmt: str | None):
        """The writer of `-f FMT` (None: a table on a terminal, TSV otherwise) for stdout."""
        from embscope.output import resolve_format, writer_for

        return writer_for(resolve_format(fmt, self.stdout_isatty), self.stdout, lambda: self.console,
                          lambda: self.table_width)

    @property
    def table_width(self) -> int | None:
        """The width tables fit: the terminal's, or COLUMNS when it is set; None (any width: the
        table is never narrowed) for `-f table` into a pipe or a file without COLUMNS."""
        if self.stdout_isatty or os.environ.get("COLUMNS", "").isdigit():
            return self.console.width
        return None

    def file_writer(self, fmt: str, path: str):
        """The writer of format `fmt` (tsv, csv, json, jsonl) for the file `path`: written
        aside, given its name whole by `finish_files` when the command succeeds."""
        from embscope.atomic import AtomicFile
        from embscope.output import writer_for

        target = AtomicFile(path)
        self.files.append(target)
        return writer_for(fmt, target.text(), lambda: self.console)

    def finish_files(self) -> None:
        """The command succeeded: every -o data file gets its name (said on stderr)."""
        while self.files:
            target = self.files.pop(0)
            target.commit()
            self.note(f"wrote {target.path}")

    def discard_files(self) -> None:
        """The command failed: no -o data file is written; the old ones stay as they were."""
        while self.files:
            self.files.pop().discard()

    def note(self, message: str) -> None:
        """People-talk: to stderr, never stdout. Control characters from queries are escaped."""
        from embscope.display import sanitize

        self.error_console.print(sanitize(message), markup=False, highlight=False)

    def debug_note(self, message: str) -> None:
        if self.debug:
            self.note(f"debug: {message}")

    def progress(self, total: int, what: str, streaming: bool = False) -> Any:
        """A context manager giving advance(n): a bar on stderr when it is a terminal, erased when
        done, else nothing. `streaming`: rows go to stdout meanwhile; on a terminal they would be
        drawn among the bar's redraws (and they show the progress themselves), so no bar then."""
        shown = self.stderr_isatty and not (streaming and self.stdout_isatty)
        return _Progress(self.error_console if shown else None, total, what)


class _Progress:
    def __init__(self, console, total: int, what: str):
        self.console, self.total, self.what = console, total, what
        self._bar = None

    def __enter__(self):
        if self.console is None:
            return lambda n: None
        from rich.progress import Progress

        self._bar = Progress(console=self.console, transient=True)
        self._bar.start()
        task = self._bar.add_task(self.what, total=self.total)
        return lambda n: self._bar.advance(task, n)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.stop()
        return False
