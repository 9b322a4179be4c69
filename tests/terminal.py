"""Running embscope on a pseudo-terminal, and what a person would see on the screen at the end.

`screen` is a small terminal emulator for what Rich and embscope write: printable text, CR, LF,
backspace, tab stops every 8 columns, cursor up (`ESC[nA`), erase line (`ESC[2K`, `ESC[K`), and
SGR and cursor-visibility codes, which change nothing on the screen. Lines scroll into a history
that has no end, so the whole output can be compared.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios

_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")


def run_on_terminal(argv: list[str], *, stdout_terminal: bool = True, stdin_terminal: bool = False,
                    columns: int = 100, env: dict | None = None, timeout: int = 120,
                    on_output=None) -> tuple[int, str, str]:
    """Run `python -m embscope argv` with stderr (and stdout, unless `stdout_terminal` is False;
    stdin too when `stdin_terminal`) on a pseudo-terminal `columns` wide. Returns (exit status,
    what the terminal received, stdout when it was a pipe). `on_output(text_so_far, write)` is
    called as output arrives, `write(bytes)` typing on the terminal."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("EMBSCOPE_", "FORCE_COLOR", "NO_COLOR"))}
    environ.update(TERM="xterm-256color", COLUMNS=str(columns), LINES="50", **(env or {}))
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "embscope", *argv],
                            stdin=slave if stdin_terminal else subprocess.DEVNULL,
                            stdout=slave if stdout_terminal else subprocess.PIPE, stderr=slave,
                            env=environ, close_fds=True)
    os.close(slave)
    chunks: list[bytes] = []
    while True:
        ready, _, _ = select.select([master], [], [], timeout)
        if not ready:
            proc.kill()
            raise TimeoutError(f"no output for {timeout} s: {argv}")
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: every holder of the terminal closed it
            break
        if not data:
            break
        chunks.append(data)
        if on_output is not None:
            on_output(b"".join(chunks).decode(errors="replace"), lambda b: os.write(master, b))
    out = proc.stdout.read().decode() if proc.stdout else ""
    proc.wait(timeout=timeout)
    os.close(master)
    return proc.returncode, b"".join(chunks).decode(errors="replace"), out


def screen(raw: str) -> list[str]:
    """The lines on the screen (and scrolled above it) after `raw` was written to a terminal,
    trailing spaces and empty last lines dropped."""
    lines: list[list[str]] = [[]]
    row = col = 0
    i = 0
    while i < len(raw):
        m = _CSI.match(raw, i)
        if m:
            args, code = m.group(1), m.group(2)
            if code == "A":
                row = max(row - int(args or 1), 0)
            elif code == "K":
                del lines[row][col if args in ("", "0") else 0:]
                if args == "2":
                    lines[row] = []
            i = m.end()
            continue
        ch = raw[i]
        i += 1
        if ch == "\n":
            row += 1
            col = 0  # the terminal's ONLCR: LF arrives as CR LF
            while len(lines) <= row:
                lines.append([])
        elif ch == "\r":
            col = 0
        elif ch == "\b":
            col = max(col - 1, 0)
        elif ch == "\t":
            col = (col // 8 + 1) * 8
        elif ch >= " ":
            line = lines[row]
            line.extend(" " * (col - len(line)))
            if col < len(line):
                line[col] = ch
            else:
                line.append(ch)
            col += 1
    text = ["".join(line).rstrip() for line in lines]
    while text and not text[-1]:
        text.pop()
    return text
