"""Files from strangers, for the hostile-input tests: small real checkpoints (written by
safetensors' `save_file` and `torch.save`) and the ways to spoil them.

Corrupt files are made by editing real files (their header JSON, bytes or zip entries), never by
writing a format from scratch; only the pickles that use tricks `pickle.dumps` cannot produce are
assembled from opcodes (`Pickle` below).
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

GPT2_VOCAB = 50257
DIM = 16
N_POS = 64


# --- safetensors ---------------------------------------------------------------------------

SIGNALLING_NAN = 0x7F800001  # float32 bits: a NaN that raises "invalid" when converted


def gpt2_tensors(vocab: int = GPT2_VOCAB, seed: int = 0, nan_rows=(), inf_rows=(), snan_rows=(),
                 wpe_snan_rows=()) -> dict[str, np.ndarray]:
    """GPT-2 tensor names (wte, wpe) plus a few odd tensors to point --wte-key/--wpe-key at."""
    rng = np.random.default_rng(seed)
    wte = rng.standard_normal((vocab, DIM)).astype(np.float32)  # (V, d)
    wte[list(nan_rows), 3] = np.nan
    wte[list(inf_rows), 5] = np.inf
    wte.view(np.uint32)[list(snan_rows), 1] = SIGNALLING_NAN
    wpe = rng.standard_normal((N_POS, DIM)).astype(np.float32)  # (P, d)
    wpe.view(np.uint32)[list(wpe_snan_rows), 2] = SIGNALLING_NAN
    return {
        "transformer.wte.weight": wte,
        "transformer.wpe.weight": wpe,
        "vec": rng.standard_normal(DIM).astype(np.float32),  # (d,)
        "cube": rng.standard_normal((3, 5, 7)).astype(np.float32),
        "narrow": rng.standard_normal((N_POS, 8)).astype(np.float32),  # (P, 8)
    }


def save_gpt2_safetensors(directory, **kw) -> dict[str, np.ndarray]:
    """A GPT-2-shaped model directory: model.safetensors + config.json, no tokenizer files (a
    50257-row gpt2-family model gets embscope's bundled GPT-2 tokenizer)."""
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = gpt2_tensors(**kw)
    save_file(tensors, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    return tensors


def save_word_level_model(directory, tokens: list[str]) -> np.ndarray:
    """A word-level tokenizer.json over `tokens` (unknown words: "[UNK]", which must be one of
    them) beside a model.safetensors with one wte row per token; returns the wte."""
    from safetensors.numpy import save_file
    from tokenizers import Tokenizer, models

    Tokenizer(models.WordLevel(vocab={t: i for i, t in enumerate(tokens)}, unk_token="[UNK]")).save(
        str(Path(directory) / "tokenizer.json"))
    t = gpt2_tensors(vocab=len(tokens))
    save_file({k: t[k] for k in ("transformer.wte.weight", "transformer.wpe.weight")},
              str(Path(directory) / "model.safetensors"))
    return t["transformer.wte.weight"]


def header(path) -> tuple[dict, bytes]:
    """(header JSON, data buffer) of a safetensors file."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def with_header(hdr: dict, data: bytes) -> bytes:
    """A safetensors file with header `hdr` (its length prefix recomputed) over `data`."""
    raw = json.dumps(hdr, separators=(",", ":")).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def edit_header(src, dst, edit) -> Path:
    """Copy safetensors file `src` to `dst`, with `edit(header_dict)` applied to its header."""
    hdr, data = header(src)
    edit(hdr)
    Path(dst).write_bytes(with_header(hdr, data))
    return Path(dst)


def tensor_span(path, name: str) -> tuple[int, int]:
    """Where tensor `name`'s bytes lie in the file: [start, end)."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    hdr = json.loads(raw[8:8 + n])
    a, b = hdr[name]["data_offsets"]
    return 8 + n + a, 8 + n + b


# --- torch zip archives --------------------------------------------------------------------

def zip_entries(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def replace_entry(src, dst, suffix: str, data: bytes) -> Path:
    """Copy the torch zip `src` to `dst` with the entry ending in `suffix` (e.g. "/data.pkl")
    replaced by `data`. Every entry is stored uncompressed, as torch writes them."""
    entries = zip_entries(src)
    with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_STORED) as z:
        for name, content in entries.items():
            z.writestr(name, data if name.endswith(suffix) else content)
    return Path(dst)


def entry_spans(path) -> dict[str, tuple[int, int]]:
    """Byte range [start, end) of each stored entry's contents in a zip file."""
    spans = {}
    with zipfile.ZipFile(path) as z, open(path, "rb") as f:
        for info in z.infolist():
            f.seek(info.header_offset)
            head = f.read(30)
            name_len, extra_len = struct.unpack("<2H", head[26:30])
            start = info.header_offset + 30 + name_len + extra_len
            spans[info.filename] = (start, start + info.file_size)
    return spans


def small_state(vocab: int = 65, n_pos: int = 32, dim: int = 8, seed: int = 0):
    """A state dict with nanoGPT's tensor names, as torch tensors."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return {
        "transformer.wte.weight": torch.randn(vocab, dim, generator=g),
        "transformer.wpe.weight": torch.randn(n_pos, dim, generator=g),
        "transformer.ln_f.weight": torch.ones(dim),
    }


def save_nanogpt_ckpt(path, state=None, **extra) -> dict:
    """torch.save of a dict shaped like nanoGPT's train.py checkpoint (without optimizer state,
    to keep it small): model, model_args, iter_num, best_val_loss (a 0-d tensor), config."""
    import torch

    state = small_state() if state is None else state
    wte = state["transformer.wte.weight"]
    ckpt = {
        "model": state,
        "model_args": dict(n_layer=1, n_head=2, n_embd=wte.shape[1], block_size=32, bias=False,
                           vocab_size=wte.shape[0], dropout=0.0),
        "iter_num": 250,
        "best_val_loss": torch.tensor(1.5),
        "config": {"dataset": "shakespeare_char"},
        **extra,
    }
    torch.save(ckpt, path)
    return ckpt


# --- pickles that run code -----------------------------------------------------------------

class Reduce:
    """An object whose __reduce__ is (func, args): what a hostile checkpoint embeds."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def global_name(obj) -> str:
    """'module.name' as pickle writes `obj` (os.system is posix.system on Linux)."""
    return f"{obj.__module__}.{obj.__qualname__}"


class Pickle:
    """Pickle opcodes, assembled by hand for the tricks pickle.dumps never writes."""

    def __init__(self, protocol: int = 4):
        self.out = bytearray(pickle.PROTO + bytes([protocol]))

    def op(self, code: bytes, arg: bytes = b"") -> Pickle:
        self.out += code + arg
        return self

    def str(self, s: str) -> Pickle:
        raw = s.encode("utf-8", "surrogatepass")
        return self.op(pickle.BINUNICODE, struct.pack("<I", len(raw)) + raw)

    def int(self, n: int) -> Pickle:
        return self.op(pickle.BININT, struct.pack("<i", n))

    def long(self, n: int) -> Pickle:
        """Any int, as LONG1 or LONG4 (two's complement, little-endian), as pickle writes it."""
        raw = pickle.encode_long(n)
        if len(raw) < 256:
            return self.op(pickle.LONG1, bytes([len(raw)]) + raw)
        return self.op(pickle.LONG4, struct.pack("<i", len(raw)) + raw)

    def ints(self, values) -> Pickle:
        """A tuple of ints (any size)."""
        return self.tuple(*[lambda q, v=v: q.long(v) for v in values])

    def storage(self, key: str, numel: int, dtype: str = "FloatStorage") -> Pickle:
        """torch's persistent id of storage `data/<key>`."""
        return self.tuple(lambda q: q.str("storage"), lambda q: q.global_("torch", dtype), lambda q: q.str(key),
                          lambda q: q.str("cpu"), lambda q: q.long(numel)).op(pickle.BINPERSID)

    def tensor(self, key: str, numel: int, shape, stride, offset: int = 0) -> Pickle:
        """torch._utils._rebuild_tensor_v2(storage, offset, shape, stride, False, OrderedDict())."""
        self.global_("torch._utils", "_rebuild_tensor_v2")
        return self.tuple(lambda q: q.storage(key, numel), lambda q: q.long(offset), lambda q: q.ints(shape),
                          lambda q: q.ints(stride), lambda q: q.op(pickle.NEWFALSE),
                          lambda q: q.global_("collections", "OrderedDict").op(pickle.EMPTY_TUPLE).op(pickle.REDUCE)
                          ).op(pickle.REDUCE)

    def stack_global(self, module: str, name: str) -> Pickle:
        return self.str(module).str(name).op(pickle.STACK_GLOBAL)

    def global_(self, module: str, name: str) -> Pickle:
        return self.op(pickle.GLOBAL, f"{module}\n{name}\n".encode())

    def tuple(self, *items) -> Pickle:
        self.op(pickle.MARK)
        for item in items:
            item(self)
        return self.op(pickle.TUPLE)

    def get(self, i: int) -> Pickle:
        return self.op(pickle.BINGET, bytes([i]))

    def bytes(self) -> bytes:
        return bytes(self.out + pickle.STOP)


def hash_bomb(depth: int = 60) -> bytes:
    """{t: 1} where t = (t', t'), t' = (t'', t''), ... `depth` levels through the memo: 200
    bytes whose one dict key takes 2**depth steps to hash."""
    p = Pickle().op(pickle.EMPTY_DICT).op(pickle.EMPTY_TUPLE).op(pickle.MEMOIZE).op(pickle.POP)
    for i in range(depth):
        p.get(i).get(i).op(pickle.TUPLE2).op(pickle.MEMOIZE).op(pickle.POP)
    return p.get(depth).int(1).op(pickle.SETITEM).bytes()


def state_pickle(tensors: dict[str, tuple], nanogpt: bool = True, build: dict[str, str] | None = None) -> bytes:
    """data.pkl of a torch zip holding {"model": {name: tensor}} (or the state dict alone), each
    tensor given as (storage key, storage numel, shape, stride[, offset]): any size, stride or
    offset, including ones torch itself could not write. The state dict is made as torch makes
    it, `collections.OrderedDict()` filled by SETITEMS, then given the attributes `build` (as
    torch's `_metadata`) by BUILD."""
    p = Pickle(protocol=2)
    if nanogpt:
        p.op(pickle.EMPTY_DICT).str("model")
    p.global_("collections", "OrderedDict").op(pickle.EMPTY_TUPLE).op(pickle.REDUCE).op(pickle.MARK)
    for name, (key, numel, shape, stride, *offset) in tensors.items():
        p.str(name).tensor(key, numel, shape, stride, *offset)
    p.op(pickle.SETITEMS)
    if build is not None:
        p.op(pickle.EMPTY_DICT).op(pickle.MARK)
        for k, v in build.items():
            p.str(k).str(v)
        p.op(pickle.SETITEMS).op(pickle.BUILD)
    if nanogpt:
        p.op(pickle.SETITEM)
    return p.bytes()


def colliding_dict(n: int, key=lambda i: 1 + i * (2**61 - 1)) -> bytes:
    """A pickled dict of `n` int keys that all share one hash (Python hashes an int modulo
    2**61 - 1), built from opcodes: building it with Python would itself take quadratic time."""
    p = Pickle().op(pickle.EMPTY_DICT).op(pickle.MARK)
    for i in range(n):
        p.long(key(i)).str("a")
    return p.op(pickle.SETITEMS).bytes()


def shift_central_directory(src, dst, shift: int, keep: tuple[str, ...]) -> Path:
    """Copy the zip `src` with the end record's central-directory offset raised by `shift` (so
    zipfile subtracts `shift` from every entry's local-header offset) and the offsets of the
    entries ending in one of `keep` raised to match: those stay readable, the others now point
    `shift` bytes before where they are, below the start of the file for the first ones."""
    raw = bytearray(Path(src).read_bytes())
    end = raw.rfind(b"PK\x05\x06")
    count, size, start = struct.unpack("<HII", raw[end + 10:end + 20])
    struct.pack_into("<I", raw, end + 16, start + shift)
    end64 = raw.rfind(b"PK\x06\x06")  # torch writes a zip64 end record too: zipfile reads that one
    if end64 >= 0:
        struct.pack_into("<Q", raw, end64 + 48, start + shift)
    at = start
    for _ in range(count):
        assert raw[at:at + 4] == b"PK\x01\x02"
        name_len, extra_len, comment_len = struct.unpack("<3H", raw[at + 28:at + 34])
        name = raw[at + 46:at + 46 + name_len].decode()
        if name.endswith(keep):
            (offset,) = struct.unpack("<I", raw[at + 42:at + 46])
            struct.pack_into("<I", raw, at + 42, offset + shift)
        at += 46 + name_len + extra_len + comment_len
    Path(dst).write_bytes(bytes(raw))
    return Path(dst)


def list_bomb(depth: int = 60) -> list:
    """l = [l', l'], l' = [l'', l''], ...: pickles (through the memo) to a few hundred bytes, but
    printing it takes 2**depth steps."""
    x: list = []
    for _ in range(depth):
        x = [x, x]
    return x


def write_json(path, obj) -> Path:
    Path(path).write_text(json.dumps(obj))
    return Path(path)


def listing(directory) -> list[str]:
    return sorted(os.listdir(directory))
