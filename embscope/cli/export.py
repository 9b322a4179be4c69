"""`embscope export`: token (or position) vectors in the formats other tools read: TensorBoard's
projector, word2vec (gensim), numpy."""

from __future__ import annotations

from typing import Annotated

import typer

from embscope.cli.common import MatrixOpt, ModelSource, model_command, warn_bad_rows
from embscope.cli.context import Environment
from embscope.cli.selection import (
    ExactOpt, IdsOpt, MetricOpt, NearOpt, PositionsOpt, RowChoice, SampleOpt, SeedOpt, TopOpt, WordsArg,
)


@model_command
def export_command(
    source: ModelSource,
    env: Environment,
    to: Annotated[tuple[str, str], typer.Option(
        "--to", metavar="FORMAT PATH", show_default=False,
        help="projector DIR (TensorBoard), word2vec FILE (text; binary if FILE ends in .bin) or npy DIR.")],
    words: WordsArg = None,
    positions: PositionsOpt = False,
    near: NearOpt = None,
    top: TopOpt = 30,
    ids: IdsOpt = None,
    sample: SampleOpt = None,
    seed: SeedOpt = 0,
    metric: MetricOpt = "cosine",
    exact: ExactOpt = False,
    matrix: MatrixOpt = "input",
):
    """Write token (or position) vectors for TensorBoard's projector, gensim or numpy."""
    from embscope.cli.common import choice
    from embscope.export.writers import FORMATS, check_target

    fmt, path = to
    choice("export format", fmt, FORMATS)
    rows = RowChoice(words, positions, near, top, ids, sample, seed, metric, exact)
    rows.check(required_for=None)
    check_target(fmt, path)
    m = source.load(env, matrix)
    chosen = rows.select(env, m)
    if chosen.kind == "tokens":
        warn_bad_rows(env, _bad(m, chosen), "written as they are")
    with env.progress(len(chosen), f"writing {fmt}") as advance:
        done = m.export(fmt, path, chosen, progress=advance)
    if done.renamed:
        env.note(f"{done.renamed} tokens have the bytes of an earlier one: their keys end in '\\#ID'")
    env.note(f"wrote {len(done.files)} file{'s' * (len(done.files) > 1)}: {', '.join(done.files)}"
             f" ({done.rows} rows of {done.dim})")


def _bad(m, chosen):
    """Ids of the chosen tokens whose rows hold NaN or Inf."""
    import numpy as np

    return np.intersect1d(m.index.bad_rows(), chosen.ids)
