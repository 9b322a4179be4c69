"""`embscope diff`: how token (and position) embeddings moved between checkpoints."""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer

from embscope.cli.common import (
    DebugOpt, FormatOpt, MatrixOpt, MetaOpt, ModelSource, TokenizerOpt, WpeKeyOpt, WteKeyOpt, at_least_one, not_together,
    output_opt, output_writer,
)
from embscope.cli.context import Environment

STAT_COLUMNS = ["measure", "count", "mean", "std", "min", "p1", "p50", "p99", "max"]
TOP, K = 10, 10  # the defaults of --top and -k


def diff(
    ctx: typer.Context,
    checkpoints: Annotated[list[str], typer.Argument(
        metavar="A B [C...]", help="Checkpoints in order (ckpt.pt, .safetensors, model directory, hub id);"
        " with --steps, one run folder.", show_default=False)],
    align: Annotated[str, typer.Option("--align", help="procrustes (turn B onto A first) or none.")] = "procrustes",
    k: Annotated[Optional[int], typer.Option("-k", metavar="K", help=f"Neighbours per token for the overlap (Jaccard@k; default {K}); 0: skip it.", show_default=False)] = None,
    top: Annotated[Optional[int], typer.Option("--top", metavar="N", help=f"Tokens listed at each end: moved most, least (default {TOP}).", show_default=False)] = None,
    by_token: Annotated[bool, typer.Option("--by-token", help="Match rows by token bytes (different tokenizers), not by id.")] = False,
    steps: Annotated[Optional[str], typer.Option("--steps", metavar="all|A:B", help="The steps of one nanochat or llm.c run folder: all, or A:B (A <= step <= B).")] = None,
    all_rows: Annotated[bool, typer.Option("--all", help="One row per token (two checkpoints).")] = False,
    positions: Annotated[bool, typer.Option("--positions", help="One row per learned position (two checkpoints).")] = False,
    output: output_opt(".tsv, .csv, .json or .jsonl (the rows -f would print) or .png (the histogram of the"
                       " cosines, the positions' curve or the drift over training; the rows still go to stdout)") = None,
    format: FormatOpt = None,
    matrix: MatrixOpt = "input",
    wte_key: WteKeyOpt = None,
    wpe_key: WpeKeyOpt = None,
    tokenizer: TokenizerOpt = None,
    meta: MetaOpt = None,
    debug: DebugOpt = False,
):
    """How embeddings moved between checkpoints: aligned cosine, norm ratio, neighbour overlap.

    Two checkpoints: per-token statistics, histogram and movers; three or more (or --steps):
    the drift over training."""
    env: Environment = ctx.obj
    _check_options(checkpoints, align, k, top, steps, all_rows, positions, matrix, tokenizer, meta)
    out, kind = output_writer(env, output, format, ("png",))  # -f and -o checked before any model is read
    try:
        _compare(env, out, output if kind == "png" else None, checkpoints, align, k, top, by_token, steps,
                 all_rows, positions, matrix, dict(wte_key=wte_key, wpe_key=wpe_key, tokenizer=tokenizer, meta=meta))
    except BaseException:
        env.discard_files()
        raise
    env.finish_files()  # an -o data file gets its name only now, whole


def _check_options(checkpoints, align, k, top, steps, all_rows, positions, matrix, tokenizer, meta) -> None:
    from embscope.comparison import ALIGNMENTS
    from embscope.errors import UsageError

    if align not in ALIGNMENTS:
        raise UsageError(f"unknown alignment '{align}' (choose from {', '.join(ALIGNMENTS)})")
    if k is not None and k < 0:
        raise UsageError(f"-k must be at least 0 (got {k}; 0 leaves out the neighbour overlap)")
    at_least_one("--top", top)
    _check_counts(checkpoints, steps)
    not_together(("--all", all_rows), ("--positions", positions), ("--top", top))
    not_together(("--positions", positions), ("--top", top), ("-k", k))  # positions need no neighbours
    not_together(("--tokenizer", tokenizer), ("--meta", meta))
    if positions and matrix != "input":
        raise UsageError("--positions compares the input side (positions are added to the input embedding):"
                         " leave out --matrix output")


