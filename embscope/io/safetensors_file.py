"""Read tensors from a .safetensors file by offset, through a memory map; no torch, no copies.

Layout: 8-byte little-endian header length N, N bytes of JSON header, then the data buffer.
The header is validated by the reference implementation's rules (the `safetensors` package:
serde_json parsing, then every tensor's dtype, shape and byte length, and offsets that tile the
data buffer exactly: from byte 0, contiguous, no gap, no overlap, no trailing bytes), so a file
embscope reads is one `safetensors` reads, and a hostile file never makes us read outside the
buffer. tests/test_safetensors_strict.py checks the two agree on mutated files.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass

import numpy as np

from embscope.errors import EmbscopeError
from embscope.io.dtypes import DTYPE_BITS, RAW_DTYPES
from embscope.io.matrix import Matrix

MAX_HEADER_BYTES = 100_000_000  # the reference implementation's limit
MAX_JSON_DEPTH = 127  # serde_json's recursion limit: 127 nested arrays/objects parse, 128 do not
U64_MAX = 2**64 - 1
NUMPY_MAX_DIM = 2**63 - 1  # numpy's largest dimension (intp)  # shapes and offsets are usize; element and bit counts must not overflow it
TENSOR_FIELDS = ("dtype", "shape", "data_offsets")


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    start: int  # offset in the data buffer
    end: int


class SafetensorsFile:
    """One .safetensors file: its validated header, and tensors read on demand."""

    def __init__(self, path: str):
        self.path = path
        self.size = _file_size(path)
        self.header_bytes, header = _read_header(path, self.size)
        self._setup(header)

    @classmethod
    def from_header(cls, label: str, size: int, header_bytes: int, raw: bytes) -> SafetensorsFile:
        """The header of a file read elsewhere (by HTTP range, say), validated exactly as a local
        file's; `label` names it in messages. Only the header: no tensor data can be read."""
        self = cls.__new__(cls)
        self.path, self.size, self.header_bytes = label, size, header_bytes
        self._setup(_decode_header(label, raw))
        return self

    def _setup(self, header: object) -> None:
        self.data_start = 8 + self.header_bytes
        self.metadata: dict[str, str] = {}
        self.tensors: dict[str, TensorInfo] = {}
        self._parse(header)

    def _fail(self, why: str) -> EmbscopeError:
        return EmbscopeError(f"{self.path}: not a valid safetensors file: {why}")

    def _parse(self, header: object) -> None:
        if not isinstance(header, dict):
            raise self._fail("the header is not a JSON object")
        pairs = header.pairs if isinstance(header, _Object) else list(header.items())
        if sum(name == "__metadata__" for name, _ in pairs) > 1:
            raise self._fail("__metadata__ appears twice")
        for name, entry in pairs:  # a repeated tensor name: each entry is checked, the last one counts
            if name == "__metadata__":
                self.metadata = self._metadata(entry)
            else:
                self.tensors[name] = self._tensor_info(name, entry)
        self._check_layout()

    def _metadata(self, entry: object) -> dict[str, str]:
        if entry is None:
            return {}
        if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
            raise self._fail("__metadata__ must map strings to strings")
        return dict(entry)

    def _check_layout(self) -> None:
        """The tensors' bytes tile the data buffer: in bounds, no overlap, no gap, nothing after."""
        data_len = self.size - self.data_start
        for name, info in self.tensors.items():
            if info.end > data_len:
                raise self._fail(f"tensor '{name}' ends at byte {info.end} of a {data_len}-byte data buffer")
        spans = sorted((info.start, info.end, name) for name, info in self.tensors.items())
        reach, reach_name = 0, None  # the furthest end so far, and whose it is
        for start, end, name in spans:
            if start < reach and end > start:
                raise self._fail(f"tensors '{reach_name}' and '{name}' overlap")
            if end > reach:
                reach, reach_name = end, name
        pos, before = 0, None  # where the previous tensor (in offset order) ends, and its name
        for start, end, name in spans:
            if start > pos:
                raise self._fail(f"bytes {pos}..{start} of the data buffer belong to no tensor"
                                 f" (a gap before tensor '{name}')")
            if start < pos:  # only an empty tensor can start inside another one here
                raise self._fail(f"empty tensor '{name}' lies inside tensor '{before}'")
            pos, before = end, name
        if pos != data_len:
            raise self._fail(f"bytes {pos}..{data_len} of the data buffer belong to no tensor"
                             f" ({'after the last tensor' if spans else 'the header names no tensor'})")

    def _tensor_info(self, name: str, entry: object) -> TensorInfo:
        dtype, shape, offsets = self._fields(name, entry)
        if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
            shown = repr(dtype) if len(repr(dtype)) <= 40 else repr(dtype)[:37] + "..."
            raise self._fail(f"unknown dtype {shown} for tensor '{name}'")
        if not isinstance(shape, list) or not all(_is_u64(s) for s in shape):
            raise self._fail(f"bad shape for tensor '{name}'")
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_u64(o) for o in offsets) \
                or offsets[0] > offsets[1]:
            raise self._fail(f"bad data_offsets for tensor '{name}'")
        nbytes = self._nbytes(name, dtype, shape)
        if nbytes != offsets[1] - offsets[0]:
            raise self._fail(
                f"tensor '{name}' of shape {tuple(shape)} {dtype} needs {nbytes} bytes,"
                f" data_offsets give {offsets[1] - offsets[0]}"
            )
        return TensorInfo(dtype, tuple(shape), offsets[0], offsets[1])

    def _fields(self, name: str, entry: object) -> tuple[object, object, object]:
        """dtype, shape, data_offsets of an entry: an object with each field once (other fields
        are ignored), or, as serde reads a struct, a list of exactly those three."""
        if isinstance(entry, list) and len(entry) == 3:
            return entry[0], entry[1], entry[2]
        if not isinstance(entry, dict):
            raise self._fail(f"entry for '{name}' is not an object")
        keys = [k for k, _ in (entry.pairs if isinstance(entry, _Object) else entry.items())]
        for field in TENSOR_FIELDS:
            if field not in entry:
                raise self._fail(f"tensor '{name}' has no {field}")
            if keys.count(field) > 1:
                raise self._fail(f"tensor '{name}' has {field} twice")
        return entry["dtype"], entry["shape"], entry["data_offsets"]

    def _nbytes(self, name: str, dtype: str, shape: list[int]) -> int:
        """Bytes the tensor takes, with the reference's overflow and whole-byte checks."""
        elements = 1
        for n in shape:  # the reference multiplies in order and stops at the first overflow
            elements *= n
            if elements > U64_MAX:
                raise self._fail(f"tensor '{name}' of shape {tuple(shape)} has more than 2**64 elements")
        bits = elements * DTYPE_BITS[dtype]
        if bits > U64_MAX:
            raise self._fail(f"tensor '{name}' of shape {tuple(shape)} {dtype} is more than 2**64 bits")
        if bits % 8:
            raise self._fail(f"tensor '{name}' of shape {tuple(shape)} {dtype} is {bits} bits,"
                             " not a whole number of bytes")
        return bits // 8

    def matrix(self, name: str) -> Matrix:
        """The 2-D tensor `name` as a lazily read Matrix (memory-mapped, read-only)."""
        info = self.tensors[name]
        if info.dtype not in RAW_DTYPES:
            raise EmbscopeError(
                f"{self.path}: tensor '{name}' has dtype {info.dtype};"
                " embscope reads F32, F16, BF16 and F64 embeddings"
            )
        if len(info.shape) != 2:
            raise EmbscopeError(
                f"{self.path}: tensor '{name}' has shape {info.shape}; an embedding matrix is 2-D"
            )
        if 0 in info.shape and max(info.shape) > NUMPY_MAX_DIM:  # (2**63, 0): empty, and too big for numpy
            raise EmbscopeError(f"{self.path}: tensor '{name}' of shape {info.shape} is empty")
        return Matrix(raw=self._raw(info, info.shape), dtype=info.dtype, name=name)

    def vector(self, name: str) -> np.ndarray:
        """A small 1-D float tensor (a LayerNorm weight, say), read into memory as float32."""
        info = self.tensors[name]
        if info.dtype not in RAW_DTYPES or len(info.shape) != 1:
            raise EmbscopeError(f"{self.path}: tensor '{name}' is not a 1-D float tensor")
        row = Matrix(raw=self._raw(info, (1, info.shape[0])), dtype=info.dtype, name=name)
        return np.array(row.rows(0, 1)[0])

    def _raw(self, info: TensorInfo, shape: tuple[int, ...]) -> np.ndarray:
        raw_dtype = RAW_DTYPES[info.dtype]
        if info.end == info.start:
            return np.zeros(shape, dtype=raw_dtype)
        return np.memmap(
            self.path, dtype=raw_dtype, mode="r", offset=self.data_start + info.start, shape=shape
        )


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except OSError as e:
        raise EmbscopeError(f"{path}: {e.strerror}") from None


