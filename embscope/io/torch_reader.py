"""Checkpoint readers for torch.save archives: one archive (nanoGPT ckpt.pt, modded-nanogpt,
Lightning, a plain state dict, pytorch_model.bin), or the shards a pytorch_model.bin.index.json
names, each opened only when one of its tensors is read."""

from __future__ import annotations

import os

import numpy as np

from embscope.errors import EmbscopeError
from embscope.formats import Format
from embscope.io.dtypes import RAW_DTYPES
from embscope.io.matrix import Matrix
from embscope.io.reader import Reader
from embscope.io.restricted_pickle import TensorRef
from embscope.io.torch_archive import TorchArchive
from embscope.io.training_checkpoints import identify


class TorchReader(Reader):
    def __init__(self, path: str, config: dict):
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
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
        if isinstance(value, TensorRef) and len(value.shape) == 0 and value.storage.dtype in RAW_DTYPES:
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


class ShardedTorchReader(Reader):
    """pytorch_model.bin.index.json: opens only the shard(s) holding the tensors asked for."""

    def __init__(self, weight_map: dict[str, str], config: dict, fetch):
        self._where, self.config, self._fetch = weight_map, config, fetch
        self._readers: dict[str, TorchReader] = {}
        self.keys = list(weight_map)
        self.format = Format.TORCH_SHARDED
        self.facts, self.files, self.file_bytes, self.read_bytes = {}, [], 0, 0

    def _reader(self, key: str) -> TorchReader:
        shard = self._where[key]
        if shard not in self._readers:
            self._readers[shard] = TorchReader(self._fetch(shard, required=True), self.config)
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
