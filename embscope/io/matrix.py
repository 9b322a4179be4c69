"""A 2-D tensor stored in a file, read lazily and converted to float32 one block of rows at a time.

fp32 rows come straight from a memory map (no copy); fp16 and bf16 rows are converted per block,
so an fp16/bf16 matrix never needs a full float32 copy unless a caller asks for one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embscope.io.dtypes import DTYPE_NAMES


def bf16_to_float32(raw: np.ndarray) -> np.ndarray:
    """Widen raw bfloat16 bits (uint16) to float32: bf16 is the top half of an fp32."""
    wide = raw.astype(np.uint32)
    wide <<= 16
    return wide.view(np.float32)


@dataclass
class Matrix:
    """A (rows, cols) matrix whose raw values live in `raw` (often a memory map)."""

    raw: np.ndarray  # (rows, cols), dtype as stored (uint16 for bf16)
    dtype: str  # safetensors dtype name: F32, F16, BF16, F64
    name: str  # tensor name in the checkpoint

    @property
    def shape(self) -> tuple[int, int]:
        return self.raw.shape  # type: ignore[return-value]

    @property
    def dtype_name(self) -> str:
        return DTYPE_NAMES[self.dtype]

    @property
    def nbytes(self) -> int:
        return int(self.raw.nbytes)

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) as float32, (stop - start, cols). A view for fp32 storage."""
        return self._to_float32(self.raw[start:stop])

    def take(self, ids) -> np.ndarray:
        """The rows at `ids` as float32, (len(ids), cols)."""
        return self._to_float32(np.asarray(self.raw)[np.asarray(ids, dtype=np.int64)])  # not np.memmap's slower indexing

    def block_rows(self, budget_bytes: int = 32 << 20) -> int:
        """Rows per float32 block so that one converted block takes about `budget_bytes`."""
        return max(256, budget_bytes // (4 * max(1, self.shape[1])))

    def to_float32(self) -> np.ndarray:
        return self.rows(0, self.shape[0])

    def _to_float32(self, raw: np.ndarray) -> np.ndarray:
        if self.dtype == "F32":
            return raw if raw.dtype == np.float32 else raw.astype(np.float32)
        if self.dtype == "BF16":
            return bf16_to_float32(raw)
        with np.errstate(over="ignore", invalid="ignore"):  # F64 beyond float32: inf; signalling NaN
            return raw.astype(np.float32)
