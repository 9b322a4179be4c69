"""Position-position similarity of a learned position matrix."""

from __future__ import annotations

import numpy as np

from embscope.analysis.similarity import euclidean

MAX_POSITIONS = 2048  # a side of the matrix: 2048² float64 cells are 32 MiB, 20000² would be 3.2 GB


def step_for(n: int) -> int:
    """The smallest step that leaves at most MAX_POSITIONS of `n` positions."""
    return max(1, -(-n // MAX_POSITIONS))


def similarity_matrix(vectors: np.ndarray, metric: str) -> np.ndarray:
    """(n, n) pairwise similarity of rows: cosine, dot, or euclidean distance."""
    with np.errstate(invalid="ignore", over="ignore"):  # NaN/Inf rows give NaN cells, shown as such
        v = vectors.astype(np.float64)  # (n, d); small (n <= a few thousand), so exactness is cheap
        return _similarity(v, metric)


def _similarity(v: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        norms = np.linalg.norm(v, axis=1)
        u = v / np.where(norms == 0, 1, norms)[:, None]
        return (u @ u.T).astype(np.float32)
    if metric == "dot":
        return (v @ v.T).astype(np.float32)
    return pairwise_distances(v).astype(np.float32)


NEAR = 1e-3  # d^2 below NEAR (|a|^2 + |b|^2): the expansion has lost digits, differences are taken


def pairwise_distances(v: np.ndarray) -> np.ndarray:
    """(n, n) float64 euclidean distances of the rows of v (n, d), exact to float64 rounding:
    the expansion |a|^2 + |b|^2 - 2 a.b, except where the distance is small against the norms
    (a row and itself, near-duplicates), where it cancels into noise (2e-08 for a distance of
    0): those pairs are measured as |a - b| directly."""
    sq = np.einsum("ij,ij->i", v, v)  # (n,)
    out = euclidean(sq, sq, v @ v.T)
    i, j = np.nonzero(out * out <= NEAR * (sq[:, None] + sq[None, :]))
    out[i, j] = np.sqrt(np.einsum("ij,ij->i", v[i] - v[j], v[i] - v[j]))
    return out


def by_offset(matrix: np.ndarray) -> np.ndarray:
    """Mean of each diagonal of a symmetric (n, n) matrix: (n,) value at offset 0..n-1."""
    n = matrix.shape[0]
    return np.array([np.diagonal(matrix, offset=o).mean() for o in range(n)], dtype=np.float64)