def header_length(path: str, size: int, first8: bytes) -> int:
    """The header length N from a file's first 8 bytes, checked against its size and the limit."""
    if size < 8 or len(first8) < 8:
        raise EmbscopeError(f"{path}: not a valid safetensors file: {size} bytes is too short")
    (n,) = struct.unpack("<Q", first8[:8])
    if n > MAX_HEADER_BYTES:
        raise EmbscopeError(
            f"{path}: not a valid safetensors file: header length {n} is over the limit"
        )
    if n > size - 8:
        raise EmbscopeError(
            f"{path}: not a valid safetensors file: header length {n}"
            f" is larger than the file ({size} bytes)"
        )
    return n


def _read_header(path: str, size: int) -> tuple[int, object]:
    if size < 8:
        raise EmbscopeError(f"{path}: not a valid safetensors file: {size} bytes is too short")
    with open(path, "rb") as f:
        n = header_length(path, size, f.read(8))
        raw = f.read(n)
    return n, _decode_header(path, raw)


def _decode_header(path: str, raw: bytes) -> object:
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_Object, parse_int=_json_int,
                            parse_float=_json_float, parse_constant=_json_constant)
        _check_strings_and_depth(header)
        return header
    except (ValueError, RecursionError):  # bad UTF-8, bad JSON, NaN, 1e400, a lone surrogate
        raise EmbscopeError(
            f"{path}: not a valid safetensors file: the header is not valid JSON"
        ) from None


