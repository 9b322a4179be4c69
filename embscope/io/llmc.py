"""llm.c's GPT-2 checkpoints (gpt2_124M.bin, gpt2_124M_bf16.bin, training snapshots
model_NNNNNNNN.bin) and its tokenizer file (gpt2_tokenizer.bin), read without llm.c.

A model file is a header of 256 little-endian int32 (magic 20240326, version 3 = every tensor
fp32 or 5 = every tensor bf16, max sequence length, vocabulary size, layers, heads, channels,
padded vocabulary size), then the parameters back to back: wte (Vp, C) first, wpe (maxT, C)
second, then the transformer blocks. Both embeddings are memory-mapped by offset; the rest of
the file is never read. Rows [vocab, Vp) of wte are padding (zeros), as in nanoGPT.

A tokenizer file is a header of 256 int32 (magic 20240328, version 1, or 2 with the id of the
end-of-text token), then for every id one length byte and the token's bytes.
"""

from __future__ import annotations

import os
import re

import numpy as np

from embscope.errors import EmbscopeError, TokenizerFileError
from embscope.formats import Format
from embscope.io.dtypes import RAW_DTYPES, itemsize
from embscope.io.matrix import Matrix
from embscope.io.reader import Reader
from embscope.io.small_files import read_small
from embscope.io.steps import choose, steps_in

MODEL_MAGIC = 20240326
STATE_MAGIC = 20240327  # state_NNNNNNNN_NNNNN.bin: optimizer state and data position
TOKENIZER_MAGIC = 20240328
LLAMA3_MAGIC = 20240803  # train_llama3.py: another model, another layout
HEADER_INTS = 256
HEADER_BYTES = 4 * HEADER_INTS
VERSIONS = {3: "F32", 5: "BF16"}
SNAPSHOT = re.compile(r"model_(\d{8})\.bin")
TOKENIZER_FILE = "gpt2_tokenizer.bin"
WTE_KEY, WPE_KEY = "transformer.wte.weight", "transformer.wpe.weight"  # train_gpt2.py's names
FIELDS = ("max_seq_len", "vocab_size", "num_layers", "num_heads", "channels", "padded_vocab_size")


def magic(head: bytes) -> int | None:
    """The llm.c magic number a file starts with, or None."""
    if len(head) < 4:
        return None
    value = int.from_bytes(head[:4], "little")
    return value if value in (MODEL_MAGIC, STATE_MAGIC, TOKENIZER_MAGIC, LLAMA3_MAGIC) else None


def snapshot(directory: str, step: int | None) -> str | None:
    """The model_NNNNNNNN.bin that train_gpt2 wrote at `step` (default: the last) in a log folder."""
    steps = steps_in(directory, SNAPSHOT)
    if not steps:
        return None
    return os.path.join(directory, steps[choose(steps, step, directory, "llm.c snapshot")])


def parameter_count(h: dict[str, int]) -> int:
    """Parameters of llm.c's GPT-2 (train_gpt2 fill_in_parameter_sizes): embeddings, then per
    layer two LayerNorms, qkv, attention projection, MLP up and down (weights and biases), then
    the final LayerNorm."""
    C, L = h["channels"], h["num_layers"]
    per_layer = 12 * C * C + 13 * C
    return h["padded_vocab_size"] * C + h["max_seq_len"] * C + L * per_layer + 2 * C


