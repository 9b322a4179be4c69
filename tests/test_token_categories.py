"""Token categories (embscope.token_categories) against tiktoken's GPT-2 encoding, magikarp's GPT-2
report, and a SentencePiece-style byte-fallback tokenizer written by transformers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from embscope.token_categories import CATEGORIES, NOT_UTF8_BYTES, categorize, containing
from embscope.tokenizer import bundled_gpt2, from_directory
from tests.builders import shakespeare_text

GPT2_VOCAB = 50257


@pytest.fixture(scope="module")
def gpt2_categories():
    return categorize(bundled_gpt2(), GPT2_VOCAB + 47)  # 47 rows of padding, as nanoGPT's 50304


def utf8_role(b: int) -> str:
    """What byte b can be in UTF-8 text (RFC 3629, section 4): the category its token should get."""
    if b <= 0x7F:
        return "byte-ascii"
    if b <= 0xBF:
        return "byte-continuation"
    if 0xC2 <= b <= 0xF4:
        return "byte-lead"
    return "byte-not-utf8"  # C0, C1 (overlong forms), F5..FF (past U+10FFFF)


def _ids(cats, name: str) -> list[int]:
    return np.flatnonzero(cats.codes == CATEGORIES.index(name)).tolist()


def test_gpt2_counts_are_magikarps(gpt2_categories):
    """magikarp's report for GPT-2 (cohere-ai/magikarp results/reports/openai_community_gpt2.md,
    commit 0d466b27): "Number of single byte tokens: 256", "Number of special tokens: 1",
    "Number of non-single-byte UTF-fragment tokens: 216", and no line for unreachable tokens
    (printed only when there are some)."""
    counts = gpt2_categories.counts()
    assert sum(counts[c] for c in CATEGORIES if c.startswith("byte-")) == 256
    assert counts == {"special": 1, "byte-ascii": 128, "byte-continuation": 64, "byte-lead": 51,
                      "byte-not-utf8": 13, "partial-utf8": 216, "unreachable": 0,
                      "normal": GPT2_VOCAB - 256 - 1 - 216, "padding": 47}


def test_gpt2_categories_match_tiktoken(gpt2_categories, tiktoken_gpt2):
    """Each category's ids, from tiktoken's own view of the same vocabulary: the bytes of each
    token, its special tokens, and whether its text encodes back to it."""
    enc = tiktoken_gpt2
    pieces = [enc.decode_single_token_bytes(i) for i in range(GPT2_VOCAB)]
    assert _ids(gpt2_categories, "special") == sorted(enc.encode_single_token(s) for s in enc.special_tokens_set)
    for b in range(256):
        assert CATEGORIES[gpt2_categories.codes[enc.encode_single_token(bytes([b]))]] == utf8_role(b)
    assert _ids(gpt2_categories, "byte-not-utf8") == sorted(enc.encode_single_token(bytes([b])) for b in NOT_UTF8_BYTES)
    assert _ids(gpt2_categories, "byte-not-utf8") == [124, 125, *range(177, 188)]  # magikarp's GPT-2 set: 177-187

    def decodes(p: bytes) -> bool:
        try:
            p.decode("utf-8")
            return True
        except UnicodeDecodeError:
            return False

    assert _ids(gpt2_categories, "partial-utf8") == [i for i, p in enumerate(pieces) if len(p) > 1 and not decodes(p)]
    texts = {i: p.decode("utf-8") for i, p in enumerate(pieces) if decodes(p) and i != 50256}
    again = enc.encode_ordinary_batch(list(texts.values()))
    assert [i for i, e in zip(texts, again) if e != [i]] == []  # GPT-2 has no unreachable token
    assert not gpt2_categories.unreachable.any()
    assert gpt2_categories.token_bytes == tuple(pieces)


@pytest.fixture(scope="module")
def byte_fallback_dir(tmp_path_factory):
    """A Llama-style tokenizer: <unk> <s> </s>, the 256 <0xNN> byte tokens (ids 3..258), then
    pieces learned by the tokenizers BPE trainer on Tiny Shakespeare (with the ▁ word mark);
    "▁" prepended and spaces replaced by the normalizer, byte fallback on; saved by
    transformers' LlamaTokenizerFast.save_pretrained."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import LlamaTokenizerFast

    learner = Tokenizer(models.BPE())
    learner.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    learner.train_from_iterator(shakespeare_text()[:50_000].splitlines(),
                                trainers.BpeTrainer(vocab_size=400, show_progress=False))
    model = json.loads(learner.to_str())["model"]
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    vocab.update({f"<0x{b:02X}>": 3 + b for b in range(256)})
    for piece in sorted(model["vocab"], key=model["vocab"].get):
        vocab.setdefault(piece, len(vocab))
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    d = tmp_path_factory.mktemp("byte-fallback")
    fast = LlamaTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(str(d))
    return d, fast


