"""How far each token moved between two checkpoints: cosine between its two vectors (raw, and
after aligning B to A by an orthogonal Procrustes rotation), the ratio of their norms, and how
much its k nearest neighbours stayed the same (Jaccard@k). Rows are read in blocks, so a
(V, d) pair of memory-mapped matrices is never copied whole and no (V, V) matrix is made."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from embscope.analysis.neighbors import knn_blocks
from embscope.analysis.norms import lengths
from embscope.analysis.procrustes import cross_covariance, rotation
from embscope.analysis.similarity import Index
from embscope.io.matrix import Matrix


@dataclass
class Rows:
    """The compared rows of one checkpoint: rows `ids` of `matrix` in that order, or, when `ids`
    is None, rows 0..n-1."""

    matrix: Matrix  # (V, d)
    n: int
    ids: np.ndarray | None = None  # (n,) int64

    def block(self, start: int, stop: int) -> np.ndarray:
        """Compared rows [start, stop) as float32, (stop - start, d)."""
        if self.ids is None:
            return self.matrix.rows(start, stop)
        return self.matrix.take(self.ids[start:stop])

    def index(self) -> Index:
        """The compared rows, searchable (a float32 copy of them when they are a subset)."""
        if self.ids is None:
            return Index(self.matrix, self.n)
        rows = np.ascontiguousarray(self.block(0, self.n), dtype=np.float32)  # (n, d)
        return Index(Matrix(rows, "F32", self.matrix.name), self.n)


def block_pairs(a: Rows, b: Rows) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(start, a rows (r, d), b rows (r, d)) over the compared rows, about 32 MiB at a time."""
    step = a.matrix.block_rows()
    for start in range(0, a.n, step):
        stop = min(a.n, start + step)
        yield start, a.block(start, stop), b.block(start, stop)


def usable(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(r,) bool: rows that are finite and not zero in both blocks (a cosine means something)."""
    na, nb = lengths(a), lengths(b)
    return np.isfinite(na) & np.isfinite(nb) & (na > 0) & (nb > 0)


def fit_rotation(a: Rows, b: Rows) -> np.ndarray:
    """The orthogonal (d, d) R that best turns B's rows onto A's (B R ≈ A), fitted on the rows
    that are finite and not zero in both."""
    def pairs():
        for _, x, y in block_pairs(a, b):
            ok = usable(x, y)
            yield (x, y) if ok.all() else (x[ok], y[ok])

    return rotation(cross_covariance(pairs(), a.matrix.shape[1]))


def measures(a: np.ndarray, b: np.ndarray, r: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row of the blocks a, b (m, d): cosine raw, cosine after b @ r (raw when r is None),
    and |b| / |a|; float64 (m,) each, NaN for rows that are not finite or zero in either.
    Computed in float64: a token that barely moved keeps its digits (0.9999997, not 1 ± 1e-7)."""
    ok = usable(a, b)
    a, b = a.astype(np.float64), b.astype(np.float64)  # (m, d)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        sa, sb = np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", b, b)  # (m,) squared norms
        denom = np.sqrt(sa * sb)  # a row equal in both: exactly its a·a, so the cosine is exactly 1
        raw = np.einsum("ij,ij->i", a, b) / denom
        turned = raw if r is None else np.einsum("ij,ij->i", a, b @ r) / denom
        ratio = np.sqrt(sb / sa)
    raw, turned = np.clip(raw, -1, 1), np.clip(turned, -1, 1)  # rounding past ±1
    return tuple(np.where(ok, v, np.nan) for v in (raw, turned, ratio))


def compare(a: Rows, b: Rows, r: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`measures` over all compared rows: (cosine raw, cosine aligned by r, norm ratio), (n,) each."""
    out = np.full((3, a.n), np.nan)
    for start, x, y in block_pairs(a, b):
        out[:, start:start + len(x)] = measures(x, y, r)
    return out[0], out[1], out[2]


def neighbor_sets(rows: Rows, k: int, advance: Callable[[int], None] | None = None) -> np.ndarray:
    """(n, k) int64: each compared row's k nearest other compared rows by cosine (positions
    0..n-1 among them), -1 where fewer exist (rows holding NaN or Inf get none and are none).
    `advance(m)` is called as each block of m rows is done (a progress bar)."""
    out = np.full((rows.n, k), -1, dtype=np.int64)
    for ids, nbrs, _ in knn_blocks(rows.index(), k, "cosine", 0, rows.n):
        out[ids] = nbrs  # (b, k)
        if advance is not None:
            advance(len(ids))
    return out


def jaccard(sets_a: np.ndarray, sets_b: np.ndarray) -> np.ndarray:
    """(n,) |N_A ∩ N_B| / |N_A ∪ N_B| of two (n, k) neighbour tables (-1: no neighbour); NaN
    where both sets are empty. Each row's entries are distinct, so a value that occurs twice in
    the sorted pair of rows is in both sets."""
    both = np.sort(np.concatenate([sets_a, sets_b], axis=1), axis=1)  # (n, 2k)
    inter = ((both[:, 1:] == both[:, :-1]) & (both[:, 1:] >= 0)).sum(axis=1)
    union = (sets_a >= 0).sum(axis=1) + (sets_b >= 0).sum(axis=1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.maximum(union, 1), np.nan)


def match_tokens(vocabularies: list[list[bytes | None]]) -> list[np.ndarray]:
    """Rows holding the same token in every vocabulary (id -> token bytes): per vocabulary the
    ids (m,), in the order of the first vocabulary's ids. Tokens with no bytes, or whose bytes
    repeat within one vocabulary (after their first id), are not matched."""
    firsts = [_first_ids(v) for v in vocabularies]
    common = [t for t in firsts[0] if all(t in f for f in firsts[1:])]  # dicts keep id order
    return [np.array([f[t] for t in common], dtype=np.int64) for f in firsts]


def _first_ids(vocabulary: list[bytes | None]) -> dict[bytes, int]:
    """token bytes -> the first id that holds them (no bytes: left out)."""
    out: dict[bytes, int] = {}
    for i, t in enumerate(vocabulary):
        if t and t not in out:
            out[t] = i
    return out


def differing_ids(a: list[bytes | None], b: list[bytes | None]) -> np.ndarray:
    """Ids whose token differs between two vocabularies of equal length."""
    return np.array([i for i, (x, y) in enumerate(zip(a, b)) if x != y], dtype=np.int64)
