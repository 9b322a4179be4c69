"""Unpicklers that execute no code from the file.

A pickle names the callables it wants run (GLOBAL / STACK_GLOBAL opcodes). `find_class` decides
what each name becomes; ours return only embscope's own inert stand-ins, so a hostile `__reduce__`
(os.system, eval, ...) fails with an error before anything is called.
"""

from __future__ import annotations

import collections
import io
import pickle
from dataclasses import dataclass

from embscope.errors import EmbscopeError

# torch's legacy typed-storage class names, as torch.save writes them, and the raw dtype of each.
STORAGE_DTYPES = {
    "FloatStorage": "F32",
    "HalfStorage": "F16",
    "BFloat16Storage": "BF16",
    "DoubleStorage": "F64",
    "LongStorage": "I64",
    "IntStorage": "I32",
    "ShortStorage": "I16",
    "CharStorage": "I8",
    "ByteStorage": "U8",
    "BoolStorage": "BOOL",
}


@dataclass(frozen=True)
class StorageRef:
    """A tensor storage saved as `data/<key>` in the checkpoint archive."""

    key: str
    dtype: str
    numel: int


@dataclass(frozen=True)
class TensorRef:
    """What `torch._utils._rebuild_tensor_v2` would build, without building it."""

    storage: StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


class _StorageType:
    def __init__(self, dtype: str):
        self.dtype = dtype


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored) -> TensorRef:
    if not isinstance(storage, StorageRef):
        raise pickle.UnpicklingError("tensor without a storage")
    return TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, *_ignored):
    return data


def _size(*args):
    return tuple(*args)


class _Refused(pickle.UnpicklingError):
    pass


class TorchArchiveUnpickler(pickle.Unpickler):
    """Reads `data.pkl` of a torch.save zip archive into dicts, lists and TensorRefs."""

    _ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch", "Size"): _size,
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        raise _Refused(f"{module}.{name}")

    def persistent_load(self, pid):
        if (
            isinstance(pid, tuple)
            and len(pid) == 5
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
            and isinstance(pid[2], str)
            and isinstance(pid[4], int)
        ):
            return StorageRef(key=pid[2], dtype=pid[1].dtype, numel=pid[4])
        raise pickle.UnpicklingError("unsupported persistent id")


class PlainDataUnpickler(pickle.Unpickler):
    """Accepts only what pickles of dicts, lists, tuples, strings and numbers contain."""

    def find_class(self, module: str, name: str):
        raise _Refused(f"{module}.{name}")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("unsupported persistent id")


def safe_loads(data: bytes, unpickler: type[pickle.Unpickler], what: str):
    """Unpickle `data` with a restricted unpickler; every failure becomes one EmbscopeError."""
    try:
        return unpickler(io.BytesIO(data)).load()
    except _Refused as e:
        raise EmbscopeError(
            f"{what}: refused to load: the pickle asks to run '{e}', which embscope never runs"
        ) from None
    except Exception as e:  # noqa: BLE001 - any failure of a hostile or corrupt pickle
        raise EmbscopeError(f"{what}: not a readable pickle ({type(e).__name__})") from None
