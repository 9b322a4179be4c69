"""`embscope embed` equals what the models' own embedding layers compute."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests import nanogpt
from tests.builders import gpt2_tokenizer, save_char_nanogpt, save_gpt2, save_hf, shakespeare_text
from tests.helpers import jsonl, run, tsv

TEXT = "The king's crown, 42 times\n\tand café ☕ <|endoftext|> again"


def cli_vectors(argv, capsys) -> np.ndarray:
    code, out, err = run(argv + ["-f", "json"], capsys)
    assert code == 0, err
    return np.array(json.loads(out)["vectors"], dtype=np.float32)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("gpt2")
    return d, save_gpt2(d)


def test_gpt2_equals_hidden_states_0(gpt2_dir, capsys):
    d, model = gpt2_dir
    ids = gpt2_tokenizer()(TEXT)["input_ids"]
    with torch.no_grad():
        ref = model(torch.tensor([ids]), output_hidden_states=True).hidden_states[0][0].numpy()
    got = cli_vectors(["embed", TEXT, "-m", str(d)], capsys)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)


def test_components_pooling_and_npy(gpt2_dir, capsys, tmp_path):
    d, model = gpt2_dir
    ids = gpt2_tokenizer()("the cat sat")["input_ids"]
    wte = model.transformer.wte.weight.detach().numpy()
    wpe = model.transformer.wpe.weight.detach().numpy()
    np.testing.assert_array_equal(cli_vectors(["embed", "the cat sat", "-m", str(d), "--component", "token"], capsys), wte[ids])
    np.testing.assert_array_equal(cli_vectors(["embed", "the cat sat", "-m", str(d), "--component", "position"], capsys), wpe[:3])
    code, out, _ = run(["embed", "the cat sat", "-m", str(d), "--pool", "mean", "-f", "json"], capsys)
    np.testing.assert_allclose(json.loads(out)["vector"], (wte[ids] + wpe[:3]).mean(axis=0), rtol=1e-6, atol=1e-7)
    target = tmp_path / "out.npy"
    code, _, err = run(["embed", "the cat sat", "-m", str(d), "--pool", "last", "-o", str(target)], capsys)
    assert code == 0 and "wrote" in err
    np.testing.assert_allclose(np.load(target), wte[ids[-1]] + wpe[2], rtol=1e-6)
    code, _, _ = run(["embed", "the cat sat", "-m", str(d), "-o", str(tmp_path / "all.npy")], capsys)
    assert np.load(tmp_path / "all.npy").shape == (3, 32)


def test_bos_prepends_endoftext(gpt2_dir, capsys):
    d, model = gpt2_dir
    code, out, _ = run(["embed", "hi", "--bos", "-m", str(d), "-f", "json"], capsys)
    assert json.loads(out)["ids"] == [50256] + gpt2_tokenizer()("hi")["input_ids"]


def test_stdin_one_record_per_line(gpt2_dir, capsys, monkeypatch):
    d, model = gpt2_dir
    lines = ["the cat sat", "on the mat", "a"]
    code, out, err = run(["embed", "-", "-m", str(d), "-f", "jsonl"], capsys, stdin="\n".join(lines), monkeypatch=monkeypatch)
    assert code == 0, err
    records = jsonl(out)
    assert [r["text"] for r in records] == lines
    for r in records:
        assert r["ids"] == gpt2_tokenizer()(r["text"])["input_ids"]
    code, out, _ = run(["embed", "-", "-m", str(d), "-f", "tsv"], capsys, stdin="the cat\nsat", monkeypatch=monkeypatch)
    rows = tsv(out)
    assert [(r["line"], r["pos"]) for r in rows] == [("1", "0"), ("1", "1"), ("2", "0")]


def test_too_long_text_errors_unless_truncated(gpt2_dir, capsys):
    d, model = gpt2_dir
    text = " cat" * 70  # 70 tokens, 64 positions
    code, out, err = run(["embed", text, "-m", str(d)], capsys)
    assert code == 1 and out == ""
    assert err == "embscope: error: the text is 70 tokens but the model has only 64 positions (use --truncate to keep the first ones)\n"
    got = cli_vectors(["embed", text, "--truncate", "-m", str(d)], capsys)
    assert got.shape == (64, 32)


def test_nanogpt_equals_the_saved_matrices(tmp_path, capsys):
    """nanoGPT's input to the first block, in plain torch on the saved state dict: wte[ids] plus
    wpe[0..T-1], then its dropout, which in eval mode passes the sum through."""
    path, _ = save_char_nanogpt(tmp_path)
    ckpt = torch.load(path, weights_only=True)
    wte, wpe = ckpt["model"]["transformer.wte.weight"], ckpt["model"]["transformer.wpe.weight"]  # (V, d), (P, d)
    text = "First Citizen:\nBefore we proceed"
    stoi = nanogpt.char_meta(shakespeare_text())["stoi"]
    ids = torch.tensor([stoi[c] for c in text])  # (T,)
    x = wte[ids] + wpe[torch.arange(len(ids))]  # (T, d)
    ref = torch.nn.functional.dropout(x, p=ckpt["model_args"]["dropout"], training=False).numpy()
    got = cli_vectors(["embed", text, "-m", str(path)], capsys)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("family", ["opt", "gpt_neo", "llama", "bloom"])
def test_decoder_families_equal_hidden_states_0(family, tmp_path, capsys):
    model = save_hf(tmp_path, family)
    text = "the cat sat on the mat"
    ids = gpt2_tokenizer()(text)["input_ids"]
    with torch.no_grad():
        ref = model(torch.tensor([ids]), output_hidden_states=True).hidden_states[0][0].numpy()
    got = cli_vectors(["embed", text, "-m", str(tmp_path)], capsys)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("family", ["bert", "roberta"])
def test_encoder_families_equal_embeddings_module(family, tmp_path, capsys):
    model = save_hf(tmp_path, family)
    text = "the king and the queen"
    if family == "bert":
        from transformers import BertTokenizerFast

        ids = BertTokenizerFast.from_pretrained(str(tmp_path))(text, add_special_tokens=False)["input_ids"]
    else:
        ids = gpt2_tokenizer()(text)["input_ids"]
    with torch.no_grad():
        input_ids = torch.tensor([ids])
        if family == "roberta":  # RobertaEmbeddings numbers positions from padding_idx + 1
            ref = model.embeddings(input_ids=input_ids)[0].numpy()
        else:
            ref = model.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))[0].numpy()
    got = cli_vectors(["embed", text, "-m", str(tmp_path)], capsys)
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
