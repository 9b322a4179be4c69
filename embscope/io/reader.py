"""The one shape every checkpoint reader has, whatever its format (safetensors, torch archives,
llm.c, nanochat, a hub repository): what `embscope.model.load` asks of it. As safetensors'
`safe_open`: the tensor names (`keys`), the file's metadata (`facts`), one tensor at a time
(`matrix`, `vector`); then `finish`, which settles what was read."""

from __future__ import annotations

import numpy as np

from embscope.formats import Format
from embscope.io.matrix import Matrix


class Reader:
    """The tensors of one checkpoint. Subclasses set the attributes and implement `matrix` and
    `vector`; the rest has a default."""

    format: Format
    keys: list[str]  # tensor names
    files: list[str]  # weight files read (complete after `finish`)
    file_bytes: int  # their size
    read_bytes: int  # what was read of them
    facts: dict  # training facts and file metadata, for `info`
    config: dict  # config.json, when the model has one
    n_tokens: int | None = None  # the vocabulary the format records (rows past it are padding)
    tied: bool | None = None  # weight tying, when the format itself says

    def matrix(self, key: str) -> Matrix:
        raise NotImplementedError

    def vector(self, key: str) -> np.ndarray:
        raise NotImplementedError

    def same_storage(self, a: str, b: str) -> bool | None:
        """Whether tensors `a` and `b` share storage (None: the format cannot tell)."""
        return None

    def prefetch(self, keys: list[str]) -> None:
        """The tensors about to be read: a no-op for local files; the hub reader fetches them together."""

    def finish(self) -> None:
        """Called once the tensors are read: settle `files`, `file_bytes` and `read_bytes`."""