class LlmcReader(Reader):
    """The reader shape model.py expects (keys, matrix, vector, format, facts, files, bytes)."""

    def __init__(self, path: str):
        self.path = path
        self.format = Format.LLMC
        self.config: dict = {}
        self.file_bytes = os.path.getsize(path)
        self.files = [path]
        header = self._header()
        self.dtype = VERSIONS[header["version"]]
        self.header = header
        self.n_tokens = header["vocab_size"]
        self.tied = True  # llm.c's GPT-2 has no lm_head of its own: it is wte
        self.facts = {"llmc_version": header["version"],
                      "model_args": {k: header[k] for k in FIELDS}}
        m = SNAPSHOT.fullmatch(os.path.basename(path))
        if m:
            self.facts["step"] = int(m.group(1))
        C, item = header["channels"], itemsize(self.dtype)
        Vp, T = header["padded_vocab_size"], header["max_seq_len"]
        # key -> (byte offset, shape): wte (Vp, C) right after the header, wpe (T, C) after it
        self._shapes = {WTE_KEY: (HEADER_BYTES, (Vp, C)), WPE_KEY: (HEADER_BYTES + Vp * C * item, (T, C))}
        self.keys = list(self._shapes)
        self.read_bytes = HEADER_BYTES

    def _header(self) -> dict[str, int]:
        if self.file_bytes < HEADER_BYTES:
            raise EmbscopeError(f"{self.path}: an llm.c file is at least {HEADER_BYTES} bytes (its header);"
                                f" this one has {self.file_bytes}")
        raw = np.fromfile(self.path, dtype="<i4", count=HEADER_INTS)
        kind = int(raw[0])
        if kind == TOKENIZER_MAGIC:
            raise TokenizerFileError(self.path)
        if kind == STATE_MAGIC:
            raise EmbscopeError(f"{self.path}: an llm.c training state (optimizer and data position), not"
                                " model weights: use the model_NNNNNNNN.bin of the same step")
        if kind == LLAMA3_MAGIC:
            raise EmbscopeError(f"{self.path}: an llm.c Llama 3 checkpoint (magic {LLAMA3_MAGIC}); embscope reads"
                                " llm.c's GPT-2 checkpoints (magic 20240326)")
        if kind != MODEL_MAGIC:
            raise EmbscopeError(f"{self.path}: not an llm.c model file (magic {kind}, expected {MODEL_MAGIC})")
        version = int(raw[1])
        h = dict(zip(("version",) + FIELDS, (version, *(int(v) for v in raw[2:8]))))
        if version not in VERSIONS or h["padded_vocab_size"] == 0:
            raise EmbscopeError(f"{self.path}: llm.c model version {version}; embscope reads versions 3 (fp32)"
                                " and 5 (bf16) with a padded vocabulary, as train_gpt2.py writes them now"
                                " (re-export it with llm.c's current train_gpt2.py)")
        bad = [k for k in FIELDS if h[k] <= 0]
        if bad or h["padded_vocab_size"] < h["vocab_size"]:
            what = f"'{bad[0]}' is {h[bad[0]]}" if bad else \
                f"padded_vocab_size {h['padded_vocab_size']} is below vocab_size {h['vocab_size']}"
            raise EmbscopeError(f"{self.path}: a broken llm.c header ({what})")
        expected = HEADER_BYTES + parameter_count(h) * itemsize(VERSIONS[version])
        if expected != self.file_bytes:
            raise EmbscopeError(f"{self.path}: its llm.c header describes a {expected}-byte file"
                                f" ({parameter_count(h)} parameters), but the file has {self.file_bytes} bytes")
        return h

    def matrix(self, key: str) -> Matrix:
        offset, shape = self._shapes[key]
        raw = np.memmap(self.path, dtype=RAW_DTYPES[self.dtype], mode="r", offset=offset, shape=shape)
        m = Matrix(raw=raw, dtype=self.dtype, name=key)
        self.read_bytes += m.nbytes
        return m

    def vector(self, key: str) -> np.ndarray:
        raise EmbscopeError(f"{self.path}: '{key}' is not a vector")


def find_tokenizer(model_path: str) -> str | None:
    """gpt2_tokenizer.bin beside the model, or in the folder above (a log folder of snapshots
    inside the llm.c checkout, where train_gpt2.py wrote the tokenizer)."""
    here = os.path.dirname(os.path.abspath(model_path))
    for folder in (here, os.path.dirname(here)):
        path = os.path.join(folder, TOKENIZER_FILE)
        if os.path.isfile(path):
            return path
    return None


def read_tokenizer(path: str):
    """gpt2_tokenizer.bin as a byte-pair encoding: the token of id i is the i-th byte string; its
    rank is its id (as in tiktoken's GPT-2), the end-of-text token is special."""
    from embscope.rank_bpe import GPT2_PATTERN, RankBPETokenizer

    data = read_small(path)  # a regular file, size-capped (GPT-2's is 0.4 MB)
    if len(data) < HEADER_BYTES:
        raise EmbscopeError(f"{path}: not an llm.c tokenizer file (shorter than its {HEADER_BYTES}-byte header)")
    header = np.frombuffer(data, dtype="<i4", count=4)
    if int(header[0]) != TOKENIZER_MAGIC or int(header[1]) not in (1, 2):
        raise EmbscopeError(f"{path}: not an llm.c tokenizer file (magic {int(header[0])}, version {int(header[1])})")
    n = int(header[2])
    eot = int(header[3]) if int(header[1]) == 2 else None
    tokens = _token_list(data, n, path)
    if eot is not None and not 0 <= eot < n:
        raise EmbscopeError(f"{path}: end-of-text id {eot} is not one of its {n} tokens")
    ranks = {t: i for i, t in enumerate(tokens) if i != eot}
    if len(ranks) != n - (eot is not None):
        raise EmbscopeError(f"{path}: two ids have the same bytes, so text has no single encoding")
    special = {tokens[eot].decode("utf-8", "replace"): eot} if eot is not None else {}
    return RankBPETokenizer(ranks, GPT2_PATTERN, special, kind="GPT-2 BPE (llm.c gpt2_tokenizer.bin)", source=path)


def _token_list(data: bytes, n: int, path: str) -> list[bytes]:
    tokens, at = [], HEADER_BYTES
    for _ in range(max(n, 0)):
        if at >= len(data):
            break
        length = data[at]
        tokens.append(data[at + 1:at + 1 + length])
        at += 1 + length
    if n <= 0 or len(tokens) != n or at > len(data):
        raise EmbscopeError(f"{path}: the tokenizer file ends before its {n} tokens do")
    if at != len(data):
        raise EmbscopeError(f"{path}: {len(data) - at} bytes after the last of its {n} tokens")
    return tokens
