"""Principal components of a set of rows: the exact SVD of the centred rows, or for large sets a
randomized SVD (Halko, Martinsson & Tropp 2011) with a stated, checked error bound.

`pca(x, k)` centres the rows and returns a `Pca`: the k components (unit rows, largest variance
first, each signed so that its largest loading is positive), the singular values, the explained
variance (σ² / (n - 1), as scikit-learn's PCA reports it) and its ratio to the total variance, and
the coordinates of every row: its exact projection onto the components.

The randomized solver draws a Gaussian test matrix (k + 10 columns, seeded), runs power
iterations with QR re-orthonormalisation, and takes the SVD of the small projected matrix. Its
error is bounded a posteriori. Let E = X - QQᵀX be the part of the centred rows X that the found
subspace misses and G = EᵀE. For any matrix B, ‖B‖₂ ≤ 10·√(2/π)·maxᵢ‖B ωᵢ‖ for r independent
Gaussian vectors ωᵢ with probability at least 1 - 10⁻ʳ (Halko, Martinsson & Tropp, eq. 4.3).
Taken with B = Gᵐ, whose norm is ‖E‖₂²ᵐ, and r = 10, m = 4:

    ‖E‖₂ ≤ (10·√(2/π)·maxᵢ‖Gᵐ ωᵢ‖)^(1/2m)     with probability at least 1 - 10⁻¹⁰

(the power m shrinks the slack of the plain bound, which is about ‖E‖_F / ‖E‖₂, to its 2m-th
root). Each singular value found then brackets the true one: σ̃ⱼ² ≤ σⱼ² ≤ σ̃ⱼ² + ‖E‖₂². The
projection cannot add to a singular value; and XᵀX = XᵀQQᵀX + EᵀE, a sum of two positive
semi-definite matrices, so by Weyl's inequality its j-th eigenvalue σⱼ² is at most the first
one's j-th, σ̃ⱼ², plus the second one's largest, ‖E‖₂².
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

EXACT_LIMIT = 500  # exact SVD when the set has at most this many rows or columns
OVERSAMPLE = 10  # extra random directions beyond k
POWER_ITERATIONS = 7
BOUND_PROBES = 10  # Gaussian probes of the residual: the bound fails with probability 10^-10
BOUND_POWER = 4  # m: the probes go through (EᵀE)^m
BOUND_FACTOR = 10 * math.sqrt(2 / math.pi)
SOLVERS = ("auto", "exact", "randomized")


@dataclass(frozen=True)
class Pca:
    components: np.ndarray  # (k, d) unit rows
    mean: np.ndarray  # (d,) the mean row that was subtracted
    singular_values: np.ndarray  # (k,)
    explained_variance: np.ndarray  # (k,) σ² / (n - 1)
    explained_variance_ratio: np.ndarray  # (k,) of the total variance
    coords: np.ndarray  # (n, k) centred rows projected onto the components
    total_variance: float  # of the centred rows: the sum of every σ² / (n - 1)
    solver: str  # "exact" or "randomized"
    error_bound: float | None  # randomized: bound on ‖X - QQᵀX‖₂ (probability >= 1 - 1e-10)

    def singular_value_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) bounds of the true singular values: equal for the exact solver."""
        if not self.error_bound:
            return self.singular_values, self.singular_values
        return self.singular_values, np.sqrt(self.singular_values**2 + self.error_bound**2)

    def ratio_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) bounds of the true explained variance ratios."""
        n1 = len(self.coords) - 1
        lo, hi = self.singular_value_bounds()
        return lo**2 / n1 / self.total_variance, np.minimum(hi**2 / n1 / self.total_variance, 1.0)


def choose_solver(n: int, d: int, solver: str = "auto") -> str:
    """'exact' for small sets (at most EXACT_LIMIT rows or columns), else 'randomized'."""
    if solver != "auto":
        return solver
    return "exact" if min(n, d) <= EXACT_LIMIT else "randomized"


def pca(x: np.ndarray, k: int = 2, *, solver: str = "auto", seed: int = 0) -> Pca:
    """The first k principal components of the rows of x (n, d); see the module docstring."""
    with one_blas_thread():
        return _pca(x, k, solver, seed)


def one_blas_thread():
    """BLAS and LAPACK on one thread (threadpoolctl): an SVD is many small steps, and with two
    threads on a busy machine each step waits for the other thread's turn (a 201 x 768 SVD was
    measured at 0.03 s on one thread and 0.3 to 1.2 s on two)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a dependency; without it the work is only slower
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1)


