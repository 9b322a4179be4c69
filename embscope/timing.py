"""Where a command's time goes: seconds per named stage, summed over its calls."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager


class Stages:
    """Seconds per stage (`with stages("products"): ...`), in the order stages first ran; summed
    over threads (stages that run at once add up to more than the wall time)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._lock = threading.Lock()

    @contextmanager
    def __call__(self, name: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - t0)

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def summary(self) -> str:
        """'products 1.234 s, selection 0.012 s' (empty when nothing was timed)."""
        return ", ".join(f"{name} {s:.3f} s" for name, s in self.seconds.items())