def _compare(env: Environment, out, png, checkpoints, align, k, top, by_token, steps, all_rows, positions,
             matrix, keys) -> None:
    """Load the checkpoints and answer: two, or the drift over three or more."""
    from embscope.errors import UsageError

    sources = _sources(checkpoints, steps, keys)
    if len(sources) > 2 and (all_rows or positions or top):
        option = "--all" if all_rows else "--positions" if positions else "--top"
        raise UsageError(f"{option} compares two checkpoints (got {len(sources)}); name two, or --steps A:B"
                         " with two steps")
    models = [s.load(env, matrix) for s in sources]
    k = K if k is None else k
    if len(models) == 2:
        return _pair(env, out, models, align, 0 if positions else k, top or TOP, by_token, all_rows, positions, png)
    return _over_training(env, out, models, sources, align, k, by_token, png, steps is not None)


def _check_counts(checkpoints: list[str], steps: str | None) -> None:
    from embscope.errors import UsageError

    if steps is not None and len(checkpoints) != 1:
        raise UsageError(f"--steps takes one run folder (got {len(checkpoints)} checkpoints)")
    if steps is None and len(checkpoints) < 2:
        raise UsageError("name two or more checkpoints (or one run folder with --steps)")


def _sources(checkpoints, steps, keys: dict) -> list[ModelSource]:
    """What to load: each checkpoint named, or each selected step of the one run folder (`keys`:
    --wte-key, --wpe-key, --tokenizer and --meta, for each)."""
    if steps is None:
        return [ModelSource(spec, **keys) for spec in checkpoints]
    from embscope.errors import UsageError
    from embscope.io.runs import saved_steps

    folder = checkpoints[0]
    saved = saved_steps(folder)
    chosen = _select(saved, steps)
    if len(chosen) < 2:
        shown = ", ".join(map(str, saved[-10:]))
        raise UsageError(f"--steps {steps} selects {len(chosen)} of the steps saved in {folder} ({shown});"
                         " diff needs two or more")
    return [ModelSource(folder, checkpoint_step=s, **keys) for s in chosen]


def _select(saved: list[int], text: str) -> list[int]:
    """The steps --steps names: 'all', or 'A:B' (A <= step <= B; either end may be empty)."""
    from embscope.errors import UsageError

    if text == "all":
        return list(saved)
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        low, high = (int(p) if p.strip() else None for p in parts)
    except ValueError:
        raise UsageError(f"--steps '{text}': expected all or A:B, e.g. 1000:5000") from None
    return [s for s in saved if (low is None or s >= low) and (high is None or s <= high)]


def _progress(env: Environment, total: int):
    """advance(n) for the neighbour searches: a bar on a terminal (none when there are none)."""
    import contextlib

    return env.progress(total, "neighbours") if total else contextlib.nullcontext(None)


# --- two checkpoints ------------------------------------------------------------------------

def _pair(env: Environment, out, models, align, k, top, by_token, all_rows, positions, output) -> None:
    from embscope.comparison import diff

    a, b = models
    if positions:
        for m in models:
            m.require_positions()
    with _progress(env, 2 * a.n_tokens if k else 0) as advance:
        d = diff(a, b, align, k, by_token, advance=advance)
    for note in d.notes:
        env.note(note)
    _warn_left_out(env, d)
    if positions:
        return _positions(env, out, d, output)
    if all_rows:
        _all(out, d)
        return _histogram_png(env, d, output) if output else None
    if out.takes_documents:
        records = d.summary_records(), d.mover_records(top)
        out.document(_document(d, *records), [{"table": "summary", **r} for r in records[0]]
                     + [{"table": "movers", **r} for r in records[1]])
        return _histogram_png(env, d, output) if output else None
    _summary(env, out, d, output)
    if out.name != "table":
        out.stream.write("\n")  # TSV/CSV: the movers table follows after an empty line
    movers = d.mover_records(top)
    out.start(list(movers[0]) if movers else ["end", "rank", "id", "token"],
              title=f"tokens that moved most and least ({_cosine_words(d)})")
    for row in movers:
        out.write(row)
    out.close()


