"""The one row-length routine and the one euclidean formula (embscope/analysis/norms.py `lengths`,
`row_norms`; analysis/similarity.py `euclidean`), called directly, against torch's
`linalg.vector_norm` and `cdist` in float64."""

from __future__ import annotations

import numpy as np
import pytest

from embscope.analysis.norms import lengths, row_norms
from embscope.analysis.similarity import euclidean
from embscope.io.matrix import Matrix

torch = pytest.importorskip("torch")


def reference_norms(rows: np.ndarray) -> np.ndarray:
    return torch.linalg.vector_norm(torch.from_numpy(rows.astype(np.float64)), dim=1).numpy()  # (r,)


def test_float32_lengths_of_rows_whose_squares_overflow():
    rows = np.random.default_rng(0).standard_normal((6, 7)).astype(np.float32)  # (r, d)
    rows[1] *= 1e25  # squares past float32's range, length within it
    rows[2, 3] = np.inf
    rows[3, 0] = np.nan
    got = lengths(rows)
    assert got.dtype == np.float32
    want = reference_norms(rows).astype(np.float32)
    np.testing.assert_allclose(got[[0, 1, 4, 5]], want[[0, 1, 4, 5]], rtol=1e-6)
    assert np.isfinite(got[1]) and got[2] == np.inf and np.isnan(got[3])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_norms_of_a_bf16_matrix_in_blocks(dtype):
    values = torch.randn(700, 5, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)  # (V, d)
    raw = values.view(torch.int16).numpy().view(np.uint16)
    m = Matrix(raw=raw, dtype="BF16", name="w")
    got = row_norms(m, 3, 650, dtype)
    assert got.dtype == dtype and got.shape == (647,)
    want = reference_norms(values.float().numpy()[3:650])
    np.testing.assert_allclose(got, want, rtol=1e-6 if dtype is np.float32 else 1e-12)


def test_euclidean_is_cdist():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((4, 9)), rng.standard_normal((6, 9))  # (r, d), (c, d)
    a[1] = b[2]  # a distance of 0, where rounding may go below it
    got = euclidean(np.einsum("ij,ij->i", a, a), np.einsum("ij,ij->i", b, b), a @ b.T)  # (r, c)
    want = torch.cdist(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)  # the formula loses digits near 0
    assert got[1, 2] >= 0
