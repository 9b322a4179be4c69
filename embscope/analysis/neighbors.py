"""Nearest tokens: answering resolved queries, and the k-NN graph of a range of tokens."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np

from embscope.analysis.pipeline import search_chunks
from embscope.analysis.similarity import Index, analogy_vector, cosmul_scores
from embscope.analysis.topk import topk_rows
from embscope.queries import Query, term_vector


def answer(emb, index: Index, qs: list[Query], k: int, metric: str = "cosine",
           include_query: bool = False, cosmul: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(ids (k,), scores (k,)) per query, in order, streamed as chunks of queries are answered
    (every error is raised before the first). Plain queries share one blocked matrix product;
    arithmetic is 3CosAdd (or 3CosMul with `cosmul`); the query's own tokens are left out unless
    `include_query`. Euclidean scores are distances (ascending)."""
    one = {n: q.terms[0].ids[0] for n, q in enumerate(qs)
           if len(q.terms) == 1 and q.terms[0].sign > 0 and len(q.terms[0].ids) == 1}  # a token's own row
    vectors, order, exclude, ready = {}, [], [], {}
    for n, q in enumerate(qs):
        skip = [] if include_query else q.ids
        if n not in one:
            pos = [term_vector(emb, t) for t in q.positive]
            neg = [term_vector(emb, t) for t in q.negative]
            if cosmul and len(q.terms) > 1:
                ready[n] = _cosmul(index, pos, neg, skip, k)
                continue
            vectors[n] = pos[0] if len(q.terms) == 1 and pos else analogy_vector(pos, neg, metric)
        order.append(n)
        exclude.append(skip)
    found = index.nearest(_query_rows(emb, one, vectors, order), k, metric, exclude) if order else iter(())
    found = itertools.chain([next(found)], found) if order else found  # its checks run before any answer
    for n in range(len(qs)):
        if n in ready:
            yield ready[n]
        else:
            _, ids, scores = next(found)
            yield ids, scores


def _query_rows(emb, one: dict, vectors: dict, order: list) -> np.ndarray:
    """(len(order), d) float32 query vectors: the rows of single-token queries (`one`: query ->
    token id) taken at once, the others' `vectors` placed among them."""
    if len(one) == len(order):
        return emb.wte.take([one[n] for n in order])
    out = np.empty((len(order), emb.wte.shape[1]), dtype=np.float32)
    at = {n: i for i, n in enumerate(order)}
    if one:
        out[[at[n] for n in one]] = emb.wte.take(list(one.values()))
    for n, v in vectors.items():
        out[at[n]] = v
    return out


def _cosmul(index: Index, pos, neg, skip, k: int) -> tuple[np.ndarray, np.ndarray]:
    s = cosmul_scores(index, pos, neg)[None, :]  # (1, n)
    if skip:
        s[0, skip] = -np.inf
    ids, vals = topk_rows(s, k)
    keep = ids[0] >= 0
    return ids[0][keep], vals[0][keep]


def knn_blocks(index: Index, k: int, metric: str, start: int, stop: int
               ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The k nearest other tokens of every token in [start, stop), a chunk of tokens at a time:
    yields (token ids (b,), neighbour ids (b, k), scores (b, k)), id -1 and score NaN past the
    last neighbour. Rows holding NaN or Inf get no neighbours and are never one."""
    plan = index.plan(stop - start, metric)
    bad = index.bad_rows()
    blocks = []

    def chunks():
        for a in range(start, stop, plan.chunk):
            b = min(stop, a + plan.chunk)
            ids = np.arange(a, b)
            if len(bad):
                ids = ids[~np.isin(ids, bad)]
            blocks.append(ids)
            rows = index.matrix.rows(a, b) if len(ids) == b - a else index.matrix.take(ids)  # (b, d)
            yield index.check_queries(rows, metric), [[int(i)] for i in ids]

    for found, scores in search_chunks(index, chunks(), k, metric, plan):
        yield blocks.pop(0), found, scores
