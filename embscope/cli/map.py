"""`embscope map`: tokens or positions as points in two dimensions (PCA, t-SNE, UMAP), as
coordinates, a terminal scatter plot, a PNG or a self-contained HTML page."""

from __future__ import annotations

from typing import Annotated

import typer

from embscope.cli.common import (
    FormatOpt, MatrixOpt, ModelSource, at_least_one, choice, model_command, output_opt, output_writer,
)
from embscope.cli.context import Environment
from embscope.cli.selection import (
    ExactOpt, IdsOpt, MetricOpt, NearOpt, PositionsOpt, RowChoice, SampleOpt, SeedOpt, TopOpt, WordsArg,
)

MAX_PLOT_LINES = 24
OWN_FILES = ("npy", "png", "html")  # -o files map writes itself (the data suffixes go through the writer)
NAMES = {"pca": "PCA", "tsne": "t-SNE", "umap": "UMAP"}


@model_command
def map_command(
    source: ModelSource,
    env: Environment,
    words: WordsArg = None,
    positions: PositionsOpt = False,
    near: NearOpt = None,
    top: TopOpt = 30,
    ids: IdsOpt = None,
    sample: SampleOpt = None,
    seed: SeedOpt = 0,
    metric: MetricOpt = "cosine",
    exact: ExactOpt = False,
    method: Annotated[str, typer.Option("--method", help="pca, tsne (scikit-learn) or umap (umap-learn).")] = "pca",
    components: Annotated[int, typer.Option("--components", "-n", help="Coordinates per point (the plots show two).")] = 2,
    svd: Annotated[str, typer.Option("--svd", help="PCA's SVD: auto (exact up to 500 rows or dimensions), exact"
                                     " or randomized.")] = "auto",
    variance: Annotated[bool, typer.Option("--variance", help="Print each component's share of the variance"
                                           " instead of the points.")] = False,
    output: output_opt(".tsv, .csv, .json or .jsonl (the rows -f would print), .npy (the points as a"
                       " structured array), .png or .html (a picture)") = None,
    format: FormatOpt = None,
    matrix: MatrixOpt = "input",
):
    """Tokens or positions as points on a plane: coordinates, a scatter plot, PNG or HTML."""
    from embscope.analysis.pca import SOLVERS
    from embscope.analysis.projection import METHODS, require_method

    rows = RowChoice(words, positions, near, top, ids, sample, seed, metric, exact)
    rows.check(required_for="map")
    choice("method", method, METHODS)
    choice("svd", svd, SOLVERS)
    at_least_one("--components", components)
    if variance and method != "pca":
        from embscope.errors import UsageError

        raise UsageError(f"--variance: a {method} map has no explained variance (only pca has)")
    writer, kind = output_writer(env, output, format, OWN_FILES)
    require_method(method)
    m = source.load(env, matrix)
    found = m.map(rows.select(env, m), method=method, components=components, svd=svd, seed=seed)
    _warn_left_out(env, found)
    notes = _notes(found, seed)
    if kind in OWN_FILES:
        _save(env, m, found, output, kind, notes)
    if variance:
        return _variance(writer, found, m.name)
    if kind in OWN_FILES:
        return None
    if writer.name == "table":
        return _picture(env, m, found, notes)
    for note in notes:
        env.note(note)
    _points(writer, m, found)


def _warn_left_out(env: Environment, found) -> None:
    if len(found.left_out):
        what = "positions" if found.rows.kind == "positions" else "token rows"
        shown = ", ".join(f"#{i}" for i in found.left_out[:10].tolist()) + (" ..." if len(found.left_out) > 10 else "")
        env.note(f"warning: {len(found.left_out)} {what} hold NaN or Inf and are left out of the map: {shown}")


def _notes(found, seed: int) -> list[str]:
    """What the map is, for people: the variance each axis shows, and how it was computed."""
    n = len(found.rows)
    if found.pca is None:
        extra = _method_settings(found.method, n)
        return [f"{NAMES[found.method]} of {n} rows (cosine, {extra}, seed {seed}): it keeps neighbourhoods,"
                " not distances"]
    p = found.pca
    shares = [f"{a} {r:.2%}" for a, r in zip(found.axes, p.explained_variance_ratio)]
    if p.solver == "exact":
        return [f"{', '.join(shares)} of the variance (exact SVD of {n} centred rows)"]
    upper = p.ratio_bounds()[1]
    return [f"{', '.join(f'{s} (at most {u:.2%})' for s, u in zip(shares, upper))} of the variance",
            f"randomized SVD of {n} centred rows, seed {seed}: the part of them it misses has a norm of at most"
            f" {p.error_bound:.4g} (with probability at least 1 - 1e-10)"]


