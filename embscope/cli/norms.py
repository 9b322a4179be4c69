"""`embscope norms`: norm statistics, largest and smallest tokens, distance from the centroid."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from embscope.cli.common import (
    FormatOpt, ModelSource, OutputOpt, model_command, note, output_kind, picture_console,
    token_label, warn_bad_rows, writer,
)

STAT_COLUMNS = ["rows", "count", "mean", "std", "min", "p1", "p50", "p99", "max", "nonfinite"]


@model_command
def norms(
    source: ModelSource,
    top: Annotated[Optional[int], typer.Option("--top", help="List the N tokens with the largest norms.")] = None,
    bottom: Annotated[Optional[int], typer.Option("--bottom", help="List the N tokens with the smallest norms.")] = None,
    centroid: Annotated[bool, typer.Option("--centroid", help="Distance from the mean token embedding: both ends (glitch-token candidates).")] = False,
    all_rows: Annotated[bool, typer.Option("--all", help="One row per token: id, token, norm, centroid distance.")] = False,
    output: OutputOpt = None,
    format: FormatOpt = None,
):
    """Norm statistics of token and position embeddings; outliers; glitch-token candidates."""
    import numpy as np

    from embscope.analysis import norms as nm
    from embscope.errors import UsageError
    from embscope.output import resolve_format

    for name, value in (("--top", top), ("--bottom", bottom)):
        if value is not None and value < 1:
            raise UsageError(f"{name} must be at least 1 (got {value})")
    if output:
        output_kind(output, ("png",))
    fmt = resolve_format(format)
    emb = source.load().emb
    n = emb.n_tokens
    token_norms = nm.row_norms(emb.wte, 0, n)  # (n,)
    bad = np.flatnonzero(~np.isfinite(token_norms))
    warn_bad_rows(bad, "left out of the statistics")
    dist = nm.centroid_distances(emb.wte, n)[0] if (centroid or all_rows) else None

    if all_rows:
        out = writer(fmt, ["id", "token", "norm", "centroid_distance"])
        for i in range(n):
            out.write({"id": i, "token": token_label(emb, i), "norm": float(token_norms[i]),
                       "centroid_distance": float(dist[i])})
        out.close()
        if output:  # the histogram picture, as without --all
            _picture(output, fmt, token_norms, "norm", emb)
        return

    if top or bottom or centroid:
        values, what = (dist, "centroid_distance") if centroid else (token_norms, "norm")
        k_far = top or (10 if centroid and not bottom else 0)
        k_near = bottom or (10 if centroid and not top else 0)
        ends = [("largest" if not centroid else "far", True, k_far), ("smallest" if not centroid else "near", False, k_near)]
        out = writer(fmt, ["end", "rank", "id", "token", what] + (["norm"] if centroid else []),
                     title=f"{emb.name}: tokens by {what.replace('_', ' ')}")
        for end, largest, k in ends:
            for rank, i in enumerate(nm.extremes(values, k, largest), 1):
                row = {"end": end, "rank": rank, "id": int(i), "token": token_label(emb, int(i)), what: float(values[i])}
                if centroid:
                    row["norm"] = float(token_norms[i])
                out.write(row)
        out.close()
        _picture(output, fmt, values, what, emb)
        return

    out = writer(fmt, STAT_COLUMNS, title=f"{emb.name}: L2 norms")
    sets = [("token", token_norms)]
    if emb.vocab_rows > n:
        sets.append(("padding", nm.row_norms(emb.wte, n, emb.vocab_rows)))
    if emb.wpe is not None:
        sets.append(("position", nm.row_norms(emb.wpe, emb.layout.position_offset, emb.wpe.shape[0])))
    for name, values in sets:
        s = nm.stats(values).as_dict()
        out.write({"rows": name, **s, "nonfinite": int((~np.isfinite(values)).sum())})
    out.close()
    _picture(output, fmt, token_norms, "norm", emb)


def _picture(output, fmt, values, what, emb) -> None:
    import numpy as np

    from embscope.analysis.norms import stats

    finite = values[np.isfinite(values)]
    s = stats(finite)
    markers = {"p1": s.p1, "p50": s.p50, "p99": s.p99}
    label = "distance from centroid" if what == "centroid_distance" else "L2 norm"
    if output:
        from embscope.render.png import save_histogram_png

        save_histogram_png(finite, output, bins=60, title=f"{emb.name}: token {label}", x_label=label,
                           markers=markers)
        note(f"wrote {output}")
    elif fmt == "table":
        from embscope.render.histogram import histogram

        console, color = picture_console()
        console.print(histogram(finite, bins=20, max_width=console.width, color=color,
                                title=f"token {label}", markers=markers))
