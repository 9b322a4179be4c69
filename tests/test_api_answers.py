"""The API calls the CLI's info, norms and positions commands are wrappers of (Model.info,
Model.norms(centroid=...), Model.norm_outliers, PositionSimilarity.by_offset_array,
Embedding.norms), against the saved files read by safetensors and transformers, and numpy on
the saved state dict."""

from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
import torch
from safetensors import safe_open

import embscope
from embscope.errors import ScoreOverflowError
from tests.builders import save_gpt2, save_hf, save_nanogpt_bpe
from tests.helpers import run


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    """(directory, embscope.Model, the transformers GPT2LMHeadModel saved there)."""
    d = tmp_path_factory.mktemp("answers-gpt2")
    model = save_gpt2(d)
    return d, embscope.load(str(d)), model


def _wte(model) -> np.ndarray:
    return model.transformer.wte.weight.detach().double().numpy()


def _ranking(values: np.ndarray, largest: bool, k: int) -> list[int]:
    """Ids of the k largest (smallest) finite values, ties by id: numpy's stable sort."""
    ids = np.flatnonzero(np.isfinite(values))
    order = np.argsort(-values[ids] if largest else values[ids], kind="stable")
    return ids[order][:k].tolist()


# --- info --------------------------------------------------------------------------------------

def test_info_against_the_safetensors_file(gpt2):
    d, m, model = gpt2
    path = os.path.join(d, "model.safetensors")
    with open(path, "rb") as f:
        header_len = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(header_len))
    info = m.info()
    facts = info.as_dict()
    assert info.name == str(d) and facts["source"] == str(d)
    assert facts["files"] == path and facts["format"] == "safetensors" and facts["family"] == "gpt2"
    wte, wpe = header[facts["token_tensor"]], header[facts["position_tensor"]]
    with safe_open(path, framework="numpy") as f:
        assert {facts["token_tensor"], facts["position_tensor"]} <= set(f.keys())
        assert facts["meta.format"] == f.metadata()["format"]
    assert wte["shape"] == [facts["vocab_rows"], facts["dim"]] == [model.config.vocab_size, model.config.n_embd]
    assert wpe["shape"] == [facts["positions"], facts["dim"]] and facts["positions"] == model.config.n_positions
    assert (facts["tokens"], facts["padding_rows"], facts["position_offset"]) == (model.config.vocab_size, 0, 0)
    assert facts["dtype"] == "float32" and wte["dtype"] == "F32"
    assert facts["tied_lm_head"] == ("yes" if model.config.tie_word_embeddings else "no")
    assert facts["file_bytes"] == os.path.getsize(path)
    tensor_bytes = sum(t["data_offsets"][1] - t["data_offsets"][0] for t in (wte, wpe))
    assert tensor_bytes <= facts["read_bytes"] <= tensor_bytes + 8 + header_len
    assert facts["tokenizer_source"] == os.path.join(d, "tokenizer.json")
    assert info["dim"] == facts["dim"] and [f for f, _ in info.facts] == list(facts)
    with pytest.raises(KeyError):
        info["no such fact"]


def test_info_is_what_the_cli_prints(gpt2, capsys):
    d, m, _ = gpt2
    code, out, err = run(["info", "-m", str(d), "-f", "json"], capsys)
    assert (code, err) == (0, "")
    printed = json.loads(out)  # -f json: one object, Info.as_dict(), keys in the order of the records
    records = m.info().to_records()
    assert list(printed) == [r["field"] for r in records]
    assert {f: v for f, v in printed.items() if f != "load_seconds"} == {
        r["field"]: r["value"] for r in records if r["field"] != "load_seconds"}


# --- norms -------------------------------------------------------------------------------------

def test_norms_without_centroid(gpt2):
    _, m, model = gpt2
    w = _wte(model)
    quick, full = m.norms(centroid=False), m.norms()
    assert quick.centroid_distance is None
    np.testing.assert_allclose(quick.token, np.linalg.norm(w, axis=1), rtol=1e-12)
    np.testing.assert_array_equal(quick.token, full.token)
    np.testing.assert_allclose(quick.position, np.linalg.norm(model.transformer.wpe.weight.detach().double().numpy(), axis=1),
                               rtol=1e-12)
    assert quick.to_records() == full.to_records()
    with pytest.raises(embscope.EmbscopeError, match=r"^centroid distances were not computed: use norms\(centroid=True\)$"):
        quick.values("centroid_distance")
    with pytest.raises(embscope.EmbscopeError, match=r"^unknown value 'x' \(choose from norm, centroid_distance\)$"):
        quick.values("x")


