"""The Python API against independent references: transformers' models, numpy brute force, gensim."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import embscope
from tests.builders import gpt2_tokenizer, save_gpt2, save_hf

KING = 5822  # " king" in GPT-2's BPE


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    """(embscope.Model, the transformers GPT2LMHeadModel it was saved from)."""
    d = tmp_path_factory.mktemp("api-gpt2")
    model = save_gpt2(d)
    return embscope.load(str(d)), model


def _wte(model) -> np.ndarray:
    return model.transformer.wte.weight.detach().numpy()


def _cosine_ranking(w: np.ndarray, q: np.ndarray, exclude: list[int], k: int):
    w64, q64 = w.astype(np.float64), q.astype(np.float64)
    scores = (w64 @ q64) / (np.linalg.norm(w64, axis=1) * np.linalg.norm(q64))
    scores[exclude] = -np.inf
    order = np.argsort(-scores, kind="stable")[:k]
    return order, scores[order]


def test_public_surface():
    assert set(embscope.__all__) <= set(dir(embscope))
    for name in embscope.__all__:
        assert getattr(embscope, name) is not None
    with pytest.raises(AttributeError):
        embscope.no_such_thing  # noqa: B018


def test_matrices_are_the_models(gpt2):
    m, model = gpt2
    np.testing.assert_array_equal(m.wte, _wte(model))
    np.testing.assert_array_equal(m.wpe, model.transformer.wpe.weight.detach().numpy())
    assert isinstance(m.wte, np.memmap)  # float32 on disk: no copy
    assert m.token(KING) == " king" and m.tokenizer.encode(" king") == [KING]


def test_neighbors_equal_brute_force(gpt2):
    m, model = gpt2
    result = m.neighbors("king", k=12)
    ids, scores = _cosine_ranking(_wte(model), _wte(model)[KING], [KING], 12)
    assert result.ids.tolist() == ids.tolist()
    np.testing.assert_allclose(result.scores, scores, rtol=1e-5, atol=1e-6)
    assert [n.rank for n in result] == list(range(1, 13))
    assert result.tokens == tuple(m.token(i) for i in ids.tolist())
    records = result.to_records()
    assert records[0] == {"rank": 1, "id": int(ids[0]), "token": m.token(int(ids[0])), "score": float(result.scores[0])}


def test_analogy_equals_gensim(gpt2):
    from gensim.models import KeyedVectors

    m, model = gpt2
    w = _wte(model)
    kv = KeyedVectors(vector_size=w.shape[1])
    kv.add_vectors([str(i) for i in range(len(w))], w)
    tok = gpt2_tokenizer()
    king, man, woman = (tok(" " + t)["input_ids"][0] for t in ("king", "man", "woman"))
    for cosmul, ref in ((False, kv.most_similar), (True, kv.most_similar_cosmul)):
        want = ref(positive=[str(king), str(woman)], negative=[str(man)], topn=5)
        got = m.neighbors("king - man + woman", k=5, cosmul=cosmul)
        assert got.ids.tolist() == [int(i) for i, _ in want]
        np.testing.assert_allclose(got.scores, [s for _, s in want], rtol=1e-4, atol=1e-5)


def test_neighbors_many_equals_one_by_one(gpt2):
    m, _ = gpt2
    queries = ["king", "#5822", "queen", "the cat"]
    many = m.neighbors_many(queries, k=7)
    for q, got in zip(queries, many):
        one = m.neighbors(q, k=7)
        assert got.query == q and got.ids.tolist() == one.ids.tolist()
        np.testing.assert_allclose(got.scores, one.scores, rtol=1e-6, atol=1e-7)


def test_knn_graph_equals_brute_force(gpt2):
    m, model = gpt2
    w = _wte(model)
    blocks = list(m.knn_graph(k=4, rows=slice(100, 700)))
    assert np.concatenate([b.ids for b in blocks]).tolist() == list(range(100, 700))
    for b in blocks:
        for i, row, scores in zip(b.ids[::97], b.neighbor_ids[::97], b.scores[::97]):
            ids, ref = _cosine_ranking(w, w[i], [int(i)], 4)
            assert row.tolist() == ids.tolist()
            np.testing.assert_allclose(scores, ref, rtol=1e-5, atol=1e-6)
    records = blocks[0].to_records()
    assert records[0] == {"id": 100, "rank": 1, "neighbor_id": int(blocks[0].neighbor_ids[0, 0]),
                          "score": float(blocks[0].scores[0, 0])}


def test_sim(gpt2):
    m, model = gpt2
    w = _wte(model).astype(np.float64)
    tok = gpt2_tokenizer()
    a, b = tok(" king")["input_ids"][0], tok(" queen")["input_ids"][0]
    ref = w[a] @ w[b] / (np.linalg.norm(w[a]) * np.linalg.norm(w[b]))
    assert m.sim("king", "queen").score == pytest.approx(ref, rel=1e-6)
    assert m.sim("king", "queen", metric="euclidean").score == pytest.approx(np.linalg.norm(w[a] - w[b]), rel=1e-6)


def test_positions_and_by_offset(gpt2):
    m, model = gpt2
    p = model.transformer.wpe.weight.detach().double().numpy()[8:40:4]
    u = p / np.linalg.norm(p, axis=1, keepdims=True)
    result = m.positions(start=8, stop=40, step=4)
    assert result.positions.tolist() == list(range(8, 40, 4))
    np.testing.assert_allclose(result.matrix, u @ u.T, rtol=1e-5, atol=1e-6)
    offsets, means, pairs = result.by_offset()
    assert offsets.tolist() == [0, 4, 8, 12, 16, 20, 24, 28] and pairs.tolist() == [8, 7, 6, 5, 4, 3, 2, 1]
    assert means[1] == pytest.approx(np.mean([(u @ u.T)[i, i + 1] for i in range(7)]), rel=1e-5)


def test_norms(gpt2):
    m, model = gpt2
    w = _wte(model).astype(np.float64)
    got = m.norms()
    np.testing.assert_allclose(got.token, np.linalg.norm(w, axis=1), rtol=1e-12)
    np.testing.assert_allclose(got.centroid_distance, np.linalg.norm(w - w.mean(axis=0), axis=1), rtol=1e-9)
    stats = got.stats()["token"]
    assert stats.p50 == pytest.approx(np.median(np.linalg.norm(w, axis=1)), rel=1e-12)
    assert got.extremes(3).tolist() == np.argsort(-np.linalg.norm(w, axis=1), kind="stable")[:3].tolist()
    assert [r["rows"] for r in got.to_records()] == ["token", "position"]


def test_embed_equals_hidden_states_0(gpt2):
    m, model = gpt2
    text = "The king's crown, and café ☕"
    ids = gpt2_tokenizer()(text)["input_ids"]
    with torch.no_grad():
        ref = model(torch.tensor([ids]), output_hidden_states=True).hidden_states[0][0].numpy()
    e = m.embed(text)
    assert list(e.ids) == ids
    np.testing.assert_allclose(e.sum, ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(e.vector("sum", "mean"), ref.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert m.embed("hi", bos=True).ids[0] == 50256


def test_embed_bert_family_equals_transformers(tmp_path):
    """word + position + token type 0, then the embedding LayerNorm."""
    model = save_hf(tmp_path, "bert")
    m = embscope.load(str(tmp_path))
    ids = m.encode("the cat sat")
    with torch.no_grad():
        ref = model.embeddings(input_ids=torch.tensor([ids]))[0].numpy()
    np.testing.assert_allclose(m.embed("the cat sat").sum, ref, rtol=1e-5, atol=1e-5)


def test_errors_are_embscope_errors(gpt2):
    m, _ = gpt2
    with pytest.raises(embscope.EmbscopeError, match=r"^unknown metric 'l1' \(choose from cosine, dot, euclidean\)$"):
        m.neighbors("king", metric="l1")
    with pytest.raises(embscope.EmbscopeError, match=r"^token id #99999 is out of range"):
        m.neighbors("#99999")
    with pytest.raises(embscope.EmbscopeError, match="no such file or directory"):
        embscope.load("/no/such/model.safetensors")
    with pytest.raises(embscope.EmbscopeError, match="k must be at least 1"):
        m.neighbors("king", k=0)


def test_embed_limits(gpt2, tmp_path):
    m, model = gpt2
    text = " x" * 70  # 70 tokens, 64 positions
    with pytest.raises(embscope.EmbscopeError, match=r"^the text is 70 tokens but the model has only 64 positions"):
        m.embed(text)
    cut = m.embed(text, truncate=True)
    ids = gpt2_tokenizer()(text)["input_ids"][:64]
    with torch.no_grad():
        ref = model(torch.tensor([ids]), output_hidden_states=True).hidden_states[0][0].numpy()
    np.testing.assert_allclose(cut.sum, ref, rtol=1e-6, atol=1e-6)
    save_hf(tmp_path, "llama")
    rotary = embscope.load(str(tmp_path)).embed("the cat")
    assert rotary.position is None
    np.testing.assert_array_equal(rotary.sum, rotary.token)
    with pytest.raises(embscope.EmbscopeError, match="no learned position embeddings"):
        rotary.vector("position")


def test_to_pandas(gpt2):
    m, _ = gpt2
    frame = m.neighbors("king", k=4).to_pandas()
    assert list(frame.columns) == ["rank", "id", "token", "score"]
    assert frame["id"].tolist() == m.neighbors("king", k=4).ids.tolist()
    p = m.positions(stop=5)
    assert p.to_pandas().loc[3, 4] == p.matrix[3, 4]
