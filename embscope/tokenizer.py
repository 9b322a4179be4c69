"""Tokenizers: text to ids, and ids back to the exact bytes of each token.

Three kinds: a `tokenizers` library tokenizer (tokenizer.json, vocab.json + merges.txt, BERT's
vocab.txt, or GPT-2's files bundled with embscope), nanoGPT's character-level `meta.pkl`, and any
other Hugging Face tokenizer through `transformers`, when it is installed.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from importlib import resources

from embscope.errors import EmbscopeError, first_line, missing_extra
from embscope.io.restricted_pickle import PlainDataUnpickler, safe_loads
from embscope.tokenizer_config import (BERT_SPECIALS, add_config_tokens, config_tokens, read_tokenizer_config,
                                       token_content)
from embscope.io.small_files import read_small, require_regular
from embscope.native import RustGuard, native_call

GPT2_SPECIAL = "<|endoftext|>"
_BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")
SPACE_MARK = "\u2581"  # SentencePiece's word-start mark
BULK_WORDS = 64  # fewer words are encoded one by one (a batch call starts a thread pool)


@lru_cache(maxsize=1)
def _byte_translation() -> dict[int, int]:
    """str.translate table: GPT-2 stand-in character -> the latin-1 character of its byte."""
    return {ord(ch): b for ch, b in _byte_decoder().items()}


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's bytes_to_unicode table, inverted: printable stand-in character -> byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(
        range(ord("®"), ord("ÿ") + 1)
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


class Tokenizer:
    """Common interface. `kind` and `source` describe it for `info`."""

    unk_id: int | None = None  # the id unknown text maps to, if the tokenizer has one
    kind: str
    source: str
    vocab_size: int  # number of ids the tokenizer can produce

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def token_bytes(self, token_id: int) -> bytes:
        """The token's exact content (bytes: a byte-level token may be part of a UTF-8 char)."""
        raise NotImplementedError

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """`encode` of each text (tokenizers that can, do them all in one native call)."""
        return [self.encode(t) for t in texts]

    def special_ids(self) -> frozenset[int]:
        """The ids of the tokenizer's special tokens (end of text, padding, unknown...)."""
        return frozenset()

    def all_token_bytes(self) -> list[bytes]:
        """`token_bytes` of every id, 0 .. vocab_size - 1."""
        return [self.token_bytes(i) for i in range(self.vocab_size)]

    def single_token(self, text: str) -> int | None:
        ids = self.encode(text)
        return ids[0] if len(ids) == 1 else None

    def word_ids(self, word: str, exact: bool = False) -> list[int]:
        """The ids a user means by `word`: ' word' (mid-sentence) when that is one token."""
        if not exact and not word.startswith(" "):
            try:
                spaced = self.single_token(" " + word)
            except EmbscopeError:  # a tokenizer that fails on " word" may still know "word"
                spaced = None
            if spaced is not None and spaced != self.unk_id:  # " word" unknown: not a better match
                return [spaced]
        return self.encode(word)

    def encode_many(self, texts: list[str]) -> list[list[int]] | None:
        """`encode` of each text in one call, where the tokenizer has such a call (None: not
        available, or one of the texts failed; `encode` each to find which)."""
        return None

    def word_ids_many(self, words: list[str], exact: bool = False) -> list[list[int]]:
        """`word_ids` of each word; one tokenizer call for all where the tokenizer allows (and
        there are enough words to be worth its threads)."""
        if len(words) < BULK_WORDS:
            return [self.word_ids(w, exact) for w in words]
        spaced = {} if exact else {w: " " + w for w in words if not w.startswith(" ")}
        ids = self._encode_all(list(spaced.values()))
        if ids is None:
            return [self.word_ids(w, exact) for w in words]
        single = {w: ids[s] for w, s in spaced.items() if len(ids[s]) == 1 and ids[s][0] != self.unk_id}
        rest = self._encode_all([w for w in words if w not in single])
        if rest is None:
            return [self.word_ids(w, exact) for w in words]
        return [single[w] if w in single else rest[w] for w in words]

    def _encode_all(self, texts: list[str]) -> dict[str, list[int]] | None:
        texts = list(dict.fromkeys(texts))
        encoded = self.encode_many(texts) if texts else []
        return None if encoded is None else dict(zip(texts, encoded))