def test_norm_outliers_by_norm_and_by_centroid(gpt2):
    _, m, model = gpt2
    w = _wte(model)
    norms = np.linalg.norm(w, axis=1)
    distance = np.linalg.norm(w - w.mean(axis=0), axis=1)
    by_norm = m.norm_outliers(5, 3)
    assert by_norm.ids.tolist() == _ranking(norms, True, 5) + _ranking(norms, False, 3)
    assert by_norm.ends == ("largest",) * 5 + ("smallest",) * 3
    assert by_norm.ranks.tolist() == [1, 2, 3, 4, 5, 1, 2, 3]
    np.testing.assert_allclose(by_norm.values, norms[by_norm.ids], rtol=1e-12)
    assert by_norm.to_records()[0] == {"end": "largest", "rank": 1, "id": int(by_norm.ids[0]),
                                       "token": m.token(int(by_norm.ids[0])), "norm": float(by_norm.values[0])}
    by_centroid = m.norm_outliers(4, 2, centroid=True)
    assert by_centroid.ids.tolist() == _ranking(distance, True, 4) + _ranking(distance, False, 2)
    assert by_centroid.ends == ("far",) * 4 + ("near",) * 2
    np.testing.assert_allclose(by_centroid.values, distance[by_centroid.ids], rtol=1e-9)
    np.testing.assert_allclose(by_centroid.norms, norms[by_centroid.ids], rtol=1e-12)
    assert list(by_centroid.to_records()[-1]) == ["end", "rank", "id", "token", "centroid_distance", "norm"]
    assert len(m.norm_outliers(0, 2)) == 2
    # norms computed without centroid distances are recomputed with them when needed
    again = m.norm_outliers(4, 2, centroid=True, norms=m.norms(centroid=False))
    assert again.ids.tolist() == by_centroid.ids.tolist()


def test_nan_rows_are_left_out_of_outliers(tmp_path):
    path, state = save_nanogpt_bpe(tmp_path, nan_rows=[3, 9])
    w = state["transformer.wte.weight"].double().numpy()[:50257]
    m = embscope.load(str(path))
    norms = m.norms()
    assert norms.nonfinite().tolist() == [3, 9]
    assert len(norms.finite()) == 50257 - 2
    got = m.norm_outliers(6, 6, centroid=True, norms=norms)
    assert not {3, 9} & set(got.ids.tolist())
    ok = np.isfinite(w).all(axis=1)
    distance = np.where(ok, np.linalg.norm(w - w[ok].mean(axis=0), axis=1), np.nan)
    assert got.ids.tolist() == _ranking(distance, True, 6) + _ranking(distance, False, 6)
    assert len(norms.padding) == 47  # nanoGPT's vocabulary padded to 50304 rows


# --- positions, embeddings, model facts --------------------------------------------------------

def test_by_offset_array_is_the_mean_of_each_diagonal(gpt2):
    _, m, model = gpt2
    p = model.transformer.wpe.weight.detach().double().numpy()[10:50:5]  # (8, d)
    d = np.linalg.norm(p[:, None] - p[None], axis=-1)  # (8, 8) euclidean distances
    got = m.positions("euclidean", start=10, stop=50, step=5).by_offset_array()
    assert got.shape == (8, 2) and got.dtype == np.float64
    assert got[:, 0].tolist() == [0, 5, 10, 15, 20, 25, 30, 35]
    np.testing.assert_allclose(got[:, 1], [np.diagonal(d, o).mean() for o in range(8)], rtol=1e-5, atol=1e-5)


def test_embedding_norms_equal_the_hidden_state_norms(gpt2):
    _, m, model = gpt2
    e = m.embed("The king's crown")
    with torch.no_grad():
        ref = model(torch.tensor([list(e.ids)]), output_hidden_states=True).hidden_states[0][0].double().numpy()
    np.testing.assert_allclose(e.norms(), np.linalg.norm(ref, axis=1), rtol=1e-5)
    np.testing.assert_allclose(e.norms("sum", "mean"), np.linalg.norm(ref.mean(axis=0)), rtol=1e-5)
    np.testing.assert_allclose(e.norms("token", "last"), np.linalg.norm(_wte(model)[e.ids[-1]]), rtol=1e-5)


def test_positions_facts(gpt2, tmp_path):
    _, m, model = gpt2
    assert m.n_positions == model.config.n_positions
    m.require_positions()
    save_hf(tmp_path, "llama")
    rotary = embscope.load(str(tmp_path))
    assert rotary.n_positions == 0
    with pytest.raises(embscope.EmbscopeError, match="this model has no learned position embeddings"):
        rotary.require_positions()


def test_score_overflow_is_said_in_the_api_terms(tmp_path):
    from safetensors.numpy import save_file

    w = np.random.default_rng(0).standard_normal((40, 8)).astype(np.float32)
    w[4] *= 1e30
    save_file({"wte.weight": w}, str(tmp_path / "model.safetensors"))
    m = embscope.load(str(tmp_path))
    longest = float(np.linalg.norm(w[4].astype(np.float64)))
    with pytest.raises(ScoreOverflowError) as e:
        m.neighbors("#4", metric="dot")
    assert str(e.value) == (f"metric 'dot': vectors this long (norms up to {longest:.3g}) overflow float32 scores;"
                            " use the cosine metric")
    assert (e.value.metric, e.value.longest) == ("dot", pytest.approx(longest, rel=1e-6))
    assert m.neighbors("#3", metric="cosine", k=2).ids.tolist() != []
