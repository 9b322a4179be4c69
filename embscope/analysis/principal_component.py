"""The first principal component of a token matrix, by power iterations (no SVD of the matrix).

The covariance C = Xc^T Xc / n of the centred rows is never formed: each step multiplies one
vector by it, in blocks of rows, so the matrix is read once per step and nothing (V, d) is
allocated. The answer is taken from the span of all the power iterates (the Krylov space
v, Cv, C^2 v, ...) by Rayleigh-Ritz, which is the Lanczos method: it needs far fewer steps than
keeping only the last iterate (8 instead of 53 on the bundled model, to the same precision).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BLOCK = 512  # rows per block: 512 x 768 float32 (1.5 MiB) stays in cache for its two products
MAX_STEPS = 32  # matrix passes at most (each step reads the matrix once)
RESIDUAL = 1e-8  # stop when |C u - lambda u| <= RESIDUAL * lambda for the Ritz pair (lambda, u)
# ... or, after FLAT_AFTER steps, when the top two Ritz values are within FLAT_GAP of each other:
# no direction stands out (a matrix never trained), and no number of steps would settle one.
FLAT_AFTER, FLAT_GAP = 6, 0.06
SEED = 0  # the start vector is random but the same on every run


@dataclass(frozen=True)
class PrincipalComponent:
    vector: np.ndarray  # (d,) float64, unit length; the sign is arbitrary, as for any eigenvector
    variance: float  # its eigenvalue of the covariance (divided by n, as numpy's var)
    mean: np.ndarray  # (d,) float64, the mean of the rows it was fitted to
    steps: int  # matrix passes taken
    residual: float  # |C u - lambda u| / lambda at the end (<= RESIDUAL when converged)
    gap: float  # (lambda - the next Ritz value) / lambda: how far the component stands out

    @property
    def converged(self) -> bool:
        return self.residual <= RESIDUAL


def _rows_ok(x: np.ndarray, a: int, b: int, ok: np.ndarray | None) -> np.ndarray:
    block = x[a:b]
    return block if ok is None or ok[a:b].all() else block[ok[a:b]]


def row_mean(x: np.ndarray, ok: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """(mean of the rows of x (V, d) where `ok` (V,) is True (all when None), how many), float64."""
    total = np.zeros(x.shape[1])
    with np.errstate(invalid="ignore", over="ignore"):  # NaN / Inf rows: a total that is not finite
        for a in range(0, x.shape[0], BLOCK):
            total += _rows_ok(x, a, a + BLOCK, ok).sum(axis=0, dtype=np.float64)
    n = x.shape[0] if ok is None else int(ok.sum())
    return total / max(n, 1), n


def covariance_product(x: np.ndarray, mean: np.ndarray, v: np.ndarray, ok: np.ndarray | None = None) -> np.ndarray:
    """Xc^T (Xc v) for the centred rows Xc = X - mean (those where `ok`), (d,) float64, in one pass.

    Each row's projection is centred as a scalar, y = x.v - mean.v, so the products stay in
    float32 BLAS while the sum of the y (zero but for rounding) carries no cancellation; the
    blocks' contributions are added in float64."""
    v32 = v.astype(np.float32)
    shift = np.float32(mean @ v)
    out = np.zeros(x.shape[1])
    total_y = 0.0
    for a in range(0, x.shape[0], BLOCK):
        block = _rows_ok(x, a, a + BLOCK, ok)  # (b, d)
        y = block @ v32 - shift  # (b,)
        out += block.T @ y  # (d,)
        total_y += float(y.sum(dtype=np.float64))
    return out - mean * total_y


def first_component(x: np.ndarray, ok: np.ndarray | None = None, *, max_steps: int = MAX_STEPS,
                    mean: tuple[np.ndarray, int] | None = None) -> PrincipalComponent:
    """The first principal component of the rows of x (V, d) where `ok` (all when None), as
    sklearn.decomposition.PCA(n_components=1) defines it: the top eigenvector of the covariance
    of the centred rows. Lanczos steps with full reorthogonalisation, at most `max_steps`, fewer
    when no direction stands out (see FLAT_GAP): then `converged` is False. `mean`: `row_mean(x,
    ok)`, when already known."""
    mean, n = mean or row_mean(x, ok)
    d = x.shape[1]
    q = np.random.default_rng(SEED).standard_normal(d)
    basis = [q / np.linalg.norm(q)]  # orthonormal Krylov basis
    alphas: list[float] = []
    betas: list[float] = []
    for step in range(1, min(max_steps, d) + 1):
        w = covariance_product(x, mean, basis[-1], ok)  # (d,)
        alphas.append(float(basis[-1] @ w))
        q_all = np.array(basis)  # (k, d)
        for _ in range(2):  # twice is enough (Kahan): the basis stays orthogonal to rounding
            w -= q_all.T @ (q_all @ w)
        values, vectors = np.linalg.eigh(np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1))  # tridiagonal
        beta = float(np.linalg.norm(w))
        lam, top = float(values[-1]), vectors[:, -1]
        gap = (lam - float(values[-2])) / lam if len(values) > 1 and lam > 0 else 0.0
        residual = beta * abs(top[-1]) / lam if lam > 0 else 0.0  # |C u - lambda u| / lambda
        flat = step >= FLAT_AFTER and gap < FLAT_GAP
        if residual <= RESIDUAL or beta == 0 or flat or step == min(max_steps, d):
            break
        betas.append(beta)
        basis.append(w / beta)
    u = q_all.T @ top  # (d,)
    return PrincipalComponent(u / np.linalg.norm(u), lam / max(n, 1), mean, step, residual, gap)
