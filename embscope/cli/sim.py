"""`embscope sim`: how similar given words and texts are, pairwise."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from embscope.cli.common import (
    FormatOpt, MatrixOpt, ModelSource, choice, model_command, not_together, note_multi_token, output_opt,
    output_writer, save_npy, stdin_lines,
)
from embscope.cli.context import Environment


@model_command
def sim(
    source: ModelSource,
    env: Environment,
    items: Annotated[Optional[list[str]], typer.Argument(
        metavar="ITEM...", help="Two or more words, '#id's or quoted texts. '-' reads one a line from stdin.",
        show_default=False)] = None,
    metric: Annotated[str, typer.Option("--metric", help="cosine, dot or euclidean (distance).")] = "cosine",
    exact: Annotated[bool, typer.Option("--exact", help="Use the text as typed: no leading-space variant.")] = False,
    pairs: Annotated[bool, typer.Option("--pairs", help="One row per pair (a, b, score), not a matrix.")] = False,
    output: output_opt(".tsv, .csv, .json or .jsonl (the rows -f would print) or .npy (the (n, n) matrix)") = None,
    format: FormatOpt = None,
    matrix: MatrixOpt = "input",
):
    """Similarity of words or texts: a score for two, a matrix for more."""
    from embscope.analysis.similarity import METRICS
    from embscope.errors import EmbscopeError, UsageError

    choice("metric", metric, METRICS)
    items = items or []
    if "-" in items and items != ["-"]:
        raise UsageError("'-' reads the words or texts from stdin: give it alone")
    if items != ["-"] and len(items) < 2:
        raise UsageError("give two or more words, '#id's or texts (or '-' to read them from stdin)")
    out, kind = output_writer(env, output, format, ("npy",))
    not_together((f"-o {output}", kind == "npy"), (f"-f {format}", format), ("--pairs", pairs))  # the matrix alone
    if items == ["-"]:
        items = stdin_lines(env, "words or texts")
        if len(items) < 2:
            raise EmbscopeError(f"sim compares two or more words or texts: stdin holds {len(items)}")
    m = source.load(env, matrix)
    found = m.sim(*items, metric=metric, exact=exact)  # errors before any output
    for text, ids in zip(found.items, found.ids):
        note_multi_token(env, m, text, ids)
    _warn_nonfinite(env, found)
    if kind == "npy":
        return save_npy(env, output, found.matrix)  # (n, n)
    if pairs or len(items) == 2:
        return _pairs(out, found)
    _matrix(out, found)


def _label(text: str) -> str:
    """An item as typed, safe to print (it may hold control characters)."""
    from embscope.display import escape

    return escape(text.encode())


def _warn_nonfinite(env: Environment, found) -> None:
    import numpy as np

    bad = [_label(t) for t, v in zip(found.items, found.vectors) if not np.isfinite(v).all()]
    if bad:
        env.note(f"warning: {', '.join(bad)}: the vector holds NaN or Inf (its token rows are not finite):"
                 " its scores are nan")


def _pairs(out, found) -> None:
    out.start(["a", "b", "score"], title=f"similarity ({found.metric})")
    out.write_rows((_label(found.items[i]), _label(found.items[j]), float(found.matrix[i, j]))
                   for i, j in found.pairs())
    out.close()


def _matrix(out, found) -> None:
    """The (n, n) matrix: a row per item (json: one document; jsonl: a row a line)."""
    labels = [_label(t) for t in found.items]
    if out.takes_documents:
        return out.document({"metric": found.metric, "items": labels, "ids": found.ids, "matrix": found.matrix},
                            ({"item": t, "ids": i, "values": row}
                             for t, i, row in zip(labels, found.ids, found.matrix)))
    out.start(["item"] + labels, title=f"similarity ({found.metric})")
    out.write_rows([t] + row for t, row in zip(labels, found.matrix.tolist()))
    out.close()
