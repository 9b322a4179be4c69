"""`--matrix output` / `load(matrix="output")`: questions asked of the LM head instead of the
token embedding. References: the head as transformers loads it back (`get_output_embeddings`),
and the nanochat module's own `lm_head` as saved with torch.save."""

from __future__ import annotations

import numpy as np
import pytest

import embscope
from embscope.errors import EmbscopeError
from embscope.model import TIED_NOTE
from tests import format_writers as fw
from tests.helpers import run, tsv

from .conftest import to_f32


def _transformers_head(path: str) -> np.ndarray:
    from transformers import AutoModelForCausalLM

    return to_f32(AutoModelForCausalLM.from_pretrained(path).get_output_embeddings().weight)


@pytest.fixture(scope="module")
def nanochat_dir(tmp_path_factory, tiktoken_gpt2):
    """A nanochat run folder (one step): untied lm_head, padded to a multiple of 64 rows."""
    import torch

    base = tmp_path_factory.mktemp("nanochat-head")
    enc = fw.nanochat_encoding(tiktoken_gpt2, 500)
    torch.manual_seed(3)
    model = fw.NanochatLike(enc.n_vocab)
    config = {"sequence_len": 64, "vocab_size": enc.n_vocab, "n_layer": 2, "n_head": 2, "n_kv_head": 2, "n_embd": 16}
    fw.save_nanochat_step(base / "base_checkpoints" / "d2", 100, model, config, val_bpb=1.0)
    fw.save_nanochat_tokenizer(base, enc)
    return base / "base_checkpoints" / "d2", model, enc.n_vocab


@pytest.mark.parametrize("name,key", [("llama", "lm_head.weight"), ("pythia", "embed_out.weight")])
def test_untied_head_is_what_transformers_loads(hf_models, name, key):
    ref = hf_models[name]
    m = embscope.load(ref.path, matrix="output")
    head = _transformers_head(ref.path)
    assert m.matrix == "output" and m.emb.head_key == key and m.emb.notes == []
    assert np.array_equal(m.wte, head)
    assert not np.array_equal(m.wte, ref.wte)  # really the other matrix
    assert np.array_equal(embscope.load(ref.path).wte, ref.wte)  # the input one by default


def test_nanochat_head_and_its_padding(nanochat_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.cache/nanochat of the caller's
    monkeypatch.delenv("NANOCHAT_BASE_DIR", raising=False)
    folder, model, n_vocab = nanochat_dir
    m = embscope.load(str(folder), matrix="output")
    assert np.array_equal(m.wte, to_f32(model.lm_head.weight))
    assert m.n_tokens == n_vocab < m.wte.shape[0]  # rows past the tokenizer are padding here too
    norms = m.norms(centroid=False)
    assert np.allclose(norms.token, np.linalg.norm(to_f32(model.lm_head.weight)[:n_vocab].astype(np.float64), axis=1),
                       rtol=1e-6)


@pytest.mark.parametrize("name", ["gpt2-lm", "bloom"])
def test_tied_models_have_one_matrix(hf_models, name):
    ref = hf_models[name]
    m = embscope.load(ref.path, matrix="output")
    assert m.emb.output_tied and TIED_NOTE in m.emb.notes
    assert np.array_equal(m.wte, _transformers_head(ref.path))
    assert np.array_equal(m.wte, ref.wte)


def test_nanogpt_head_shares_storage(nanogpt_ckpts):
    ref = nanogpt_ckpts["bpe"]
    m = embscope.load(ref.path, matrix="output")
    assert m.emb.output_tied
    assert np.array_equal(m.wte, to_f32(ref.model.lm_head.weight))


@pytest.mark.parametrize("name", ["gpt2-base", "bert"])
def test_headless_checkpoints_refuse(hf_models, name):
    with pytest.raises(EmbscopeError, match="holds no output embedding"):
        embscope.load(hf_models[name].path, matrix="output")


def test_unknown_matrix():
    with pytest.raises(EmbscopeError, match=r"unknown matrix 'lm' \(choose from input, output\)"):
        embscope.load(matrix="lm")


def test_embed_refuses_the_output_matrix(hf_models):
    m = embscope.load(hf_models["gpt2-lm"].path, matrix="output")
    with pytest.raises(EmbscopeError, match="load the model with matrix='input'"):
        m.embed("the cat")


def test_cli_neighbors_on_the_head(hf_models, capsys):
    """Cosine neighbours of #5 over the head's rows, against plain numpy on transformers' head."""
    ref = hf_models["llama"]
    head = _transformers_head(ref.path).astype(np.float64)
    unit = head / np.linalg.norm(head, axis=1, keepdims=True)
    scores = unit @ unit[5]
    scores[5] = -np.inf
    expect = np.argsort(-scores, kind="stable")[:5]
    code, out, err = run(["neighbors", "#5", "-k", "5", "--matrix", "output", "-m", ref.path, "-f", "tsv"], capsys)
    assert code == 0, err
    rows = tsv(out)
    assert [int(r["id"]) for r in rows] == expect.tolist()
    assert np.allclose([float(r["score"]) for r in rows], scores[expect], atol=1e-6)


def test_cli_norms_on_the_head(hf_models, capsys):
    ref = hf_models["pythia"]
    head = _transformers_head(ref.path).astype(np.float64)
    code, out, err = run(["norms", "--matrix", "output", "-m", ref.path, "-f", "tsv"], capsys)
    assert code == 0, err
    token = next(r for r in tsv(out) if r["rows"] == "token")
    assert float(token["max"]) == pytest.approx(np.linalg.norm(head, axis=1).max(), rel=1e-5)
    assert float(token["mean"]) == pytest.approx(np.linalg.norm(head, axis=1).mean(), rel=1e-5)


def test_cli_says_when_the_head_is_tied(hf_models, capsys):
    code, out, err = run(["neighbors", "#5", "--matrix", "output", "-m", hf_models["gpt2-lm"].path, "-f", "tsv"], capsys)
    assert code == 0 and err == TIED_NOTE + "\n"
    code, out, err = run(["neighbors", "#5", "--matrix", "output", "-m", hf_models["gpt2-base"].path], capsys)
    assert code == 1 and out == ""
    assert err.startswith("embscope: error: ") and "holds no output embedding" in err and err.count("\n") == 1
    code, out, err = run(["norms", "--matrix", "lm"], capsys)
    assert code == 2 and err == "embscope: error: unknown --matrix 'lm' (choose from input, output)\n"


@pytest.mark.parametrize("name,expect", [
    ("llama", "lm_head.weight (untied)"),
    ("pythia", "embed_out.weight (untied)"),
    ("gpt2-lm", "token_tensor (tied)"),
    ("gpt2-base", "none (no LM head in this checkpoint)"),
])
def test_info_names_the_output_tensor(hf_models, name, expect, capsys):
    code, out, err = run(["info", "-m", hf_models[name].path, "-f", "tsv"], capsys)
    assert code == 0, err
    assert {r["field"]: r["value"] for r in tsv(out)}["output_tensor"] == expect


def test_info_nanogpt_head_shares_storage(nanogpt_ckpts, capsys):
    code, out, _ = run(["info", "-m", nanogpt_ckpts["bpe"].path, "-f", "tsv"], capsys)
    assert {r["field"]: r["value"] for r in tsv(out)}["output_tensor"] == \
        "token_tensor (tied); lm_head.weight shares its storage"
