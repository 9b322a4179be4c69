"""How much memory a search may hold: sizes as users write them, and the default budget."""

from __future__ import annotations

import os
import re

from embscope.errors import EmbscopeError

DEFAULT_FRACTION = 0.25  # of the memory available when the budget is first needed
FALLBACK_BUDGET = 1 << 30  # where available memory cannot be read
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kib": 1 << 10, "kb": 10**3, "m": 1 << 20, "mib": 1 << 20, "mb": 10**6,
          "g": 1 << 30, "gib": 1 << 30, "gb": 10**9, "t": 1 << 40, "tib": 1 << 40, "tb": 10**12}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)\s*", re.IGNORECASE)
_PERCENT = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*")
SIZE_HELP = "a size such as 512M, 4G, 1.5GiB or 25% (of the available memory)"


class SizeError(EmbscopeError):
    """A memory budget that is not a size; `problem` says what is wrong with it."""

    def __init__(self, text: str, problem: str):
        super().__init__(f"memory budget '{text}': {problem}")
        self.text, self.problem = text, problem


def parse_size(text: str | int, available: int | None = None) -> int:
    """Bytes from '512M', '4G', '1.5GiB', '100MB', '1000000' (K/M/G/T and KiB..TiB are powers of
    1024, KB/MB/GB/TB of 1000) or '25%' of `available` (default: `available_memory()`)."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise SizeError(str(text), "need a size of at least 0 bytes")
        return text
    s = str(text)
    m = _PERCENT.fullmatch(s)
    if m:
        share = float(m.group(1))
        if share > 100:
            raise SizeError(s, "a share of the available memory is at most 100%")
        return int(share / 100 * (available if available is not None else available_or_fallback()))
    m = _SIZE.fullmatch(s)
    unit = m and _UNITS.get(m.group(2).lower())
    if not unit:
        raise SizeError(s, f"expected {SIZE_HELP}")
    return int(float(m.group(1)) * unit)


def available_memory() -> int | None:
    """Bytes the system can give without swapping (Linux MemAvailable), else free physical pages."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def available_or_fallback() -> int:
    available = available_memory()
    return available if available else FALLBACK_BUDGET


def default_budget() -> int:
    """DEFAULT_FRACTION of the available memory (FALLBACK_BUDGET where that is unknown)."""
    available = available_memory()
    return int(available * DEFAULT_FRACTION) if available else FALLBACK_BUDGET

