"""Turn "a model the user names" into its token and position matrices and its tokenizer.

`load(spec)` resolves the spec, lets the reader embscope.io.open picks read only what it needs
(safetensors headers and the embedding tensors by offset; for torch archives the pickled object
tree, never the optimizer's tensors; for sharded checkpoints only the shards that hold the
embeddings), and assembles the answers of embscope.families (which tensors), embscope.tying and
embscope.tokenizer_lookup into one `Embeddings`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from embscope.errors import EmbscopeError
from embscope.families import Layout, detect_layout
from embscope.formats import Format
from embscope.io import hf_layouts
from embscope.io.matrix import Matrix
from embscope.io.open import open_reader
from embscope.io.reader import Reader
from embscope.tokenizer import Tokenizer
from embscope.tokenizer_lookup import find_tokenizer
from embscope.tying import head_key, tied

ENV_MODEL = "EMBSCOPE_MODEL"
MATRICES = ("input", "output")  # the token matrix questions are asked of: wte, or the LM head
TIED_NOTE = "note: the output embedding is tied to the input embedding (one matrix)"


def default_model_dir() -> str:
    return str(resources.files("embscope") / "data" / "shakespeare")


def display_path(path: str) -> str:
    """A path for people: files inside the installed package shown as <embscope>/..."""
    package = str(resources.files("embscope"))
    return "<embscope>" + path[len(package):] if path.startswith(package + os.sep) else path


@dataclass
class Embeddings:
    """The embedding layer of one model, with what we know about where it came from."""

    source: str  # what the user named (path or hub id)
    format: Format
    layout: Layout
    wte: Matrix  # (V, d) the token matrix questions are asked of: the input embedding, or the output one
    wpe: Matrix | None  # (P, d), None for models without learned positions
    tokenizer: Tokenizer | None
    n_tokens: int  # rows [n_tokens, V) of wte are vocabulary padding, never real tokens
    files: list[str] = field(default_factory=list)
    file_bytes: int = 0  # size of the weight files
    read_bytes: int = 0  # headers and tensors embscope reads from them
    facts: dict = field(default_factory=dict)  # training facts, file metadata
    config: dict = field(default_factory=dict)  # config.json, when the model has one
    tied: bool | None = None
    token_type0: np.ndarray | None = None  # (d,) BERT family: token type 0 is always added
    norm: tuple[np.ndarray, np.ndarray, float] | None = None  # embedding LayerNorm (w, b, eps)
    load_seconds: float = 0.0
    guessed: GuessedKeys | None = None  # which tensors were picked by name, for people (stderr)
    matrix: str = "input"  # which of MATRICES `wte` is
    head_key: str | None = None  # the output embedding's (LM head's) tensor, when the checkpoint holds one

    @property
    def notes(self) -> list[str]:
        """What loading noticed, in the API's words."""
        return ([self.guessed.note("wte_key=/wpe_key=")] if self.guessed else []) + (
            [TIED_NOTE] if self.output_tied else [])

    @property
    def output_tied(self) -> bool:
        """Asked for the output embedding, got the input one: the model ties them."""
        return self.matrix == "output" and self.tied is True

    @property
    def name(self) -> str:
        """What to call the model in titles and messages."""
        return "bundled Tiny Shakespeare model" if self.source == default_model_dir() else self.source

    @property
    def vocab_rows(self) -> int:
        return self.wte.shape[0]

    @property
    def dim(self) -> int:
        return self.wte.shape[1]

    @property
    def n_positions(self) -> int:
        """Usable positions: wpe rows after the family's offset."""
        return 0 if self.wpe is None else self.wpe.shape[0] - self.layout.position_offset

    def require_positions(self) -> Matrix:
        if self.wpe is None:
            raise EmbscopeError(
                f"{self.source}: this model has no learned position embeddings"
                f" ({self.layout.family} family: positions are rotary, ALiBi or absent)"
            )
        return self.wpe

    def position_rows(self, start: int, stop: int) -> np.ndarray:
        """Position embeddings of positions [start, stop), float32 (stop - start, d)."""
        off = self.layout.position_offset
        return self.require_positions().rows(start + off, stop + off)

    def token_text(self, token_id: int) -> bytes | None:
        if self.tokenizer is None or token_id >= self.tokenizer.vocab_size:
            return None
        return self.tokenizer.token_bytes(token_id)