class HFTokenizer(Tokenizer):
    """A `tokenizers.Tokenizer`."""

    def __init__(self, tok, kind: str, source: str):
        # A tokenizer.json may pad (e.g. to 128 with [PAD]) or truncate: the model's users call it
        # with padding and truncation off (transformers does), and embscope decides about length.
        tok.no_padding()
        tok.no_truncation()
        self._tok = RustGuard(tok)  # a Rust panic while encoding becomes an Exception
        self._id_to_token = tok.id_to_token  # called once per label: without the guard's lookup
        self.kind = kind
        self.source = source
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
        # Only the decoder's settings are needed: serialise it alone, not the whole vocabulary.
        decoder = tok.decoder.__getstate__().decode() if tok.decoder is not None else ""
        self._byte_level = '"ByteLevel"' in decoder
        self._byte_fallback = '"ByteFallback"' in decoder
        self._metaspace = '"Metaspace"' in decoder or SPACE_MARK in decoder
        unk = getattr(tok.model, "unk_token", None)
        self.unk_id = tok.token_to_id(unk) if isinstance(unk, str) else None
        self._special = {t.content for t in tok.get_added_tokens_decoder().values() if t.special}

    def encode(self, text: str) -> list[int]:
        try:
            return self._tok.encode(text, add_special_tokens=False).ids
        except Exception as e:  # noqa: BLE001 - a broken tokenizer.json fails only here ("Unk token
            # `x` not found in the vocabulary"), as a bare Exception
            raise EmbscopeError(f"{self.source}: the tokenizer cannot encode '{text}' ({first_line(e)})") from None

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        try:
            return [e.ids for e in self._tok.encode_batch(texts, add_special_tokens=False)]
        except Exception as e:  # noqa: BLE001 - as in encode
            raise EmbscopeError(f"{self.source}: the tokenizer cannot encode its own tokens"
                                f" ({first_line(e)})") from None

    def encode_many(self, texts: list[str]) -> list[list[int]] | None:
        try:
            return self.encode_batch(texts)
        except EmbscopeError:  # encode() each text says which one fails, and how
            return None

    def special_ids(self) -> frozenset[int]:
        ids = {self._tok.token_to_id(t) for t in self._special} | {self.unk_id}
        return frozenset(i for i in ids if i is not None)

    def token_bytes(self, token_id: int) -> bytes:
        return self._piece_bytes(self._id_to_token(token_id))

    def all_token_bytes(self) -> list[bytes]:
        pieces: list[str | None] = [None] * self.vocab_size
        for piece, i in self._tok.get_vocab(with_added_tokens=True).items():
            if 0 <= i < self.vocab_size:
                pieces[i] = piece
        return [self._piece_bytes(p) for p in pieces]

    def _piece_bytes(self, piece: str | None) -> bytes:
        if piece is None:
            return b""
        if self._byte_fallback:  # <0xNN> stands for one byte, even when listed as a special token
            m = _BYTE_FALLBACK.fullmatch(piece)
            if m:
                return bytes([int(m.group(1), 16)])
        if piece in self._special:
            return piece.encode()
        if self._byte_level:
            try:
                return piece.translate(_byte_translation()).encode("latin-1")
            except UnicodeEncodeError:  # not a byte-level piece after all
                return piece.encode()
        if self._metaspace:
            piece = piece.replace(SPACE_MARK, " ")
        return piece.encode()


class CharTokenizer(Tokenizer):
    """nanoGPT's character-level vocabulary from `meta.pkl` (`stoi`, `itos`)."""

    def __init__(self, stoi: dict[str, int], itos: dict[int, str], source: str):
        self.stoi, self.itos = stoi, itos
        self.kind = "character-level (nanoGPT meta.pkl)"
        self.source = source
        self.vocab_size = len(itos)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[ch] for ch in text]
        except KeyError as e:
            from embscope.display import escape  # as the character's token would be shown

            raise EmbscopeError(f"character '{escape(e.args[0].encode('utf-8', 'surrogatepass'))}' is not in"
                                f" the model's {self.vocab_size}-character vocabulary") from None

    def token_bytes(self, token_id: int) -> bytes:
        # A pickled str may hold a lone surrogate: keep it (as the bytes display.escape shows).
        return self.itos.get(token_id, "").encode("utf-8", "surrogatepass")

    def word_ids(self, word: str, exact: bool = False) -> list[int]:
        return self.encode(word)


