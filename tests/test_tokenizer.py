"""embscope's tokenizers give the ids of the references: tiktoken's "gpt2" (what nanoGPT's
prepare.py uses), transformers' own tokenizers, and nanoGPT's char-level encode."""

from __future__ import annotations

import os

import pytest

from embscope import tokenizer as T
from embscope.errors import EmbscopeError

from tests.conftest import GPT2_FILES, GPT2_VOCAB

SAMPLES = [
    "Hello, world!",
    "",
    " ",
    "naïve café — déjà vu; Straße; Ελληνικά; русский текст; עברית; العربية",
    "emoji: 😀👍🏽 🇫🇷 👨‍👩‍👧‍👦 ✨🫠",
    "中文字符和日本語のテキスト、한국어 文字化け",
    "spaces:    four, then\ttab\t\tand\n\nnewlines\r\n  trailing   ",
    "\n\n\n    \t \u00a0\u3000 mixed whitespace runs      \n",
    "<|endoftext|>Once upon a time<|endoftext|><|endoftext|> the end",
    "not special: <|endoftext| and |endoftext|> and <|startoftext|>",
    "numbers 1234567890 3.14159 -42 1e10 0x1F 2024-01-01 ١٢٣ ½",
    "def f(x):\n    return x ** 2  # square\n\nif __name__ == '__main__':\n\tprint(f(3))\n",
    "I'm you're we've they'll she'd it's DON'T 'tis",
    " SolidGoldMagikarp king King KING kingdom",
    "\x00nul \x1b[31mansi\x1b[0m \x7f del \u200bzero-width\u200d",
    "https://example.com/path?q=1&r=2#frag   user@example.org",
]


