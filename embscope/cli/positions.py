"""`embscope positions`: how the learned position embeddings resemble each other."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from embscope.cli.common import (
    DATA_FILES, FormatOpt, ModelSource, at_least_one, choice, model_command, not_together, output_opt,
    output_writer,
    parse_range, save_npy,
)
from embscope.cli.context import Environment


@model_command
def positions(
    source: ModelSource,
    env: Environment,
    metric: Annotated[str, typer.Option("--metric", help="cosine, dot or euclidean (distance).")] = "cosine",
    range_: Annotated[Optional[str], typer.Option("--range", metavar="A:B", help="Positions A..B-1 (default: all).")] = None,
    step: Annotated[Optional[int], typer.Option("--step", help="Every S-th position (default: 1, or what"
                                                " keeps the matrix within 2048 positions).")] = None,
    heatmap: Annotated[bool, typer.Option("--heatmap", help="Draw the matrix as a terminal heatmap (or -o FILE.png).")] = False,
    by_offset: Annotated[bool, typer.Option("--by-offset", help="Mean similarity as a function of |i - j|.")] = False,
    output: output_opt(".tsv, .csv, .json or .jsonl (the rows -f would print), .npy (the matrix, or with"
                       " --by-offset the curve) or .png (the heatmap, or the curve)") = None,
    format: FormatOpt = None,
):
    """Position-position similarity matrix of wpe: as data, a heatmap, or by offset."""
    from embscope.analysis.similarity import METRICS

    choice("metric", metric, METRICS)
    at_least_one("--step", step)
    not_together(("--heatmap", heatmap), ("--by-offset", by_offset), (f"-f {format}", format not in (None, "table")))
    out, kind = output_writer(env, output, format, ("npy", "png"))
    if heatmap and kind in DATA_FILES + ("npy",):
        from embscope.errors import UsageError

        raise UsageError(f"--heatmap draws a picture: -o {output} holds data (use -o FILE.png for the picture)")
    not_together((f"-o {output}", kind in ("npy", "png")), (f"-f {format}", format))  # the file is the output: stdout gets nothing
    m = source.load(env)
    m.require_positions()
    start, stop = parse_range(range_, m.n_positions)
    step = _fitting_step(env, start, stop, step)
    found = m.positions(metric, start=start, stop=stop, step=step)
    value_label = "euclidean distance" if metric == "euclidean" else f"{metric} similarity"
    title = f"{m.name}: positions {start}..{stop - 1}" + (f" step {step}" if step > 1 else "")
    if by_offset:
        return _by_offset(env, out, found, output, kind, title, value_label)
    if kind == "npy":
        return save_npy(env, output, found.matrix)
    labels = found.positions.tolist()
    if kind == "png":
        from embscope.render.png import save_heatmap_png

        save_heatmap_png(found.matrix, labels, output, title=title, value_label=value_label)
        return env.note(f"wrote {output}")
    if heatmap or out.name == "table":
        from embscope.render.heatmap import heatmap as draw

        return env.console.print(draw(found.matrix, labels=labels, max_width=env.console.width, color=env.color,
                                      title=title, value_label=value_label))
    if out.takes_documents:  # json: the whole matrix; jsonl: a row a line
        return out.document({"metric": metric, "positions": labels, "matrix": found.matrix},
                            ({"position": p, "values": row} for p, row in zip(labels, found.matrix)))
    out.start(["position"] + [str(p) for p in labels])
    out.write_rows([p] + row for p, row in zip(labels, found.matrix.tolist()))
    out.close()


def _by_offset(env: Environment, out, found, output, kind, title: str, value_label: str) -> None:
    """Mean similarity at each offset |i - j|: a table and a line plot, rows, .npy or .png."""
    if kind == "npy":
        return save_npy(env, output, found.by_offset_array())
    offsets, means, pairs = found.by_offset()  # (n,) each
    offsets = offsets.tolist()
    if kind == "png":
        from embscope.render.png import save_line_png

        save_line_png(offsets, means, output, title=title, x_label="offset |i - j|", y_label=f"mean {value_label}")
        return env.note(f"wrote {output}")
    out.start(["offset", "mean", "pairs"], title=f"{title}: mean {found.metric} by offset")
    out.write_rows(zip(offsets, means.tolist(), pairs.tolist()))
    out.close()
    if out.name == "table":
        from embscope.render.lineplot import line_plot

        env.console.print(line_plot(offsets, means, max_width=env.console.width, height=10, title="",
                                    x_label="offset |i - j|", y_label=f"mean {found.metric}"))


def _fitting_step(env: Environment, start: int, stop: int, step: int | None) -> int:
    """--step, or when it is not given the smallest step that keeps the matrix within
    MAX_POSITIONS a side (said on stderr): 20,000 positions would be a 3.2 GB matrix."""
    from embscope.analysis.positions import MAX_POSITIONS, step_for
    from embscope.errors import UsageError

    n = stop - start
    if step is None:
        step = step_for(n)
        if step > 1:
            env.note(f"positions {start}..{stop - 1} are more than one matrix holds ({MAX_POSITIONS}):"
                     f" showing one in {step} (--step {step}); choose with --range and --step")
        return step
    if -(-n // step) > MAX_POSITIONS:
        raise UsageError(f"--step {step}: positions {start}..{stop - 1} give {-(-n // step)} rows, more than"
                         f" one matrix holds ({MAX_POSITIONS}); use --step {step_for(n)} or a narrower --range")
    return step
