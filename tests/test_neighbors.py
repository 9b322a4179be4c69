"""`embscope neighbors` against brute force on the reference matrices, and gensim for analogies."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import GPT2LMHeadModel

from tests.builders import save_gpt2, save_nanogpt_bpe
from tests.helpers import jsonl, run, tsv

KING = 5822  # " king" in GPT-2's BPE
DTYPES = ["float32", "float16", "bfloat16"]


@pytest.fixture(scope="module", params=DTYPES)
def gpt2(request, tmp_path_factory):
    """(model directory, reference float32 wte) for a tiny GPT-2 saved in each dtype."""
    d = tmp_path_factory.mktemp(f"gpt2-{request.param}")
    save_gpt2(d, dtype=getattr(torch, request.param))
    ref = GPT2LMHeadModel.from_pretrained(d, dtype=getattr(torch, request.param))
    return d, ref.get_input_embeddings().weight.detach().float().numpy()


def brute_force(wte: np.ndarray, query: np.ndarray, metric: str, k: int, exclude: list[int]):
    """Reference: full score vector, numpy argsort (stable: ties by id)."""
    w = wte.astype(np.float64)
    q = query.astype(np.float64)
    if metric == "cosine":
        scores = (w @ q) / (np.linalg.norm(w, axis=1) * np.linalg.norm(q))
    elif metric == "dot":
        scores = w @ q
    else:
        scores = -np.linalg.norm(w - q, axis=1)
    scores[exclude] = -np.inf
    order = np.argsort(-scores, kind="stable")[:k]
    return order.tolist(), np.abs(scores[order]) if metric == "euclidean" else scores[order]


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
def test_top_k_equals_brute_force(gpt2, metric, capsys):
    d, wte = gpt2
    code, out, err = run(["neighbors", "king", "-m", str(d), "-k", "15", "--metric", metric, "-f", "tsv"], capsys)
    assert code == 0, err
    rows = tsv(out)
    ids, scores = brute_force(wte, wte[KING], metric, 15, [KING])
    assert [int(r["id"]) for r in rows] == ids
    np.testing.assert_allclose([float(r["score"]) for r in rows], scores, rtol=1e-4, atol=1e-5)
    assert [int(r["rank"]) for r in rows] == list(range(1, 16))


def test_query_word_means_mid_sentence_token(gpt2, capsys):
    d, _ = gpt2
    code, out, _ = run(["neighbors", "king", "-m", str(d), "-k", "3", "--include-query", "-f", "jsonl"], capsys)
    assert jsonl(out)[0]["id"] == KING and jsonl(out)[0]["token"] == " king"
    code, out, _ = run(["neighbors", "king", "--exact", "-m", str(d), "-k", "1", "--include-query", "-f", "jsonl"], capsys)
    assert jsonl(out)[0]["id"] == 3364  # "king" without the space
    code, out, _ = run(["neighbors", "#5822", "-m", str(d), "-k", "1", "--include-query", "-f", "jsonl"], capsys)
    assert jsonl(out)[0]["id"] == KING


def test_several_token_query_uses_mean_and_says_so(gpt2, capsys):
    d, wte = gpt2
    from tests.builders import gpt2_tokenizer

    ids = gpt2_tokenizer().encode("Solidarność")  # " Solidarność" is not one token either: as typed
    assert len(ids) > 1
    code, out, err = run(["neighbors", "Solidarność", "-m", str(d), "-k", "5", "-f", "tsv"], capsys)
    assert code == 0
    assert "tokens" in err and "mean" in err
    ref, _ = brute_force(wte, wte[ids].mean(axis=0), "cosine", 5, ids)
    assert [int(r["id"]) for r in tsv(out)] == ref


def _gensim(wte: np.ndarray):
    from gensim.models import KeyedVectors

    kv = KeyedVectors(vector_size=wte.shape[1])
    kv.add_vectors([str(i) for i in range(len(wte))], wte)
    return kv


def test_analogy_equals_gensim_3cosadd_and_3cosmul(gpt2, capsys):
    d, wte = gpt2
    man, woman = 582, 2415  # " man", " woman"
    kv = _gensim(wte)
    expected = kv.most_similar(positive=[str(KING), str(woman)], negative=[str(man)], topn=10)
    code, out, err = run(["neighbors", "king", "-", "man", "+", "woman", "-m", str(d), "-f", "tsv"], capsys)
    assert code == 0, err
    rows = tsv(out)
    assert [int(r["id"]) for r in rows] == [int(k) for k, _ in expected]
    np.testing.assert_allclose([float(r["score"]) for r in rows], [s for _, s in expected], atol=1e-5)

    expected = kv.most_similar_cosmul(positive=[str(KING), str(woman)], negative=[str(man)], topn=10)
    code, out, _ = run(["neighbors", "king - man + woman", "--cosmul", "-m", str(d), "-f", "tsv"], capsys)
    rows = tsv(out)
    assert [int(r["id"]) for r in rows] == [int(k) for k, _ in expected]
    np.testing.assert_allclose([float(r["score"]) for r in rows], [s for _, s in expected], rtol=1e-4)


def test_batch_from_stdin_equals_single_queries(gpt2, capsys, monkeypatch):
    d, wte = gpt2
    words = ["king", "queen", "#100", "river", "king - man + woman", "New York"]
    code, out, err = run(["neighbors", "-", "-m", str(d), "-k", "4", "-f", "jsonl"], capsys,
                         stdin="\n".join(words) + "\n\n", monkeypatch=monkeypatch)
    assert code == 0, err
    batch = jsonl(out)
    assert [r["query"] for r in batch] == [w for w in words for _ in range(4)]
    for w in words:
        _, single, _ = run(["neighbors", w, "-m", str(d), "-k", "4", "-f", "jsonl"], capsys)
        assert [r["id"] for r in jsonl(single)] == [r["id"] for r in batch if r["query"] == w]


def test_padding_rows_never_returned(tmp_path, capsys):
    """nanoGPT pads GPT-2's vocabulary to 50304; rows 50257.. are not tokens, even when they
    are the nearest vectors."""
    path, state = save_nanogpt_bpe(tmp_path, pad_like=KING)
    wte = state["transformer.wte.weight"].float().numpy()
    code, out, err = run(["neighbors", "king", "-m", str(path), "-k", "20", "-f", "tsv"], capsys)
    assert code == 0, err
    ids = [int(r["id"]) for r in tsv(out)]
    assert max(ids) < 50257
    ref, _ = brute_force(wte[:50257], wte[KING], "cosine", 20, [KING])
    assert ids == ref


def test_all_graph_equals_brute_force(tmp_path, capsys):
    from tests.builders import save_char_nanogpt

    path, state = save_char_nanogpt(tmp_path)
    wte = state["transformer.wte.weight"].float().numpy()
    code, out, err = run(["neighbors", "--all", "-k", "3", "-m", str(path), "-f", "tsv"], capsys)
    assert code == 0, err
    rows = tsv(out)
    assert len(rows) == 3 * len(wte)
    for i in range(len(wte)):
        ref, scores = brute_force(wte, wte[i], "cosine", 3, [i])
        got = [r for r in rows if int(r["id"]) == i]
        assert [int(r["neighbor_id"]) for r in got] == ref
        np.testing.assert_allclose([float(r["score"]) for r in got], scores, atol=1e-5)


def test_nan_rows_reported_and_left_out(tmp_path, capsys):
    path, state = save_nanogpt_bpe(tmp_path, nan_rows=[7, 11])
    code, out, err = run(["neighbors", "king", "-m", str(path), "-k", "50", "-f", "tsv"], capsys)
    assert code == 0
    assert "2 token rows hold NaN or Inf and are left out: #7, #11" in err
    assert not {7, 11} & {int(r["id"]) for r in tsv(out)}


@pytest.mark.parametrize("width", [50, 5000, 50257])
@pytest.mark.parametrize("k", [1, 10, 60])
def test_topk_rows_equals_full_sort_with_ties(width, k):
    """The block-max prefilter is exact, ties (rounded scores) go to the smaller id, and -inf
    entries are never returned."""
    from embscope.analysis.topk import topk_rows

    rng = np.random.default_rng(width + k)
    scores = np.round(rng.standard_normal((40, width)), 1).astype(np.float32)
    scores[3, :] = -np.inf
    scores[4, 7:] = -np.inf
    ids, vals = topk_rows(scores, k)
    cols = np.broadcast_to(np.arange(width), scores.shape)
    order = np.lexsort((cols, -scores), axis=1)[:, : min(k, width)]
    expected = np.where(np.isfinite(np.take_along_axis(scores, order, axis=1)), order, -1)
    np.testing.assert_array_equal(ids, expected)
    assert (ids[3] == -1).all() and (ids[4][:7] >= 0).all() and (ids[4][7:] == -1).all()