def load(
    spec: str | None = None,
    *,
    wte_key: str | None = None,
    wpe_key: str | None = None,
    tokenizer: str | None = None,
    meta: str | None = None,
    step: int | None = None,
    progress: bool = False,
    matrix: str = "input",
) -> Embeddings:
    """Load the embedding layer of the model named by `spec` (see the README for what it may be).
    `step` picks one saved step of a folder of training steps (nanochat, llm.c); default: the last.
    `progress`: a progress bar on stderr while weights come from the Hub (the CLI: on a terminal).
    `matrix="output"`: the token matrix is the output embedding (the LM head) instead of the
    input one; the input one when the model ties them."""
    t0 = time.perf_counter()
    if matrix not in MATRICES:
        raise EmbscopeError(f"unknown matrix '{matrix}' (choose from {', '.join(MATRICES)})")
    spec = os.path.expanduser(spec or os.environ.get(ENV_MODEL) or default_model_dir())
    reader, directory, fetch = open_reader(spec, step, progress)
    facts = {**reader.facts, **_pipeline_facts(spec)}
    layout = detect_layout(reader.keys, reader.config, wte_key, wpe_key)
    is_tied, head = tied(reader, layout.wte_key), head_key(reader)
    output = _output_key(spec, layout, is_tied, head) if matrix == "output" else None
    reader.prefetch([k for k in (layout.wte_key, layout.wpe_key, layout.token_type_key, *(layout.norm_keys or ()),
                                 output) if k])
    wte = reader.matrix(layout.wte_key)
    wpe = reader.matrix(layout.wpe_key) if layout.wpe_key else None
    _check_shapes(spec, layout, wte, wpe)
    guessed = _guessed_keys(reader, layout, wte_key)
    token_type0 = _token_type0(spec, reader, layout, wte) if layout.token_type_key else None
    norm = _embedding_norm(spec, reader, layout, wte) if layout.norm_keys else None
    if output is not None:
        wte = _output_matrix(spec, reader, output, wte)
        token_type0 = norm = None  # the input side's additions: not part of the output embedding
    n_tokens = _recorded_vocab(spec, reader, wte) or wte.shape[0]
    tok = find_tokenizer(spec, reader, directory, fetch, wte.shape[0], layout.family, tokenizer, meta)
    if tok is not None:
        _check_tokenizer(spec, tok, wte.shape[0], reader.n_tokens)
        n_tokens = tok.vocab_size
    reader.finish()
    return Embeddings(source=spec, format=reader.format, layout=layout, wte=wte, wpe=wpe, tokenizer=tok,
                      n_tokens=n_tokens, files=reader.files, file_bytes=reader.file_bytes,
                      read_bytes=reader.read_bytes, facts=facts, config=reader.config, tied=is_tied,
                      token_type0=token_type0, norm=norm, load_seconds=time.perf_counter() - t0, guessed=guessed,
                      matrix=matrix, head_key=head)


def _output_key(spec: str, layout: Layout, is_tied: bool | None, head: str | None) -> str | None:
    """The tensor to read as the output embedding, or None when it is the input one (tied)."""
    if is_tied:
        return None
    if head is None or head == layout.wte_key:
        raise EmbscopeError(f"{spec}: this checkpoint holds no output embedding (LM head), only the"
                            " base model's input embedding: ask about the input matrix")
    return head


def _output_matrix(spec: str, reader: Reader, head: str, wte: Matrix) -> Matrix:
    """The untied output embedding (V', d): as wide as the input one, with a row for every token."""
    out = reader.matrix(head)
    if len(out.shape) != 2 or out.shape[1] != wte.shape[1] or out.shape[0] < 1:
        raise EmbscopeError(f"{spec}: the output embedding '{head}' of shape {out.shape} does not fit"
                            f" token embeddings {wte.shape[1]} wide")
    return out


