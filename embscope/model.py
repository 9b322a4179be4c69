"""Turn "a model the user names" into its token and position matrices and its tokenizer.

`load(spec)` reads only what it needs: safetensors headers and the embedding tensors by offset;
for torch archives the pickled object tree (never the optimizer's tensors); for sharded
checkpoints only the shards that hold the embeddings.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from embscope import tokenizer as tokenizers_
from embscope.errors import EmbscopeError
from embscope.families import GPT2_VOCAB_FAMILIES, Layout, detect_layout, strip_compile_prefix
from embscope.formats import Format
from embscope.io.hub import HubRepo, looks_like_hub_id
from embscope.io.matrix import Matrix
from embscope.io.reader import Reader
from embscope.io.small_files import read_json, require_regular
from embscope.tokenizer import Tokenizer

ENV_MODEL = "EMBSCOPE_MODEL"
GPT2_VOCAB = 50257
NANOGPT_PADDED_VOCAB = 50304
WEIGHT_FILES = [  # what a model directory may hold, in order of preference
    "model.safetensors.index.json",
    "model.safetensors",
    "ckpt.pt",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
]


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
    wte: Matrix  # (V, d)
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
    notes: list[str] = field(default_factory=list)  # for people (stderr): which tensors were guessed

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


class _SafetensorsReader(Reader):
    def __init__(self, paths: dict[str, str] | str, config: dict, fetch=None):
        from embscope.io.safetensors_file import SafetensorsFile

        self._open = SafetensorsFile
        self.config = config
        self.facts = {}
        self._files: dict[str, SafetensorsFile] = {}
        if isinstance(paths, str):  # one file
            f = SafetensorsFile(paths)
            self._files[paths] = f
            self._where = {k: paths for k in f.tensors}
            self.format = Format.SAFETENSORS
            self.facts.update(f.metadata)
        else:  # sharded: key -> shard file name, fetched on demand
            self._where = paths
            self.format = Format.SAFETENSORS_SHARDED
        self._fetch = fetch
        self.keys = list(self._where)
        self.read_bytes = 0
        self.file_bytes = 0
        self.files = []

    def _file(self, key: str):
        where = self._where[key]
        if where not in self._files:
            path = self._fetch(where) if self._fetch else where
            self._files[where] = self._open(path)
        f = self._files[where]
        if key not in f.tensors:
            raise EmbscopeError(f"{f.path}: the index names tensor '{key}', but the shard lacks it")
        return f

    def matrix(self, key: str) -> Matrix:
        m = self._file(key).matrix(key)
        self.read_bytes += m.nbytes
        return m

    def vector(self, key: str) -> np.ndarray:
        return self._file(key).vector(key)

    def finish(self) -> None:
        for f in self._files.values():
            self.files.append(f.path)
            self.file_bytes += f.size
            self.read_bytes += 8 + f.header_bytes


class _TorchReader(Reader):
    def __init__(self, path: str, config: dict):
        from embscope.io.torch_archive import TorchArchive
        from embscope.io.training_checkpoints import identify

        self.config = config
        self.files = [path]
        self.file_bytes = os.path.getsize(path)
        self._archive = TorchArchive(path)
        # nanoGPT, modded-nanogpt, Lightning or a plain state dict: format, tensors, training facts
        contents = identify(self._archive.tree, path, self._scalar)
        self.format, self._state, self.facts = contents.format, contents.state, contents.facts
        _check_ints(path, self.facts)
        self.keys = list(self._state)
        self.read_bytes = self._archive.bytes_read

    def _scalar(self, value) -> float | int | None:
        """A number, or a one-element tensor (nanoGPT saves best_val_loss as a tensor)."""
        from embscope.io.restricted_pickle import TensorRef

        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        if isinstance(value, TensorRef) and len(value.shape) == 0 and value.storage.dtype in ("F32", "F64", "F16", "BF16"):
            ref = TensorRef(value.storage, value.offset, (1,), (1,))
            return round(float(self._archive.vector(ref, "scalar")[0]), 6)
        return None

    def matrix(self, key: str) -> Matrix:
        m = self._archive.matrix(self._state[key], key)
        self.read_bytes += m.nbytes
        return m

    def vector(self, key: str) -> np.ndarray:
        return self._archive.vector(self._state[key], key)

    def same_storage(self, a: str, b: str) -> bool | None:
        if a in self._state and b in self._state:
            return self._state[a].storage.key == self._state[b].storage.key
        return None


def _check_ints(path: str, facts: dict, where: str = "") -> None:
    """Every int among the facts fits in 64 bits: a pickle can hold 10**5000, which Python will
    not even print (more than 4300 digits)."""
    for k, v in facts.items():
        if isinstance(v, dict):
            _check_ints(path, v, f"{where}{k}.")
        elif type(v) is int and not -(2**63) <= v < 2**63:
            raise EmbscopeError(f"{path}: '{where}{k}' is an integer of {v.bit_length()} bits,"
                                " not a number embscope can use")


def _read_json(path: str | None) -> dict:
    if not path:
        return {}
    data = read_json(path)  # a regular file, size-capped: never a FIFO or /dev/zero
    return data if isinstance(data, dict) else {}


def _sharded_map(index_path: str) -> dict[str, str]:
    index = _read_json(index_path)
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and "/" not in v and v not in ("", ".", "..")
        for k, v in weight_map.items()
    ):
        raise EmbscopeError(f"{index_path}: not a sharded checkpoint index (bad 'weight_map')")
    return weight_map


def _local_fetch(directory: str):
    def fetch(name: str, required: bool = False) -> str | None:
        path = os.path.join(directory, name)
        if os.path.lexists(path) and not os.path.isdir(path):
            require_regular(path)  # a FIFO or /dev/zero under a model file's name is an error
            return path
        if required:
            raise EmbscopeError(f"{path}: no such file")
        return None

    return fetch


def _open_local(spec: str, step: int | None):
    """Local formats known by their folder layout or file header (nanochat, llm.c, a
    sentence-transformers pipeline, TF/Flax-only folders): (reader, directory, fetch), or None."""
    from embscope.io import hf_layouts, llmc, nanochat
    from embscope.io.steps import no_steps

    if not (os.path.isfile(spec) or os.path.isdir(spec)):
        no_steps(step, spec)
        return None
    found = nanochat.find(spec, step)
    if found is not None:
        weights = _TorchReader(found.model_path, {})
        return nanochat.NanochatReader(found, weights), found.folder, _local_fetch(found.folder)
    folder = spec if os.path.isdir(spec) else os.path.dirname(os.path.abspath(spec))
    if os.path.isdir(spec) or (step is not None and llmc.SNAPSHOT.fullmatch(os.path.basename(spec))):
        snapshot = llmc.snapshot(folder, step)
        if snapshot is not None:
            return llmc.LlmcReader(snapshot), folder, _local_fetch(folder)
    no_steps(step, spec)
    if os.path.isdir(spec):
        pipeline = hf_layouts.pipeline(spec)
        if pipeline is not None and pipeline.folder != spec:
            return _open_reader(pipeline.folder)
        hf_layouts.refuse_foreign_weights(spec, WEIGHT_FILES)
    return None


def _open_reader(spec: str, step: int | None = None):
    """(reader, directory of the model or None, fetch function for sibling files)."""
    if os.path.exists(spec) and not os.path.isdir(spec):
        require_regular(spec)
    local = _open_local(spec, step)
    if local is not None:
        return local
    if os.path.isfile(spec):
        directory = os.path.dirname(os.path.abspath(spec))
        fetch = _local_fetch(directory)
        config = _read_json(fetch("config.json"))
        if spec.endswith(".json"):
            return _reader_for_index(spec, config, fetch), directory, fetch
        return _reader_for_file(spec, config), directory, fetch
    if os.path.isdir(spec):
        fetch = _local_fetch(spec)
        repo_files = WEIGHT_FILES
    elif looks_like_hub_id(spec):
        repo = HubRepo(spec)
        reader, path = repo.open([f for f in WEIGHT_FILES if f != "ckpt.pt"])
        if reader is not None:  # only the embedding tensors: by HTTP range, or from embscope's cache
            return reader, repo.directory, repo.fetch
        fetch, repo_files = repo.fetch, [os.path.basename(path)]  # a full copy in the HF cache
    else:
        raise EmbscopeError(f"{spec}: no such file or directory")
    for name in repo_files:
        path = fetch(name)
        if path:
            directory = os.path.dirname(path)
            config = _read_json(fetch("config.json"))
            if name.endswith(".json"):
                return _reader_for_index(path, config, fetch), directory, fetch
            return _reader_for_file(path, config), directory, fetch
    if os.path.isdir(spec):
        singles = sorted(n for n in os.listdir(spec) if n.endswith(".safetensors"))
        if len(singles) == 1:
            return _reader_for_file(os.path.join(spec, singles[0]), _read_json(fetch("config.json"))), spec, fetch
        raise EmbscopeError(
            f"{spec}: no model weights in this directory (looked for {', '.join(WEIGHT_FILES)})"
        )
    raise EmbscopeError(f"{spec}: the repository has none of {', '.join(repo_files)}")


def _reader_for_index(index_path: str, config: dict, fetch):
    weight_map = _sharded_map(index_path)
    if all(v.endswith(".safetensors") for v in weight_map.values()):
        return _SafetensorsReader(weight_map, config, fetch=lambda n: fetch(n, required=True))
    return _ShardedTorchReader(weight_map, config, fetch)


class _ShardedTorchReader(Reader):
    """pytorch_model.bin.index.json: opens only the shard(s) holding the tensors asked for."""

    def __init__(self, weight_map: dict[str, str], config: dict, fetch):
        self._where, self.config, self._fetch = weight_map, config, fetch
        self._readers: dict[str, _TorchReader] = {}
        self.keys = list(weight_map)
        self.format = Format.TORCH_SHARDED
        self.facts, self.files, self.file_bytes, self.read_bytes = {}, [], 0, 0

    def _reader(self, key: str) -> _TorchReader:
        shard = self._where[key]
        if shard not in self._readers:
            self._readers[shard] = _TorchReader(self._fetch(shard, required=True), self.config)
        return self._readers[shard]

    def matrix(self, key: str) -> Matrix:
        return self._reader(key).matrix(key)

    def vector(self, key: str) -> np.ndarray:
        return self._reader(key).vector(key)

    def finish(self) -> None:
        for r in self._readers.values():
            self.files += r.files
            self.file_bytes += r.file_bytes
            self.read_bytes += r.read_bytes


def _reader_for_file(path: str, config: dict):
    require_regular(path)
    if path.endswith(".safetensors"):
        return _SafetensorsReader(path, config)
    if os.path.getsize(path) == 0:
        raise EmbscopeError(f"{path}: empty file")
    from embscope.io import hf_layouts, llmc
    from embscope.io.torch_archive import is_zip

    if is_zip(path):
        return _TorchReader(path, config)
    with open(path, "rb") as f:
        head = f.read(8)
    if llmc.magic(head) is not None:
        return llmc.LlmcReader(path)
    hf_layouts.refuse_foreign_file(path, head)
    if len(head) == 8 and int.from_bytes(head, "little") < os.path.getsize(path) and head[:1] != b"\x80":
        return _SafetensorsReader(path, config)  # raises a precise error if it is not one
    if head[:1] == b"\x80":
        raise EmbscopeError(
            f"{path}: a legacy (pre-zip) torch pickle; embscope reads only the zip format"
            " torch.save has written since PyTorch 1.6 (re-save it with torch.save)"
        )
    raise EmbscopeError(f"{path}: not a checkpoint embscope can read (safetensors or torch zip)")


def load(
    spec: str | None = None,
    *,
    wte_key: str | None = None,
    wpe_key: str | None = None,
    tokenizer: str | None = None,
    meta: str | None = None,
    step: int | None = None,
) -> Embeddings:
    """Load the embedding layer of the model named by `spec` (see the README for what it may be).
    `step` picks one saved step of a folder of training steps (nanochat, llm.c); default: the last."""
    t0 = time.perf_counter()
    spec = os.path.expanduser(spec or os.environ.get(ENV_MODEL) or default_model_dir())
    reader, directory, fetch = _open_reader(spec, step)
    _describe_pipeline(spec, reader)
    layout = detect_layout(reader.keys, reader.config, wte_key, wpe_key)
    reader.prefetch([k for k in (layout.wte_key, layout.wpe_key, layout.token_type_key, *(layout.norm_keys or ())) if k])
    wte = reader.matrix(layout.wte_key)
    wpe = reader.matrix(layout.wpe_key) if layout.wpe_key else None
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
    emb = Embeddings(source=spec, format=reader.format, layout=layout, wte=wte, wpe=wpe,
                     tokenizer=None, n_tokens=_recorded_vocab(spec, reader, wte) or wte.shape[0])
    emb.notes = _guessed_keys(reader, layout, wte_key, wpe_key)
    if layout.token_type_key:
        types = reader.matrix(layout.token_type_key)
        if types.shape[0] < 1 or types.shape[1] != wte.shape[1]:
            raise EmbscopeError(f"{spec}: token type embeddings '{layout.token_type_key}' of shape"
                                f" {types.shape} do not fit token embeddings {wte.shape[1]} wide")
        emb.token_type0 = types.rows(0, 1)[0].copy()
    if layout.norm_keys:
        w, b = (reader.vector(k) for k in layout.norm_keys)
        if w.shape != (wte.shape[1],) or b.shape != (wte.shape[1],):
            raise EmbscopeError(f"{spec}: the embedding LayerNorm '{layout.norm_keys[0]}' does not"
                                f" fit token embeddings {wte.shape[1]} wide")
        emb.norm = (w, b, layout.norm_eps)
    emb.tied = _tied(reader, layout)
    emb.facts = dict(reader.facts)
    emb.config = reader.config
    emb.tokenizer = _tokenizer(spec, reader, directory, fetch, emb, tokenizer, meta)
    if emb.tokenizer is not None:
        if emb.tokenizer.vocab_size > emb.vocab_rows:
            raise EmbscopeError(
                f"{spec}: the tokenizer ({emb.tokenizer.source}) has {emb.tokenizer.vocab_size}"
                f" ids but the model only {emb.vocab_rows} token embeddings: they do not belong together"
            )
        if reader.n_tokens is not None and emb.tokenizer.vocab_size != reader.n_tokens:
            raise EmbscopeError(
                f"{spec}: the tokenizer ({emb.tokenizer.source}) has {emb.tokenizer.vocab_size} ids but"
                f" the checkpoint records a vocabulary of {reader.n_tokens}: they do not belong together"
            )
        emb.n_tokens = emb.tokenizer.vocab_size
    reader.finish()
    emb.files, emb.file_bytes, emb.read_bytes = reader.files, reader.file_bytes, reader.read_bytes
    emb.load_seconds = time.perf_counter() - t0
    return emb


def _headless(config: dict) -> bool:
    """config.json names only base classes (GPT2Model, BertModel): no LM head to be tied to."""
    archs = config.get("architectures")
    return isinstance(archs, list) and bool(archs) and all(
        isinstance(a, str) and a.endswith("Model") and "Head" not in a for a in archs)


def _recorded_vocab(spec: str, reader: Reader, wte: Matrix) -> int | None:
    """The vocabulary size the checkpoint itself records (llm.c header, nanochat model_config)."""
    n = reader.n_tokens
    if n is not None and not 0 < n <= wte.shape[0]:
        raise EmbscopeError(f"{spec}: the checkpoint records a vocabulary of {n} tokens, but its"
                            f" token embeddings have {wte.shape[0]} rows")
    return n


def _guessed_keys(reader: Reader, layout: Layout, wte_key, wpe_key) -> list[str]:
    """What to tell people when the tensors were picked by name out of a bare state dict."""
    bare = reader.format in (Format.TORCH_STATE_DICT, Format.LIGHTNING) and not reader.config
    if wte_key is not None or not (bare or layout.others):
        return []
    took = f"token embeddings from '{layout.wte_key}'"
    if layout.wpe_key:
        took += f", position embeddings from '{layout.wpe_key}'"
    also = f"; also found {', '.join(repr(k) for k in layout.others[:3])}" if layout.others else ""
    return [f"note: {took} (found by name{also}; --wte-key/--wpe-key name others)"]


def _describe_pipeline(spec: str, reader: Reader) -> None:
    """A sentence-transformers folder: record its modules (the weights are its Transformer's)."""
    from embscope.io import hf_layouts

    pipeline = hf_layouts.pipeline(spec) if os.path.isdir(spec) else None
    if pipeline is not None:
        reader.facts["sentence_transformers"] = pipeline.description


def _tied(reader: Reader, layout: Layout) -> bool | None:
    if reader.tied is not None:  # the format says (llm.c: wte is the lm_head)
        return reader.tied
    heads = [k for k in reader.keys if strip_compile_prefix(k) == "lm_head.weight"
             or strip_compile_prefix(k).endswith(".lm_head.weight")]  # "model.lm_head.weight" (Lightning)
    head = min(heads, key=len) if heads else None
    if head is None and _headless(reader.config):
        return None
    if head is not None:
        same = reader.same_storage(head, layout.wte_key)
        if same is not None:  # torch archives: one storage or two
            return same
    # safetensors cannot share storage, and sharded torch checkpoints span archives: the config says
    tie = reader.config.get("tie_word_embeddings")
    if tie is not None:
        if not isinstance(tie, bool):  # "false" is a string, and bool("false") is True
            raise EmbscopeError(f"config.json: 'tie_word_embeddings' is {tie!r:.40}, not true or false")
        return tie
    if head is None and reader.facts.get("format") == "nanogpt":
        return True  # safetensors exported from nanoGPT (embscope's bundled model): GPT ties them
    if head is None:
        return True if reader.format.safetensors and reader.config else None
    return None


def _tokenizer(spec, reader, directory, fetch, emb: Embeddings, path, meta) -> Tokenizer | None:
    if path:
        return tokenizers_.from_path(path)
    if meta:
        return tokenizers_.from_meta_pkl(meta)
    if reader.format is Format.NANOCHAT:
        from embscope.io import nanochat

        found = nanochat.find_tokenizer(reader.checkpoint)
        return nanochat.read_tokenizer(found) if found else None
    if reader.format is Format.LLMC:
        from embscope.io import llmc

        found = llmc.find_tokenizer(reader.path)
        if found:
            return llmc.read_tokenizer(found)
    elif reader.format is Format.NANOGPT:
        found = _find_meta_pkl(spec, emb.facts.get("dataset"))
        if found:
            return tokenizers_.from_meta_pkl(found)
    else:
        for name in ("tokenizer.json", "vocab.json", "merges.txt", "vocab.txt", "tokenizer_config.json",
                     "special_tokens_map.json", "tokenizer.model"):
            fetch(name)  # bring hub files into the snapshot folder; local: a no-op lookup
        tok = tokenizers_.from_directory(directory)
        if tok is not None:
            return tok
    gpt2_sized = emb.vocab_rows in (GPT2_VOCAB, NANOGPT_PADDED_VOCAB) or reader.n_tokens == GPT2_VOCAB
    if gpt2_sized and emb.layout.family in GPT2_VOCAB_FAMILIES and reader.n_tokens in (None, GPT2_VOCAB):
        return tokenizers_.bundled_gpt2()
    return None


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
