"""`embscope norms`: norm statistics, largest and smallest tokens, distance from the centroid."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from embscope.cli.common import (
    FormatOpt, MatrixOpt, ModelSource, at_least_one, model_command, not_together, output_opt, output_writer,
    warn_bad_rows,
)
from embscope.cli.context import Environment

STAT_COLUMNS = ["rows", "count", "mean", "std", "min", "p1", "p50", "p99", "max", "nonfinite"]


@model_command
def norms(
    source: ModelSource,
    env: Environment,
    top: Annotated[Optional[int], typer.Option("--top", help="List the N tokens with the largest norms.")] = None,
    bottom: Annotated[Optional[int], typer.Option("--bottom", help="List the N tokens with the smallest norms.")] = None,
    centroid: Annotated[bool, typer.Option("--centroid", help="Distance from the mean token embedding: both ends (glitch-token candidates).")] = False,
    all_rows: Annotated[bool, typer.Option("--all", help="One row per token: id, token, norm, centroid distance.")] = False,
    output: output_opt(".tsv, .csv, .json or .jsonl (the rows -f would print) or .png (the histogram;"
                       " the rows still go to stdout)") = None,
    format: FormatOpt = None,
    matrix: MatrixOpt = "input",
):
    """Norm statistics of token and position embeddings; outliers; glitch-token candidates."""
    at_least_one("--top", top)
    at_least_one("--bottom", bottom)
    not_together(("--all", all_rows), ("--top", top), ("--bottom", bottom), ("--centroid", centroid))
    out, kind = output_writer(env, output, format, ("png",))
    png = output if kind == "png" else None
    m = source.load(env, matrix)
    found = m.norms(centroid=centroid or all_rows)  # centroid distances: two more passes, only when asked
    warn_bad_rows(env, found.nonfinite(), "left out of the statistics")
    if all_rows:
        out.start(["id", "token", "norm", "centroid_distance"])
        out.write_rows((i, m.token(i), n, d) for i, (n, d)
                       in enumerate(zip(found.token.tolist(), found.centroid_distance.tolist())))
        out.close()
        if png:  # the histogram picture, as without --all
            _picture(env, png, out, found, "norm", m.name)
        return
    if top or bottom or centroid:
        k_far = top or (10 if centroid and not bottom else 0)
        k_near = bottom or (10 if centroid and not top else 0)
        ends = m.norm_outliers(k_far, k_near, centroid=centroid, norms=found)
        out.start(["end", "rank", "id", "token", ends.of] + (["norm"] if centroid else []),
                  title=f"{m.name}: tokens by {ends.of.replace('_', ' ')}")
        for row in ends.to_records():
            out.write(row)
        out.close()
        return _picture(env, png, out, found, ends.of, m.name)
    out.start(STAT_COLUMNS, title=f"{m.name}: L2 norms")
    for row in found.to_records():
        out.write(row)
    out.close()
    _picture(env, png, out, found, "norm", m.name)


def _picture(env: Environment, output, out, found, of: str, name: str) -> None:
    """The histogram of the token norms (or centroid distances): -o FILE.png, or under a table."""
    from embscope.analysis.norms import stats

    finite = found.finite(of)
    s = stats(finite)
    markers = {"p1": s.p1, "p50": s.p50, "p99": s.p99}
    label = "distance from centroid" if of == "centroid_distance" else "L2 norm"
    if output:
        from embscope.render.png import save_histogram_png

        save_histogram_png(finite, output, bins=60, title=f"{name}: token {label}", x_label=label,
                           markers=markers)
        env.note(f"wrote {output}")
    elif out.name == "table":
        from embscope.render.histogram import histogram

        env.console.print(histogram(finite, bins=20, max_width=env.console.width, color=env.color,
                                    title=f"token {label}", markers=markers))
