"""nanochat checkpoints and tokenizer (karpathy/nanochat), read without nanochat or tiktoken.

nanochat's checkpoint manager writes, per saved step, `model_NNNNNN.pt` (torch.save of the
model's state dict, keys `_orig_mod.`-prefixed when the model was compiled) and
`meta_NNNNNN.json` (`model_config`: sequence_len, vocab_size, n_layer, n_head, n_kv_head,
n_embd, ...), beside `optim_NNNNNN_rankR.pt` files that embscope never opens. The model has
rotary positions (no position matrix) and an lm_head of its own; wte may be padded to a
multiple of 64 rows beyond `vocab_size`.

The tokenizer is `tokenizer.pkl`, a pickled tiktoken.Encoding, in `$NANOCHAT_BASE_DIR/tokenizer/`
(default `~/.cache/nanochat/tokenizer/`). Its ranks, split pattern and special tokens are read
through a restricted unpickler and turned into an equivalent byte-pair encoding.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from embscope.errors import EmbscopeError
from embscope.formats import Format
from embscope.io.reader import Reader
from embscope.io.small_files import read_json, read_small
from embscope.io.steps import choose, steps_in

MODEL = re.compile(r"model_(\d+)\.pt")
BASE_DIR_ENV = "NANOCHAT_BASE_DIR"
TOKENIZER_PICKLE = "tokenizer.pkl"


@dataclass
class Checkpoint:
    """One saved step of a nanochat run."""

    folder: str
    step: int
    model_path: str
    meta_path: str
    meta: dict
    steps: list[int]

    @property
    def model_config(self) -> dict:
        config = self.meta.get("model_config")
        return config if isinstance(config, dict) else {}


def find(spec: str, step: int | None) -> Checkpoint | None:
    """The nanochat checkpoint `spec` names (a checkpoint folder, or one of its model_NNNNNN.pt
    files), or None when it is not one. A folder counts when it holds model_NNNNNN.pt files with
    their meta_NNNNNN.json."""
    if os.path.isfile(spec):
        m = MODEL.fullmatch(os.path.basename(spec))
        folder = os.path.dirname(os.path.abspath(spec))
        if not m or not os.path.isfile(_meta_path(folder, m.group(1))):
            return None
        steps = _saved_steps(folder)
        chosen = int(m.group(1)) if step is None else choose(steps, step, folder, "nanochat model")
        return _checkpoint(folder, steps, chosen)
    steps = _saved_steps(spec)
    if not steps:
        return None
    return _checkpoint(spec, steps, choose(steps, step, spec, "nanochat model"))


def _saved_steps(folder: str) -> dict[int, str]:
    """step -> model file name, for the steps whose meta file is there too."""
    return {s: n for s, n in steps_in(folder, MODEL).items()
            if os.path.isfile(_meta_path(folder, MODEL.fullmatch(n).group(1)))}


def _meta_path(folder: str, digits: str) -> str:
    return os.path.join(folder, f"meta_{digits}.json")


def _checkpoint(folder: str, steps: dict[int, str], step: int) -> Checkpoint:
    name = steps[step]
    digits = MODEL.fullmatch(name).group(1)
    meta_path = _meta_path(folder, digits)
    meta = read_json(meta_path)  # a regular file, size-capped
    if not isinstance(meta, dict) or not isinstance(meta.get("model_config"), dict):
        raise EmbscopeError(f"{meta_path}: not a nanochat meta file (no 'model_config')")
    return Checkpoint(folder, step, os.path.join(folder, name), meta_path, meta, sorted(steps))


class NanochatReader(Reader):
    """A torch state-dict reader (the model file) with what the meta file says about it."""

    def __init__(self, checkpoint: Checkpoint, weights):
        self._weights = weights
        self.checkpoint = checkpoint
        self.format = Format.NANOCHAT
        self.keys = weights.keys
        self.config: dict = {}
        self.tied = None  # two tensors in the state dict: same_storage answers
        config = checkpoint.model_config
        vocab = config.get("vocab_size")
        self.n_tokens = vocab if isinstance(vocab, int) and not isinstance(vocab, bool) and vocab > 0 else None
        self.facts = {"step": checkpoint.step,
                      "steps": _steps_text(checkpoint.steps),
                      "model_args": {k: v for k, v in config.items()
                                     if isinstance(k, str) and isinstance(v, (bool, int, float, str))}}
        for key in ("val_bpb", "val_loss"):
            value = checkpoint.meta.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.facts[key] = round(float(value), 6)

    @property
    def files(self) -> list[str]:
        return self._weights.files

    @property
    def file_bytes(self) -> int:
        return self._weights.file_bytes

    @property
    def read_bytes(self) -> int:
        return self._weights.read_bytes

    def matrix(self, key: str):
        return self._weights.matrix(key)

    def vector(self, key: str):
        return self._weights.vector(key)

    def same_storage(self, a: str, b: str) -> bool | None:
        return self._weights.same_storage(a, b)

    def finish(self) -> None:
        self._weights.finish()


def _steps_text(steps: list[int]) -> str:
    """The saved steps, for `info`: all of them, or the first and last few of a long run."""
    if len(steps) <= 8:
        return ", ".join(map(str, steps))
    return ", ".join(map(str, steps[:3])) + ", ..., " + ", ".join(map(str, steps[-3:])) + f" ({len(steps)} steps)"


def find_tokenizer(checkpoint: Checkpoint) -> str | None:
    """Where nanochat keeps its tokenizer: $NANOCHAT_BASE_DIR/tokenizer/, then the base folder
    the checkpoint sits in (<base>/<phase>_checkpoints/<tag>/), then ~/.cache/nanochat/tokenizer/."""
    bases = []
    if os.environ.get(BASE_DIR_ENV):
        bases.append(os.environ[BASE_DIR_ENV])
    bases.append(os.path.dirname(os.path.dirname(os.path.abspath(checkpoint.folder))))
    bases.append(os.path.join(os.path.expanduser("~"), ".cache", "nanochat"))
    for base in bases:
        path = os.path.join(base, "tokenizer", TOKENIZER_PICKLE)
        if os.path.isfile(path):
            return path
    return None


def read_tokenizer(path: str):
    """tokenizer.pkl (a pickled tiktoken.Encoding) as an equivalent byte-pair encoding."""
    from embscope.io.restricted_pickle import encoding_state
    from embscope.rank_bpe import RankBPETokenizer

    state = encoding_state(read_small(path), path)
    if isinstance(state, str):
        raise EmbscopeError(f"{path}: a pickle of tiktoken's registered encoding '{state}' by name only;"
                            " it holds no vocabulary to read")
    ranks, pattern, special = (state.get(k) for k in ("mergeable_ranks", "pat_str", "special_tokens")) \
        if isinstance(state, dict) else (None, None, None)
    if not (isinstance(ranks, dict) and isinstance(pattern, str) and isinstance(special, dict)
            and all(type(k) is bytes and _id(v) for k, v in ranks.items())
            and all(type(k) is str and _id(v) for k, v in special.items())):
        raise EmbscopeError(f"{path}: a tiktoken Encoding without the mergeable_ranks (bytes -> id),"
                            " pat_str and special_tokens (str -> id) it should hold")
    return RankBPETokenizer(ranks, pattern, special, kind="tiktoken BPE (nanochat tokenizer.pkl)", source=path)


def _id(value) -> bool:
    return type(value) is int and 0 <= value < 1 << 31


def is_tiktoken_pickle(path: str) -> bool:
    """Whether a .pkl file is a pickled tiktoken Encoding (it names tiktoken.core.Encoding near
    its start) rather than a nanoGPT meta.pkl."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    return b"tiktoken.core" in head
