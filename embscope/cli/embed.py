"""`embscope embed`: what the embedding layer computes for a text (token + position)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from embscope.cli.common import (
    FormatOpt, ModelSource, model_command, not_together, output_opt, output_writer, save_npy, stdin_lines,
)
from embscope.cli.context import Environment

PREVIEW = 4  # values shown per vector in the table


@model_command
def embed(
    source: ModelSource,
    env: Environment,
    text: Annotated[Optional[list[str]], typer.Argument(
        metavar="TEXT...", show_default=False, help="The text (several words are joined with a space; quote a text"
        " to keep its own spacing). '-' reads one text per line from stdin.")] = None,
    component: Annotated[str, typer.Option("--component", help="token, position or sum.")] = "sum",
    pool: Annotated[str, typer.Option("--pool", help="none, mean or last.")] = "none",
    bos: Annotated[bool, typer.Option("--bos", help="Prepend the model's BOS token.")] = False,
    truncate: Annotated[bool, typer.Option("--truncate", help="Cut text longer than the model's positions.")] = False,
    output: output_opt(".tsv, .csv, .json or .jsonl (the rows -f would print) or .npy (the vectors)") = None,
    format: FormatOpt = None,
):
    """Token embedding + position embedding for each token of TEXT, as the model computes it."""
    from embscope.analysis.embed import COMPONENTS, POOLS
    from embscope.errors import EmbscopeError, UsageError

    if component not in COMPONENTS:
        raise UsageError(f"--component '{component}': choose from {', '.join(COMPONENTS)}")
    if pool not in POOLS:
        raise UsageError(f"--pool '{pool}': choose from {', '.join(POOLS)}")
    out, kind = output_writer(env, output, format, ("npy",))
    not_together((f"-o {output}", kind == "npy"), (f"-f {format}", format))  # the .npy is the output: stdout gets nothing
    if not text:
        raise UsageError("give a text (or '-' to read texts from stdin)")
    if text == ["-"]:
        texts = stdin_lines(env, "texts")
        if not texts:
            raise EmbscopeError("no text on stdin")
    else:
        from embscope.queries import check_text

        if not any(text):
            raise UsageError("empty text")
        texts = [check_text(" ".join(text))]
    if kind == "npy" and len(texts) > 1 and pool == "none":
        raise UsageError("-o with several texts needs --pool mean or last (one vector per text)")
    m = source.load(env)
    if m.tokenizer is None:
        raise EmbscopeError(f"{m.name}: this model has no tokenizer, so text cannot be embedded (give --tokenizer)")
    if component == "position":
        m.require_positions()  # rotary / ALiBi models: say so before any output
    records = [(e, e.vector(component, pool)) for e in (_embed(env, m, t, bos, truncate) for t in texts)]
    if kind == "npy":
        arrays = [vec for _, vec in records]
        return save_npy(env, output, arrays[0] if len(arrays) == 1 else arrays)  # (d,) (T, d) or (n, d)
    if out.name == "table":
        return _tables(out, m, records, component, pool, env.table_width)
    if out.takes_documents:
        return _documents(out, records, component, pool)
    _rows(out, m, records, pool)


def _embed(env: Environment, m, text: str, bos: bool, truncate: bool):
    """`m.embed` of one text, with the CLI's words for a text longer than the positions."""
    from embscope.errors import EmbscopeError

    ids = m.encode(text, bos=bos)
    limit = m.emb.n_positions if m.emb.wpe is not None else len(ids)
    if len(ids) > limit:
        if not truncate:
            raise EmbscopeError(f"the text is {len(ids)} tokens but the model has only {limit} positions"
                                " (use --truncate to keep the first ones)")
        env.note(f"truncated {len(ids)} tokens to the model's {limit} positions")
        ids = ids[:limit]
    return m.embed_ids(ids, text)


def _tables(out, m, records, component, pool, width: int | None) -> None:
    """A table per text: the norms of each token's parts and a preview of the vector (as many of
    its first values as fit `width`, at most PREVIEW)."""
    for e, vec in records:
        if pool != "none":
            out.start(["pool", "tokens", "norm", "preview"], title=f"'{e.text}': {component}, {pool} pooled")
            out.write({"pool": pool, "tokens": len(e.ids), "norm": float(e.norms(component, pool)),
                       "preview": _preview(vec)})
            out.close()
            continue
        rows = e.to_records()
        n = _preview_count(rows, vec, width)
        out.start(list(rows[0]) + ["preview"], title=f"'{e.text}': {component} (preview of {n} of {m.emb.dim} values)")
        for row, v in zip(rows, vec):
            out.write({**row, "preview": _preview(v, n)})
        out.close()


def _preview(v, n: int = PREVIEW) -> str:
    return " ".join(f"{x:+.4f}" for x in v[:n]) + (" …" if len(v) > n else "")


def _preview_count(rows: list[dict], vectors, width: int | None) -> int:
    """PREVIEW, or fewer values (at least one) when the table would be wider than `width` with
    PREVIEW: the preview shrinks before the table wraps or splits."""
    from embscope.output import text_value
    from embscope.table_layout import natural_widths, total_width

    if width is None:
        return PREVIEW
    columns = list(rows[0])
    used = total_width(natural_widths(columns, [[text_value(r[c]) for c in columns] for r in rows]) + [0])
    for n in range(PREVIEW, 1, -1):
        if used + max(len(_preview(v, n)) for v in vectors) <= width:
            return n
    return 1


def _documents(out, records, component, pool) -> None:
    """A JSON document per text (json: the one document, or a list of them; jsonl: a line each)."""
    docs = [{"text": e.text, "ids": e.ids, "tokens": e.tokens, "component": component, "pool": pool,
             ("vector" if pool != "none" else "vectors"): vec} for e, vec in records]
    out.document(docs if len(docs) > 1 else docs[0], docs)


def _rows(out, m, records, pool) -> None:
    """A row per token (or per pooled text), every value of the vector in its own column."""
    multi = len(records) > 1
    head = (["line"] if multi else []) + (["pos", "id", "token"] if pool == "none" else ["pool", "tokens"])
    out.start(head + [f"v{j}" for j in range(m.emb.dim)])
    for n, (e, vec) in enumerate(records):
        line = [n + 1] if multi else []
        if pool == "none":
            out.write_rows([line + [p, i, t] + vec[p].tolist() for p, (i, t) in enumerate(zip(e.ids, e.tokens))])
        else:
            out.write_values(line + [pool, len(e.ids)] + vec.tolist())
    out.close()
