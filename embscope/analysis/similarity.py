"""Scoring query vectors against every token embedding, in blocks, with cached row norms."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from embscope.analysis.norms import lengths, row_norms
from embscope.analysis.topk import topk_rows
from embscope.errors import EmbscopeError, ScoreOverflowError
from embscope.io.matrix import Matrix

METRICS = ("cosine", "dot", "euclidean")
FLOAT32_SAFE = 1e38  # below float32's largest value (3.4e38)
QUERY_CHUNK = 512  # queries scored at once: (512, V) float32 scores
DENSE_BUDGET = 1 << 30  # prepare(): largest float32 copy of the matrix made for many queries


def unit(v: np.ndarray) -> np.ndarray:
    """Rows of `v` scaled to length 1 (zero rows stay zero)."""
    with np.errstate(over="ignore"):
        n = np.linalg.norm(v, axis=-1, keepdims=True)
    if np.isposinf(n).any():  # float32 squares past ~1e19 overflow: that would scale to zero
        n = np.linalg.norm(np.asarray(v, dtype=np.float64), axis=-1, keepdims=True)
        return (v / np.where(n == 0, 1, n)).astype(np.result_type(v, np.float32))
    return v / np.where(n == 0, 1, n)


@dataclass
class Index:
    """The first `n` rows of a token matrix, ready to be searched."""

    matrix: Matrix  # (V, d)
    n: int  # rows [0, n) are searchable (the rest is vocabulary padding)
    _norms: np.ndarray | None = field(default=None, repr=False)
    _inverse: np.ndarray | None = field(default=None, repr=False)
    _bad: np.ndarray | None = field(default=None, repr=False)
    _dense: tuple[str, np.ndarray] | None = field(default=None, repr=False)  # (metric, (n, d))
    _scratch: np.ndarray | None = field(default=None, repr=False)  # score buffer, reused

    def prepare(self, metric: str) -> None:
        """Before many queries: keep the rows as one float32 array (unit rows for cosine), so
        each chunk of queries is one matrix product with no conversion or scaling pass. Skipped
        when that copy would exceed DENSE_BUDGET; scoring then stays block by block."""
        if self.n * self.matrix.shape[1] * 4 > DENSE_BUDGET or self._dense and self._dense[0] == metric:
            return
        if metric == "cosine":
            dense = np.empty((self.n, self.matrix.shape[1]), dtype=np.float32)
            inverse = self.inverse_norms
            for start, block in self._blocks():
                with np.errstate(invalid="ignore"):  # Inf rows (inverse norm 0): NaN, never ranked
                    np.multiply(block, inverse[start:start + len(block), None], out=dense[start:start + len(block)])
        elif self.matrix.dtype == "F32":
            return  # already float32 rows, memory-mapped
        else:
            dense = self.matrix.rows(0, self.n)
        self._dense = (metric, dense)

    @property
    def norms(self) -> np.ndarray:
        """L2 norm of each searchable row, float32 (n,); computed once, in blocks."""
        if self._norms is None:
            self._norms = row_norms(self.matrix, 0, self.n, np.float32)
        return self._norms

    @property
    def inverse_norms(self) -> np.ndarray:
        """1 / norm per row (0 for zero rows, so their cosine is 0), float32 (n,)."""
        if self._inverse is None:
            norms = self.norms
            with np.errstate(divide="ignore"):
                self._inverse = np.where(norms == 0, 0, 1 / norms).astype(np.float32)
        return self._inverse

    def bad_rows(self) -> np.ndarray:
        """Ids of rows holding NaN or Inf (their norm is not finite)."""
        if self._bad is None:
            self._bad = np.flatnonzero(~np.isfinite(self.norms))
        return self._bad

    def _blocks(self):
        """(start, float32 rows) over the searchable rows, about 32 MiB at a time."""
        step = self.matrix.block_rows()
        for start in range(0, self.n, step):
            yield start, self.matrix.rows(start, min(self.n, start + step))

    def scores(self, queries: np.ndarray, metric: str) -> np.ndarray:
        """(q, n) scores, larger is nearer: cosine, dot, or minus the euclidean distance."""
        q = np.ascontiguousarray(queries, dtype=np.float32)  # (q, d)
        if not np.isfinite(q).all():
            raise EmbscopeError("the query vector holds NaN or Inf (its token rows are not finite)")
        if metric == "cosine":
            q = unit(q)
        else:
            self._check_range(q, metric)
        out = self._score_buffer(len(q))
        unit_rows = False
        with np.errstate(invalid="ignore", over="ignore"):  # NaN/Inf rows: reported, ranked last
            if self._dense is not None and self._dense[0] == metric:  # prepare()d
                np.matmul(q, self._dense[1].T, out=out)
                unit_rows = metric == "cosine"
            elif self.matrix.dtype == "F32":  # memory-mapped rows: one product, no copy
                np.matmul(q, self.matrix.raw[: self.n].T, out=out)
            else:  # convert block by block; fill the norm cache in the same pass
                fill = self._norms is None
                norms = np.empty(self.n, dtype=np.float32) if fill else None
                for start, block in self._blocks():
                    out[:, start:start + len(block)] = q @ block.T
                    if fill:
                        norms[start:start + len(block)] = lengths(block)
                if fill:
                    self._norms = norms
            if metric == "cosine" and not unit_rows:
                out *= self.inverse_norms
            elif metric == "euclidean":
                out = -euclidean(np.einsum("ij,ij->i", queries, queries), self.norms**2, out).astype(np.float32)
        bad = self.bad_rows()
        if len(bad):
            out[:, bad] = -np.inf  # rows holding NaN or Inf never rank
        return out

    def _check_range(self, q: np.ndarray, metric: str) -> None:
        """Dot and euclidean scores are float32: vectors so long that a score overflows would
        silently drop out of the ranking, so they are refused. (Cosine scales by the norms
        first and is safe.)"""
        norms = self.norms
        finite = norms[np.isfinite(norms)]
        longest = float(finite.max()) if finite.size else 0.0
        q_longest = float(np.linalg.norm(q.astype(np.float64), axis=1).max()) if len(q) else 0.0
        bound = q_longest * longest if metric == "dot" else (q_longest + longest) ** 2
        if bound > FLOAT32_SAFE:
            raise ScoreOverflowError(metric, max(longest, q_longest))

    def _score_buffer(self, rows: int) -> np.ndarray:
        """(rows, n) float32 scores. Chunks of queries reuse one buffer: a fresh 100 MB array
        per chunk costs its page faults every time. Valid until the next call."""
        if self._scratch is None or self._scratch.shape[0] < rows:
            self._scratch = np.empty((max(rows, QUERY_CHUNK if rows > 1 else 1), self.n), dtype=np.float32)
        return self._scratch[:rows]

    def nearest(self, queries: np.ndarray, k: int, metric: str, exclude: list[list[int]] | None = None):
        """Top-k per query: yields (query index, ids (k,), scores (k,)) in query order.

        Euclidean scores are returned as distances (positive, ascending)."""
        for start in range(0, len(queries), QUERY_CHUNK):
            s = self.scores(queries[start:start + QUERY_CHUNK], metric)
            if exclude is not None:
                for i, ids in enumerate(exclude[start:start + QUERY_CHUNK]):
                    if ids:
                        s[i, [j for j in ids if j < self.n]] = -np.inf
            ids, vals = topk_rows(s, k)
            if metric == "euclidean":
                vals = -vals
            for i in range(len(ids)):
                keep = ids[i] >= 0
                yield start + i, ids[i][keep], vals[i][keep]


def euclidean(sq_rows: np.ndarray, sq_cols: np.ndarray, dots: np.ndarray) -> np.ndarray:
    """(r, c) distances from squared lengths (r,), (c,) and dot products (r, c):
    sqrt(|a|² + |b|² - 2 a·b), with rounding below 0 taken as 0."""
    d2 = sq_rows[:, None] + sq_cols[None, :] - 2 * dots
    return np.sqrt(np.maximum(d2, 0, out=d2), out=d2)


def analogy_vector(positive: list[np.ndarray], negative: list[np.ndarray], metric: str) -> np.ndarray:
    """3CosAdd query (gensim's most_similar): mean of the unit vectors, positive minus negative.
    For dot and euclidean: the plain sum of positive minus negative vectors."""
    if metric == "cosine":
        terms = [unit(v) for v in positive] + [-unit(v) for v in negative]
        return unit(np.mean(terms, axis=0))
    return np.sum(positive, axis=0) - (np.sum(negative, axis=0) if negative else 0)


def cosmul_scores(index: Index, positive: list[np.ndarray], negative: list[np.ndarray]) -> np.ndarray:
    """3CosMul (Levy & Goldberg 2014; gensim's most_similar_cosmul), (n,) larger is nearer."""
    terms = np.stack(positive + negative)
    sims = (1 + index.scores(terms, "cosine")) / 2  # (t, n), in [0, 1]; -inf rows stay -inf
    pos = np.prod(sims[: len(positive)], axis=0)
    neg = np.prod(sims[len(positive):], axis=0) if negative else 1.0
    with np.errstate(invalid="ignore"):  # -inf / -inf on NaN/Inf rows: set to -inf below
        out = pos / (neg + 1e-6)
    out[~np.isfinite(out)] = -np.inf
    return out.astype(np.float32)
