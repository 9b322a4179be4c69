"""Exact top-k: float32 matrix products choose candidates, float64 arithmetic decides.

Every neighbour score embscope prints is computed by `exact_scores`: in float64 from the stored
rows, one (query, row) pair at a time and in a fixed order, then rounded to float32 once. So
the same question gets the same number on every path (one query, a batch, the k-NN graph, a
range of its rows), and that number is the brute-force float64 answer rounded to float32.

The float32 products (BLAS, whose rounding depends on the shapes it is given) only choose which
pairs to score exactly. Their error has a proven bound (`error_bound`), so every row whose
float32 score is within twice that bound of the k-th best is rescored, and no true neighbour is
lost. Scores are laid out transposed, one row per token and one column per query (t, q), so
the maxima of blocks of FINE rows are elementwise maxima of contiguous rows, taken (with the
tile's candidates) while a tile of rows is still in cache.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

FINE = 16  # rows per fine block: candidates are read a fine block at a time
COARSE = 128  # rows per coarse block (8 fine blocks): the k-th largest coarse maximum bounds the k-th score
RESCORE_BATCH = 256  # (query, row) pairs rescored at once: their (256, d) float64 rows stay in cache
ROUND = 16  # a query's candidates scored together; a query with more has them in further rounds
UNIT_ROUNDOFF = 2.0 ** -24  # float32


def padded(n: int) -> int:
    """n rows padded to whole coarse blocks (padding rows score -inf)."""
    return -(-n // COARSE) * COARSE


def error_bound(metric: str, d: int, q_norms: np.ndarray, max_norm: float) -> np.ndarray:
    """(q,) float64: more than the largest difference between a float32 selection score and
    its exact value, for queries of these norms against rows no longer than `max_norm`.

    A float32 dot product of length d, summed in any order, errs by at most gamma_d * sum|x_i y_i|
    <= gamma_d |x| |y| with gamma_d = d u / (1 - d u) (Higham, Accuracy and Stability of
    Numerical Algorithms, 3.1). Cosine scales both sides to unit length first (errs by
    gamma_d / 2 + 3u each), euclidean selects by q.w - |w|^2 / 2 (the |w|^2 of a float32 norm errs
    by gamma_d + 3u). The bounds are multiplied by 1.5 and underflow is allowed for. Ranks go by
    exact scores rounded to float32, so a neighbour may also lie one float32 spacing below the
    k-th: 2u for cosine, 2u |q| |w| for dot, 2u (|q| + |w|)^2 for the euclidean q.w - |w|^2 / 2."""
    u = UNIT_ROUNDOFF
    gamma = d * u / (1 - d * u) if d * u < 0.5 else np.inf
    tiny = d * 2.0 ** -148  # subnormal products
    q_norms = np.asarray(q_norms, dtype=np.float64)
    if metric == "cosine":
        e = np.full(len(q_norms), 2 * gamma + 8 * u)
    elif metric == "dot":
        e = (gamma + 2 * u) * q_norms * max_norm
    else:
        e = (gamma + 4 * u) * (q_norms * max_norm + max_norm * max_norm / 2) + u * (q_norms + max_norm) ** 2
    return 1.5 * e + tiny


def norms64(x: np.ndarray) -> np.ndarray:
    """(r,) float64 lengths of float64 rows (r, d), each summed alone in a fixed order."""
    return np.sqrt(np.einsum("ij,ij->i", x, x))


def exact_scores(take: Callable[[np.ndarray], np.ndarray], queries: np.ndarray, q_norms: np.ndarray,
                 rows: np.ndarray, cols: np.ndarray, metric: str, row_norms: np.ndarray | None = None
                 ) -> np.ndarray:
    """(P,) float64 `pair_scores` of each pair (query cols[p], token rows[p]). `take(ids)` gives
    float32 token rows (len(ids), d); `queries` is (q, d) float64 and `q_norms` their `norms64`;
    `row_norms`, when given, the `norms64` of every token row. A query's candidates are scored
    together, ROUND at a time, against the query's one row (a grid (queries, ROUND) of rows)."""
    out = np.empty(len(rows), dtype=np.float64)
    if not len(rows):
        return out
    order = np.argsort(cols, kind="stable")  # pairs by query
    by_query = cols[order]
    rank = np.arange(len(rows)) - np.searchsorted(by_query, by_query)  # (P,) place among its query's
    for lo in range(0, int(rank.max()) + 1, ROUND):
        here = (rank >= lo) & (rank < lo + ROUND)
        pairs, slot = order[here], rank[here] - lo
        qs, at = np.unique(by_query[here], return_inverse=True)  # the queries of this round
        grid = np.full((len(qs), int(slot.max()) + 1), rows[pairs[0]])  # (u, K); spare cells: any row
        grid[at, slot] = rows[pairs]
        out[pairs] = _grid_scores(take, queries, q_norms, qs, grid, metric, row_norms)[at, slot]
    return out


