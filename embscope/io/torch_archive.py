"""Read tensors from a torch.save zip archive (nanoGPT ckpt.pt, pytorch_model.bin) without torch.

The archive holds `<name>/data.pkl` (the object tree, tensors as references) and one stored,
uncompressed entry `<name>/data/<key>` per storage. We unpickle the tree with a restricted
unpickler (no code runs), pick the tensors we need, and memory-map their bytes straight out of
the zip. Optimizer state is never touched: its tensors stay references to bytes we never read.
"""

from __future__ import annotations

import os
import struct
import zipfile
from math import prod

import numpy as np

from embscope.errors import EmbscopeError
from embscope.io import dtypes
from embscope.io.dtypes import RAW_DTYPES
from embscope.io.matrix import Matrix
from embscope.io.restricted_pickle import RefusedGlobal, TensorRef, TorchArchiveUnpickler, safe_loads

LOCAL_HEADER = struct.Struct("<4s5H3I2H")  # zip local file header, 30 bytes


def whole_module(data: bytes) -> bool:
    """Whether a refused data.pkl is a pickled torch.nn.Module: every module pickles its
    `_parameters` and `_modules` dicts by name."""
    return b"_parameters" in data and b"_modules" in data


def is_zip(path: str) -> bool:
    try:
        return zipfile.is_zipfile(path)
    except Exception:  # noqa: BLE001 - zipfile's parser fails in undocumented ways on garbage
        return False


