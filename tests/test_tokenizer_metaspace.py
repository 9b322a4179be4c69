"""SentencePiece-style tokenizers (Llama, Mistral): Metaspace '▁' word starts and <0xNN> byte
fallback tokens, as a tokenizer.json written by the `tokenizers` library."""

from __future__ import annotations

import json

import pytest

from tests.builders import save_hf, shakespeare_text
from tests.helpers import jsonl, run

TEXT = "the king\n☕"


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    d = tmp_path_factory.mktemp("llama-sp")
    save_hf(d, "llama")
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token=None, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(" ", 1, 0)])  # Llama's decoder
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(shakespeare_text().split("\n\n"), trainer=trainer)
    tok.save(str(d / "tokenizer.json"))  # replaces the GPT-2 tokenizer save_hf wrote
    return d, tok


def test_ids_equal_transformers_and_tokens_show_their_bytes(llama_dir, capsys):
    from transformers import PreTrainedTokenizerFast

    d, tok = llama_dir
    reference = PreTrainedTokenizerFast(tokenizer_file=str(d / "tokenizer.json"))
    code, out, err = run(["embed", TEXT, "-m", str(d), "-f", "json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["ids"] == reference(TEXT, add_special_tokens=False)["input_ids"]
    # '▁' is a space; <0xE2><0x98><0x95> are the three bytes of '☕', each escaped on its own
    assert doc["tokens"] == [" the", " king", "\\n", "\\xe2", "\\x98", "\\x95"]


def test_word_query_is_the_word_start_token(llama_dir, capsys):
    d, tok = llama_dir
    code, out, err = run(["neighbors", "king", "-m", str(d), "-k", "1", "--include-query", "-f", "jsonl"], capsys)
    assert code == 0, err
    assert jsonl(out)[0]["id"] == tok.token_to_id("▁king")
    assert jsonl(out)[0]["token"] == " king"


def test_token_bytes_round_trip(llama_dir):
    from embscope.tokenizer import from_tokenizer_json

    d, _ = llama_dir
    t = from_tokenizer_json(str(d / "tokenizer.json"))
    text = "Thou art a villain, ☕ and 😀\n  twice"
    assert b"".join(t.token_bytes(i) for i in t.encode(text)) == (" " + text).encode()
