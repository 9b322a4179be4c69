"""Orthogonal Procrustes: the rotation that best turns one embedding space onto another.

Two checkpoints of one model (or two models trained alike) may hold the same geometry turned by
an orthogonal map: cosines between a token's two vectors then say nothing until one space is
aligned to the other. The rotation R minimising ||B R - A||_F over orthogonal R is U V^T, where
U S V^T is the SVD of B^T A (Schönemann 1966; scipy.linalg.orthogonal_procrustes(B, A)).
No centring and no scaling: cosines are measured from the origin, and norms are compared as
they are.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def cross_covariance(pairs: Iterable[tuple[np.ndarray, np.ndarray]], d: int) -> np.ndarray:
    """B^T A (d, d), float64, summed over `pairs` of row blocks (a (r, d), b (r, d)) that
    belong together."""
    total = np.zeros((d, d), dtype=np.float64)
    for a, b in pairs:
        total += b.T.astype(np.float64) @ a.astype(np.float64)  # (d, d)
    return total


def rotation(cross: np.ndarray) -> np.ndarray:
    """The orthogonal (d, d) R minimising ||B R - A||_F, from cross = B^T A (d, d)."""
    u, _, vt = np.linalg.svd(cross)  # (d, d), (d,), (d, d)
    return u @ vt
