"""embscope's one dtype table (embscope/io/dtypes.py) against the writers' own element sizes:
every dtype `safetensors.torch` writes takes the bytes DTYPE_BITS gives it, every torch storage
class the restricted unpickler knows holds elements of the size `dtypes.itemsize` gives, and the
raw numpy dtype of each float dtype embscope reads is as wide as torch's."""

from __future__ import annotations

import warnings

import pytest

from embscope.io import dtypes
from embscope.io.restricted_pickle import STORAGE_DTYPES
from embscope.io.safetensors_file import SafetensorsFile

torch = pytest.importorskip("torch")
save_file = pytest.importorskip("safetensors.torch").save_file

TORCH_DTYPES = ["float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8",
                "bool", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "complex64",
                "uint16", "uint32", "uint64"]
SHAPE = (3, 5)


@pytest.mark.parametrize("name", TORCH_DTYPES)
def test_bits_of_every_dtype_safetensors_writes(tmp_path, name):
    tensor = torch.zeros(SHAPE, dtype=getattr(torch, name))
    path = str(tmp_path / "t.safetensors")
    save_file({"t": tensor}, path)
    info = SafetensorsFile(path).tensors["t"]  # the header, validated with DTYPE_BITS
    assert info.end - info.start == tensor.numel() * dtypes.DTYPE_BITS[info.dtype] // 8 == tensor.nbytes
    assert dtypes.itemsize(info.dtype) == tensor.element_size()


@pytest.mark.parametrize("storage", sorted(STORAGE_DTYPES))
def test_itemsize_of_every_torch_storage_class(storage):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TypedStorage classes are deprecated, and still what torch.save names
        dtype = getattr(torch, storage).dtype
    assert dtypes.itemsize(STORAGE_DTYPES[storage]) == torch.empty(0, dtype=dtype).element_size()


def test_raw_float_dtypes_are_as_wide_as_torch_says():
    torch_names = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}
    assert set(dtypes.RAW_DTYPES) == set(torch_names) == set(dtypes.DTYPE_NAMES)
    for name, raw in dtypes.RAW_DTYPES.items():
        assert raw.itemsize == dtypes.itemsize(name) == torch.empty(0, dtype=torch_names[name]).element_size()
        assert str(torch_names[name]) == f"torch.{dtypes.DTYPE_NAMES[name]}"