def byte_fallback_unreachable(fast) -> list[int]:
    """The <0xNN> tokens transformers' tokenizer never produces for their own character: those
    whose character (or, for the space, "▁") is a piece of its own, which the encoder prefers."""
    out = []
    for b in range(0x80):
        if 3 + b not in fast.encode(chr(b), add_special_tokens=False):
            out.append(3 + b)
    return out


def test_byte_fallback_tokens_are_bytes(byte_fallback_dir):
    d, fast = byte_fallback_dir
    tok = from_directory(str(d))
    cats = categorize(tok, len(fast) + 5)
    names = cats.names()
    assert [names[3 + b] for b in range(256)] == [utf8_role(b) for b in range(256)]
    assert names[:3].tolist() == ["special"] * 3
    assert np.flatnonzero(cats.unreachable).tolist() == byte_fallback_unreachable(fast)
    assert 3 + ord("A") in byte_fallback_unreachable(fast) and 3 + ord("\n") not in byte_fallback_unreachable(fast)
    # every learned piece of two or more bytes is reachable: word-inner pieces ("ll") too, which
    # need a prefix token since the normalizer puts "▁" before any text
    pieces = fast.convert_ids_to_tokens(list(range(259, len(fast))))
    longer = [259 + j for j, p in enumerate(pieces) if len(p.replace("▁", " ").encode()) > 1]
    assert _ids(cats, "normal") == longer and any(not p.startswith("▁") for p in pieces if len(p) > 1)
    assert _ids(cats, "padding") == list(range(len(fast), len(fast) + 5))


def test_containing_matches_a_search_of_every_token(gpt2_categories):
    """The longer tokens that hold a token's bytes, against Python's `in` over the vocabulary."""
    pieces = gpt2_categories.token_bytes
    eligible = np.ones(len(pieces), dtype=bool)
    eligible[50256] = False
    ids = np.array([40241, 30905, 39752, 30898, 13150, 220, 64, 25698, 37574] +
                   np.random.default_rng(0).choice(GPT2_VOCAB, 20, replace=False).tolist())
    found = containing(pieces, ids, eligible)
    for i, got in zip(ids.tolist(), found):
        expect = sorted((j for j, p in enumerate(pieces) if eligible[j] and len(p) > len(pieces[i]) and pieces[i] in p),
                        key=lambda j: (len(pieces[j]), j))
        assert got.tolist() == expect, i
    assert [pieces[j] for j in found[0]] == [b"BuyableInstoreAndOnline"]  # magikarp's example
    assert [pieces[j] for j in found[1]] == [b"rawdownloadcloneembedreportprint"]


def test_containing_finds_a_match_behind_one_across_tokens():
    """Matches overlap in the joined bytes: one across a token boundary must not hide one inside a token."""
    pieces = (b"aa", b"a", b"xaa", b"aax")
    found = containing(pieces, np.array([0]), np.ones(4, dtype=bool))
    assert found[0].tolist() == [2, 3]


def test_every_reader_of_gpt2s_vocabulary_agrees(gpt2_categories, tiktoken_gpt2):
    """The same categories through embscope's tiktoken-style BPE (llm.c's and nanochat's files)."""
    from embscope.rank_bpe import GPT2_PATTERN, RankBPETokenizer

    ranked = RankBPETokenizer(tiktoken_gpt2._mergeable_ranks, GPT2_PATTERN, {"<|endoftext|>": 50256},
                              kind="tiktoken", source="tiktoken gpt2")
    cats = categorize(ranked, GPT2_VOCAB + 47)
    assert np.array_equal(cats.codes, gpt2_categories.codes) and not cats.unreachable.any()
    assert cats.token_bytes == gpt2_categories.token_bytes


def test_transformers_wrapper_agrees_on_byte_fallback(byte_fallback_dir):
    """The tokenizer as transformers loads it (the path of SentencePiece models), against the
    `tokenizers` one: the same categories, the same unreachable byte tokens."""
    from transformers import AutoTokenizer

    from embscope.tokenizer import TransformersTokenizer

    d, fast = byte_fallback_dir
    direct = categorize(from_directory(str(d)), len(fast))
    wrapped = categorize(TransformersTokenizer(AutoTokenizer.from_pretrained(str(d)), str(d)), len(fast))
    assert np.array_equal(wrapped.codes, direct.codes)
    assert np.array_equal(wrapped.unreachable, direct.unreachable) and wrapped.unreachable.sum() > 40
