"""`embscope neighbors`: nearest tokens to a word, an id, or an analogy; batch from stdin."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from embscope.cli.common import (
    FormatOpt, MatrixOpt, ModelSource, OutputOpt, choice, model_command, not_together, note_multi_token,
    output_writer, parse_range, stdin_lines, warn_bad_rows,
)
from embscope.cli.context import Environment


@model_command
def neighbors(
    source: ModelSource,
    env: Environment,
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
    output: OutputOpt = None,
    format: FormatOpt = None,
    matrix: MatrixOpt = "input",
    memory_budget: Annotated[Optional[str], typer.Option(
        "--memory-budget", metavar="SIZE", help="Memory for a prepared float32 copy of the rows and the"
        " buffers of many queries: 512M, 4G, 25% (of the available memory). Default: 25%.")] = None,
):
    """Nearest tokens to a query in the token embedding space."""
    from embscope.analysis.similarity import METRICS
    from embscope.errors import UsageError

    choice("metric", metric, METRICS)
    if top < 1:
        raise UsageError(f"--top must be at least 1 (got {top})")
    if cosmul and metric != "cosine":
        raise UsageError("--cosmul works with --metric cosine only")
    if all_tokens and query:
        raise UsageError("--all takes no query")
    not_together(("--all", all_tokens), ("--exact", exact), ("--include-query", include_query), ("--cosmul", cosmul))
    if rows is not None and not all_tokens:
        raise UsageError("--rows goes with --all")
    if not all_tokens and not query:
        raise UsageError("give a query (a word, '#id', or '-' to read queries from stdin)")
    budget = _budget(memory_budget)
    writer, _ = output_writer(env, output, format)  # a bad -f or -o is a usage error before the model is read
    m = source.load(env, matrix)
    m.memory_budget = budget
    if top > m.n_tokens:
        raise UsageError(f"--top {top} is more than the model's {m.n_tokens} tokens")
    if all_tokens:
        start, stop = parse_range(rows, m.n_tokens, option="--rows")
        warn_bad_rows(env, m.index.bad_rows(), "left out")
        _all(env, m, top, metric, writer, start, stop)
    elif query == ["-"]:
        _batch(env, m, top, metric, exact, include_query, cosmul, writer)
    else:
        _single(env, m, query, top, metric, exact, include_query, cosmul, writer)
    env.debug_note(f"stages: {m.stages.summary()}")


def _budget(text: str | None) -> int | None:
    """--memory-budget in bytes (None: the default share of the available memory)."""
    from embscope.errors import UsageError
    from embscope.memory import SizeError, parse_size

    try:
        return None if text is None else parse_size(text)
    except SizeError as e:
        raise UsageError(f"--memory-budget '{text}': {e.problem}") from None


def _single(env: Environment, m, query, top, metric, exact, include_query, cosmul, writer):
    q = m.query(query, exact)
    found = m.answer([q], top, metric=metric, include_query=include_query, cosmul=cosmul)[0]  # errors before output
    warn_bad_rows(env, m.index.bad_rows(), "left out")  # after: a query that is a NaN row is one error line
    _describe(env, m, q, metric, cosmul, include_query)
    out = writer.start(["rank", "id", "token", "score"], title=f"neighbors of {q.text} ({metric})")
    out.write_rows((n.rank, n.id, n.token, n.score) for n in found)
    out.close()


def _describe(env: Environment, m, q, metric: str, cosmul: bool, include_query: bool) -> None:
    for t in q.terms:
        note_multi_token(env, m, t.text, t.ids)
    if q.side_by_side:
        quote = f"; quoted as one argument, '{q.text}' is one text" if not q.negative else ""
        env.note(f"{q.text}: {side_by_side(q, metric, cosmul, include_query)}{quote}")


def side_by_side(q, metric: str, cosmul: bool, include_query: bool) -> str:
    """How words given side by side (`king queen`) were combined, in words."""
    formula = " ".join(("- " if t.sign < 0 else "+ " if n else "") + t.text for n, t in enumerate(q.terms))
    signs = "positive=[...]" + (", negative=[...]" if q.negative else "")
    if cosmul:
        how = f"3CosMul, as gensim's most_similar_cosmul({signs})"
    elif metric == "cosine":
        how = f"the mean of their unit vectors, as gensim's most_similar({signs})"
    else:
        how = "the sum of the added vectors minus the subtracted ones" if q.negative else "the sum of their vectors"
    return f"read as {formula}: {how}" + ("" if include_query else ", the words left out of the results")


def _batch(env: Environment, m, top, metric, exact, include_query, cosmul, writer):
    import itertools
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from embscope.display import escape
    from embscope.errors import EmbscopeError

    lines = stdin_lines(env)
    with ThreadPoolExecutor(1) as pool:  # norms and the prepared copy while the queries are tokenized
        prepared = pool.submit(m.prepare_search, len(lines), metric)
        with m.stages("tokenisation"):
            qs = m.queries(lines, exact)
        prepared.result()
    bad = set(m.index.bad_rows().tolist())
    for n, q in enumerate(qs, 1):
        if not isinstance(q, EmbscopeError) and bad & set(q.ids):
            q = EmbscopeError("the query vector holds NaN or Inf (its token rows are not finite)")
        if isinstance(q, EmbscopeError):
            raise EmbscopeError(f"stdin line {n}: {q}") from None
    if not qs:
        raise EmbscopeError("no queries on stdin")
    answers = m.answer_iter(qs, top, metric=metric, include_query=include_query, cosmul=cosmul)
    first = next(answers)  # errors before output
    warn_bad_rows(env, m.index.bad_rows(), "left out")
    out = writer.start(["query", "rank", "id", "token", "score"], title=f"neighbors ({metric})")
    answers = itertools.chain([first], answers)
    for part in range(0, len(qs), 512):  # the rows of 512 queries at a time, as they are answered
        chunk = list(itertools.islice(answers, 512))
        with m.stages("output"):
            texts = [escape(q.text.encode()) for q in qs[part:part + 512]]  # a line may hold ESC or bidi controls
            counts = [len(a) for a in chunk]
            out.write_columns([
                [t for t, c in zip(texts, counts) for _ in range(c)],
                np.concatenate([np.arange(1, c + 1) for c in counts]),
                np.concatenate([a.ids for a in chunk]),
                [t for a in chunk for t in a.tokens],
                np.concatenate([a.scores for a in chunk]),
            ])
    out.close()


def _all(env: Environment, m, top, metric, writer, first, last):
    """Every token's (in [first, last)) k nearest tokens, streamed block by block."""
    import numpy as np

    out = writer.start(["id", "token", "rank", "neighbor_id", "neighbor", "score"])
    labels = None
    total = last - first - sum(first <= i < last for i in m.index.bad_rows().tolist())  # NaN/Inf rows: left out
    with env.progress(total, "k-NN graph", streaming=out.name != "table") as advance:  # a table prints at the end
        for block in m.knn_graph(top, metric=metric, rows=slice(first, last)):
            if labels is None:  # made while the worker computes the second chunk
                with m.stages("labels"):
                    labels = np.array(m.labels(), dtype=object)  # (n,) printable token texts
            with m.stages("output"):
                found = block.neighbor_ids >= 0  # (b, k)
                ids = np.broadcast_to(block.ids[:, None], found.shape)[found]
                nbrs = block.neighbor_ids[found]
                out.write_columns([ids, labels[ids].tolist(), np.nonzero(found)[1] + 1, nbrs, labels[nbrs].tolist(),
                                   block.scores[found]])
            advance(len(block.ids))
    out.close()