class TorchArchive:
    """A torch.save zip archive: its object tree (with TensorRefs) and on-demand tensor reads."""

    def __init__(self, path: str, fileobj=None):
        """`fileobj`: read the archive through it (a RangeFile over HTTP, say) instead of opening
        `path`, which then only names the archive in messages."""
        self.path = path
        self._fileobj = fileobj
        self.size = fileobj.size if fileobj is not None else os.path.getsize(path)
        try:
            self._zip = zipfile.ZipFile(fileobj if fileobj is not None else path)
            names = self._zip.namelist()
        except Exception as e:  # noqa: BLE001 - BadZipFile, and NotImplementedError("zip file
            # version 6.4"), struct.error... from a damaged central directory
            raise EmbscopeError(f"{path}: not a readable zip archive ({e})") from None
        pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise EmbscopeError(f"{path}: a zip file, but not a torch checkpoint (no data.pkl)")
        self.prefix = pkl[0][: -len("data.pkl")]
        byteorder = self.prefix + "byteorder"
        if byteorder in names and self._read(byteorder).strip() not in (b"little", b""):
            raise EmbscopeError(f"{path}: big-endian torch checkpoints are not supported")
        info = self._zip.getinfo(pkl[0])
        self.bytes_read = info.file_size
        data = self._read(pkl[0])
        try:
            self.tree = safe_loads(data, TorchArchiveUnpickler, path)
        except RefusedGlobal:
            if whole_module(data):
                raise EmbscopeError(
                    f"{path}: a whole pickled model (torch.save(model)), which only its own code can"
                    " load; embscope never runs it. Re-save the weights: torch.save(model.state_dict(), path)"
                ) from None
            raise

    def _read(self, name: str) -> bytes:
        """A small entry, read whole. torch stores every entry uncompressed, so a compressed one
        (a zip bomb, say) is refused before it is inflated."""
        info = self._zip.getinfo(name)
        if info.compress_type != zipfile.ZIP_STORED:
            raise EmbscopeError(f"{self.path}: zip entry '{name}' is compressed; torch never does that")
        if info.file_size > self.size:
            raise EmbscopeError(f"{self.path}: zip entry '{name}' runs past the end of the file")
        try:
            return self._zip.read(info)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, RuntimeError, NotImplementedError) as e:
            raise EmbscopeError(f"{self.path}: corrupt zip entry '{name}' ({e})") from None

    def matrix(self, ref: object, name: str) -> Matrix:
        """The 2-D tensor `ref` as a lazily read Matrix, memory-mapped from the archive."""
        if not isinstance(ref, TensorRef):
            raise EmbscopeError(f"{self.path}: '{name}' is not a tensor")
        dtype = ref.storage.dtype
        if dtype not in RAW_DTYPES:
            raise EmbscopeError(
                f"{self.path}: tensor '{name}' has dtype {dtype};"
                " embscope reads F32, F16, BF16 and F64 embeddings"
            )
        if len(ref.shape) != 2:
            raise EmbscopeError(
                f"{self.path}: tensor '{name}' has shape {ref.shape}; an embedding matrix is 2-D"
            )
        return Matrix(raw=self._array(ref, name), dtype=dtype, name=name)

    def vector(self, ref: object, name: str) -> np.ndarray:
        if not isinstance(ref, TensorRef) or len(ref.shape) != 1 or ref.storage.dtype not in RAW_DTYPES:
            raise EmbscopeError(f"{self.path}: '{name}' is not a 1-D float tensor")
        m = Matrix(raw=self._array(ref, name)[None, :], dtype=ref.storage.dtype, name=name)
        return np.array(m.rows(0, 1)[0])

    def _array(self, ref: TensorRef, name: str) -> np.ndarray:
        start, itemsize = self.locate(ref, name)
        base = np.memmap(self.path, dtype=RAW_DTYPES[ref.storage.dtype], mode="r", offset=start,
                         shape=(ref.storage.numel,))
        return np.lib.stride_tricks.as_strided(base[ref.offset:], shape=ref.shape,
                                               strides=byte_strides(ref.shape, ref.stride, itemsize), writeable=False)

    def locate(self, ref: TensorRef, name: str) -> tuple[int, int]:
        """(offset in the archive of the first byte of `ref`'s storage, bytes per element), once
        the view is checked to lie inside its stored, uncompressed storage."""
        itemsize = dtypes.itemsize(ref.storage.dtype)
        entry = self._entry(ref.storage.key)
        if entry.compress_type != zipfile.ZIP_STORED:
            raise EmbscopeError(f"{self.path}: tensor '{name}' is compressed; torch never does that")
        if ref.storage.numel * itemsize != entry.file_size:
            raise EmbscopeError(f"{self.path}: storage of '{name}' has the wrong size")
        numel = prod(ref.shape)
        if not numel:
            raise EmbscopeError(f"{self.path}: tensor '{name}' of shape {ref.shape} is empty")
        # A view (transposed, a slice of rows) is fine, but never one with more elements than its
        # storage: `expand` gives a stride of 0, and 10**11 "elements" of one stored float.
        if numel > ref.storage.numel:
            raise EmbscopeError(
                f"{self.path}: tensor '{name}' of shape {ref.shape} and strides {ref.stride} has more"
                f" elements ({numel}) than its storage ({ref.storage.numel})"
            )
        # Highest element index the view touches; must lie inside the storage.
        if ref.offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.stride)) >= ref.storage.numel:
            raise EmbscopeError(f"{self.path}: tensor '{name}' reaches outside its storage")
        return self._data_offset(entry), itemsize

    def _entry(self, key: str) -> zipfile.ZipInfo:
        try:
            return self._zip.getinfo(f"{self.prefix}data/{key}")
        except KeyError:
            raise EmbscopeError(f"{self.path}: storage '{key}' is missing from the archive") from None

    def _read_at(self, offset: int, n: int) -> bytes:
        if self._fileobj is not None:
            self._fileobj.seek(offset)
            return self._fileobj.read(n)
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(n)

    def _data_offset(self, entry: zipfile.ZipInfo) -> int:
        header = b""
        if 0 <= entry.header_offset < self.size:  # a shifted central directory can put it anywhere
            header = self._read_at(entry.header_offset, LOCAL_HEADER.size)
        if len(header) != LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise EmbscopeError(f"{self.path}: corrupt zip entry '{entry.filename}'")
        fields = LOCAL_HEADER.unpack(header)
        name_len, extra_len = fields[-2], fields[-1]
        start = entry.header_offset + LOCAL_HEADER.size + name_len + extra_len
        if start + entry.file_size > self.size:
            raise EmbscopeError(f"{self.path}: zip entry '{entry.filename}' runs past the end of the file")
        return start


def byte_strides(shape: tuple[int, ...], stride: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """numpy strides (bytes) of a checked view. Every stride of a dimension longer than 1 is below
    the storage size; a dimension of size 1 may carry any stride (up to 2**63) and addresses
    nothing: 0 keeps numpy in range."""
    return tuple(s * itemsize if n > 1 else 0 for n, s in zip(shape, stride))