class TransformersTokenizer(Tokenizer):
    """Any tokenizer `transformers.AutoTokenizer` can load (SentencePiece models, ...)."""

    def __init__(self, tok, source: str):
        self._tok = tok
        self.kind = f"{type(tok).__name__} (transformers)"
        self.source = source
        self.vocab_size = len(tok)

    def encode(self, text: str) -> list[int]:
        try:
            with native_call():
                return list(self._tok(text, add_special_tokens=False)["input_ids"])
        except Exception as e:  # noqa: BLE001 - any failure inside transformers
            raise EmbscopeError(f"{self.source}: the tokenizer cannot encode '{text}' ({first_line(e)})") from None

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        try:
            with native_call():
                return [list(ids) for ids in self._tok(texts, add_special_tokens=False)["input_ids"]]
        except Exception as e:  # noqa: BLE001 - any failure inside transformers
            raise EmbscopeError(f"{self.source}: the tokenizer cannot encode its own tokens"
                                f" ({first_line(e)})") from None

    def special_ids(self) -> frozenset[int]:
        return frozenset(self._tok.all_special_ids)

    def token_bytes(self, token_id: int) -> bytes:
        piece = self._tok.convert_ids_to_tokens(token_id) or ""
        m = _BYTE_FALLBACK.fullmatch(piece)
        if m:
            return bytes([int(m.group(1), 16)])
        return piece.replace(SPACE_MARK, " ").encode()


def _tokenizers_module():
    import tokenizers

    return tokenizers


def from_tokenizer_json(path: str) -> HFTokenizer:
    tk = _tokenizers_module()
    require_regular(path)  # a FIFO would block the library's read forever
    try:
        with native_call():
            tok = tk.Tokenizer.from_file(path)
    except Exception as e:  # noqa: BLE001 - the library raises bare Exception on bad files
        raise EmbscopeError(f"{path}: not a readable tokenizer.json ({first_line(e)})") from None
    return HFTokenizer(tok, "tokenizer.json (tokenizers)", path)


def from_vocab_merges(vocab: str, merges: str, kind: str = "byte-level BPE (vocab.json + merges.txt)",
                      config: dict | None = None) -> HFTokenizer:
    """GPT-2/RoBERTa-style files; `config` is tokenizer_config.json beside them (add_prefix_space,
    special and added tokens), as transformers reads it."""
    tk = _tokenizers_module()
    config = config or {}
    require_regular(vocab)
    require_regular(merges)
    try:
        with native_call():
            tok = tk.Tokenizer(tk.models.BPE.from_file(vocab, merges))
    except Exception as e:  # noqa: BLE001
        raise EmbscopeError(f"{vocab}: not a readable BPE vocabulary ({first_line(e)})") from None
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=config.get("add_prefix_space") is True)
    tok.decoder = tk.decoders.ByteLevel()
    if config_tokens(config):  # the config names the special tokens (RoBERTa's are <s>, </s>, ...)
        add_config_tokens(tok, config, os.path.dirname(vocab))
    elif tok.token_to_id(GPT2_SPECIAL) is not None:  # GPT-2's default
        tok.add_special_tokens([GPT2_SPECIAL])
    return HFTokenizer(tok, kind, os.path.dirname(vocab))


def from_wordpiece(vocab_txt: str, config: dict | None = None) -> HFTokenizer:
    """BERT's vocab.txt; `config` is tokenizer_config.json beside it (do_lower_case, strip_accents,
    tokenize_chinese_chars, special tokens), with BERT's defaults where it says nothing."""
    tk = _tokenizers_module()
    config = config or {}
    lowercase = config.get("do_lower_case", True) is not False
    strip_accents = config.get("strip_accents")
    names = {k: token_content(config.get(k)) or default for k, default in BERT_SPECIALS.items()}
    require_regular(vocab_txt)
    try:
        with native_call():
            tok = tk.BertWordPieceTokenizer(
                vocab_txt, **names, lowercase=lowercase, clean_text=True,
                strip_accents=strip_accents if isinstance(strip_accents, bool) else None,
                handle_chinese_chars=config.get("tokenize_chinese_chars", True) is not False)
    except Exception as e:  # noqa: BLE001
        raise EmbscopeError(f"{vocab_txt}: not a readable WordPiece vocabulary ({first_line(e)})") from None
    add_config_tokens(tok._tokenizer, config, os.path.dirname(vocab_txt))
    return HFTokenizer(tok._tokenizer, "WordPiece (vocab.txt)", vocab_txt)


def bundled_gpt2() -> HFTokenizer:
    """GPT-2's BPE, shipped with embscope: the same ids as tiktoken's "gpt2" encoding."""
    root = resources.files("embscope") / "data" / "gpt2"
    return from_vocab_merges(
        str(root / "vocab.json"), str(root / "merges.txt"), kind="GPT-2 BPE (bundled with embscope)"
    )


