"""Calls into other libraries' native (Rust) code, made to fail like Python code.

A Rust panic inside `tokenizers` (a `tokenizer.json` whose Precompiled charsmap points outside
itself, say) reaches Python as pyo3's PanicException, a BaseException that `except Exception`
misses, and Rust's panic hook first writes its report (with RUST_BACKTRACE=1, a whole backtrace)
straight to file descriptor 2. `native_call()` turns the panic into a RuntimeError with the
panic's message and keeps its report off the terminal: while the call runs, descriptor 2 points
at a scratch file, whose contents are passed on to the real stderr afterwards unless the call
panicked.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from contextlib import contextmanager

from embscope.errors import first_line

_SCRATCH: list = []  # one anonymous scratch file per process, reused


def is_panic(e: BaseException) -> bool:
    """pyo3's PanicException: it has no importable home, so it is known by its name."""
    return type(e).__name__ == "PanicException" and not isinstance(e, Exception)


@contextmanager
def native_call():
    """Run the body with Rust panics turned into RuntimeError (see the module's docstring)."""
    if not _SCRATCH:
        _SCRATCH.append(tempfile.TemporaryFile())
    scratch = _SCRATCH[0]
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(scratch.fileno(), 2)
    panicked = False
    try:
        yield
    except BaseException as e:
        if not is_panic(e):
            raise
        panicked = True
        raise RuntimeError(f"the library panicked: {first_line(e)}") from None
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        _pass_on(scratch, drop=panicked)


def _pass_on(scratch, drop: bool) -> None:
    """Write what the call wrote to descriptor 2 to the real one (unless `drop`), and empty the
    scratch file for the next call."""
    fd = scratch.fileno()
    size = os.fstat(fd).st_size
    if size and not drop:
        os.lseek(fd, 0, os.SEEK_SET)
        while chunk := os.read(fd, 1 << 16):
            os.write(2, chunk)
    if size:
        os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)


class RustGuard:
    """A `tokenizers.Tokenizer` whose encode calls run under native_call(); everything else is
    the tokenizer's own."""

    _GUARDED = frozenset({"encode", "encode_batch"})

    def __init__(self, tok):
        object.__setattr__(self, "_target", tok)

    def __getattr__(self, name: str):
        value = getattr(self._target, name)
        if name not in self._GUARDED:
            return value

        @functools.wraps(value)
        def guarded(*args, **kwargs):
            with native_call():
                return value(*args, **kwargs)

        return guarded

    def __setattr__(self, name: str, value) -> None:
        setattr(self._target, name, value)
