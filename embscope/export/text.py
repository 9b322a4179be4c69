"""Float rows as text that reads back to the same float32 values, written in blocks."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

BLOCK_ROWS = 2048
FLOAT = "%.9g"  # 9 significant digits: every float32 reads back exactly


def float_lines(matrix, prefixes: list[str] | None, sep: str,
                advance: Callable[[int], None] | None = None) -> Iterator[bytes]:
    """UTF-8 blocks of lines, one per row of `matrix` (n, d): `prefixes[i]` (when given) then
    the row's values joined by `sep`. `matrix` may be any object with `rows(start, stop)` giving
    float32 rows, or an array. `advance(rows)` is called after each block."""
    n, d = matrix.shape
    row_format = sep.join([FLOAT] * d)
    rows = matrix.rows if hasattr(matrix, "rows") else (lambda a, b: matrix[a:b])
    for start in range(0, n, BLOCK_ROWS):
        block = np.asarray(rows(start, min(n, start + BLOCK_ROWS)), dtype=np.float32).tolist()  # (b, d)
        if prefixes is None:
            lines = [row_format % tuple(r) for r in block]
        else:
            lines = [prefixes[start + i] + row_format % tuple(r) for i, r in enumerate(block)]
        yield ("\n".join(lines) + "\n").encode("utf-8")
        if advance:
            advance(len(block))
