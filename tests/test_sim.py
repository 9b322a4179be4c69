"""`embscope sim` and `Model.sim` against plain numpy on the matrix safetensors reads from the
file, with the token ids transformers' GPT-2 tokenizer gives."""

from __future__ import annotations

import json

import numpy as np
import pytest

import embscope
from embscope.errors import EmbscopeError
from tests.builders import gpt2_tokenizer, save_gpt2
from tests.helpers import jsonl, run, tsv

WORDS = ["king", "queen", "#100", "New York", "river"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """(model directory, its wte as safetensors reads it from the file, float64)."""
    from safetensors.numpy import load_file

    d = tmp_path_factory.mktemp("sim-gpt2")
    save_gpt2(d)
    tensors = load_file(str(d / "model.safetensors"))
    return d, tensors["transformer.wte.weight"].astype(np.float64)


def ids_of(word: str) -> list[int]:
    """What the reference tokenizer says a word means: ' word' when that is one token."""
    tok = gpt2_tokenizer()
    if word.startswith("#"):
        return [int(word[1:])]
    spaced = tok(" " + word)["input_ids"]
    return spaced if len(spaced) == 1 else tok(word)["input_ids"]


def reference(wte: np.ndarray, words: list[str], metric: str) -> np.ndarray:
    """(n, n) plain numpy: each word's vector is its row, or the mean of its rows."""
    v = np.stack([wte[ids_of(w)].mean(axis=0) for w in words])
    if metric == "cosine":
        u = v / np.linalg.norm(v, axis=1, keepdims=True)
        return u @ u.T
    if metric == "dot":
        return v @ v.T
    return np.linalg.norm(v[:, None, :] - v[None, :, :], axis=2)


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
def test_two_words_one_row(model, metric, capsys):
    d, wte = model
    code, out, err = run(["sim", "king", "queen", "--metric", metric, "-m", str(d), "-f", "tsv"], capsys)
    assert (code, err) == (0, "")
    rows = tsv(out)
    assert [(r["a"], r["b"]) for r in rows] == [("king", "queen")]
    ref = reference(wte, ["king", "queen"], metric)[0, 1]
    assert float(rows[0]["score"]) == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
def test_matrix_of_many(model, metric, capsys):
    d, wte = model
    code, out, err = run(["sim", *WORDS, "--metric", metric, "-m", str(d), "-f", "jsonl"], capsys)
    assert code == 0, err
    assert err == "'New York' is 2 tokens ('New' #3791, ' York' #1971): using the mean of their vectors\n"
    rows = jsonl(out)
    assert [r["item"] for r in rows] == WORDS
    assert [r["ids"] for r in rows] == [ids_of(w) for w in WORDS]
    np.testing.assert_allclose([r["values"] for r in rows], reference(wte, WORDS, metric), rtol=1e-5, atol=1e-6)


def test_new_york_is_two_tokens(model):
    """The reference above assumes it; the tokenizer agrees."""
    assert ids_of("New York") == [3791, 1971]


def test_every_format_and_pairs(model, capsys, tmp_path):
    d, wte = model
    ref = reference(wte, WORDS[:3], "cosine")
    base = ["sim", *WORDS[:3], "-m", str(d)]
    _, out, _ = run(base + ["-f", "tsv"], capsys)
    assert out.splitlines()[0] == "item\tking\tqueen\t#100"
    got = np.array([[float(x) for x in line.split("\t")[1:]] for line in out.splitlines()[1:]])
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    _, out, _ = run(base + ["-f", "csv"], capsys)
    assert out.splitlines()[0] == "item,king,queen,#100"
    _, out, _ = run(base + ["-f", "json"], capsys)
    doc = json.loads(out)
    assert (doc["metric"], doc["items"], doc["ids"]) == ("cosine", WORDS[:3], [[5822], [16599], [100]])
    np.testing.assert_allclose(doc["matrix"], ref, rtol=1e-5, atol=1e-6)
    _, out, _ = run(base + ["--pairs", "-f", "tsv"], capsys)
    rows = tsv(out)
    assert [(r["a"], r["b"]) for r in rows] == [("king", "queen"), ("king", "#100"), ("queen", "#100")]
    np.testing.assert_allclose([float(r["score"]) for r in rows], [ref[0, 1], ref[0, 2], ref[1, 2]], rtol=1e-5)
    _, out, _ = run(base + ["-f", "table"], capsys)
    assert out.splitlines()[0].strip() == "similarity (cosine)"
    code, out, err = run(base + ["-o", str(tmp_path / "m.npy")], capsys)
    assert (code, out, err) == (0, "", f"wrote {tmp_path / 'm.npy'}: array of shape (3, 3), float32\n")
    np.testing.assert_allclose(np.load(tmp_path / "m.npy"), ref, rtol=1e-5, atol=1e-6)


def test_stdin_equals_arguments(model, capsys, monkeypatch):
    d, _ = model
    _, by_args, _ = run(["sim", *WORDS, "-m", str(d), "-f", "jsonl"], capsys)
    code, by_stdin, err = run(["sim", "-", "-m", str(d), "-f", "jsonl"], capsys,
                              stdin="\n".join(WORDS) + "\n\n", monkeypatch=monkeypatch)
    assert code == 0, err
    assert by_stdin == by_args


def test_exact_uses_the_text_as_typed(model, capsys):
    d, wte = model
    _, out, _ = run(["sim", "king", "queen", "--exact", "-m", str(d), "-f", "tsv"], capsys)
    tok = gpt2_tokenizer()
    a, b = wte[tok("king")["input_ids"]].mean(axis=0), wte[tok("queen")["input_ids"]].mean(axis=0)
    ref = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    assert float(tsv(out)[0]["score"]) == pytest.approx(ref, rel=1e-5)


def test_sim_equals_the_score_neighbors_gives(model, capsys):
    """The same question through sim and through neighbors: the same vectors, the same score."""
    d, _ = model
    _, out, _ = run(["neighbors", "king", "-k", "5", "-m", str(d), "-f", "tsv"], capsys)
    first = tsv(out)[0]
    _, out, _ = run(["sim", "king", f"#{first['id']}", "-m", str(d), "-f", "tsv"], capsys)
    assert float(tsv(out)[0]["score"]) == pytest.approx(float(first["score"]), abs=2e-6)


def test_api(model):
    d, wte = model
    m = embscope.load(str(d))
    r = m.sim(*WORDS)
    assert (r.metric, r.items, len(r)) == ("cosine", tuple(WORDS), 5)
    assert r.ids == tuple(tuple(ids_of(w)) for w in WORDS)
    assert r.tokens[0] == (" king",) and r.tokens[3] == ("New", " York")
    np.testing.assert_allclose(r.matrix, reference(wte, WORDS, "cosine"), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r.vectors[3], wte[[3791, 1971]].mean(axis=0), rtol=1e-6)
    assert r.to_records()[0] == {"a": "king", "b": "queen", "score": float(r.matrix[0, 1])}
    assert len(r.to_records()) == 10
    assert m.sim(["king", "queen"]).score == pytest.approx(reference(wte, ["king", "queen"], "cosine")[0, 1], rel=1e-5)
    with pytest.raises(EmbscopeError, match=r"^5 items have 10 scores: read them from .matrix or .to_records\(\)$"):
        r.score  # noqa: B018
    frame = r.to_pandas()
    assert list(frame.index) == WORDS and frame.loc["king", "queen"] == r.matrix[0, 1]


@pytest.mark.parametrize("argv, message, status", [
    (["king"], "give two or more words, '#id's or texts (or '-' to read them from stdin)", 2),
    (["king", "-"], "'-' reads the words or texts from stdin: give it alone", 2),
    (["king", "queen", "--metric", "l1"], "unknown metric 'l1' (choose from cosine, dot, euclidean)", 2),
    (["king - man", "queen"], "'king - man': sim compares words or texts, not arithmetic", 1),
    (["king", "#99999"], "token id #99999 is out of range (the model has 50257 tokens)", 1),
    (["king", "queen", "-o", "x.png"], "-o x.png: unknown file type (use .tsv, .csv, .json, .jsonl or .npy)", 2),
])
def test_bad_input_one_line(model, capsys, argv, message, status):
    d, _ = model
    code, out, err = run(["sim", *argv, "-m", str(d)], capsys)
    assert (code, out, err) == (status, "", f"embscope: error: {message}\n")


def test_one_line_on_stdin(model, capsys, monkeypatch):
    d, _ = model
    code, out, err = run(["sim", "-", "-m", str(d)], capsys, stdin="king\n", monkeypatch=monkeypatch)
    assert (code, out, err) == (1, "", "embscope: error: sim compares two or more words or texts: stdin holds 1\n")


def test_nan_row_gives_nan_and_says_so(tmp_path, capsys):
    from tests.builders import save_nanogpt_bpe

    path, state = save_nanogpt_bpe(tmp_path, nan_rows=[7])
    wte = state["transformer.wte.weight"].double().numpy()
    code, out, err = run(["sim", "#7", "#8", "#9", "-m", str(path), "-f", "jsonl"], capsys)
    assert code == 0
    assert err == "warning: #7: the vector holds NaN or Inf (its token rows are not finite): its scores are nan\n"
    rows = jsonl(out)
    assert rows[0]["values"] == [None, None, None] and rows[1]["values"][0] is None
    u = wte[[8, 9]] / np.linalg.norm(wte[[8, 9]], axis=1, keepdims=True)
    assert rows[1]["values"][2] == pytest.approx(float(u[0] @ u[1]), rel=1e-5)
