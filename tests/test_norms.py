"""`embscope norms` against numpy on the reference matrices."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.builders import save_gpt2, save_nanogpt_bpe
from tests.helpers import run, tsv


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    d = tmp_path_factory.mktemp("gpt2")
    model = save_gpt2(d, dtype=torch.float16)
    wte = model.transformer.wte.weight.detach().float().numpy().astype(np.float64)
    wpe = model.transformer.wpe.weight.detach().float().numpy().astype(np.float64)
    return d, wte, wpe


def expected_stats(v):
    return {"count": len(v), "mean": v.mean(), "std": v.std(), "min": v.min(), "p1": np.percentile(v, 1),
            "p50": np.median(v), "p99": np.percentile(v, 99), "max": v.max()}


def test_statistics(gpt2, capsys):
    d, wte, wpe = gpt2
    code, out, err = run(["norms", "-m", str(d), "-f", "tsv"], capsys)
    assert code == 0, err
    rows = {r["rows"]: r for r in tsv(out)}
    for name, m in (("token", wte), ("position", wpe)):
        for key, value in expected_stats(np.linalg.norm(m, axis=1)).items():
            assert float(rows[name][key]) == pytest.approx(value, rel=1e-5), (name, key)


def test_top_bottom(gpt2, capsys):
    d, wte, _ = gpt2
    norms = np.linalg.norm(wte, axis=1)
    code, out, _ = run(["norms", "-m", str(d), "--top", "5", "--bottom", "3", "-f", "tsv"], capsys)
    rows = tsv(out)
    assert [int(r["id"]) for r in rows if r["end"] == "largest"] == list(np.argsort(-norms, kind="stable")[:5])
    assert [int(r["id"]) for r in rows if r["end"] == "smallest"] == list(np.argsort(norms, kind="stable")[:3])
    for r in rows:
        assert float(r["norm"]) == pytest.approx(norms[int(r["id"])], rel=1e-5)


def test_centroid_both_ends_and_all(gpt2, capsys):
    d, wte, _ = gpt2
    dist = np.linalg.norm(wte - wte.mean(axis=0), axis=1)
    code, out, _ = run(["norms", "-m", str(d), "--centroid", "-f", "tsv"], capsys)
    rows = tsv(out)
    assert [int(r["id"]) for r in rows if r["end"] == "far"] == list(np.argsort(-dist, kind="stable")[:10])
    assert [int(r["id"]) for r in rows if r["end"] == "near"] == list(np.argsort(dist, kind="stable")[:10])
    code, out, _ = run(["norms", "-m", str(d), "--all", "-f", "tsv"], capsys)
    rows = tsv(out)
    assert len(rows) == 50257
    np.testing.assert_allclose([float(r["centroid_distance"]) for r in rows], dist, rtol=1e-5)
    np.testing.assert_allclose([float(r["norm"]) for r in rows], np.linalg.norm(wte, axis=1), rtol=1e-5)
    assert rows[5822]["token"] == " king"


def test_padding_reported_separately(tmp_path, capsys):
    path, state = save_nanogpt_bpe(tmp_path)
    wte = state["transformer.wte.weight"].float().numpy().astype(np.float64)
    code, out, _ = run(["norms", "-m", str(path), "-f", "tsv"], capsys)
    rows = {r["rows"]: r for r in tsv(out)}
    assert int(rows["token"]["count"]) == 50257 and int(rows["padding"]["count"]) == 47
    assert float(rows["padding"]["mean"]) == pytest.approx(np.linalg.norm(wte[50257:], axis=1).mean(), rel=1e-5)


def test_nan_rows_reported(tmp_path, capsys):
    path, _ = save_nanogpt_bpe(tmp_path, nan_rows=[3])
    code, out, err = run(["norms", "-m", str(path), "-f", "tsv"], capsys)
    assert code == 0
    assert "1 token rows hold NaN or Inf and are left out of the statistics: #3" in err
    rows = {r["rows"]: r for r in tsv(out)}
    assert int(rows["token"]["nonfinite"]) == 1 and int(rows["token"]["count"]) == 50256


def test_histogram_png(gpt2, capsys, tmp_path):
    d, _, _ = gpt2
    code, out, err = run(["norms", "-m", str(d), "-o", str(tmp_path / "h.png")], capsys)
    assert code == 0 and (tmp_path / "h.png").stat().st_size > 1000