# --- JSON as the reference's parser (serde_json) reads it ----------------------------------------

class _Object(dict):
    """A JSON object that also keeps its (key, value) pairs in order, repeated keys included:
    the reference refuses a repeated field of a tensor, and checks every repeated tensor."""

    def __init__(self, pairs: list[tuple[str, object]]):
        super().__init__(pairs)
        self.pairs = pairs


def _json_int(text: str) -> int | float:
    """serde_json reads -0 and integers outside i64/u64 as floats (so not as a size)."""
    if text == "-0" or len(text) > 20:
        return _json_float(text)
    value = int(text)
    return value if -(2**63) <= value <= U64_MAX else _json_float(text)


def _json_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError(f"number out of range: {text[:20]}")
    return value


def _json_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _check_strings_and_depth(value: object) -> None:
    """No string with a lone surrogate (not UTF-8), no nesting deeper than serde_json's limit."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            item.encode("utf-8")  # UnicodeEncodeError is a ValueError
        elif isinstance(item, (dict, list)):
            if depth > MAX_JSON_DEPTH:
                raise ValueError("nested too deep")
            pairs = item.pairs if isinstance(item, _Object) else item.items() if isinstance(item, dict) else None
            children = [c for kv in pairs for c in kv] if pairs is not None else item
            stack.extend((c, depth + 1) for c in children)


def _is_u64(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= U64_MAX
