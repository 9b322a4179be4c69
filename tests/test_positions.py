"""`embscope positions` against numpy on the reference position matrices."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.builders import save_gpt2, save_hf
from tests.helpers import jsonl, run, tsv


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    d = tmp_path_factory.mktemp("gpt2")
    model = save_gpt2(d, dtype=torch.bfloat16)
    return d, model.transformer.wpe.weight.detach().float().numpy().astype(np.float64)


def cosine(p):
    u = p / np.linalg.norm(p, axis=1, keepdims=True)
    return u @ u.T


def reference(p, metric):
    if metric == "cosine":
        return cosine(p)
    if metric == "dot":
        return p @ p.T
    return np.linalg.norm(p[:, None, :] - p[None, :, :], axis=2)


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
def test_matrix_tsv_equals_numpy(gpt2, metric, capsys):
    d, wpe = gpt2
    code, out, err = run(["positions", "-m", str(d), "--metric", metric, "--range", "3:40", "--step", "4", "-f", "tsv"], capsys)
    assert code == 0, err
    rows = tsv(out)
    labels = list(range(3, 40, 4))
    assert [int(r["position"]) for r in rows] == labels
    assert list(rows[0])[1:] == [str(p) for p in labels]
    got = np.array([[float(r[str(q)]) for q in labels] for r in rows])
    np.testing.assert_allclose(got, reference(wpe[labels], metric), rtol=1e-4, atol=1e-5)


def test_json_jsonl_and_npy(gpt2, capsys, tmp_path):
    d, wpe = gpt2
    expected = cosine(wpe)
    code, out, _ = run(["positions", "-m", str(d), "-f", "json"], capsys)
    doc = json.loads(out)
    assert doc["positions"] == list(range(64)) and doc["metric"] == "cosine"
    np.testing.assert_allclose(doc["matrix"], expected, atol=1e-6)
    code, out, _ = run(["positions", "-m", str(d), "-f", "jsonl", "--range", ":5"], capsys)
    assert [r["position"] for r in jsonl(out)] == [0, 1, 2, 3, 4]
    np.testing.assert_allclose([r["values"] for r in jsonl(out)], expected[:5, :5], atol=1e-6)
    code, out, err = run(["positions", "-m", str(d), "-o", str(tmp_path / "m.npy")], capsys)
    assert code == 0 and out == ""
    np.testing.assert_allclose(np.load(tmp_path / "m.npy"), expected, atol=1e-6)


def test_by_offset_is_mean_of_diagonals(gpt2, capsys):
    d, wpe = gpt2
    sim = cosine(wpe[10:50])
    code, out, _ = run(["positions", "-m", str(d), "--range", "10:50", "--by-offset", "-f", "tsv"], capsys)
    rows = tsv(out)
    for o, r in enumerate(rows):
        pairs = [sim[i, i + o] for i in range(40 - o)]
        assert int(r["offset"]) == o and int(r["pairs"]) == len(pairs)
        assert float(r["mean"]) == pytest.approx(np.mean(pairs), abs=1e-5)


def test_heatmap_and_png(gpt2, capsys, tmp_path):
    d, _ = gpt2
    code, out, err = run(["positions", "-m", str(d), "--heatmap"], capsys)
    assert code == 0 and "cosine similarity" in out and "\x1b" not in out  # not a terminal: no colour
    png = tmp_path / "heat.png"
    code, out, err = run(["positions", "-m", str(d), "-o", str(png)], capsys)
    assert code == 0 and out == ""
    import matplotlib.image

    assert matplotlib.image.imread(png).shape[0] > 100


def test_opt_positions_skip_the_offset(tmp_path, capsys):
    model = save_hf(tmp_path, "opt")
    table = model.model.decoder.embed_positions.weight.detach().numpy().astype(np.float64)
    code, out, _ = run(["positions", "-m", str(tmp_path), "-f", "json"], capsys)
    np.testing.assert_allclose(json.loads(out)["matrix"], cosine(table[2:]), atol=1e-6)


def test_no_learned_positions(tmp_path, capsys):
    save_hf(tmp_path, "llama")
    code, out, err = run(["positions", "-m", str(tmp_path)], capsys)
    assert (code, out) == (1, "")
    assert err == (f"embscope: error: {tmp_path}: this model has no learned position embeddings"
                   " (llama family: positions are rotary, ALiBi or absent)\n")


@pytest.mark.parametrize("bad", ["5", "a:b", "10:5", "0:65", "-1:3"])
def test_bad_range(gpt2, bad, capsys):
    d, _ = gpt2
    code, out, err = run(["positions", "-m", str(d), "--range", bad], capsys)
    assert code == 2 and out == "" and err.startswith(f"embscope: error: --range '{bad}'")
