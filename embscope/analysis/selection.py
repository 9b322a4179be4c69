"""Which rows a map or an export takes: a range of ids, a seeded sample, named tokens, a neighbourhood.

These take ids and arrays and return ids; `Model.select` (embscope.api) resolves words and queries
and labels the rows.
"""

from __future__ import annotations

import numpy as np

from embscope.errors import EmbscopeError


def sample_ids(n_tokens: int, n: int, seed: int, bad: np.ndarray) -> np.ndarray:
    """`n` token ids drawn without replacement from [0, n_tokens) less the `bad` rows, sorted:
    `np.random.default_rng(seed).choice(candidates, n, replace=False)`, reproducible by seed."""
    candidates = np.setdiff1d(np.arange(n_tokens), bad)  # (m,) ascending
    if n < 1:
        raise EmbscopeError(f"a sample needs at least 1 token (got {n})")
    if n > len(candidates):
        raise EmbscopeError(f"a sample of {n} is more than the model's {len(candidates)} tokens")
    return np.sort(np.random.default_rng(seed).choice(candidates, n, replace=False))


def unique_ids(ids) -> tuple[np.ndarray, int]:
    """(the ids in first-seen order, how many repeats were dropped)."""
    ids = np.asarray(ids, dtype=np.int64)
    _, first = np.unique(ids, return_index=True)
    kept = ids[np.sort(first)]
    return kept, len(ids) - len(kept)


def drop_rows(ids: np.ndarray, bad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the ids that are not `bad`, the ids that were)."""
    mask = np.isin(ids, bad)
    return ids[~mask], ids[mask]


def nonfinite_rows(rows: np.ndarray) -> np.ndarray:
    """Indices of the rows (n, d) that hold NaN or Inf."""
    return np.flatnonzero(~np.isfinite(rows).all(axis=1))
