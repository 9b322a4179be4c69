"""Chunks of queries through the search: float32 products on every core, each tile of scores
reduced to its block maxima and candidates while it is in cache, exact rescoring of one chunk
while the next one's products run.

No (tokens, queries) score matrix is kept: a worker scores a tile of rows into its own small
buffer, keeps the tile's fine block maxima (for the chunk's final threshold) and every entry
that can still be among the top k (at or above a lower bound of the final threshold), and
reuses the buffer for the next tile. Every entry at or above the final threshold was kept by
its tile, so the chunk's candidates are those of the whole matrix (which entries below it were
kept depends on the order tiles ran in; the answer does not).

BLAS splits each product evenly between its threads and waits for the slowest, so any other
work on the machine (embscope's own rescoring and output included) stalls all of it. For more
than one chunk, BLAS runs one thread per call instead, and workers (one per core) take tiles
from a queue: a worker that loses its core to other work simply takes fewer tiles. The main
thread meanwhile selects, rescores and ranks the previous chunk and hands it to the caller.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from embscope.analysis.search import (FINE, coarse_maxima, error_bound, exact_scores, exclusion_pairs, norms64,
                                      refine, threshold, tile_candidates, top_k)


@dataclass
class Chunk:
    """A chunk of queries: what the workers fill, and what rescoring reads."""

    queries: np.ndarray  # (c, d) float32
    unit: np.ndarray  # (c, d) float32: what the products use (unit rows for cosine)
    q64: np.ndarray  # (c, d) float64
    q_norms: np.ndarray  # (c,) norms64
    margin: np.ndarray  # (c,) error_bound
    excluded: tuple[np.ndarray, np.ndarray]  # (rows, cols) left out
    fine: np.ndarray  # (n_pad / FINE, c) float32 fine block maxima of every tile
    bound: np.ndarray  # (c,) float64, the largest threshold of the tiles done: a lower bound of the final one
    slot: int  # which of the index's two block-maxima buffers
    found: list = field(default_factory=list)  # (rows, cols, float32 scores) kept by each tile


def new_chunk(index, queries: np.ndarray, exclude, metric: str, slot: int) -> Chunk:
    """A chunk of checked queries (c, d) float32, before its products."""
    from embscope.analysis.similarity import unit

    q64 = queries.astype(np.float64)
    q_norms = norms64(q64)
    margin = error_bound(metric, queries.shape[1], q_norms, index.max_norm)
    return Chunk(queries, unit(queries) if metric == "cosine" else queries, q64, q_norms, margin,
                 exclusion_pairs(exclude, index.n), index.maxima_buffer(len(queries), slot),
                 np.full(len(queries), -np.inf), slot)


def products(index, chunk: Chunk, k: int, metric: str, plan, start: int, stop: int,
             halt: threading.Event | None = None) -> None:
    """Rows [start, stop) of a chunk: products, block maxima, candidates (skipped once `halt` is set)."""
    if halt is not None and halt.is_set():
        return
    clock = index.stages
    rows = index.tile_rows(plan, start, stop)
    step = index.sub_tile(len(chunk.queries), k)
    for a in range(0, len(rows), step):
        lo, hi = start + a, min(stop, start + a + step)
        s = tile_buffer(-(-(hi - lo) // FINE) * FINE, len(chunk.queries))  # (t_pad, c)
        with clock("products"):
            index.product_tile(rows[a:a + step], lo, hi, chunk.unit, metric, plan, s)
        with clock("tile candidates"):
            index.mask(s, lo, hi, chunk.excluded, metric)
            fine = chunk.fine[lo // FINE:lo // FINE + len(s) // FINE]  # (t_pad / FINE, c)
            np.max(s.reshape(len(fine), FINE, -1), axis=1, out=fine)
            r, c, v = tile_candidates(s, fine, k, chunk.margin, chunk.bound)
            chunk.found.append((r + lo, c, v))


def tile_buffer(rows: int, c: int) -> np.ndarray:
    """(rows, c) float32 score buffer of this thread, reused from tile to tile (a fresh array
    for every tile would cost its page faults every time)."""
    buf = getattr(_local, "buf", None)
    if buf is None or buf.size < rows * c:
        buf = _local.buf = np.empty(rows * c, dtype=np.float32)
    return buf[:rows * c].reshape(rows, c)


_local = threading.local()


def finish(index, chunk: Chunk, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The exact stage: the final threshold from all block maxima, the candidates at or above
    it, float64 rescoring, ranking."""
    clock, c = index.stages, len(chunk.queries)
    with clock("selection"):
        theta = np.maximum(threshold(chunk.fine, coarse_maxima(chunk.fine), k, chunk.margin), chunk.bound)
        parts = chunk.found or [(np.empty(0, np.int64),) * 2 + (np.empty(0, np.float32),)]
        rows, cols, vals = (np.concatenate(p) for p in zip(*parts))
        keep = vals >= theta[cols]
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
        if len(rows) > 2 * k * c:  # neighbours crowded in few blocks: the k-th candidate bounds better
            rows, cols = refine(rows, cols, vals, theta, chunk.margin, k, c)
        rows, cols = index.forced(rows, cols, chunk.excluded, c, metric)
    with clock("rescoring"):
        exact = exact_scores(index.matrix.take, chunk.q64, chunk.q_norms, rows, cols, metric, index.exact_norms)
    with clock("ranking"):
        return top_k(rows, cols, exact, c, k, ascending=metric == "euclidean")