def _pca(x: np.ndarray, k: int, solver: str, seed: int) -> Pca:
    x = np.asarray(x, dtype=np.float64)  # (n, d)
    n, d = x.shape
    if not 1 <= k <= min(n - 1, d):
        raise ValueError(f"k={k} components need 1 <= k <= min(n - 1, d) = {min(n - 1, d)}")
    mean = x.mean(axis=0)  # (d,)
    xc = x - mean  # (n, d)
    total = float(np.einsum("ij,ij->", xc, xc)) / (n - 1)  # the sum of every σ² / (n - 1)
    if not total > 0:
        raise ValueError("the rows are all the same: they have no variance to project")
    solver = choose_solver(n, d, solver)
    if solver == "exact":
        _, s, vt = np.linalg.svd(xc, full_matrices=False)  # s: (min(n, d),), vt: (min(n, d), d)
        s, vt, bound = s[:k], vt[:k], None
    else:
        s, vt, bound = _randomized(xc, k, np.random.default_rng(seed))
    vt = _signed(vt)
    variance = s**2 / (n - 1)
    return Pca(components=vt, mean=mean, singular_values=s, explained_variance=variance,
               explained_variance_ratio=variance / total,
               coords=xc @ vt.T, total_variance=total, solver=solver, error_bound=bound)


def _randomized(xc: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """(σ (k,), Vᵀ (k, d), bound on ‖X - QQᵀX‖₂) by a randomized range finder with power iterations."""
    n, d = xc.shape
    width = min(k + OVERSAMPLE, n, d)
    q, _ = np.linalg.qr(xc @ rng.standard_normal((d, width)))  # (n, width)
    for _ in range(POWER_ITERATIONS):
        z, _ = np.linalg.qr(xc.T @ q)  # (d, width)
        q, _ = np.linalg.qr(xc @ z)  # (n, width)
    b = q.T @ xc  # (width, d)
    _, s, vt = np.linalg.svd(b, full_matrices=False)
    return s[:k], vt[:k], residual_bound(xc, q, rng)


def residual_bound(xc: np.ndarray, q: np.ndarray, rng: np.random.Generator) -> float:
    """A bound on ‖X - QQᵀX‖₂ that holds with probability >= 1 - 10^-BOUND_PROBES (module
    docstring). The probes are rescaled after each product, their scale kept as a logarithm."""
    v = rng.standard_normal((xc.shape[1], BOUND_PROBES))  # (d, r)
    log_scale = 0.0
    for _ in range(BOUND_POWER):
        y = xc @ v  # (n, r)
        v = xc.T @ (y - q @ (q.T @ y))  # (d, r): G v = Xᵀ (I - QQᵀ) X v
        top = float(np.linalg.norm(v, axis=0).max())
        if top == 0:
            return 0.0
        v /= top
        log_scale += math.log(top)
    return math.exp((math.log(BOUND_FACTOR) + log_scale) / (2 * BOUND_POWER))


def _signed(vt: np.ndarray) -> np.ndarray:
    """Each component with its largest-magnitude loading positive: a deterministic sign."""
    signs = np.sign(vt[np.arange(len(vt)), np.abs(vt).argmax(axis=1)])  # (k,)
    return vt * np.where(signs == 0, 1, signs)[:, None]
