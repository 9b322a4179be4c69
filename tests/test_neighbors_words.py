"""Words side by side (`neighbors king queen`): each word as a lone word is read, combined as
gensim's KeyedVectors.most_similar(positive=[...]) combines them; a quoted phrase stays a text."""

from __future__ import annotations

import numpy as np
import pytest

from embscope.errors import UsageError
from embscope.queries import split_terms
from tests.builders import gpt2_tokenizer, save_gpt2
from tests.helpers import jsonl, run, tsv

KING, QUEEN, MAN, PRINCE = 5822, 16599, 582, 19716  # " king", " queen", " man", " prince"


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    """(model directory, gensim KeyedVectors over the wte safetensors reads from the file)."""
    from gensim.models import KeyedVectors
    from safetensors.numpy import load_file

    d = tmp_path_factory.mktemp("words-gpt2")
    save_gpt2(d)
    wte = load_file(str(d / "model.safetensors"))["transformer.wte.weight"]
    kv = KeyedVectors(vector_size=wte.shape[1])
    kv.add_vectors([str(i) for i in range(len(wte))], wte)
    return d, kv


def test_reference_ids():
    tok = gpt2_tokenizer()
    assert [tok(w)["input_ids"] for w in (" king", " queen", " man", " prince")] == [[KING], [QUEEN], [MAN], [PRINCE]]


@pytest.mark.parametrize("words, positive, negative", [
    (["king", "queen"], [KING, QUEEN], []),
    (["king", "queen", "prince"], [KING, QUEEN, PRINCE], []),
    (["king", "queen", "-", "man"], [KING, QUEEN], [MAN]),
    (["king", "-", "man", "queen"], [KING, QUEEN], [MAN]),  # a word after a word is added
])
def test_equals_gensim_most_similar(gpt2, capsys, words, positive, negative):
    d, kv = gpt2
    expected = kv.most_similar(positive=[str(i) for i in positive], negative=[str(i) for i in negative], topn=10)
    code, out, err = run(["neighbors", *words, "-m", str(d), "-f", "tsv"], capsys)
    assert code == 0, err
    rows = tsv(out)
    assert [int(r["id"]) for r in rows] == [int(k) for k, _ in expected]
    np.testing.assert_allclose([float(r["score"]) for r in rows], [s for _, s in expected], atol=1e-5)


def test_cosmul_equals_gensim(gpt2, capsys):
    d, kv = gpt2
    expected = kv.most_similar_cosmul(positive=[str(KING), str(QUEEN)], topn=10)
    _, out, _ = run(["neighbors", "king", "queen", "--cosmul", "-m", str(d), "-f", "tsv"], capsys)
    rows = tsv(out)
    assert [int(r["id"]) for r in rows] == [int(k) for k, _ in expected]
    np.testing.assert_allclose([float(r["score"]) for r in rows], [s for _, s in expected], rtol=1e-4)


def test_says_on_stderr_what_was_done(gpt2, capsys):
    d, _ = gpt2
    _, _, err = run(["neighbors", "king", "queen", "-m", str(d), "-f", "tsv"], capsys)
    assert err == ("king queen: read as king + queen: the mean of their unit vectors, as gensim's"
                   " most_similar(positive=[...]), the words left out of the results; quoted as one argument,"
                   " 'king queen' is one text\n")
    _, _, err = run(["neighbors", "king", "queen", "-", "man", "--metric", "dot", "--include-query", "-m", str(d),
                     "-f", "tsv"], capsys)
    assert err == "king queen - man: read as king + queen - man: the sum of the added vectors minus the subtracted ones\n"
    _, _, err = run(["neighbors", "king", "-", "man", "-m", str(d), "-f", "tsv"], capsys)
    assert err == ""  # plain arithmetic is what it says


def test_quoted_phrase_stays_a_text(gpt2, capsys):
    """'king queen' as one argument: the text "king queen" (king without its space), the mean
    of its tokens' vectors, as before."""
    d, kv = gpt2
    ids = gpt2_tokenizer()("king queen")["input_ids"]
    assert ids == [3364, QUEEN]
    code, out, err = run(["neighbors", "king queen", "-m", str(d), "-f", "tsv"], capsys)
    assert err == "'king queen' is 2 tokens ('king' #3364, ' queen' #16599): using the mean of their vectors\n"
    mean = kv.vectors[ids].mean(axis=0)
    expected = [int(k) for k, _ in kv.similar_by_vector(mean, topn=12) if int(k) not in ids][:10]
    assert [int(r["id"]) for r in tsv(out)] == expected


def test_stdin_line_is_one_argument(gpt2, capsys, monkeypatch):
    d, _ = gpt2
    code, out, _ = run(["neighbors", "-", "-m", str(d), "-k", "3", "-f", "jsonl"], capsys,
                       stdin="king queen\n", monkeypatch=monkeypatch)
    _, single, _ = run(["neighbors", "king queen", "-m", str(d), "-k", "3", "-f", "jsonl"], capsys)
    assert [r["id"] for r in jsonl(out)] == [r["id"] for r in jsonl(single)]


def test_api_list_is_arguments(gpt2):
    import embscope

    d, kv = gpt2
    m = embscope.load(str(d))
    expected = kv.most_similar(positive=[str(KING), str(QUEEN)], topn=5)
    assert m.neighbors(["king", "queen"], k=5).ids.tolist() == [int(k) for k, _ in expected]
    assert m.query(["king", "queen"]).side_by_side and not m.query("king queen").side_by_side


@pytest.mark.parametrize("words, terms", [
    (["king"], [(1, "king", False)]),
    (["king", "queen"], [(1, "king", False), (1, "queen", True)]),
    (["New York", "Paris"], [(1, "New York", False), (1, "Paris", True)]),
    (["king - man + woman"], [(1, "king", False), (-1, "man", False), (1, "woman", False)]),
    (["king", "-", "man", "+", "woman"], [(1, "king", False), (-1, "man", False), (1, "woman", False)]),
    (["king -", "man"], [(1, "king", False), (-1, "man", False)]),
    (["-", "man"], [(-1, "man", False)]),
    (["king-man"], [(1, "king-man", False)]),
])
def test_split_terms(words, terms):
    assert split_terms(words) == terms


@pytest.mark.parametrize("words, message", [
    (["king", "-"], "'king -': an operator '-' with nothing after it"),
    (["king", "-", "+", "man"], "'king - + man': an operator '-' with nothing after it"),
    (["  "], "empty query"),
])
def test_split_terms_errors(words, message):
    with pytest.raises(UsageError) as e:
        split_terms(words)
    assert str(e.value) == message
