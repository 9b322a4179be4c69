"""Read tensors from a .safetensors file by offset, through a memory map; no torch, no copies.

Layout: 8-byte little-endian header length N, N bytes of JSON header, then the data buffer.
The header is validated as strictly as the reference implementation does (bounds, sizes,
overlaps), so a hostile file can never make us read outside the buffer.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from math import prod

import numpy as np

from embscope.errors import EmbscopeError
from embscope.io.matrix import RAW_DTYPES, Matrix

MAX_HEADER_BYTES = 100_000_000  # the reference implementation's limit

# Bits per element of every dtype the format defines; our matrices use only RAW_DTYPES.
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "C64": 64,
}


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
        data_len = self.size - self.data_start
        spans = []
        for name, entry in header.items():
            if name == "__metadata__":
                if not isinstance(entry, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in entry.items()
                ):
                    raise self._fail("__metadata__ must map strings to strings")
                self.metadata = dict(entry)
                continue
            info = self._tensor_info(name, entry)
            if info.end > data_len:
                raise self._fail(
                    f"tensor '{name}' ends at byte {info.end} of a {data_len}-byte data buffer"
                )
            spans.append((info.start, info.end, name))
            self.tensors[name] = info
        spans.sort()
        reach, reach_name = 0, None  # the furthest end so far, and whose it is
        for start, end, name in spans:
            if start < reach and end > start:
                raise self._fail(f"tensors '{reach_name}' and '{name}' overlap")
            if end > reach:
                reach, reach_name = end, name

    def _tensor_info(self, name: str, entry: object) -> TensorInfo:
        if not isinstance(entry, dict):
            raise self._fail(f"entry for '{name}' is not an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
            shown = repr(dtype) if len(repr(dtype)) <= 40 else repr(dtype)[:37] + "..."
            raise self._fail(f"unknown dtype {shown} for tensor '{name}'")
        if not isinstance(shape, list) or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
        ):
            raise self._fail(f"bad shape for tensor '{name}'")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            raise self._fail(f"bad data_offsets for tensor '{name}'")
        nbits = prod(shape) * DTYPE_BITS[dtype]
        if (nbits + 7) // 8 != offsets[1] - offsets[0]:
            raise self._fail(
                f"tensor '{name}' of shape {tuple(shape)} {dtype} needs {(nbits + 7) // 8} bytes,"
                f" data_offsets give {offsets[1] - offsets[0]}"
            )
        return TensorInfo(dtype, tuple(shape), offsets[0], offsets[1])

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
        return json.loads(raw)
    except (ValueError, RecursionError):  # bad UTF-8, bad JSON, an integer of 5000 digits
        raise EmbscopeError(
            f"{path}: not a valid safetensors file: the header is not valid JSON"
        ) from None