def search_chunks(index, chunks: Iterable[tuple[np.ndarray, list | None]], k: int, metric: str, plan
                  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids (c, k) int64, scores (c, k) float32) of each chunk of (checked queries (c, d),
    left-out ids per query), in order; id -1 and score NaN past the last neighbour."""
    chunks = iter(chunks)
    first = next(chunks, None)
    second = next(chunks, None)
    if first is None:
        return
    index.ready(metric, plan)
    if second is None:  # one chunk: BLAS's own threads, no pool
        chunk = new_chunk(index, *first, metric, 0)
        for start, stop in index.tiles(plan, 1, k):
            products(index, chunk, k, metric, plan, start, stop)
        yield finish(index, chunk, k, metric)
        return
    yield from _pooled(index, chunks, first, second, k, metric, plan)


def _pooled(index, chunks, first, second, k, metric, plan):
    """Two chunks are in flight: one is rescored here while the workers compute the other's
    tiles, and the tiles of the one after are queued as soon as its buffer is free."""
    from concurrent.futures import ThreadPoolExecutor

    halt = threading.Event()
    with single_threaded_blas() as workers, ThreadPoolExecutor(workers, thread_name_prefix="embscope") as pool:
        tiles = index.tiles(plan, workers, k)
        flight: deque = deque()

        def submit(item, slot: int) -> None:
            chunk = new_chunk(index, *item, metric, slot)
            flight.append((chunk, [pool.submit(products, index, chunk, k, metric, plan, a, b, halt)
                                   for a, b in tiles]))

        try:
            submit(first, 0)
            submit(second, 1)
            while flight:
                chunk, jobs = flight.popleft()
                for job in jobs:
                    job.result()
                found = finish(index, chunk, k, metric)
                item = next(chunks, None)
                if item is not None:
                    submit(item, chunk.slot)  # the buffer just ranked
                yield found
        finally:
            halt.set()  # a consumer that stops early (or Ctrl-C) waits for the tiles running, not a chunk


def worker_count() -> int:
    """CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@contextmanager
def single_threaded_blas():
    """The number of workers to run products in: one per CPU, BLAS limited to one thread each
    (threadpoolctl) while the context lasts; 1 (BLAS's own threads) where that cannot be done."""
    cpus = worker_count()
    if cpus < 2:
        yield 1
        return
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
        yield cpus if blas and all(lib["num_threads"] == 1 for lib in blas) else 1
