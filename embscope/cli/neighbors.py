"""`embscope neighbors`: nearest tokens to a word, an id, or an analogy; batch from stdin."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from embscope.cli.common import (
    FormatOpt, ModelSource, model_command, note, stdin_lines, token_label, warn_bad_rows, writer,
)


@model_command
def neighbors(
    source: ModelSource,
    query: Annotated[Optional[list[str]], typer.Argument(
        metavar="QUERY...", help="Word, '#id', or arithmetic: king - man + woman. '-' reads one query per line from stdin.",
        show_default=False)] = None,
    top: Annotated[int, typer.Option("--top", "-k", help="How many neighbours.")] = 10,
    metric: Annotated[str, typer.Option("--metric", help="cosine, dot or euclidean.")] = "cosine",
    exact: Annotated[bool, typer.Option("--exact", help="Use the text as typed: no leading-space variant.")] = False,
    include_query: Annotated[bool, typer.Option("--include-query", help="Keep the query tokens in the results.")] = False,
    cosmul: Annotated[bool, typer.Option("--cosmul", help="3CosMul instead of 3CosAdd for arithmetic (cosine only).")] = False,
    all_tokens: Annotated[bool, typer.Option("--all", help="The k-NN graph of the whole vocabulary, streamed.")] = False,
    rows: Annotated[Optional[str], typer.Option("--rows", metavar="A:B", help="With --all: only tokens A..B-1 (split the graph across runs).")] = None,
    format: FormatOpt = None,
):
    """Nearest tokens to a query in the token embedding space."""
    from embscope.analysis.similarity import check_metric
    from embscope.errors import UsageError

    check_metric(metric)
    if top < 1:
        raise UsageError(f"--top must be at least 1 (got {top})")
    if cosmul and metric != "cosine":
        raise UsageError("--cosmul works with --metric cosine only")
    if all_tokens and query:
        raise UsageError("--all takes no query")
    if rows is not None and not all_tokens:
        raise UsageError("--rows goes with --all")
    if not all_tokens and not query:
        raise UsageError("give a query (a word, '#id', or '-' to read queries from stdin)")
    emb = source.load()
    if top > emb.n_tokens:
        raise UsageError(f"--top {top} is more than the model's {emb.n_tokens} tokens")
    from embscope.analysis.similarity import Index

    index = Index(emb.wte, emb.n_tokens)
    if all_tokens:
        from embscope.analysis.positions import parse_range

        start, stop = parse_range(rows, emb.n_tokens, option="--rows")
        warn_bad_rows(index.bad_rows(), "left out")
        return _all(emb, index, top, metric, format, start, stop)
    if query == ["-"]:
        return _batch(emb, index, top, metric, exact, include_query, cosmul, format)
    from embscope import queries

    q = queries.resolve(emb, query, exact)
    answers = list(_answer(emb, index, [q], top, metric, include_query, cosmul))  # errors before output
    warn_bad_rows(index.bad_rows(), "left out")  # after: a query that is a NaN row is one error line
    _describe(emb, q)
    out = writer(format, ["rank", "id", "token", "score"], title=f"neighbors of {q.text} ({metric})")
    for ids, scores in answers:
        for rank, (i, s) in enumerate(zip(ids, scores), 1):
            out.write({"rank": rank, "id": int(i), "token": token_label(emb, int(i)), "score": float(s)})
    out.close()


def _describe(emb, q) -> None:
    for t in q.terms:
        if t.multi:
            parts = ", ".join(f"{token_label(emb, i)!r} #{i}" for i in t.ids)
            note(f"'{t.text}' is {len(t.ids)} tokens ({parts}): using the mean of their vectors")


def _answer(emb, index, qs, top, metric, include_query, cosmul):
    """(ids, scores) per query, in order. Plain queries share one blocked matrix product."""
    import numpy as np

    from embscope import queries
    from embscope.analysis.similarity import QUERY_CHUNK, analogy_vector, cosmul_scores
    from embscope.analysis.topk import topk_rows

    vectors, exclude, results = [], [], {}
    for n, q in enumerate(qs):
        pos = [queries.term_vector(emb, t) for t in q.positive]
        neg = [queries.term_vector(emb, t) for t in q.negative]
        skip = [] if include_query else q.ids
        if cosmul and len(q.terms) > 1:
            s = cosmul_scores(index, pos, neg)[None, :]
            if skip:
                s[0, skip] = -np.inf
            ids, vals = topk_rows(s, top)
            keep = ids[0] >= 0
            results[n] = (ids[0][keep], vals[0][keep])
        elif len(q.terms) == 1 and pos:
            vectors.append((n, pos[0]))
            exclude.append(skip)
        else:
            vectors.append((n, analogy_vector(pos, neg, metric)))
            exclude.append(skip)
    if vectors:
        matrix = np.stack([v for _, v in vectors])
        if len(matrix) > QUERY_CHUNK:  # several matrix products: convert / normalise rows once
            index.prepare(metric)
        for j, ids, vals in index.nearest(matrix, top, metric, exclude):
            results[vectors[j][0]] = (ids, vals)
    for n in range(len(qs)):
        yield results.pop(n)


def _batch(emb, index, top, metric, exact, include_query, cosmul, format):
    from embscope import queries
    from embscope.errors import EmbscopeError

    lines = stdin_lines()
    qs = []
    bad = set(index.bad_rows().tolist())
    for n, line in enumerate(lines, 1):
        try:
            q = queries.resolve(emb, [line], exact)
            if bad & set(q.ids):
                raise EmbscopeError("the query vector holds NaN or Inf (its token rows are not finite)")
        except EmbscopeError as e:
            raise EmbscopeError(f"stdin line {n}: {e}") from None
        qs.append(q)
    if not qs:
        raise EmbscopeError("no queries on stdin")
    from embscope.display import escape

    answers = list(_answer(emb, index, qs, top, metric, include_query, cosmul))  # errors before output
    warn_bad_rows(index.bad_rows(), "left out")
    out = writer(format, ["query", "rank", "id", "token", "score"], title=f"neighbors ({metric})")
    for q, (ids, scores) in zip(qs, answers):
        text = escape(q.text.encode())  # a line from stdin may hold ESC or bidi controls
        for rank, (i, s) in enumerate(zip(ids.tolist(), scores.tolist()), 1):
            out.write_values((text, rank, i, token_label(emb, i), s))
    out.close()


def _all(emb, index, top, metric, format, first, last):
    """Every token's (in [first, last)) k nearest tokens, streamed block by block."""
    import numpy as np

    from embscope.analysis.similarity import QUERY_CHUNK

    out = writer(format, ["id", "token", "rank", "neighbor_id", "neighbor", "score"])
    labels = [token_label(emb, i) for i in range(emb.n_tokens)]
    if last - first > QUERY_CHUNK:
        index.prepare(metric)
    with _progress(last - first) as advance:
        for start in range(first, last, QUERY_CHUNK):
            stop = min(last, start + QUERY_CHUNK)
            queries = np.arange(start, stop)
            if len(index.bad_rows()):  # NaN/Inf rows were reported; they get no neighbours either
                queries = queries[~np.isin(queries, index.bad_rows())]
            block = emb.wte.rows(start, stop) if len(queries) == stop - start else emb.wte.take(queries)
            exclude = [[int(i)] for i in queries]
            rows = []
            for j, ids, vals in index.nearest(np.asarray(block), top, metric, exclude):
                i = int(queries[j])
                rows += [(i, labels[i], rank, n, labels[n], s)
                         for rank, (n, s) in enumerate(zip(ids.tolist(), vals.tolist()), 1)]
            out.write_rows(rows)
            advance(stop - start)
    out.close()


class _progress:
    """A progress bar on stderr when stderr is a terminal; silent otherwise."""

    def __init__(self, total: int):
        self.total = total
        self._bar = None

    def __enter__(self):
        if sys.stderr.isatty():
            from rich.progress import Progress

            from embscope.output import stderr_console

            self._bar = Progress(console=stderr_console(), transient=True)
            self._bar.start()
            task = self._bar.add_task("k-NN graph", total=self.total)
            return lambda n: self._bar.advance(task, n)
        return lambda n: None

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.stop()
        return False