def _method_settings(method: str, n: int) -> str:
    from embscope.analysis.projection import NEIGHBORS, tsne_perplexity

    return f"perplexity {tsne_perplexity(n):.3g}" if method == "tsne" else f"{min(NEIGHBORS, n - 1)} neighbours"


def _axis_labels(found) -> tuple[str, str]:
    if found.pca is None:
        return found.axes[0], found.axes[1] if len(found.axes) > 1 else ""
    r = found.pca.explained_variance_ratio
    return tuple(f"{a} ({v:.1%} of the variance)" for a, v in zip(found.axes[:2], r[:2])) + ("",) * (2 - len(r[:2]))


def _title(m, found) -> str:
    return f"{m.name}: {found.rows.description}" + (f", {NAMES[found.method]}" if found.method != "pca" else "")


def _plot_args(m, found, few_labels: bool) -> dict:
    """What the pictures of the map take: x, y, labels, colours, highlight, title, axis labels;
    `few_labels`: positions labelled at round numbers only (terminal, PNG), else all (HTML)."""
    import numpy as np

    from embscope.display import visible_spaces

    rows = found.rows
    y = found.coords[:, 1] if found.coords.shape[1] > 1 else np.zeros(len(rows))
    x_label, y_label = _axis_labels(found)
    args = {"x": found.coords[:, 0], "y": y, "title": _title(m, found), "x_label": x_label, "y_label": y_label}
    if rows.kind == "positions":
        labels = _position_labels(rows.ids) if few_labels else list(rows.labels)
        return {**args, "labels": labels, "values": rows.ids, "value_label": "position", "joined": True}
    where = {int(i): j for j, i in enumerate(rows.ids.tolist())}
    return {**args, "labels": [visible_spaces(t) for t in rows.labels],
            "highlight": tuple(where[i] for i in rows.highlight if i in where)}


def _position_labels(positions) -> list[str]:
    """Labels for a few round positions (0, 16, 32, ...) and the last one; '' for the others."""
    from embscope.render.axes import nice_ticks

    marked = {int(v) for v in nice_ticks(int(positions.min()), int(positions.max()), 8, integer=True)}
    marked.add(int(positions.max()))
    return [str(p) if p in marked else "" for p in positions.tolist()]


def _picture(env: Environment, m, found, notes: list[str]) -> None:
    from embscope.render.scatter import scatter

    height = max(6, min(MAX_PLOT_LINES, env.console.height - 10))
    env.console.print(scatter(**_plot_args(m, found, True), max_width=env.console.width, max_height=height,
                              color=env.color, footer=notes, over_dots=found.rows.kind == "positions"))


def _save(env: Environment, m, found, output: str, kind: str, notes: list[str]) -> None:
    """-o FILE.npy, FILE.png or FILE.html."""
    if kind == "npy":  # the pictures show the notes; the array does not
        from embscope.cli.common import save_npy

        for note in notes:
            env.note(note)
        return save_npy(env, output, _structured(found))
    if kind == "png":
        from embscope.render.png import save_scatter_png

        save_scatter_png(path=output, **_plot_args(m, found, True))
    else:
        from embscope.render.html import save_scatter_html, scatter_html

        args = _plot_args(m, found, False)
        page = scatter_html(args.pop("x"), args.pop("y"), args.pop("labels"), found.rows.ids.tolist(),
                            id_name=found.rows.id_name, notes=notes, **args)
        save_scatter_html(output, page)
    env.note(f"wrote {output}")


def _structured(found):
    """The points as a structured array: id (or position), token (tokens only), the coordinates."""
    import numpy as np

    rows = found.rows
    fields = [(rows.id_name, "<i8")]
    if rows.kind == "tokens":
        fields.append(("token", f"<U{max(1, max(map(len, rows.labels), default=1))}"))
    fields += [(a, "<f8") for a in found.axes]
    out = np.zeros(len(rows), dtype=fields)
    out[rows.id_name] = rows.ids
    if rows.kind == "tokens":
        out["token"] = rows.labels
    for j, a in enumerate(found.axes):
        out[a] = found.coords[:, j]
    return out


def _variance(writer, found, name: str) -> None:
    records = found.variance_records()
    writer.start(list(records[0]), title=f"{name}: {found.rows.description}: explained variance")
    for r in records:
        writer.write(r)
    writer.close()


def _points(writer, m, found) -> None:
    """The coordinates: a row per point (tsv, csv, jsonl), or one JSON document."""
    records = found.to_records()
    if writer.name == "json":
        doc = {"model": m.name, "rows": found.rows.description, "method": found.method,
               "left_out": found.left_out, "points": records}
        if found.pca is not None:
            doc.update(solver=found.pca.solver, error_bound=found.pca.error_bound,
                       components=found.variance_records())
        return writer.document(doc, [])
    writer.start(list(records[0]) if records else [found.rows.id_name, *found.axes])
    writer.write_rows([list(r.values()) for r in records])
    writer.close()
