"""Tensor element types, named as safetensors names them: the one dtype vocabulary of every reader
(torch archives map their storage classes onto these names, llm.c its version numbers)."""

from __future__ import annotations

import numpy as np

# Bits per element of every dtype the safetensors format defines.
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32, "I64": 64, "U64": 64, "F64": 64,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "C64": 64, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
}

# The dtypes an embedding matrix may have, mapped to the numpy dtype of their raw bytes.
# bf16 has no numpy dtype: its raw bytes are read as uint16 and widened by `Matrix`.
RAW_DTYPES = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "F64": np.dtype("<f8"),
}
DTYPE_NAMES = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "F64": "float64"}


def itemsize(dtype: str) -> int:
    """Bytes per element of a dtype whose elements are whole bytes."""
    return DTYPE_BITS[dtype] // 8
