#!/usr/bin/env python3
"""Regenerate (or, with --check, verify) every example in README.md and docs/*.md from real runs.

An example is a block between an HTML comment naming the command and its closing comment:

    <!-- example: embscope neighbors king -->
    ```console
    $ embscope neighbors king
    ...what it printed...
    ```
    <!-- /example -->

Each command runs through bash with stdout on a pseudo-terminal 100 columns wide, so the output
is what a person sees in a terminal (tables, not TSV); styles (bold) are stripped for Markdown.
stderr goes to a pipe and is shown after the output, so progress bars (drawn only on a
terminal) do not make the pages change from run to run.

A picture is a comment naming the command that draws it into docs/img (`-o docs/img/NAME`):

    <!-- picture: embscope map --positions -o docs/img/map-positions.png -->

It is redrawn when the pages are regenerated; --check only checks that the file is there (the
pixels depend on the matplotlib version, so they are not compared).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
BLOCK = re.compile(r"<!-- example: (?P<cmd>.+?) -->\n.*?<!-- /example -->", re.S)
PICTURE = re.compile(r"<!-- picture: (?P<cmd>.+? -o (?P<path>docs/img/\S+)) -->")
COLUMNS, LINES = 100, 50
# Values that change from run to run: compared as placeholders in --check.
VOLATILE = [re.compile(r"(load_seconds\s+)[\d.]+"), re.compile(r"(in )[\d.]+(s\b)")]


def run_in_terminal(command: str, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EMBSCOPE_", "FORCE_COLOR"))}
    env.update(NO_COLOR="1", COLUMNS=str(COLUMNS), LINES=str(LINES), TERM="xterm-256color")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
    proc = subprocess.Popen(["bash", "-c", command], stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=subprocess.PIPE, cwd=cwd, env=env, close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 120)
        if not ready:
            proc.kill()
            raise SystemExit(f"timed out: {command}")
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the terminal closed
            break
        if not data:
            break
        chunks.append(data)
    stderr = proc.communicate()[1]
    os.close(master)
    text = (b"".join(chunks) + stderr).decode("utf-8", errors="backslashreplace").replace("\r\n", "\n")
    text = ANSI.sub("", text)
    lines = [line.rstrip() for line in text.split("\n")]
    return "\n".join(lines).strip("\n")


def render(command: str) -> str:
    output = run_in_terminal(command, ROOT)
    return f"<!-- example: {command} -->\n```console\n$ {command}\n{output}\n```\n<!-- /example -->"


FLOAT = re.compile(r"-?\d+\.\d+(?:e[-+]?\d+)?")


def normalise(text: str) -> str:
    """What --check compares: volatile values masked, and decimals to 4 significant digits (the
    last digit of a float32 score may differ with the BLAS kernel or the order of the sums)."""
    text = FLOAT.sub(lambda m: f"{float(m.group(0)):.4g}", text)
    for pattern in VOLATILE:
        text = pattern.sub(lambda m: m.group(1) + "#" + (m.group(2) if m.lastindex and m.lastindex > 1 else ""), text)
    return text


def pages() -> list[Path]:
    return [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))


def pictures(page: Path, text: str, check: bool) -> list[str]:
    """Draw the page's pictures (or, with `check`, list the ones missing)."""
    missing = []
    for m in PICTURE.finditer(text):
        if check:
            if not (ROOT / m.group("path")).is_file():
                missing.append(f"{page.relative_to(ROOT)}: {m.group('path')} (missing)")
            continue
        (ROOT / m.group("path")).parent.mkdir(exist_ok=True)
        output = run_in_terminal(m.group("cmd"), ROOT)
        if f"wrote {m.group('path')}" not in output:
            raise SystemExit(f"{m.group('cmd')}: {output}")
        print(f"drew {m.group('path')}", file=sys.stderr)
    return missing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if any example is out of date")
    parser.add_argument("pages", nargs="*", type=Path)
    args = parser.parse_args()
    stale = []
    for page in [p.resolve() for p in args.pages] or pages():
        text = page.read_text(encoding="utf-8")
        new = BLOCK.sub(lambda m: render(m.group("cmd")), text)
        if args.check:
            for old_block, new_block in zip(BLOCK.finditer(text), BLOCK.finditer(new)):
                if normalise(old_block.group(0)) != normalise(new_block.group(0)):
                    stale.append(f"{page.relative_to(ROOT)}: {old_block.group('cmd')}")
        elif new != text:
            page.write_text(new, encoding="utf-8")
            print(f"updated {page.relative_to(ROOT)}", file=sys.stderr)
        stale += pictures(page, text, args.check)
    for s in stale:
        print(f"out of date: {s}", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
