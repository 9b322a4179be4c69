"""Exact top-k per row of a score matrix, fast, with ties broken by the smaller id."""

from __future__ import annotations

import numpy as np

BLOCK = 64  # columns per block in the block-max prefilter


def topk_rows(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Largest `k` entries of each row of `scores` (n, N): (ids (n, k), values (n, k)).

    Sorted by value descending, then id ascending. -inf marks excluded entries; rows with fewer
    than k finite entries are padded with id -1. Exact: the top k entries of a row lie in the k
    blocks of BLOCK columns with the largest maxima, so only those blocks are searched.
    """
    n, N = scores.shape
    k = min(k, N)
    if N <= 4 * k * BLOCK:
        cols = np.broadcast_to(np.arange(N), (n, N))
        return _finish(scores, cols, np.array(scores), k)
    starts = np.arange(0, N, BLOCK)
    block_max = np.maximum.reduceat(scores, starts, axis=1)  # (n, nb)
    top_blocks = np.argpartition(block_max, -k, axis=1)[:, -k:]  # (n, k)
    cols = (top_blocks[:, :, None] * BLOCK + np.arange(BLOCK)).reshape(n, -1)  # (n, k*BLOCK)
    inside = cols < N
    cols = np.minimum(cols, N - 1)
    vals = np.take_along_axis(scores, cols, axis=1)
    vals[~inside] = -np.inf
    ids, values = _finish(scores, cols, vals, k)
    # A tie at the k-th value may hide equal entries in blocks not searched: redo those rows
    # over the whole row (rare: exact duplicates of a score).
    kth = values[:, -1]
    tied = np.flatnonzero((block_max >= kth[:, None]).sum(axis=1) > k)
    for r in tied:
        row = scores[r]
        cand = np.flatnonzero(row >= kth[r])
        ids[r], values[r] = _order(cand, row[cand], k)
    return ids, values


def _finish(scores, cols, vals, k):
    n = scores.shape[0]
    part = np.argpartition(vals, -k, axis=1)[:, -k:] if vals.shape[1] > k else np.broadcast_to(
        np.arange(vals.shape[1]), (n, vals.shape[1]))
    ids = np.empty((n, k), dtype=np.int64)
    values = np.empty((n, k), dtype=scores.dtype)
    for r in range(n):
        row_vals = vals[r]
        kth = row_vals[part[r]].min()
        cand = np.flatnonzero(row_vals >= kth)  # every candidate tied with the k-th, too
        ids[r], values[r] = _order(np.asarray(cols[r])[cand], row_vals[cand], k)
    return ids, values


def _order(ids: np.ndarray, vals: np.ndarray, k: int):
    order = np.lexsort((ids, -vals))[:k]
    out_ids, out_vals = ids[order], vals[order]
    if len(out_ids) < k:
        out_ids = np.concatenate([out_ids, np.full(k - len(out_ids), -1)])
        out_vals = np.concatenate([out_vals, np.full(k - len(out_vals), -np.inf, dtype=vals.dtype)])
    finite = np.isfinite(out_vals)
    out_ids = np.where(finite, out_ids, -1)
    return out_ids, out_vals
