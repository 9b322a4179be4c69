"""`--matrix output` on `sim` and `tokens`: the same words, the LM head's rows. Reference: the
head of an untied GPT-2 as transformers loads it back (`get_output_embeddings`), with token ids
from transformers' GPT-2 tokenizer."""

from __future__ import annotations

import numpy as np
import pytest

import embscope
from embscope.model import TIED_NOTE
from tests.builders import gpt2_tokenizer, save_model
from tests.helpers import jsonl, run, tsv

WORDS = ["king", "queen", "#100"]


@pytest.fixture(scope="module")
def untied(tmp_path_factory):
    """(directory, input matrix, output matrix) of a GPT-2 whose LM head is its own tensor."""
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

    d = tmp_path_factory.mktemp("untied-gpt2")
    config = GPT2Config(vocab_size=50257, n_positions=64, n_embd=16, n_layer=1, n_head=2, tie_word_embeddings=False)
    save_model(d, GPT2LMHeadModel, config, seed=5, tokenizer=gpt2_tokenizer())
    back = AutoModelForCausalLM.from_pretrained(str(d))
    wte = back.get_input_embeddings().weight.detach().double().numpy()
    head = back.get_output_embeddings().weight.detach().double().numpy()
    assert not np.array_equal(wte, head)
    return d, wte, head


def _ids(word: str) -> list[int]:
    if word.startswith("#"):
        return [int(word[1:])]
    return gpt2_tokenizer()(" " + word)["input_ids"]


def _cosine(matrix: np.ndarray) -> np.ndarray:
    v = np.stack([matrix[_ids(w)].mean(axis=0) for w in WORDS])
    u = v / np.linalg.norm(v, axis=1, keepdims=True)
    return u @ u.T


@pytest.mark.parametrize("which", ["input", "output"])
def test_sim_on_either_matrix(untied, capsys, which):
    d, wte, head = untied
    code, out, err = run(["sim", *WORDS, "--matrix", which, "-m", str(d), "-f", "jsonl"], capsys)
    assert (code, err) == (0, "")
    expected = _cosine(head if which == "output" else wte)
    np.testing.assert_allclose([r["values"] for r in jsonl(out)], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("which", ["input", "output"])
def test_tokens_norms_of_either_matrix(untied, capsys, which):
    """The tokenization is the same; the norm column is the chosen matrix's row norm."""
    d, wte, head = untied
    text = "the king and the queen"
    code, out, err = run(["tokens", text, "--matrix", which, "-m", str(d), "-f", "tsv"], capsys)
    assert (code, err) == (0, "")
    rows = tsv(out)
    ids = gpt2_tokenizer()(text)["input_ids"]
    assert [int(r["id"]) for r in rows] == ids
    matrix = head if which == "output" else wte
    np.testing.assert_allclose([float(r["norm"]) for r in rows], np.linalg.norm(matrix[ids], axis=1), rtol=1e-5)


def test_api_on_the_head(untied):
    d, _, head = untied
    m = embscope.load(str(d), matrix="output")
    np.testing.assert_allclose(m.sim(*WORDS).matrix, _cosine(head), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.lookup([5, 6]).norms, np.linalg.norm(head[[5, 6]], axis=1), rtol=1e-6)


def test_tied_model_says_so(tmp_path, capsys):
    from tests.builders import save_gpt2

    save_gpt2(tmp_path, n_embd=16)
    for argv in (["sim", "king", "queen"], ["tokens", "king"]):
        code, _, err = run([*argv, "--matrix", "output", "-m", str(tmp_path), "-f", "tsv"], capsys)
        assert (code, err) == (0, TIED_NOTE + "\n")