def _grid_scores(take, queries, q_norms, qs, grid, metric, row_norms) -> np.ndarray:
    """(u, K) float64 scores of the rows grid[i] (u, K) against query qs[i], a batch of queries
    at a time. Each score is `pair_scores` of its pair: einsum sums a row alone, as there."""
    u, width = grid.shape
    out = np.empty((u, width), dtype=np.float64)
    step = max(1, RESCORE_BATCH // width)
    buf = np.empty((min(u, step), width, queries.shape[1]), dtype=np.float64)
    for a in range(0, u, step):
        g, q_ids = grid[a:a + step], qs[a:a + step]
        w = buf[:len(g)]  # (b, K, d)
        w[...] = take(g.ravel()).reshape(w.shape)
        q = queries[q_ids]  # (b, d)
        if metric == "euclidean":
            diff = np.subtract(q[:, None, :], w, out=w)
            out[a:a + step] = np.sqrt(np.einsum("qkd,qkd->qk", diff, diff))
            continue
        dot = np.einsum("qkd,qd->qk", w, q)  # (b, K)
        if metric == "dot":
            out[a:a + step] = dot
            continue
        w_norms = np.sqrt(np.einsum("qkd,qkd->qk", w, w)) if row_norms is None else row_norms[g]
        scale = w_norms * q_norms[q_ids][:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[a:a + step] = np.where(scale == 0, 0.0, dot / scale)  # a zero vector: cosine 0
    return out


def pair_scores(w: np.ndarray, q: np.ndarray, metric: str, w_norms: np.ndarray | None = None,
                q_norms: np.ndarray | None = None) -> np.ndarray:
    """(b,) float64 score of each pair of rows of w and q (b, d) float64: cosine, dot, or the
    euclidean distance (w is overwritten). The value depends only on the two vectors (not on
    their order: products and the difference's squares commute), each row summed alone by
    einsum in an order fixed by d: every path that scores a pair gets the same bits.
    `w_norms`, `q_norms`: their `norms64`, when known."""
    if metric == "euclidean":
        return norms64(np.subtract(q, w, out=w))
    dot = np.einsum("ij,ij->i", w, q)  # (b,)
    if metric == "dot":
        return dot
    scale = (norms64(w) if w_norms is None else w_norms) * (norms64(q) if q_norms is None else q_norms)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale == 0, 0.0, dot / scale)  # a zero vector: cosine 0


def coarse_maxima(fine: np.ndarray) -> np.ndarray:
    """(n_pad / COARSE, q) maxima of coarse blocks from the fine ones (n_pad / FINE, q)."""
    return fine.reshape(-1, COARSE // FINE, fine.shape[1]).max(axis=1)


def threshold(fine: np.ndarray, coarse: np.ndarray, k: int, margin: np.ndarray,
              entries: np.ndarray | None = None) -> np.ndarray:
    """(q,) float64 lower bound of the float32 score a true top-k row can have: at least k
    scores reach the k-th largest block maximum, so the k-th best float32 score does, and a
    true neighbour's float32 score is at most 2 margins below that. Coarse blocks when there
    are k of them, else fine ones, else the `entries` themselves (when given), else -inf."""
    for level in (coarse, fine) if entries is None else (coarse, fine, entries):  # (nb, q)
        if k <= len(level):
            return _kth_largest(level, k) - 2 * margin
    return np.full(fine.shape[1], -np.inf)


def _kth_largest(values: np.ndarray, k: int) -> np.ndarray:
    """(q,) float64 k-th largest of each column of `values` (m, q), k <= m."""
    m = len(values)
    return np.partition(np.ascontiguousarray(values.T), m - k, axis=1)[:, m - k].astype(np.float64)


def tile_candidates(scores: np.ndarray, fine: np.ndarray, k: int, margin: np.ndarray, bound: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows (P,), cols (P,), float32 scores (P,)) of the entries of a tile of selection scores
    (t, q), with `fine` its fine block maxima (t / FINE, q), that can be in the top k of their
    column over all tiles. A tile's own `threshold` (of its block maxima, or of its entries
    when it has fewer than k blocks) is at most the final one; `bound` (q,) holds the largest
    threshold of the tiles so far and is raised to this one's (workers may do so at once: each
    value stored is some tile's threshold). Kept: the finite entries at
    or above it, found through the fine blocks whose maximum reaches it."""
    per = COARSE // FINE
    own = threshold(fine, coarse_maxima(fine[:len(fine) // per * per]), k, margin, scores)
    np.maximum(bound, own, out=bound)
    theta = bound.copy()
    q = scores.shape[1]
    at = np.flatnonzero(_reaches(fine, theta))  # (P,) fine block * q + query
    fq = at % q
    at = ((at - fq) * FINE + fq)[:, None] + np.arange(0, FINE * q, q)  # (P, FINE) flat index of each row's entry
    vals = scores.ravel()[at]
    keep = _reaches(vals, theta[fq][:, None])
    rows, cols = np.divmod(at[keep], q)
    return rows, cols, vals[keep]


def _reaches(values: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """values >= theta, never for -inf (excluded entries, padding, NaN/Inf rows)."""
    with np.errstate(invalid="ignore"):
        return (values >= theta) & (values > -np.inf)


def top_k(rows: np.ndarray, cols: np.ndarray, exact: np.ndarray, q: int, k: int, ascending: bool
          ) -> tuple[np.ndarray, np.ndarray]:
    """The k best candidates of each of q queries by exact score rounded to float32, the number
    printed (largest first, or smallest with `ascending`), equal scores to the smaller id:
    (ids (q, k) int64, scores (q, k) float32); a query with fewer candidates ends in id -1,
    score NaN. (Ranking the float64 values instead would order pairs by their last bits, which
    depend on the order of a sum.)"""
    score = exact.astype(np.float32)
    order = np.lexsort((rows, score if ascending else -score, cols))
    rows, cols, score = rows[order], cols[order], score[order]
    first = np.searchsorted(cols, np.arange(q))  # (q,) where each query's candidates start
    rank = np.arange(len(cols)) - first[cols]
    keep = rank < k
    ids = np.full((q, k), -1, dtype=np.int64)
    scores = np.full((q, k), np.nan, dtype=np.float32)
    ids[cols[keep], rank[keep]] = rows[keep]
    scores[cols[keep], rank[keep]] = score[keep]
    return ids, scores


def exclusion_pairs(exclude: Iterable[Iterable[int]] | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) sorted by row: token `rows[p]` is left out for query `cols[p]`."""
    pairs = [(int(r), c) for c, ids in enumerate(exclude or ()) for r in ids if 0 <= int(r) < n]
    if not pairs:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    a = np.array(sorted(pairs), dtype=np.int64)
    return a[:, 0], a[:, 1]


def refine(rows, cols, vals, theta, margin, k, q):
    """Keep the candidates (rows, cols, float32 scores `vals`) within 2 margins of their query's
    k-th best float32 score (the threshold from block maxima can be far below it when neighbours
    share blocks)."""
    order = np.lexsort((-vals, cols))
    rows, cols, vals = rows[order], cols[order], vals[order]
    first = np.searchsorted(cols, np.arange(q))
    count = np.diff(np.append(first, len(cols)))
    kth = np.where(count >= k, vals[np.minimum(first + k - 1, len(vals) - 1)], -np.inf)
    bound = np.maximum(theta, kth.astype(np.float64) - 2 * margin)
    keep = vals >= bound[cols]
    return rows[keep], cols[keep]
