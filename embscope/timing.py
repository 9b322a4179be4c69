"""Where a command's time goes: seconds per named stage, summed over its calls."""

from __future__ import annotations

import time
from contextlib import contextmanager


class Stages:
    """Seconds per stage (`with stages("products"): ...`), in the order stages first ran."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def summary(self) -> str:
        """'products 1.234 s, selection 0.012 s' (empty when nothing was timed)."""
        return ", ".join(f"{name} {s:.3f} s" for name, s in self.seconds.items())
