"""embscope.analysis.pca against scikit-learn's PCA (exact) and numpy's SVD (the randomized
solver's stated bound)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.decomposition import PCA

from embscope.analysis.pca import BOUND_FACTOR, EXACT_LIMIT, choose_solver, pca, residual_bound


def spectrum_rows(n: int, d: int, spectrum, seed: int = 0) -> np.ndarray:
    """(n, d) float32 rows with singular values shaped by `spectrum` (d,), randomly rotated, offset."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return (rng.standard_normal((n, d)) * spectrum @ q + rng.standard_normal(d)).astype(np.float32)


def same_up_to_sign(a: np.ndarray, b: np.ndarray, axis: int, **tol) -> None:
    """Equal once each component (a row for axis=1, a column for axis=0) has b's sign."""
    signs = np.sign(np.sum(a * b, axis=axis, keepdims=True))
    np.testing.assert_allclose(a * signs, b, **tol)


@pytest.mark.parametrize("shape", [(41, 32), (128, 256), (300, 64), (7, 16)])
@pytest.mark.parametrize("k", [1, 2, 5])
def test_exact_equals_sklearn(shape, k):
    x = spectrum_rows(*shape, np.linspace(3, 0.2, shape[1]), seed=shape[0])
    found = pca(x, k, solver="exact")
    ref = PCA(n_components=k, svd_solver="full").fit(x.astype(np.float64))
    assert found.solver == "exact" and found.error_bound is None
    same_up_to_sign(found.components, ref.components_, axis=1, atol=1e-9)
    np.testing.assert_allclose(found.explained_variance, ref.explained_variance_, rtol=1e-10)
    np.testing.assert_allclose(found.explained_variance_ratio, ref.explained_variance_ratio_, rtol=1e-10)
    np.testing.assert_allclose(found.singular_values, ref.singular_values_, rtol=1e-10)
    np.testing.assert_allclose(found.mean, ref.mean_, atol=1e-12)
    same_up_to_sign(found.coords, ref.transform(x.astype(np.float64)), axis=0, atol=1e-9)


def test_sign_is_the_largest_loading():
    x = spectrum_rows(50, 20, np.linspace(2, 0.1, 20))
    found = pca(x, 3, solver="exact")
    for row in found.components:
        assert row[np.abs(row).argmax()] > 0
    np.testing.assert_allclose(np.linalg.norm(found.components, axis=1), 1, rtol=1e-12)


@pytest.mark.parametrize("spectrum", ["steep", "decaying", "power", "flat"])
def test_randomized_within_its_bound(spectrum):
    d = 520
    s = {"steep": 0.7 ** np.arange(d), "decaying": np.exp(-np.arange(d) / 20), "power": 1 / np.arange(1, d + 1),
         "flat": np.linspace(3, 0.1, d)}[spectrum]
    x = spectrum_rows(700, d, s, seed=3)
    found = pca(x, 3, seed=7)
    exact = pca(x, 3, solver="exact")
    assert found.solver == "randomized" and found.error_bound > 0
    lower, upper = found.singular_value_bounds()
    assert np.all(lower <= exact.singular_values * (1 + 1e-12))
    assert np.all(exact.singular_values <= upper)
    lo, hi = found.ratio_bounds()
    assert np.all(lo <= exact.explained_variance_ratio * (1 + 1e-12))
    assert np.all(exact.explained_variance_ratio <= hi)
    # coordinates are the exact projections onto the components found
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(found.coords, (x64 - x64.mean(axis=0)) @ found.components.T, atol=1e-9)
    if spectrum == "steep":  # well separated: the components themselves are the exact ones
        same_up_to_sign(found.components, exact.components, axis=1, atol=1e-6)


def test_randomized_is_seeded():
    x = spectrum_rows(700, 520, np.linspace(3, 0.1, 520))
    a, b, c = pca(x, 2, seed=1), pca(x, 2, seed=1), pca(x, 2, seed=2)
    np.testing.assert_array_equal(a.coords, b.coords)
    assert a.error_bound == b.error_bound != c.error_bound


@pytest.mark.parametrize("spectrum", ["decaying", "flat"])
def test_residual_bound_against_the_true_norm(spectrum):
    """The bound is at least ‖X - QQᵀX‖₂ (numpy's SVD) and, after the 2m-th root, not loose."""
    d = 200
    s = np.exp(-np.arange(d) / 15) if spectrum == "decaying" else np.linspace(3, 0.1, d)
    x = spectrum_rows(400, d, s, seed=5).astype(np.float64)
    xc = x - x.mean(axis=0)
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(xc @ rng.standard_normal((d, 12)))  # (n, 12) a plain range finder, no power steps
    true = np.linalg.norm(xc - q @ (q.T @ xc), 2)
    for seed in range(5):
        bound = residual_bound(xc, q, np.random.default_rng(seed))
        assert true <= bound <= BOUND_FACTOR ** (1 / 8) * 2.2 * true


def test_solver_choice():
    assert choose_solver(EXACT_LIMIT + 1, 768) == "randomized"
    assert choose_solver(EXACT_LIMIT, 768) == "exact"
    assert choose_solver(50257, 256) == "exact"
    assert choose_solver(50257, 768, "exact") == "exact"


def test_refusals():
    x = spectrum_rows(5, 4, np.ones(4))
    with pytest.raises(ValueError, match=r"k=5 components need 1 <= k <= min\(n - 1, d\) = 4"):
        pca(x, 5)
    with pytest.raises(ValueError, match="the rows are all the same: they have no variance to project"):
        pca(np.ones((6, 3)), 2)
