"""`embscope embed`: what the embedding layer computes for a text (token + position)."""

from __future__ import annotations

from typing import Annotated

import typer

from embscope.cli.common import (
    FormatOpt, ModelSource, OutputOpt, model_command, note, output_kind, save_npy, stdin_lines,
    token_label, writer,
)

PREVIEW = 4  # values shown per vector in the table


@model_command
def embed(
    source: ModelSource,
    text: Annotated[str, typer.Argument(help="The text; '-' reads one text per line from stdin.")],
    component: Annotated[str, typer.Option("--component", help="token, position or sum.")] = "sum",
    pool: Annotated[str, typer.Option("--pool", help="none, mean or last.")] = "none",
    bos: Annotated[bool, typer.Option("--bos", help="Prepend the model's BOS token.")] = False,
    truncate: Annotated[bool, typer.Option("--truncate", help="Cut text longer than the model's positions.")] = False,
    output: OutputOpt = None,
    format: FormatOpt = None,
):
    """Token embedding + position embedding for each token of TEXT, as the model computes it."""
    import numpy as np

    from embscope.analysis.embed import COMPONENTS, POOLS, embed_ids
    from embscope.analysis.embed import pool as pool_
    from embscope.errors import EmbscopeError, UsageError
    from embscope.output import resolve_format

    if component not in COMPONENTS:
        raise UsageError(f"--component '{component}': choose from {', '.join(COMPONENTS)}")
    if pool not in POOLS:
        raise UsageError(f"--pool '{pool}': choose from {', '.join(POOLS)}")
    if output:
        output_kind(output, ("npy",))
    fmt = resolve_format(format)
    if text == "-":
        texts = stdin_lines()
        if not texts:
            raise EmbscopeError("no text on stdin")
    else:
        from embscope.queries import check_text

        if not text:
            raise UsageError("empty text")
        texts = [check_text(text)]
    if output and len(texts) > 1 and pool == "none":
        raise UsageError("-o with several texts needs --pool mean or last (one vector per text)")
    emb = source.load()
    if emb.tokenizer is None:
        raise EmbscopeError(f"{emb.name}: this model has no tokenizer, so text cannot be embedded (give --tokenizer)")
    bos_id = _bos_id(emb) if bos else None

    records = []
    for t in texts:
        ids = ([bos_id] if bos_id is not None else []) + emb.tokenizer.encode(t)
        if not ids:
            raise EmbscopeError(f"'{t}' has no tokens")
        if truncate and emb.wpe is not None and len(ids) > emb.n_positions:
            note(f"truncated {len(ids)} tokens to the model's {emb.n_positions} positions")
            ids = ids[: emb.n_positions]
        parts = embed_ids(emb, ids, component)
        records.append((t, ids, parts, pool_(parts[component], pool)))

    if output:
        arrays = [r[3] for r in records]
        return save_npy(output, arrays[0] if len(arrays) == 1 else np.stack(arrays))
    if fmt == "table":
        return _tables(emb, records, component, pool)
    if fmt in ("json", "jsonl"):
        return _json(emb, records, component, pool, fmt)
    _rows(emb, records, fmt, pool)


def _bos_id(emb) -> int:
    from embscope.errors import EmbscopeError

    from embscope.tokenizer import GPT2_SPECIAL

    if type(emb.config.get("bos_token_id")) is int:  # not a bool
        return emb.config["bos_token_id"]
    for name in (GPT2_SPECIAL, "<s>", "[CLS]", "<|begin_of_text|>"):  # the tokenizer is known here
        token_id = emb.tokenizer.single_token(name)
        if token_id is not None and emb.tokenizer.token_bytes(token_id) == name.encode():
            return token_id
    raise EmbscopeError(f"{emb.name}: no BOS token known for this model")


def _tables(emb, records, component, pool) -> None:
    import numpy as np

    for t, ids, parts, vec in records:
        if pool != "none":
            out = writer("table", ["pool", "tokens", "norm", "preview"], title=f"{t!r}: {component}, {pool} pooled")
            out.write({"pool": pool, "tokens": len(ids), "norm": float(np.linalg.norm(vec)), "preview": _preview(vec)})
            out.close()
            continue
        cols = ["pos", "id", "token", "|token|"] + (["|position|"] if "position" in parts else []) + ["|sum|", "preview"]
        out = writer("table", cols, title=f"{t!r}: {component} (preview of {PREVIEW} of {emb.dim} values)")
        for p, i in enumerate(ids):
            row = {"pos": p, "id": i, "token": token_label(emb, i),
                   "|token|": float(np.linalg.norm(parts["token"][p])),
                   "|sum|": float(np.linalg.norm(parts["sum"][p])), "preview": _preview(parts[component][p])}
            if "position" in parts:
                row["|position|"] = float(np.linalg.norm(parts["position"][p]))
            out.write(row)
        out.close()


def _preview(v) -> str:
    return " ".join(f"{x:+.4f}" for x in v[:PREVIEW]) + (" …" if len(v) > PREVIEW else "")


def _json(emb, records, component, pool, fmt) -> None:
    import sys

    from embscope.output import json_floats, json_text

    docs = []
    for t, ids, parts, vec in records:
        doc = {"text": t, "ids": ids, "tokens": [token_label(emb, i) for i in ids], "component": component, "pool": pool}
        doc["vector" if pool != "none" else "vectors"] = json_floats(vec)
        docs.append(doc)
    if fmt == "json":
        sys.stdout.write(json_text(docs if len(docs) > 1 else docs[0]))
        sys.stdout.write("\n")
    else:
        for doc in docs:
            sys.stdout.write(json_text(doc) + "\n")


def _rows(emb, records, fmt, pool) -> None:
    d = emb.dim
    multi = len(records) > 1
    head = (["line"] if multi else []) + (["pos", "id", "token"] if pool == "none" else ["pool", "tokens"])
    out = writer(fmt, head + [f"v{j}" for j in range(d)])
    for n, (t, ids, parts, vec) in enumerate(records):
        line = [n + 1] if multi else []
        if pool == "none":
            out.write_rows([line + [p, i, token_label(emb, i)] + vec[p].tolist() for p, i in enumerate(ids)])
        else:
            out.write_values(line + [pool, len(ids)] + vec.tolist())
    out.close()
