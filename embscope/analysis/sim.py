"""Similarity of given words and texts: each the vector `neighbors` searches with, compared pairwise."""

from __future__ import annotations

import numpy as np

from embscope.analysis.search import pair_scores
from embscope.errors import EmbscopeError, ScoreOverflowError
from embscope.queries import Query, term_vector

MAX_ITEMS = 2048  # a side of the matrix (float64 while computed: 2048² cells are 32 MiB)


def item_vectors(emb, qs: list[Query]) -> np.ndarray:
    """(n, d) float32: each query's one term as `neighbors` reads it (a token's row; a text of
    several tokens, the mean of their rows). Arithmetic is refused: sim compares items."""
    if len(qs) < 2:
        raise EmbscopeError(f"sim compares at least two words or texts (got {len(qs)})")
    if len(qs) > MAX_ITEMS:
        raise EmbscopeError(f"{len(qs)} words or texts: sim compares at most {MAX_ITEMS} at once")
    for q in qs:
        if len(q.terms) != 1 or q.terms[0].sign < 0:
            raise EmbscopeError(f"'{q.text}': sim compares words or texts, not arithmetic")
    return np.stack([term_vector(emb, q.terms[0]) for q in qs]).astype(np.float32)  # (n, d)


def pairwise(vectors: np.ndarray, metric: str) -> np.ndarray:
    """(n, n) float32 similarity of the rows of `vectors` (n, d), computed in float64 by the
    routine that scores every pair `neighbors` prints (so the same pair prints the same number):
    cosine, dot, or euclidean distance. A score too large for float32 is refused, as neighbors
    refuses it; rows holding NaN or Inf give NaN."""
    v64 = vectors.astype(np.float64)  # (n, d)
    matrix = np.empty((len(v64), len(v64)), dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        for i in range(len(v64)):
            matrix[i] = pair_scores(v64.copy(), np.broadcast_to(v64[i], v64.shape), metric)  # (n,)
    finite_rows = np.isfinite(vectors).all(axis=1)
    if np.isinf(matrix[np.ix_(finite_rows, finite_rows)]).any():
        longest = float(np.linalg.norm(vectors[finite_rows].astype(np.float64), axis=1).max())
        raise ScoreOverflowError(metric, longest)
    if not finite_rows.all():
        matrix[~finite_rows, :] = np.nan
        matrix[:, ~finite_rows] = np.nan
    return matrix
