"""The checkpoint reader for safetensors weights: one model.safetensors, or the shards a
model.safetensors.index.json names, each shard opened only when one of its tensors is read."""

from __future__ import annotations

import numpy as np

from embscope.errors import EmbscopeError
from embscope.formats import Format
from embscope.io.matrix import Matrix
from embscope.io.reader import Reader
from embscope.io.safetensors_file import SafetensorsFile


class SafetensorsReader(Reader):
    def __init__(self, paths: dict[str, str] | str, config: dict, fetch=None):
        """`paths`: one file, or (sharded) tensor name -> shard file name, which `fetch` turns
        into a local path when the shard is first needed."""
        self.config = config
        self.facts = {}
        self._files: dict[str, SafetensorsFile] = {}
        if isinstance(paths, str):  # one file
            f = SafetensorsFile(paths)
            self._files[paths] = f
            self._where = {k: paths for k in f.tensors}
            self.format = Format.SAFETENSORS
            self.facts.update(f.metadata)
        else:  # sharded: key -> shard file name, fetched on demand
            self._where = paths
            self.format = Format.SAFETENSORS_SHARDED
        self._fetch = fetch
        self.keys = list(self._where)
        self.read_bytes = 0
        self.file_bytes = 0
        self.files = []

    def _file(self, key: str) -> SafetensorsFile:
        where = self._where[key]
        if where not in self._files:
            path = self._fetch(where) if self._fetch else where
            self._files[where] = SafetensorsFile(path)
        f = self._files[where]
        if key not in f.tensors:
            raise EmbscopeError(f"{f.path}: the index names tensor '{key}', but the shard lacks it")
        return f

    def matrix(self, key: str) -> Matrix:
        m = self._file(key).matrix(key)
        self.read_bytes += m.nbytes
        return m

    def vector(self, key: str) -> np.ndarray:
        return self._file(key).vector(key)

    def finish(self) -> None:
        for f in self._files.values():
            self.files.append(f.path)
            self.file_bytes += f.size
            self.read_bytes += 8 + f.header_bytes
