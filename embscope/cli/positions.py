"""`embscope positions`: how the learned position embeddings resemble each other."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from embscope.cli.common import (
    FormatOpt, ModelSource, OutputOpt, model_command, note, output_kind, picture_console, save_npy,
    writer,
)


@model_command
def positions(
    source: ModelSource,
    metric: Annotated[str, typer.Option("--metric", help="cosine, dot or euclidean (distance).")] = "cosine",
    range_: Annotated[Optional[str], typer.Option("--range", metavar="A:B", help="Positions A..B-1 (default: all).")] = None,
    step: Annotated[Optional[int], typer.Option("--step", help="Every S-th position (default: 1, or what"
                                                " keeps the matrix within 2048 positions).")] = None,
    heatmap: Annotated[bool, typer.Option("--heatmap", help="Draw the matrix as a terminal heatmap (or -o FILE.png).")] = False,
    by_offset: Annotated[bool, typer.Option("--by-offset", help="Mean similarity as a function of |i - j|.")] = False,
    output: OutputOpt = None,
    format: FormatOpt = None,
):
    """Position-position similarity matrix of wpe: as data, a heatmap, or by offset."""
    from embscope.analysis import positions as pos
    from embscope.analysis.similarity import check_metric
    from embscope.errors import UsageError
    from embscope.output import resolve_format

    check_metric(metric)
    if step is not None and step < 1:
        raise UsageError(f"--step must be at least 1 (got {step})")
    kind = output_kind(output, ("npy", "png")) if output else None
    fmt = resolve_format(format)
    emb = source.load().emb
    emb.require_positions()
    start, stop = pos.parse_range(range_, emb.n_positions)
    step = _fitting_step(start, stop, step)
    labels = list(range(start, stop, step))
    vectors = emb.position_rows(start, stop)[::step]  # (n, d)
    matrix = pos.similarity_matrix(vectors, metric)  # (n, n)
    value_label = "euclidean distance" if metric == "euclidean" else f"{metric} similarity"
    title = f"{emb.name}: positions {start}..{stop - 1}" + (f" step {step}" if step > 1 else "")

    if by_offset:
        curve = pos.by_offset(matrix)
        offsets = [o * step for o in range(len(curve))]
        if kind == "npy":
            import numpy as np

            return save_npy(output, np.stack([np.asarray(offsets, dtype=np.float64), curve], axis=1))
        if kind == "png":
            from embscope.render.png import save_line_png

            save_line_png(offsets, curve, output, title=title, x_label="offset |i - j|", y_label=f"mean {value_label}")
            return note(f"wrote {output}")
        out = writer(fmt, ["offset", "mean", "pairs"], title=f"{title}: mean {value_label} by offset")
        for o, (off, value) in enumerate(zip(offsets, curve)):
            out.write({"offset": off, "mean": float(value), "pairs": len(labels) - o})
        out.close()
        if fmt == "table":
            from embscope.render.lineplot import line_plot

            console, _ = picture_console()
            console.print(line_plot(offsets, curve, max_width=console.width, height=10, title="",
                                    x_label="offset |i - j|", y_label=f"mean {metric}"))
        return

    if kind == "npy":
        return save_npy(output, matrix)
    if kind == "png":
        from embscope.render.png import save_heatmap_png

        save_heatmap_png(matrix, labels, output, title=title, value_label=value_label)
        return note(f"wrote {output}")
    if heatmap or fmt == "table":
        from embscope.render.heatmap import heatmap as draw

        console, color = picture_console()
        console.print(draw(matrix, labels=labels, max_width=console.width, color=color, title=title,
                           value_label=value_label))
        return
    _write_matrix(fmt, labels, matrix, metric)


def _fitting_step(start: int, stop: int, step: int | None) -> int:
    """--step, or when it is not given the smallest step that keeps the matrix within
    MAX_POSITIONS a side (said on stderr): 20,000 positions would be a 3.2 GB matrix."""
    from embscope.analysis.positions import MAX_POSITIONS, step_for
    from embscope.errors import UsageError

    n = stop - start
    if step is None:
        step = step_for(n)
        if step > 1:
            note(f"positions {start}..{stop - 1} are more than one matrix holds ({MAX_POSITIONS}):"
                 f" showing one in {step} (--step {step}); choose with --range and --step")
        return step
    if -(-n // step) > MAX_POSITIONS:
        raise UsageError(f"--step {step}: positions {start}..{stop - 1} give {-(-n // step)} rows, more than"
                         f" one matrix holds ({MAX_POSITIONS}); use --step {step_for(n)} or a narrower --range")
    return step


def _write_matrix(fmt, labels, matrix, metric) -> None:
    import sys

    from embscope.output import json_floats, json_text

    if fmt == "json":
        sys.stdout.write(json_text({"metric": metric, "positions": labels, "matrix": json_floats(matrix)}))
        sys.stdout.write("\n")
        return
    columns = ["position"] + [str(p) for p in labels]
    out = writer(fmt, columns) if fmt != "jsonl" else None
    for p, row in zip(labels, matrix):
        if out is None:
            sys.stdout.write(json_text({"position": p, "values": json_floats(row)}) + "\n")
        else:
            out.write({"position": p, **{str(q): float(v) for q, v in zip(labels, row)}})
    if out is not None:
        out.close()
