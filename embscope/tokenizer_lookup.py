"""Which tokenizer goes with a model: the one the user names, else the one its format keeps with
the weights (nanochat's tokenizer.pkl, llm.c's gpt2_tokenizer.bin, nanoGPT's meta.pkl, the
tokenizer files of a Hugging Face folder), else the bundled GPT-2 tokenizer for a model of
GPT-2's vocabulary."""

from __future__ import annotations

import os

from embscope import tokenizer as tokenizers_
from embscope.families import GPT2_VOCAB_FAMILIES
from embscope.formats import Format
from embscope.io.reader import Reader
from embscope.tokenizer import Tokenizer

GPT2_VOCAB = 50257
NANOGPT_PADDED_VOCAB = 50304
HF_TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "vocab.txt", "tokenizer_config.json",
                      "special_tokens_map.json", "tokenizer.model")


def find_tokenizer(spec: str, reader: Reader, directory: str | None, fetch, vocab_rows: int, family: str,
                   path: str | None = None, meta: str | None = None) -> Tokenizer | None:
    """The tokenizer of the model `spec` names, read by `reader` from `directory` (`fetch` brings
    a file of it); `vocab_rows` is its token matrix's height; `path`, `meta`: what the user named."""
    if path:
        return tokenizers_.from_path(path)
    if meta:
        return tokenizers_.from_meta_pkl(meta)
    if reader.format is Format.NANOCHAT:
        from embscope.io import nanochat

        found = nanochat.find_tokenizer(reader.checkpoint)
        return nanochat.read_tokenizer(found) if found else None
    tok = _kept_with_weights(spec, reader, directory, fetch)
    if tok is not None:
        return tok
    gpt2_sized = vocab_rows in (GPT2_VOCAB, NANOGPT_PADDED_VOCAB) or reader.n_tokens == GPT2_VOCAB
    if gpt2_sized and family in GPT2_VOCAB_FAMILIES and reader.n_tokens in (None, GPT2_VOCAB):
        return tokenizers_.bundled_gpt2()
    return None


def _kept_with_weights(spec: str, reader: Reader, directory: str | None, fetch) -> Tokenizer | None:
    if reader.format is Format.LLMC:
        from embscope.io import llmc

        found = llmc.find_tokenizer(reader.path)
        return llmc.read_tokenizer(found) if found else None
    if reader.format is Format.NANOGPT:
        found = _find_meta_pkl(spec, reader.facts.get("dataset"))
        return tokenizers_.from_meta_pkl(found) if found else None
    for name in HF_TOKENIZER_FILES:
        fetch(name)  # bring hub files into the snapshot folder; local: a no-op lookup
    return tokenizers_.from_directory(directory)


def _find_meta_pkl(spec: str, dataset) -> str | None:
    """Where nanoGPT's sample.py looks (data/<dataset>/meta.pkl from the working directory),
    then beside the checkpoint and in the folders above it."""
    # A dataset name is one folder name: never a path that could lead elsewhere.
    named = isinstance(dataset, str) and dataset not in ("", ".", "..") and "/" not in dataset \
        and os.sep not in dataset
    candidates = [os.path.join("data", dataset, "meta.pkl")] if named else []
    here = os.path.dirname(os.path.abspath(spec)) if os.path.isfile(spec) else os.path.abspath(spec)
    for _ in range(3):
        candidates.append(os.path.join(here, "meta.pkl"))
        if named:
            candidates.append(os.path.join(here, "data", dataset, "meta.pkl"))
        here = os.path.dirname(here)
    return next((c for c in candidates if os.path.isfile(c)), None)