def _cosine_words(d) -> str:
    return "cosine after Procrustes alignment" if d.align == "procrustes" else "raw cosine"


def _warn_left_out(env: Environment, d) -> None:
    bad = d.left_out()
    if len(bad):
        shown = ", ".join(f"#{i}" for i in bad[:10]) + (" ..." if len(bad) > 10 else "")
        env.note(f"warning: {len(bad)} tokens are zero or not finite in {d.a} or {d.b} and are left out: {shown}")


def _title(d) -> str:
    overlap = f", Jaccard@{d.k} of neighbours" if d.k else ""
    return f"{d.a} -> {d.b}: {_cosine_words(d)}{overlap}"


def _document(d, summary, movers) -> dict:
    return {"a": d.a, "b": d.b, "align": d.align, "k": d.k, "by_token": d.by_token,
            "compared": len(d), "tokens": {"a": d.n_tokens[0], "b": d.n_tokens[1]},
            "summary": summary, "movers": movers}


def _summary(env: Environment, out, d, output) -> None:
    """The statistics table; the histogram of the cosines under a table, or -o FILE.png."""
    out.start(STAT_COLUMNS, title=_title(d))
    for row in d.summary_records():
        out.write(row)
    out.close()
    if output:
        return _histogram_png(env, d, output)
    if out.name == "table":
        from embscope.render.histogram import histogram

        shown, left_out = _bulk(d.cosine)
        env.console.print(histogram(shown, bins=20, max_width=env.console.width, color=env.color,
                                    title=f"token {_cosine_words(d)}{left_out}", markers=_markers(d)))


def _bulk(values):
    """The finite values inside Tukey's far-out fences (3 interquartile ranges beyond the
    quartiles), so that a few tokens that moved far do not squeeze the rest into one bin, and
    the words that say how many were left out (the movers table lists them)."""
    import numpy as np

    v = values[np.isfinite(values)]
    if v.size == 0:
        return v, ""
    q1, q3 = np.percentile(v, [25, 75])
    lo, hi = q1 - 3 * (q3 - q1), q3 + 3 * (q3 - q1)
    if q3 - q1 <= 1e-9 * max(abs(q1), abs(q3), 1e-300):  # (nearly) all equal: show everything
        return v, ""
    below, above = int((v < lo).sum()), int((v > hi).sum())
    parts = [f"{below} tokens below {lo:.4g}"] * bool(below) + [f"{above} tokens above {hi:.4g}"] * bool(above)
    return v[(v >= lo) & (v <= hi)], f" ({' and '.join(parts)} not drawn)" if parts else ""


def _markers(d) -> dict[str, float]:
    s = d.stats()["cosine"]
    return {"p1": s.p1, "p50": s.p50, "p99": s.p99}


def _histogram_png(env: Environment, d, output: str) -> None:
    from embscope.render.png import save_histogram_png

    shown, left_out = _bulk(d.cosine)
    save_histogram_png(shown, output, bins=60, title=f"{d.a} -> {d.b}{left_out}",
                       x_label=f"token {_cosine_words(d)}", markers=_markers(d))
    env.note(f"wrote {output}")