@pytest.fixture(scope="session")
def paragraphs(shakespeare) -> list[str]:
    """Several Tiny Shakespeare paragraphs, from the start, the middle and the end."""
    paras = [p for p in shakespeare.split("\n\n") if p.strip()]
    return paras[:4] + paras[len(paras) // 2: len(paras) // 2 + 3] + paras[-2:]


@pytest.fixture(scope="session")
def gpt2_tokenizers(hf_models) -> dict[str, T.Tokenizer]:
    """Every way embscope reads GPT-2's BPE."""
    return {
        "bundled": T.bundled_gpt2(),
        "tokenizer.json": T.from_tokenizer_json(os.path.join(hf_models["gpt2-lm"].path, "tokenizer.json")),
        "vocab.json+merges.txt": T.from_path(str(GPT2_FILES / "vocab.json")),
    }


GPT2_KINDS = ["bundled", "tokenizer.json", "vocab.json+merges.txt"]


@pytest.mark.parametrize("kind", GPT2_KINDS)
def test_gpt2_ids_equal_tiktoken(gpt2_tokenizers, tiktoken_gpt2, paragraphs, kind):
    tok = gpt2_tokenizers[kind]
    assert tok.vocab_size == GPT2_VOCAB
    for text in SAMPLES + paragraphs:
        assert tok.encode(text) == tiktoken_gpt2.encode(text, allowed_special="all"), repr(text)


def test_gpt2_whole_corpus_equals_tiktoken(gpt2_tokenizers, tiktoken_gpt2, shakespeare):
    """A long stretch of the corpus in one call (nanoGPT's prepare.py encodes it whole)."""
    text = shakespeare[:100_000]
    assert gpt2_tokenizers["bundled"].encode(text) == tiktoken_gpt2.encode_ordinary(text)


def test_tokenizer_json_equals_transformers(gpt2_tokenizers, gpt2_hf_tokenizer, paragraphs):
    tok = gpt2_tokenizers["tokenizer.json"]
    for text in SAMPLES + paragraphs:
        assert tok.encode(text) == gpt2_hf_tokenizer(text, add_special_tokens=False)["input_ids"], repr(text)
        assert tok.encode(text) == gpt2_hf_tokenizer.encode(text), repr(text)


@pytest.mark.parametrize("kind", GPT2_KINDS)
def test_token_bytes_round_trip(gpt2_tokenizers, paragraphs, kind):
    tok = gpt2_tokenizers[kind]
    for text in SAMPLES + paragraphs:
        ids = tok.encode(text)
        assert b"".join(tok.token_bytes(i) for i in ids) == text.encode("utf-8"), repr(text)


@pytest.mark.parametrize("kind", GPT2_KINDS)
def test_emoji_split_across_byte_level_tokens(gpt2_tokenizers, kind):
    tok = gpt2_tokenizers[kind]
    ids = tok.encode("🫠")
    pieces = [tok.token_bytes(i) for i in ids]
    assert len(ids) > 1 and b"".join(pieces) == "🫠".encode()

    def utf8(b):
        try:
            b.decode("utf-8")
            return True
        except UnicodeDecodeError:
            return False

    assert not all(utf8(p) for p in pieces)  # some token is part of a character


@pytest.mark.parametrize("kind", GPT2_KINDS)
def test_every_gpt2_token_has_bytes(gpt2_tokenizers, tiktoken_gpt2, kind):
    tok = gpt2_tokenizers[kind]
    for i in range(GPT2_VOCAB):
        assert tok.token_bytes(i) == tiktoken_gpt2.decode_single_token_bytes(i), i


@pytest.mark.parametrize("kind", GPT2_KINDS)
def test_word_ids(gpt2_tokenizers, tiktoken_gpt2, kind):
    tok = gpt2_tokenizers[kind]
    assert tok.word_ids("king") == [5822]  # " king": the word as it appears mid-sentence
    assert tok.word_ids(" king") == [5822]
    assert tok.word_ids("SolidGoldMagikarp") == [43453]
    assert tok.word_ids("king", exact=True) == tiktoken_gpt2.encode("king")
    assert tok.word_ids("<|endoftext|>") == [50256]
    assert tok.word_ids("Honorificabilitudinitatibus") == tiktoken_gpt2.encode("Honorificabilitudinitatibus")
    assert tok.single_token(" king") == 5822
    assert tok.single_token("kingdoms of") is None


# --- nanoGPT char-level ----------------------------------------------------------------------

@pytest.fixture(scope="session")
def char_tok(nanogpt_checkout) -> T.CharTokenizer:
    return T.from_meta_pkl(str(nanogpt_checkout / "data" / "shakespeare_char" / "meta.pkl"))


def test_char_vocabulary_is_nanogpts(char_tok, char_meta, shakespeare):
    assert char_tok.vocab_size == char_meta["vocab_size"] == 65
    assert char_tok.stoi == char_meta["stoi"] and char_tok.itos == char_meta["itos"]


def test_char_ids_equal_nanogpt_encode(char_tok, char_meta, paragraphs, shakespeare):
    stoi, itos = char_meta["stoi"], char_meta["itos"]
    for text in paragraphs + [shakespeare[:50_000], "", "\n\n", "KING RICHARD III:"]:
        ids = char_tok.encode(text)
        assert ids == [stoi[c] for c in text]  # meta.pkl's encoding: one id per character
        assert "".join(itos[i] for i in ids) == text
        assert b"".join(char_tok.token_bytes(i) for i in ids) == text.encode()
    assert char_tok.word_ids("king") == [stoi[c] for c in "king"]  # no " king" merging at char level


def test_char_outside_the_vocabulary(char_tok):
    with pytest.raises(EmbscopeError) as e:
        char_tok.encode("café")
    assert str(e.value) == "character 'é' is not in the model's 65-character vocabulary"


@pytest.mark.parametrize("content,message", [
    (b"not a pickle", "not a readable pickle"),
    (__import__("pickle").dumps([1, 2, 3]), "not a nanoGPT meta.pkl"),
    (__import__("pickle").dumps({"stoi": {"a": 0}, "itos": {0: 1}}), "not a nanoGPT meta.pkl"),
])
def test_bad_meta_pkl(tmp_path, content, message):
    p = tmp_path / "meta.pkl"
    p.write_bytes(content)
    with pytest.raises(EmbscopeError, match=message):
        T.from_meta_pkl(str(p))


# --- BERT WordPiece --------------------------------------------------------------------------

BERT_SAMPLES = SAMPLES[:12] + ["The quick brown fox, unbelievably, jumped!", "ROMEO: O, she doth teach the torches"]


@pytest.fixture(scope="session")
def bert_reference(wordpiece_dir):
    from transformers import BertTokenizerFast

    # transformers 5: BertTokenizerFast is BertTokenizer, and BertTokenizerFast(vocab_file=...)
    # silently ignores the file (5 tokens); from_pretrained on the folder reads vocab.txt.
    ref = BertTokenizerFast.from_pretrained(str(wordpiece_dir))
    assert len(ref) > 1000
    return ref


@pytest.mark.parametrize("how", ["vocab.txt", "folder with vocab.txt", "tokenizer.json from transformers"])
def test_wordpiece_ids_equal_transformers(bert_reference, wordpiece_dir, hf_models, paragraphs, how):
    tok = {
        "vocab.txt": lambda: T.from_path(str(wordpiece_dir / "vocab.txt")),
        "folder with vocab.txt": lambda: T.from_directory(str(wordpiece_dir)),
        "tokenizer.json from transformers": lambda: T.from_directory(hf_models["bert"].path),
    }[how]()
    assert tok.vocab_size == len(bert_reference)
    for text in BERT_SAMPLES + paragraphs:
        assert tok.encode(text) == bert_reference(text, add_special_tokens=False)["input_ids"], repr(text)
    assert tok.word_ids("king") == bert_reference("king", add_special_tokens=False)["input_ids"]
    assert tok.token_bytes(bert_reference.convert_tokens_to_ids("[CLS]")) == b"[CLS]"


# --- how tokenizers are found ----------------------------------------------------------------

def test_from_path_kinds(hf_models, nanogpt_checkout, wordpiece_dir):
    gpt2_dir = hf_models["gpt2-lm"].path
    assert T.from_path(gpt2_dir).kind == "tokenizer.json (tokenizers)"
    assert T.from_path(os.path.join(gpt2_dir, "tokenizer.json")).kind == "tokenizer.json (tokenizers)"
    assert T.from_path(str(GPT2_FILES)).kind == "byte-level BPE (vocab.json + merges.txt)"
    assert T.from_path(str(nanogpt_checkout / "data" / "shakespeare_char" / "meta.pkl")).vocab_size == 65
    assert T.from_path(str(wordpiece_dir / "vocab.txt")).kind == "WordPiece (vocab.txt)"


def test_from_path_errors(tmp_path):
    with pytest.raises(EmbscopeError) as e:
        T.from_path(str(tmp_path / "nope.json"))
    assert str(e.value) == f"{tmp_path / 'nope.json'}: no such file or directory"
    with pytest.raises(EmbscopeError) as e:
        T.from_path(str(tmp_path))
    assert str(e.value) == f"{tmp_path}: no tokenizer files in this directory"
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(EmbscopeError, match="not a readable tokenizer.json"):
        T.from_path(str(tmp_path / "broken.json"))
