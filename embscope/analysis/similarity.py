"""The searchable rows of a token matrix: their norms and other facts (computed once), the memory
plan of a search (chunk size, prepared copy), and the float32 products of a tile of rows. The
search itself (candidates, exact rescoring) is in `search` and `pipeline`."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from embscope.analysis.norms import row_norms
from embscope.analysis.pipeline import search_chunks, worker_count
from embscope.analysis.search import COARSE, FINE, norms64, padded
from embscope.errors import EmbscopeError, ScoreOverflowError
from embscope.io.matrix import Matrix
from embscope.timing import Stages

METRICS = ("cosine", "dot", "euclidean")
FLOAT32_SAFE = 1e38  # below float32's largest value (3.4e38)
QUERY_CHUNK = 512  # queries scored at once
MIN_CHUNK = 16  # the fewest queries per chunk, however small the memory budget
COPY_MIN_CHUNK = 64  # the prepared copy is kept when it leaves room for chunks of this many queries
TILE = 8192  # rows per product: a (TILE, 512) float32 tile of scores (16 MiB), reduced right after it is made
SCORE_TILE = TILE * QUERY_CHUNK * 4  # bytes of a worker's tile of scores at most (fewer rows for bigger chunks)
EXACT_NORMS_SHARE = 8  # from n / 8 queries on (a graph, big batches) all rows' exact norms in one pass;
# fewer queries compute the norms of their candidates (a row range of a 128k-token model)
EINSUM_QUERIES = 2  # products of this few queries go through einsum, not BLAS
TINY_NORM = 2.0 ** -50  # shorter nonzero rows are always scored exactly (float32 unit vectors lose them)


def unit(v: np.ndarray) -> np.ndarray:
    """Rows of `v` scaled to length 1 (zero rows stay zero)."""
    with np.errstate(over="ignore"):
        n = np.linalg.norm(v, axis=-1, keepdims=True)
    if np.isposinf(n).any():  # float32 squares past ~1e19 overflow: that would scale to zero
        n = np.linalg.norm(np.asarray(v, dtype=np.float64), axis=-1, keepdims=True)
        return (v / np.where(n == 0, 1, n)).astype(np.result_type(v, np.float32))
    return v / np.where(n == 0, 1, n)


@dataclass
class Plan:
    """How a search of some queries runs: queries per chunk, and the row source of the products."""

    chunk: int  # queries scored at once
    prepared: bool  # rows come from the prepared float32 copy (unit rows for cosine)


@dataclass
class Index:
    """The first `n` rows of a token matrix, ready to be searched. `budget`: bytes the prepared
    copy and the buffers of a search may take (None: `memory.default_budget()` when first needed)."""

    matrix: Matrix  # (V, d)
    n: int  # rows [0, n) are searchable (the rest is vocabulary padding)
    budget: int | None = None
    _norms: np.ndarray | None = field(default=None, repr=False)
    _inverse: np.ndarray | None = field(default=None, repr=False)
    _bad: np.ndarray | None = field(default=None, repr=False)
    _tiny: np.ndarray | None = field(default=None, repr=False)
    _half: np.ndarray | None = field(default=None, repr=False)
    exact_norms: np.ndarray | None = field(default=None, repr=False)  # (n,) norms64, made for many queries
    _dense: tuple[str, np.ndarray] | None = field(default=None, repr=False)  # (metric, (n, d) float32)
    _scratch: list = field(default_factory=lambda: [None, None], repr=False)  # two buffers of block maxima, reused
    stages: Stages = field(default_factory=Stages, repr=False)  # seconds per stage of the searches

    # --- row facts, computed once -------------------------------------------------------------

    @property
    def norms(self) -> np.ndarray:
        """L2 norm of each searchable row, float32 (n,); computed once, in blocks."""
        if self._norms is None:
            with self.stages("norms"):
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

    def tiny_rows(self) -> np.ndarray:
        """Ids of nonzero rows shorter than TINY_NORM: float32 unit vectors (and float32 norms,
        whose squares underflow) lose them, so they are scored exactly for every query."""
        if self._tiny is None:
            short = np.flatnonzero(self.norms < TINY_NORM)
            self._tiny = short[(self.matrix.take(short) != 0).any(axis=1)] if len(short) else short
        return self._tiny

    @property
    def max_norm(self) -> float:
        """Longest finite row, a little more (float32 norms err by far less than 1e-3)."""
        finite = self.norms[np.isfinite(self.norms)]
        return float(finite.max()) * (1 + 1e-3) if finite.size else 0.0

    # --- memory ---------------------------------------------------------------------------------

    def memory_budget(self) -> int:
        if self.budget is None:
            from embscope.memory import default_budget

            self.budget = default_budget()
        return self.budget

    def plan(self, n_queries: int, metric: str) -> Plan:
        """Queries per chunk, and whether to keep a prepared float32 copy of the rows (unit rows
        for cosine), within the memory budget: per query, its fine block maxima and its column
        of every worker's tile of scores; several chunks use two buffers of block maxima (one is
        filled while the other is rescored). The copy is kept when it fits beside buffers for
        COPY_MIN_CHUNK queries; half-precision rows without it are converted once per chunk, so
        chunks then grow to what the budget holds."""
        budget = self.memory_budget()
        fine = padded(self.n) // FINE * 4  # a query's fine block maxima
        tile = worker_count() * min(TILE, padded(self.n)) * 4  # its part of the workers' tiles of scores
        chunk = min(n_queries, QUERY_CHUNK)
        prepared = bool(self._dense and self._dense[0] == metric)
        if n_queries <= max(MIN_CHUNK, budget // (fine + tile)) and n_queries <= chunk:  # one chunk
            return Plan(max(1, n_queries), prepared)
        per_query = 2 * fine + tile  # two buffers of block maxima
        if metric == "cosine" and self.exact_norms is None and n_queries * EXACT_NORMS_SHARE >= self.n:
            with self.stages("norms"):
                self.exact_norms = self._exact_norms()
        copy = self.n * self.matrix.shape[1] * 4
        useful = metric == "cosine" or self.matrix.dtype != "F32"
        if not prepared and useful and copy + min(chunk, COPY_MIN_CHUNK) * per_query <= budget:
            with self.stages("prepared copy"):
                self._prepare(metric)
            prepared = True
        room = max(0, budget - copy) if prepared else budget
        if self.matrix.dtype != "F32" and not prepared:  # each chunk converts every row once: big chunks
            chunk = n_queries
        # Past QUERY_CHUNK queries the workers' tiles stop growing (sub_tile), so more would fit;
        # but their rows then shrink, and each tile keeps about k candidates a query: measured
        # (issue 16, target 8c), such chunks were slower and took 1.5 times the memory.
        return Plan(max(MIN_CHUNK, min(chunk, room // per_query)), prepared)

    def _prepare(self, metric: str) -> None:
        """Keep the rows as one float32 array, unit rows for cosine: each chunk of queries is then
        one product per tile with no conversion or scaling pass."""
        dense = np.empty((self.n, self.matrix.shape[1]), dtype=np.float32)
        inverse = self.inverse_norms if metric == "cosine" else None
        for start, block in self._blocks():
            out = dense[start:start + len(block)]
            if inverse is None:
                out[...] = block
            else:
                with np.errstate(invalid="ignore"):  # Inf rows (inverse norm 0): NaN, never ranked
                    np.multiply(block, inverse[start:start + len(block), None], out=out)
        self._dense = (metric, dense)

    def _exact_norms(self) -> np.ndarray:
        """(n,) float64 `norms64` of every row: each row's bits are those rescoring would compute."""
        out = np.empty(self.n, dtype=np.float64)
        buf = np.empty((1024, self.matrix.shape[1]), dtype=np.float64)  # reused: no page faults
        for a in range(0, self.n, len(buf)):
            rows = buf[:min(self.n - a, len(buf))]
            rows[...] = self.matrix.rows(a, a + len(rows))
            out[a:a + len(rows)] = norms64(rows)
        return out

    def _blocks(self):
        """(start, float32 rows) over the searchable rows, about 32 MiB at a time."""
        step = self.matrix.block_rows()
        for start in range(0, self.n, step):
            yield start, self.matrix.rows(start, min(self.n, start + step))

    def maxima_buffer(self, chunk: int, slot: int = 0) -> np.ndarray:
        """(n_pad / FINE, chunk) float32 for the fine block maxima of a chunk, carved from one of
        two reused buffers (`slot` 0 or 1); blocks of padding rows only hold -inf. Valid until
        the next call with that slot."""
        blocks = padded(self.n) // FINE
        if self._scratch[slot] is None or self._scratch[slot].size < blocks * chunk:
            self._scratch[slot] = np.empty(blocks * chunk, dtype=np.float32)
        fine = self._scratch[slot][:blocks * chunk].reshape(blocks, chunk)
        fine[-(-self.n // FINE):] = -np.inf
        return fine

    def sub_tile(self, chunk: int, k: int) -> int:
        """Rows of scores a worker computes at once for a chunk of queries: TILE rows, fewer when
        that is more than SCORE_TILE bytes, in whole fine blocks and at least k of them (a tile's
        own threshold is its k-th largest block maximum)."""
        return FINE * max(k, min(TILE, SCORE_TILE // (4 * chunk)) // FINE, 1)

    # --- searching ------------------------------------------------------------------------------

    def check_queries(self, queries: np.ndarray, metric: str) -> np.ndarray:
        """(q, d) float32 query vectors, refused when they hold NaN or Inf or (dot, euclidean)
        are long enough to overflow float32 scores."""
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if not np.isfinite(q).all():
            raise EmbscopeError("the query vector holds NaN or Inf (its token rows are not finite)")
        if metric != "cosine":
            self._check_range(q, metric)
        return q

    def nearest(self, queries: np.ndarray, k: int, metric: str, exclude: list[list[int]] | None = None):
        """Top-k per query: yields (query index, ids (k,), scores (k,)) in query order, ties to
        the smaller id. Euclidean scores are distances (positive, ascending)."""
        q = self.check_queries(queries, metric)
        plan = self.plan(len(q), metric)
        starts = range(0, len(q), plan.chunk)
        chunks = ((q[a:a + plan.chunk], None if exclude is None else exclude[a:a + plan.chunk]) for a in starts)
        for start, (ids, scores) in zip(starts, search_chunks(self, chunks, k, metric, plan)):
            for i in range(len(ids)):
                keep = ids[i] >= 0
                yield start + i, ids[i][keep], scores[i][keep]

    def tiles(self, plan: Plan, workers: int = 1, k: int = 1) -> list[tuple[int, int]]:
        """Row ranges [start, stop) the products go by: whole coarse blocks, at most TILE rows and
        at least four per worker; converted half-precision blocks of about 32 MiB when there is no
        copy; and at least k blocks of FINE rows (a tile with fewer rows than k would keep all
        its entries as candidates)."""
        if plan.prepared or self.matrix.dtype == "F32":
            step = min(TILE, max(COARSE, padded(-(-self.n // (4 * workers)))))  # at least 4 per worker
        else:
            step = max(COARSE, self.matrix.block_rows() // COARSE * COARSE)
        step = max(step, padded(FINE * k))
        return [(a, min(self.n, a + step)) for a in range(0, self.n, step)]

    def tile_rows(self, plan: Plan, start: int, stop: int) -> np.ndarray:
        """float32 rows [start, stop) (t, d): of the prepared copy, the float32 memory map, or
        converted from half precision."""
        if plan.prepared:
            return self._dense[1][start:stop]
        if self.matrix.dtype == "F32":
            return self.matrix.raw[start:stop]
        with self.stages("conversion"):
            return self.matrix.rows(start, stop)

    def ready(self, metric: str, plan: Plan) -> None:
        """Compute now the row facts the products of a tile read (workers then only read them)."""
        self.bad_rows()
        if metric == "cosine":
            self.tiny_rows()
            self.inverse_norms
        elif metric == "euclidean":
            self.half_squares

    def product_tile(self, rows: np.ndarray, start: int, stop: int, queries: np.ndarray, metric: str,
                     plan: Plan, s: np.ndarray) -> None:
        """float32 selection scores of `rows` (rows [start, stop), (t, d)) against `queries`
        (c, d) (unit rows for cosine) into s[:t] (t_pad, c), larger is nearer (cosine; dot;
        q.w - |w|^2 / 2 for euclidean); the padding rows s[t:] -inf."""
        t = stop - start
        with np.errstate(invalid="ignore", over="ignore"):  # NaN/Inf rows: -inf in `mask`
            product(rows, queries, s[:t])
            if metric == "cosine" and not plan.prepared:
                s[:t] *= self.inverse_norms[start:stop, None]
            elif metric == "euclidean":
                s[:t] -= self.half_squares[start:stop, None]
        s[t:] = -np.inf

    def mask(self, s: np.ndarray, start: int, stop: int, excluded: tuple[np.ndarray, np.ndarray], metric: str
             ) -> None:
        """-inf in the scores s (t_pad, c) of rows [start, stop) for NaN/Inf rows, for tiny rows
        (cosine: their float32 unit vectors can be several times too long, and such a score would
        raise the thresholds above true neighbours; they are candidates anyway), and for the
        excluded (row, query) pairs (rows, cols), sorted by row."""
        for skip in (self.bad_rows(), self.tiny_rows() if metric == "cosine" else ()):
            if len(skip):
                b0, b1 = np.searchsorted(skip, [start, stop])
                s[skip[b0:b1] - start] = -np.inf
        ex_rows, ex_cols = excluded
        e0, e1 = np.searchsorted(ex_rows, [start, stop])
        s[ex_rows[e0:e1] - start, ex_cols[e0:e1]] = -np.inf

    @property
    def half_squares(self) -> np.ndarray:
        """|w|^2 / 2 per row, float32 (n,): euclidean selection scores are q.w - |w|^2 / 2."""
        if self._half is None:
            with np.errstate(over="ignore"):
                self._half = (self.norms * self.norms / 2).astype(np.float32)
        return self._half

    def forced(self, rows, cols, excluded, c: int, metric: str):
        """Candidates (rows, cols) with the tiny rows (cosine) added for each of the c queries that
        does not exclude them (their float32 scores mean nothing), each pair once."""
        tiny = self.tiny_rows() if metric == "cosine" else ()
        if not len(tiny):
            return rows, cols
        other = ~np.isin(rows, tiny)
        r = np.repeat(tiny, c)
        q = np.tile(np.arange(c), len(tiny))
        ex_rows, ex_cols = excluded
        keep = ~np.isin(r * c + q, ex_rows * c + ex_cols)
        return np.concatenate([rows[other], r[keep]]), np.concatenate([cols[other], q[keep]])

    def scores(self, queries: np.ndarray, metric: str) -> np.ndarray:
        """(q, n) float32 scores, larger is nearer: cosine, dot, or minus the euclidean distance
        (for 3CosMul, which combines every row's cosines)."""
        q = self.check_queries(queries, metric)
        qa = unit(q) if metric == "cosine" else q
        out = np.empty((len(q), self.n), dtype=np.float32)
        plan = Plan(len(q), bool(self._dense and self._dense[0] == metric))
        with np.errstate(invalid="ignore", over="ignore"):  # NaN/Inf rows: reported, ranked last
            for start, stop in self.tiles(plan):
                s = out[:, start:stop]
                product(self.tile_rows(plan, start, stop), qa, s.T)
                if metric == "cosine" and not plan.prepared:
                    s *= self.inverse_norms[start:stop]
            if metric == "euclidean":
                out = -euclidean(np.einsum("ij,ij->i", q, q), self.norms**2, out).astype(np.float32)
        out[:, self.bad_rows()] = -np.inf  # rows holding NaN or Inf never rank
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


def product(rows: np.ndarray, queries: np.ndarray, out: np.ndarray) -> None:
    """out (t, q) = rows (t, d) @ queries (q, d).T in float32. A query or two: einsum, one pass
    over the rows at memory speed (BLAS's gemv hands the work to its threads and waits for them,
    5 to 20 times longer on a busy machine); more: BLAS."""
    if len(queries) <= EINSUM_QUERIES:
        np.einsum("ij,qj->iq", rows, queries, out=out)
    else:
        np.matmul(rows, queries.T, out=out)


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