def _all(out, d) -> None:
    """One row per compared token, streamed."""
    measures = d.measures()
    columns = ["id"] + (["id_b"] if d.by_token else []) + ["token"] + list(measures)
    out.start(columns)
    values = [v.tolist() for v in measures.values()]
    ids, ids_b = d.ids.tolist(), d.ids_b.tolist()
    step = 4096
    for start in range(0, len(ids), step):
        rows = []
        for i in range(start, min(len(ids), start + step)):
            head = (ids[i], ids_b[i]) if d.by_token else (ids[i],)
            rows.append(head + (d.tokens[i],) + tuple(v[i] for v in values))
        out.write_rows(rows)
    out.close()


def _positions(env: Environment, out, d, output) -> None:
    """Per learned position: cosine (aligned by the tokens' rotation), raw cosine, norm ratio; the
    curve under a table, or -o FILE.png."""
    p = d.positions
    columns = ["position", "cosine"] + (["cosine_raw"] if d.align != "none" else []) + ["norm_ratio"]
    out.start(columns, title=f"{d.a} -> {d.b}: positions, {_cosine_words(d)}")
    for row in p.to_records():
        out.write(row)
    out.close()
    if output:
        from embscope.render.png import save_line_png

        save_line_png(p.positions, p.cosine, output, title=f"{d.a} -> {d.b}: positions",
                      x_label="position", y_label=_cosine_words(d))
        env.note(f"wrote {output}")
    elif out.name == "table":
        from embscope.render.lineplot import line_plot

        env.console.print(line_plot(p.positions, p.cosine, max_width=env.console.width, height=10, title="",
                                    x_label="position", y_label=_cosine_words(d)))


# --- three or more ----------------------------------------------------------------------------

def _over_training(env: Environment, out, models, sources, align, k, by_token, output, from_steps) -> None:
    """The drift-over-training table: each checkpoint against the previous one and the last."""
    from embscope.comparison import drift
    from embscope.display import sanitize

    names = [sanitize(_short_name(m) if from_steps else s.model) for m, s in zip(models, sources)]  # paths are data
    with _progress(env, len(models) * models[0].n_tokens if k else 0) as advance:
        t = drift(models, align, k, by_token, names=names, advance=advance)
    for note in t.notes:
        env.note(note)
    x, x_label = _x_axis(t)
    out.start(["checkpoint", "step"] + list(t.columns()), title=f"drift over training: mean {_words(t)}")
    for row in t.to_records():
        out.write(row)
    out.close()
    if output:
        from embscope.render.png import save_lines_png

        series = {name.replace("_", " "): v for name, v in t.columns().items()}
        save_lines_png(x, series, output, title=f"drift over training ({_words(t)})", x_label=x_label,
                       y_label="mean over tokens")
        env.note(f"wrote {output}")
    elif out.name == "table":
        _training_plots(env, t, x, x_label)


def _words(t) -> str:
    cosine = "aligned cosine" if t.align == "procrustes" else "raw cosine"
    return cosine + (f", Jaccard@{t.k}" if t.k else "")


def _short_name(m) -> str:
    """A step of a run folder: its file's name (model_000100.pt)."""
    return os.path.basename(m.emb.files[0]) if m.emb.files else m.name


def _x_axis(t):
    """Steps when every checkpoint records one and they increase, else 1, 2, 3..."""
    import numpy as np

    steps = t.steps
    if all(s is not None for s in steps) and all(a < b for a, b in zip(steps, steps[1:])):
        return np.array(steps, dtype=np.float64), "training step"
    return np.arange(1, len(steps) + 1, dtype=np.float64), "checkpoint"


def _training_plots(env: Environment, t, x, x_label) -> None:
    from embscope.render.lineplot import line_plot

    cosine = "cosine" if t.align == "none" else "aligned cosine"
    for label, y in ((f"mean {cosine} against the previous checkpoint", t.cosine_prev),
                     (f"mean {cosine} against the last checkpoint", t.cosine_last)):
        env.console.print(line_plot(x, y, max_width=env.console.width, height=6, title="",
                                    x_label=x_label, y_label=label))
