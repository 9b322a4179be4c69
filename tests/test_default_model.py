"""Checks on the bundled default model (embscope/data/shakespeare/).

Uses numpy + safetensors + tokenizers only, no embscope imports, so it checks
the shipped files themselves. See docs/default-model.md and
scripts/train_default_model.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

safetensors = pytest.importorskip("safetensors")
from safetensors import safe_open  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

DATA = Path(__file__).resolve().parent.parent / "embscope" / "data" / "shakespeare"
MODEL = DATA / "model.safetensors"
TOKENIZER = DATA / "tokenizer.json"

ROYAL = set(
    "queen prince duke lord kings crown throne majesty sovereign emperor "
    "earl bishop richard edward henry father brother son uncle".split()
)
META_KEYS = {
    "format", "dataset", "iter_num", "best_val_loss", "val_bits_per_char",
    "n_layer", "n_head", "n_embd", "block_size", "vocab_size", "tokenizer",
    "trained_with", "seed",
}


@pytest.fixture(scope="module")
def tensors():
    return load_file(str(MODEL))


@pytest.fixture(scope="module")
def meta():
    with safe_open(str(MODEL), framework="numpy") as f:
        return f.metadata()


@pytest.fixture(scope="module")
def tok():
    return Tokenizer.from_file(str(TOKENIZER))


def test_files_exist_and_nothing_else():
    assert MODEL.is_file()
    assert TOKENIZER.is_file()
    assert sorted(p.name for p in DATA.iterdir()) == ["model.safetensors", "tokenizer.json"]


def test_total_size_small():
    total = sum(p.stat().st_size for p in DATA.iterdir())
    assert total <= 10 * 1024 * 1024


def test_only_embedding_tensors(tensors):
    assert set(tensors) == {"transformer.wte.weight", "transformer.wpe.weight"}
    for t in tensors.values():
        assert t.dtype in (np.float32, np.float16)
        assert np.isfinite(t).all()


def test_metadata(meta):
    assert META_KEYS <= set(meta)
    assert meta["format"] == "nanogpt"
    assert meta["dataset"] == "tinyshakespeare"
    assert meta["trained_with"] == "scripts/train_default_model.py"
    assert 0 < float(meta["best_val_loss"]) < 10
    assert 0 < float(meta["val_bits_per_char"]) < 8
    assert int(meta["n_embd"]) % int(meta["n_head"]) == 0
    assert int(meta["n_layer"]) >= 1
    int(meta["iter_num"]), int(meta["seed"])


def test_shapes_match_metadata(tensors, meta):
    d = int(meta["n_embd"])
    assert tensors["transformer.wte.weight"].shape == (int(meta["vocab_size"]), d)
    assert tensors["transformer.wpe.weight"].shape == (int(meta["block_size"]), d)


def test_tokenizer_matches_wte(tok, tensors):
    assert tok.get_vocab_size() == tensors["transformer.wte.weight"].shape[0]
    text = "O Romeo, Romeo! wherefore art thou Romeo?\n"
    assert tok.decode(tok.encode(text).ids) == text


def test_king_is_one_token(tok):
    assert len(tok.encode(" king").ids) == 1


def _king_top10(tok, wte):
    W = wte.astype(np.float64)
    q = tok.encode(" king").ids[0]
    Wn = W / np.linalg.norm(W, axis=1, keepdims=True)
    sims = Wn @ Wn[q]
    sims[q] = -np.inf
    top = np.argsort(-sims)[:10]
    return [tok.decode([int(i)]) for i in top]


def test_quality_bar_king_neighbours(tok, tensors):
    top = _king_top10(tok, tensors["transformer.wte.weight"])
    hits = [t for t in top if t.strip().lower() in ROYAL]
    assert len(hits) >= 3, f"top-10 of ' king': {top}"


def test_wpe_neighbouring_positions_more_alike(tensors):
    P = tensors["transformer.wpe.weight"].astype(np.float64)
    Pn = P / np.linalg.norm(P, axis=1, keepdims=True)
    S = Pn @ Pn.T
    c1, c8, c32 = (np.diagonal(S, offset=k).mean() for k in (1, 8, 32))
    assert c1 > c8 > c32


# --- through embscope itself: the default model is what runs with no --model ---------------------


def test_embscope_uses_it_by_default(capsys, monkeypatch):
    from tests.helpers import run, tsv

    monkeypatch.delenv("EMBSCOPE_MODEL", raising=False)
    code, out, err = run(["info", "-f", "tsv"], capsys)
    facts = {r["field"]: r["value"] for r in tsv(out)}
    assert code == 0, err
    assert facts["source"].endswith("(embscope's bundled default)")
    assert (facts["vocab_rows"], facts["dim"], facts["positions"]) == ("3072", "256", "128")
    assert facts["dataset"] == "tinyshakespeare"


def test_embscope_neighbors_king_meets_the_quality_bar(tok, tensors, capsys, monkeypatch):
    from tests.helpers import run, tsv

    monkeypatch.delenv("EMBSCOPE_MODEL", raising=False)
    code, out, err = run(["neighbors", "king", "-f", "tsv"], capsys)
    assert code == 0, err
    tokens = [r["token"] for r in tsv(out)]
    assert tokens == _king_top10(tok, tensors["transformer.wte.weight"])
    assert len([t for t in tokens if t.strip().lower() in ROYAL]) >= 3


def test_embscope_by_offset_decays(capsys, monkeypatch):
    from tests.helpers import run, tsv

    monkeypatch.delenv("EMBSCOPE_MODEL", raising=False)
    code, out, _ = run(["positions", "--by-offset", "-f", "tsv"], capsys)
    mean = {int(r["offset"]): float(r["mean"]) for r in tsv(out)}
    assert mean[1] > mean[8] > mean[32]


def test_embscope_reports_the_tied_lm_head(capsys, monkeypatch):
    """nanoGPT ties lm_head to wte; the export keeps only wte and says format=nanogpt."""
    from tests.helpers import run, tsv

    monkeypatch.delenv("EMBSCOPE_MODEL", raising=False)
    code, out, _ = run(["info", "-f", "tsv"], capsys)
    assert {r["field"]: r["value"] for r in tsv(out)}["tied_lm_head"] == "yes"