def from_meta_pkl(path: str) -> CharTokenizer:
    meta = safe_loads(read_small(path), PlainDataUnpickler, path)
    stoi = meta.get("stoi") if isinstance(meta, dict) else None
    itos = meta.get("itos") if isinstance(meta, dict) else None
    if not (
        isinstance(stoi, dict) and isinstance(itos, dict)
        and all(isinstance(k, str) and isinstance(v, int) for k, v in stoi.items())
        and all(isinstance(k, int) and isinstance(v, str) for k, v in itos.items())
    ):
        raise EmbscopeError(f"{path}: not a nanoGPT meta.pkl (expected 'stoi' and 'itos' dicts)")
    # prepare.py numbers the characters 0..n-1 both ways; anything else would label or look up
    # the wrong rows (a negative id reads the matrix from its end).
    if set(itos) != set(range(len(itos))) or any(itos.get(i) != ch for ch, i in stoi.items()):
        raise EmbscopeError(f"{path}: not a nanoGPT meta.pkl ('stoi' and 'itos' do not number"
                            f" the same characters 0..{len(itos) - 1})")
    return CharTokenizer(stoi, itos, path)


def _no_special_files(directory: str) -> None:
    """Every entry of `directory` is a regular file or a folder: never a FIFO or a device that
    a library would block on or read without end."""
    for name in sorted(os.listdir(directory)):
        path = os.path.join(directory, name)
        if not os.path.isdir(path):
            require_regular(path)


def from_directory(directory: str) -> Tokenizer | None:
    """The tokenizer saved in a model directory, or None when it holds none."""

    def has(name: str) -> str | None:
        p = os.path.join(directory, name)
        if os.path.lexists(p) and not os.path.isdir(p):
            require_regular(p)  # a FIFO vocab.txt is an error, not a missing file
            return p
        return None

    if has("tokenizer.json"):
        return from_tokenizer_json(has("tokenizer.json"))
    if has("vocab.json") and has("merges.txt"):
        return from_vocab_merges(has("vocab.json"), has("merges.txt"), config=read_tokenizer_config(directory))
    if has("vocab.txt"):
        return from_wordpiece(has("vocab.txt"), config=read_tokenizer_config(directory))
    if has("tokenizer.model") or has("spiece.model") or has("sentencepiece.bpe.model"):
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise missing_extra("transformers", "transformers", "This model's SentencePiece tokenizer") from None
        _no_special_files(directory)  # transformers reads whatever it finds there
        try:
            # Never run code from the folder (auto_map), and never let transformers ask about it.
            with native_call():
                tok = AutoTokenizer.from_pretrained(directory, trust_remote_code=False)
            return TransformersTokenizer(tok, directory)
        except Exception as e:  # noqa: BLE001 - any failure inside transformers
            raise EmbscopeError(f"{directory}: transformers could not load the tokenizer ({first_line(e)})") from None
    return None


def from_path(path: str) -> Tokenizer:
    """`--tokenizer PATH`: a tokenizer.json, a meta.pkl, a vocab.json (+ merges.txt beside it) or a directory."""
    if os.path.isdir(path):
        tok = from_directory(path)
        if tok is None:
            raise EmbscopeError(f"{path}: no tokenizer files in this directory")
        return tok
    if not os.path.exists(path):
        raise EmbscopeError(f"{path}: no such file or directory")
    require_regular(path)
    name = os.path.basename(path)
    if name.endswith(".bin"):  # llm.c's gpt2_tokenizer.bin
        from embscope.io.llmc import read_tokenizer

        return read_tokenizer(path)
    if name.endswith(".pkl"):
        from embscope.io import nanochat

        return nanochat.read_tokenizer(path) if nanochat.is_tiktoken_pickle(path) else from_meta_pkl(path)
    if name.endswith(".json") and name != "vocab.json":
        return from_tokenizer_json(path)
    if name == "vocab.json":
        merges = os.path.join(os.path.dirname(path), "merges.txt")
        return from_vocab_merges(path, merges, config=read_tokenizer_config(os.path.dirname(path)))
    if name.endswith(".txt"):
        return from_wordpiece(path, config=read_tokenizer_config(os.path.dirname(path)))
    raise EmbscopeError(f"{path}: unknown tokenizer file (expected tokenizer.json, vocab.json, vocab.txt,"
                        " meta.pkl, nanochat's tokenizer.pkl or llm.c's gpt2_tokenizer.bin)")
