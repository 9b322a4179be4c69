"""Running the CLI in-process and reading what it printed."""

from __future__ import annotations

import csv
import io
import json
import signal
import sys
from contextlib import contextmanager

from embscope.cli.main import main


def run(argv: list[str], capsys, stdin: str | bytes | None = None, monkeypatch=None) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `embscope argv...`, run through the real entry point."""
    if stdin is not None:
        data = stdin.encode() if isinstance(stdin, str) else stdin
        fake = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8")
        monkeypatch.setattr(sys, "stdin", fake)
    capsys.readouterr()  # drop what fixtures printed (save_pretrained's progress bars)
    code = 0
    try:
        main(argv)
    except SystemExit as e:
        code = 0 if e.code is None else int(e.code)
    out, err = capsys.readouterr()
    return code, out, err


def tsv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text), delimiter="\t", quoting=csv.QUOTE_NONE))


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@contextmanager
def time_limit(seconds: int):
    """Raise TimeoutError in the test if the body runs longer (SIGALRM: a blocking open() too),
    so that a hang fails one case instead of stalling the run."""
    def expire(*_):
        raise TimeoutError(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
