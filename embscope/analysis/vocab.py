"""The vocabulary: token rows by id, and the tokens whose printed text a regular expression finds."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np

from embscope.analysis.norms import lengths
from embscope.errors import EmbscopeError, UsageError

MAX_PATTERN = 1000  # characters
GREP_SECONDS = 10.0  # a pattern that takes longer over the whole vocabulary is stopped
_CHECK_EVERY = 1024  # tokens between looks at the clock


def token_norms(matrix, ids) -> np.ndarray:
    """(n,) float64 L2 norms of the rows `ids` of a token matrix, as `norms` computes them."""
    with np.errstate(invalid="ignore", over="ignore"):  # NaN / Inf rows
        return lengths(matrix.take(ids).astype(np.float64))  # (n, d) -> (n,)


def compile_pattern(pattern: str) -> re.Pattern:
    if len(pattern) > MAX_PATTERN:
        raise UsageError(f"the pattern is {len(pattern)} characters long (at most {MAX_PATTERN})")
    try:
        return re.compile(pattern)
    except re.error as e:
        raise UsageError(f"'{pattern}' is not a regular expression ({e.msg} at position {e.pos})") from None
    except (OverflowError, RecursionError):  # '{99999999999}' or a few thousand nested groups
        raise UsageError(f"'{pattern}' is not a regular expression this engine can run") from None


def grep(labels: Sequence[str], pattern: str, seconds: float = GREP_SECONDS) -> np.ndarray:
    """Ids (ascending) of the labels in which `pattern` is found (re.search). A pattern that
    backtracks without end (nested repetition, `(a+)+$`) is stopped after `seconds` with an
    error: the clock is read every few tokens, and, in the main thread, a CPU-time timer
    interrupts one runaway match (re checks for signals while it runs)."""
    regex = compile_pattern(pattern)
    found = []
    deadline = time.monotonic() + seconds
    try:
        with _cpu_limit(seconds):
            for i, label in enumerate(labels):
                if regex.search(label):
                    found.append(i)
                if i % _CHECK_EVERY == 0 and time.monotonic() > deadline:
                    raise _Expired
    except _Expired:
        raise EmbscopeError(f"'{pattern}' took more than {seconds:g} s over the vocabulary and was stopped"
                            " (nested repetition such as '(a+)+' backtracks without end)") from None
    return np.array(found, dtype=np.int64)


class _Expired(Exception):
    pass


@contextmanager
def _cpu_limit(seconds: float):
    """Raise _Expired in this thread after `seconds` of CPU time, when that can be done: the
    main thread, with SIGVTALRM's timer free. Otherwise nothing (the clock checks remain)."""
    usable = (hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
              and signal.getitimer(signal.ITIMER_VIRTUAL) == (0.0, 0.0))
    if not usable:
        yield
        return

    def expire(*_):
        raise _Expired

    previous = signal.signal(signal.SIGVTALRM, expire)
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)
