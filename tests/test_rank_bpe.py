"""embscope's byte-pair encoding from mergeable ranks (embscope/rank_bpe.py) against tiktoken on
the same ranks, split patterns and special tokens: GPT-2's (llm.c's tokenizer) and nanochat's."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embscope.errors import EmbscopeError
from embscope.rank_bpe import GPT2_PATTERN, RankBPETokenizer, _merge_long, _merge_short
from tests import format_writers as fw

FUZZ = settings(max_examples=200, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
# Text with what the split patterns treat specially: letters of several scripts, digits, marks,
# every kind of white space, apostrophes, emoji, and the special tokens themselves.
ALPHABET = st.sampled_from(list("ab KING'sdmtlvre0123456789,.!?-_\n\r\t\u00a0\u3000\u2028\u0301éß東京ﬁ🤗\x00")
                           + ["<|endoftext|>", "<|bos|>", "<|user_start|>", "'LL", "  ", "\r\n"])


@pytest.fixture(scope="module")
def encodings(tiktoken_gpt2):
    """(tiktoken, embscope) pairs: GPT-2 as llm.c writes it, and a nanochat-style encoding."""
    gpt2 = RankBPETokenizer(tiktoken_gpt2._mergeable_ranks, GPT2_PATTERN, {"<|endoftext|>": 50256},
                            kind="gpt2", source="gpt2")
    nc_enc = fw.nanochat_encoding(tiktoken_gpt2, 6000)
    nanochat = RankBPETokenizer(nc_enc._mergeable_ranks, fw.NANOCHAT_PATTERN, nc_enc._special_tokens,
                                kind="nanochat", source="nanochat")
    return {"gpt2": (tiktoken_gpt2, gpt2), "nanochat": (nc_enc, nanochat)}


@pytest.mark.parametrize("name", ["gpt2", "nanochat"])
def test_shakespeare_ids_equal_tiktoken(encodings, name, shakespeare):
    ref, mine = encodings[name]
    for start in range(0, 200_000, 4_000):
        chunk = shakespeare[start:start + 4_000]
        assert mine.encode(chunk) == ref.encode(chunk, allowed_special="all"), start


@pytest.mark.parametrize("name", ["gpt2", "nanochat"])
@FUZZ
@given(parts=st.lists(ALPHABET, max_size=40))
def test_any_text_ids_equal_tiktoken(encodings, name, parts):
    ref, mine = encodings[name]
    text = "".join(parts)
    assert mine.encode(text) == ref.encode(text, allowed_special="all")


def test_long_pieces_merge_as_short_ones():
    """The heap merge (long pieces) and the plain scan (short ones) pick the same pairs, ties
    to the leftmost, on random vocabularies over a three-letter alphabet."""
    rng = random.Random(0)
    for _ in range(300):
        ranks = {bytes([c]): c for c in range(256)}
        for k in range(rng.randint(1, 30)):
            ranks.setdefault(bytes(rng.choice(b"abc") for _ in range(rng.randint(2, 5))), 256 + k)
        for _ in range(20):
            piece = bytes(rng.choice(b"abc") for _ in range(rng.randint(1, 60)))
            assert _merge_long(piece, ranks) == _merge_short(piece, ranks), piece


def test_a_vocabulary_it_cannot_encode_with():
    ranks = {bytes([c]): c for c in range(256) if c != 0x41}
    with pytest.raises(EmbscopeError) as e:
        RankBPETokenizer(ranks, GPT2_PATTERN, {}, kind="k", source="x.pkl")
    assert str(e.value) == "x.pkl: byte 0x41 has no token, so not every text can be encoded"
    ranks = {bytes([c]): c for c in range(256)}
    with pytest.raises(EmbscopeError) as e:
        RankBPETokenizer(ranks, GPT2_PATTERN, {"<|x|>": 5}, kind="k", source="x.pkl")
    assert str(e.value) == "x.pkl: two tokens share one id"
    with pytest.raises(EmbscopeError) as e:
        RankBPETokenizer(ranks, "(", {}, kind="k", source="x.pkl")
    assert str(e.value).startswith("x.pkl: its split pattern is not a usable regular expression (")