def _check_shapes(spec: str, layout: Layout, wte: Matrix, wpe: Matrix | None) -> None:
    """wte (V, d) and wpe (P, d) are not empty, equally wide, and wpe has rows past its offset."""
    for m in (wte, wpe):
        if m is not None and 0 in m.shape:
            raise EmbscopeError(f"{spec}: tensor '{m.name}' of shape {m.shape} is empty")
    if wpe is not None and wpe.shape[1] != wte.shape[1]:
        raise EmbscopeError(
            f"{spec}: token embeddings are {wte.shape[1]} wide but position embeddings"
            f" {wpe.shape[1]}: '{layout.wte_key}' and '{layout.wpe_key}' do not belong together"
        )
    if wpe is not None and wpe.shape[0] <= layout.position_offset:
        raise EmbscopeError(f"{spec}: the position matrix has no rows past its offset")


def _token_type0(spec: str, reader: Reader, layout: Layout, wte: Matrix) -> np.ndarray:
    """(d,) the embedding of token type 0, which the BERT family adds to every token."""
    types = reader.matrix(layout.token_type_key)
    if types.shape[0] < 1 or types.shape[1] != wte.shape[1]:
        raise EmbscopeError(f"{spec}: token type embeddings '{layout.token_type_key}' of shape"
                            f" {types.shape} do not fit token embeddings {wte.shape[1]} wide")
    return types.rows(0, 1)[0].copy()


def _embedding_norm(spec: str, reader: Reader, layout: Layout, wte: Matrix) -> tuple[np.ndarray, np.ndarray, float]:
    """The embedding LayerNorm (weight (d,), bias (d,), eps)."""
    w, b = (reader.vector(k) for k in layout.norm_keys)
    if w.shape != (wte.shape[1],) or b.shape != (wte.shape[1],):
        raise EmbscopeError(f"{spec}: the embedding LayerNorm '{layout.norm_keys[0]}' does not"
                            f" fit token embeddings {wte.shape[1]} wide")
    return w, b, layout.norm_eps


def _check_tokenizer(spec: str, tok: Tokenizer, vocab_rows: int, recorded: int | None) -> None:
    """The tokenizer's ids fit the token matrix and the vocabulary the checkpoint records."""
    if tok.vocab_size > vocab_rows:
        raise EmbscopeError(
            f"{spec}: the tokenizer ({tok.source}) has {tok.vocab_size}"
            f" ids but the model only {vocab_rows} token embeddings: they do not belong together"
        )
    if recorded is not None and tok.vocab_size != recorded:
        raise EmbscopeError(
            f"{spec}: the tokenizer ({tok.source}) has {tok.vocab_size} ids but"
            f" the checkpoint records a vocabulary of {recorded}: they do not belong together"
        )


def _recorded_vocab(spec: str, reader: Reader, wte: Matrix) -> int | None:
    """The vocabulary size the checkpoint itself records (llm.c header, nanochat model_config)."""
    n = reader.n_tokens
    if n is not None and not 0 < n <= wte.shape[0]:
        raise EmbscopeError(f"{spec}: the checkpoint records a vocabulary of {n} tokens, but its"
                            f" token embeddings have {wte.shape[0]} rows")
    return n


@dataclass(frozen=True)
class GuessedKeys:
    """The embedding tensors taken by name out of a bare state dict, and other candidates."""

    wte_key: str
    wpe_key: str | None
    others: tuple[str, ...]

    def note(self, how: str) -> str:
        """The note for people; `how` names the arguments (or options) that choose other tensors."""
        took = f"token embeddings from '{self.wte_key}'"
        if self.wpe_key:
            took += f", position embeddings from '{self.wpe_key}'"
        also = f"; also found {', '.join(repr(k) for k in self.others[:3])}" if self.others else ""
        return f"note: {took} (found by name{also}; {how} name others)"


def _guessed_keys(reader: Reader, layout: Layout, wte_key) -> GuessedKeys | None:
    """What to tell people when the tensors were picked by name out of a bare state dict."""
    bare = reader.format in (Format.TORCH_STATE_DICT, Format.LIGHTNING) and not reader.config
    if wte_key is not None or not (bare or layout.others):
        return None
    return GuessedKeys(layout.wte_key, layout.wpe_key, tuple(layout.others))


def _pipeline_facts(spec: str) -> dict:
    """A sentence-transformers folder: its modules, for `info` (the weights are its Transformer's)."""
    pipeline = hf_layouts.pipeline(spec) if os.path.isdir(spec) else None
    return {"sentence_transformers": pipeline.description} if pipeline is not None else {}
