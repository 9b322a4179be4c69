"""Chosen rows of a stored matrix, read a block at a time as `Matrix.rows` reads them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embscope.io.matrix import Matrix


@dataclass
class RowView:
    """Rows `ids` (+ `offset`: a position table's first rows) of `matrix`, as a (n, d) matrix."""

    matrix: Matrix
    ids: np.ndarray  # (n,)
    offset: int = 0

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.ids), self.matrix.shape[1]

    def block_rows(self) -> int:
        return self.matrix.block_rows()

    def rows(self, start: int, stop: int) -> np.ndarray:
        """float32 rows [start, stop) of the view, (stop - start, d)."""
        ids = self.ids[start:stop] + self.offset
        if len(ids) and ids[-1] - ids[0] == len(ids) - 1 and (np.diff(ids) == 1).all():
            return self.matrix.rows(int(ids[0]), int(ids[-1]) + 1)
        return self.matrix.take(ids)
