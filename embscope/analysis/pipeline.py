"""Many chunks of queries through the search: float32 products on every core, exact rescoring
of one chunk while the next one's products run.

BLAS splits each product evenly between its threads and waits for the slowest, so any other
work on the machine (embscope's own rescoring and output included) stalls all of it. Here BLAS
runs one thread per call instead, and workers (one per core) take tiles of rows from a queue:
a worker that loses its core to other work simply takes fewer tiles. Each tile's block maxima
are taken by the worker that computed it, while the tile is in cache. The main thread
meanwhile selects, rescores and ranks the previous chunk and hands it to the caller.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from embscope.analysis.search import (candidates, coarse_maxima, error_bound, exact_scores, exclusion_pairs,
                                      norms64, refine, threshold, top_k)


@dataclass
class Chunk:
    """A chunk of queries and its buffers: what the products fill and rescoring reads."""

    queries: np.ndarray  # (c, d) float32
    unit: np.ndarray  # (c, d) float32: what the products use (unit rows for cosine)
    q64: np.ndarray  # (c, d) float64
    q_norms: np.ndarray  # (c,) norms64
    margin: np.ndarray  # (c,) error_bound
    excluded: tuple[np.ndarray, np.ndarray]  # (rows, cols) left out
    scores: np.ndarray  # (n_pad, c) float32 selection scores
    fine: np.ndarray  # (n_pad / FINE, c) their fine block maxima
    slot: int  # which of the index's two buffers


def new_chunk(index, queries: np.ndarray, exclude, metric: str, slot: int) -> Chunk:
    """A chunk of checked queries (c, d) float32, before its products."""
    from embscope.analysis.similarity import unit

    q64 = queries.astype(np.float64)
    q_norms = norms64(q64)
    margin = error_bound(metric, queries.shape[1], q_norms, index.max_norm)
    scores, fine = index.buffers(len(queries), slot)
    return Chunk(queries, unit(queries) if metric == "cosine" else queries, q64, q_norms, margin,
                 exclusion_pairs(exclude, index.n), scores, fine, slot)


def products(index, chunk: Chunk, metric: str, plan, start: int, stop: int, halt: threading.Event | None = None
             ) -> None:
    """The float32 stage of rows [start, stop) of a chunk (skipped once `halt` is set)."""
    if halt is None or not halt.is_set():
        index.product_tile(start, stop, chunk.unit, metric, plan, chunk.excluded, chunk.scores, chunk.fine)


def finish(index, chunk: Chunk, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The exact stage: candidates from the block maxima, float64 rescoring, ranking."""
    clock, c = index.stages, len(chunk.queries)
    with clock("selection"):
        coarse = coarse_maxima(chunk.fine)
        theta = threshold(chunk.fine, coarse, k, chunk.margin)
        rows, cols = candidates(chunk.scores, chunk.fine, coarse, theta)
        rows, cols = index.forced(rows, cols, chunk.scores, metric)
        if len(rows) > 2 * k * c:  # neighbours crowded in few blocks: the k-th candidate bounds better
            rows, cols = refine(rows, cols, chunk.scores, theta, chunk.margin, k, c)
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
        for start, stop in index.tiles(plan):
            products(index, chunk, metric, plan, start, stop)
        yield finish(index, chunk, k, metric)
        return
    yield from _pooled(index, chunks, first, second, k, metric, plan)


def _pooled(index, chunks, first, second, k, metric, plan):
    """Two chunks are in flight: one is rescored here while the workers compute the other's
    tiles, and the tiles of the one after are queued as soon as its buffer is free."""
    from concurrent.futures import ThreadPoolExecutor

    halt = threading.Event()
    with single_threaded_blas() as workers, ThreadPoolExecutor(workers, thread_name_prefix="embscope") as pool:
        tiles = index.tiles(plan, workers)
        flight: deque = deque()

        def submit(item, slot: int) -> None:
            chunk = new_chunk(index, *item, metric, slot)
            flight.append((chunk, [pool.submit(products, index, chunk, metric, plan, a, b, halt) for a, b in tiles]))

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


@contextmanager
def single_threaded_blas():
    """The number of workers to run products in: one per CPU, BLAS limited to one thread each
    (threadpoolctl) while the context lasts; 1 (BLAS's own threads) where that cannot be done."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        from threadpoolctl import threadpool_info, threadpool_limits
    except ImportError:
        cpus = 1
    if cpus < 2:
        yield 1
        return
    with threadpool_limits(limits=1, user_api="blas"):
        blas = [lib for lib in threadpool_info() if lib["user_api"] == "blas"]
        yield cpus if blas and all(lib["num_threads"] == 1 for lib in blas) else 1
