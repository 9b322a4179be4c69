"""Norm statistics of embedding rows, and distances from the centroid."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embscope.io.matrix import Matrix

PERCENTILES = (1, 50, 99)


@dataclass
class Stats:
    count: int
    mean: float
    std: float
    min: float
    p1: float
    p50: float
    p99: float
    max: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def stats(values: np.ndarray) -> Stats:
    """Statistics of the finite values (NaN/Inf rows are reported separately)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        nan = float("nan")
        return Stats(0, nan, nan, nan, nan, nan, nan, nan)
    p1, p50, p99 = np.percentile(v, PERCENTILES)
    return Stats(int(v.size), float(v.mean()), float(v.std()), float(v.min()), float(p1),
                 float(p50), float(p99), float(v.max()))


def lengths(rows: np.ndarray) -> np.ndarray:
    """L2 length of each row of `rows` (r, d), in their dtype: (r,). float32 rows whose squares
    pass float32's range (values > ~1e19) are measured in float64: not Inf unless they hold one."""
    with np.errstate(over="ignore", invalid="ignore"):  # NaN (even signalling) / Inf rows
        norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
        over = np.flatnonzero(np.isposinf(norms))
        if len(over):
            norms[over] = np.linalg.norm(rows[over].astype(np.float64), axis=1)
    return norms


def row_norms(matrix: Matrix, start: int, stop: int, dtype=np.float64) -> np.ndarray:
    """L2 norm of rows [start, stop), (stop - start,), computed in `dtype`: float64 for
    statistics, float32 for scoring."""
    out = np.empty(stop - start, dtype=dtype)
    step = matrix.block_rows()
    for a in range(start, stop, step):
        b = min(stop, a + step)
        with np.errstate(invalid="ignore", over="ignore"):  # NaN (even signalling) / Inf rows
            block = matrix.rows(a, b).astype(dtype, copy=False)
        out[a - start:b - start] = lengths(block)
    return out


def centroid_distances(matrix: Matrix, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(distance of each of rows [0, n) from their mean, the mean), ignoring non-finite rows."""
    d = matrix.shape[1]
    total = np.zeros(d, dtype=np.float64)
    count = 0
    step = matrix.block_rows()
    for a in range(0, n, step):
        with np.errstate(invalid="ignore", over="ignore"):
            block = matrix.rows(a, min(n, a + step)).astype(np.float64)
        ok = np.isfinite(block).all(axis=1)
        total += block[ok].sum(axis=0)
        count += int(ok.sum())
    centroid = total / max(count, 1)
    out = np.empty(n, dtype=np.float64)
    for a in range(0, n, step):
        with np.errstate(invalid="ignore", over="ignore"):
            block = matrix.rows(a, min(n, a + step)).astype(np.float64) - centroid
        out[a:a + len(block)] = lengths(block)
    return out, centroid


def extremes(values: np.ndarray, n: int, largest: bool) -> np.ndarray:
    """Ids of the n largest (or smallest) finite values, ties broken by id."""
    ids = np.flatnonzero(np.isfinite(values))
    key = -values[ids] if largest else values[ids]
    return ids[np.lexsort((ids, key))[:n]]
