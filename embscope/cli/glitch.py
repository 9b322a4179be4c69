"""`embscope glitch`: under-trained token candidates, the first stage of "Fishing for Magikarp"."""

from __future__ import annotations

import math
from typing import Annotated, Optional

import typer

from embscope.cli.common import (
    FormatOpt, MatrixOpt, ModelSource, at_least_one, choice, model_command, not_together, output_opt, output_writer,
    warn_bad_rows,
)
from embscope.cli.context import Environment
from embscope.errors import UsageError

CANDIDATE_COLUMNS = ["rank", "id", "token", "indicator", "category", "norm", "in_other_tokens"]
STAT_COLUMNS = ["indicator", "count", "mean", "std", "min", "p1", "p50", "p99", "max"]
SOURCES = {"byte-not-utf8": "single-byte tokens for bytes never in UTF-8 (0xC0, 0xC1, 0xF5-0xFF)",
           "unreachable": "unreachable tokens", "padding": "rows past the vocabulary"}


@model_command
def glitch(
    source: ModelSource,
    env: Environment,
    indicator: Annotated[str, typer.Option("--indicator", help="cosine (cosine distance), cosine_no_pc (the same"
                                           " without the first principal component) or l2.")] = "cosine",
    unused: Annotated[Optional[str], typer.Option("--unused", metavar="IDS|A:B", help="Tokens known to be unused,"
                                                  " e.g. 177:188 or 124,125,177:188. Default: single-byte tokens for"
                                                  " bytes never in UTF-8, unreachable tokens, padding rows.")] = None,
    threshold: Annotated[Optional[float], typer.Option("--threshold", help="Candidates: normal tokens at or below"
                                                       " this indicator value.")] = None,
    percentile: Annotated[Optional[float], typer.Option("--percentile", help="Threshold at this percentile of the"
                                                        " normal tokens' indicator (default 2).")] = None,
    top: Annotated[Optional[int], typer.Option("--top", help="Show the N lowest candidates only.")] = None,
    all_rows: Annotated[bool, typer.Option("--all", help="One row per token: category and every indicator.")] = False,
    output: output_opt(".tsv, .csv, .json or .jsonl (the rows -f would print) or .png (the indicator's"
                       " histogram by category, with the threshold; the rows still go to stdout)") = None,
    format: FormatOpt = None,
    matrix: MatrixOpt = "output",
):
    """Under-trained ("glitch") token candidates: tokenizer categories, and each token's distance
    from the mean of tokens known to be unused (Land & Bartolo 2024, "Fishing for Magikarp")."""
    from embscope.analysis.glitch import INDICATORS, PERCENTILE

    choice("indicator", indicator, INDICATORS)
    at_least_one("--top", top)
    not_together(("--threshold", threshold), ("--percentile", percentile))
    not_together(("--all", all_rows), ("--top", top))
    if threshold is not None and not math.isfinite(threshold):
        raise UsageError(f"--threshold must be a finite number (got {threshold})")
    if percentile is not None and not 0 <= percentile <= 100:
        raise UsageError(f"--percentile must be between 0 and 100 (got {percentile:g})")
    ids = parse_ids(unused) if unused is not None else None
    out, kind = output_writer(env, output, format, ("png",))
    m = source.load(env, matrix)
    found = m.glitch(indicator=indicator, unused=ids, threshold=threshold,
                     percentile=PERCENTILE if percentile is None else percentile)
    for note in found.notes:
        env.note(note)
    warn_bad_rows(env, found.nonfinite(), "left out (no indicator)")
    if out.name != "table" or all_rows:
        env.note(f"{unused_text(found)}; {threshold_text(found)}")
    if all_rows:
        out.start(["id", "token", "category", "indicator", *INDICATORS, "norm"])
        out.write_rows(found.rows())
        out.close()
    else:
        if out.name == "table":
            _summary(out, found, m)
        _candidates(out, found, top)
    if kind == "png":
        _picture(env, output, found)


def parse_ids(text: str) -> list[int]:
    """`--unused`: ids and A:B ranges (B excluded), separated by commas."""
    ids: list[int] = []
    for part in text.split(","):
        bounds = part.strip().split(":")
        try:
            if len(bounds) == 1:
                ids.append(int(bounds[0]))
                continue
            start, stop = (int(b) for b in bounds)
        except ValueError:
            raise UsageError(f"--unused '{text}': expected ids and A:B ranges separated by commas,"
                             " e.g. 177:188 or 124,125,177:188") from None
        if not 0 <= start < stop:
            raise UsageError(f"--unused '{text}': the range {part.strip()} is empty (need 0 <= A < B)")
        ids.extend(range(start, stop))
    return ids


def unused_text(found) -> str:
    """Which known-unused set the indicators measure against, for people."""
    n = len(found.unused)
    if found.unused_given:
        return f"known unused: {n} rows given with --unused"
    parts = [f"{count} {SOURCES[name]}" for name, count in found.unused_parts.items() if count]
    return f"known unused: {n} rows: {', '.join(parts)}"


def threshold_text(found) -> str:
    how = f"percentile {found.percentile:g} of the normal tokens" if found.percentile is not None else "--threshold"
    return f"threshold {found.indicator} <= {found.threshold:.6g} ({how}): {len(found.candidates)} candidates"


def _summary(out, found, m) -> None:
    """The tables a person reads first: what was measured and against what, the categories, the
    indicators' distributions."""
    out.start(["field", "value"], title=f"{found.name}: under-trained token candidates")
    out.write_rows([("matrix", f"{found.matrix}, {m.emb.vocab_rows} x {m.emb.dim}"),
                    ("known unused", unused_text(found).removeprefix("known unused: ")),
                    ("first principal component", f"{found.explained:.1%} of the variance"),
                    ("threshold", threshold_text(found).removeprefix("threshold "))])
    out.close()
    out.start(["category", "rows", "below_threshold"])
    out.write_rows((name, rows, below) for name, (rows, below) in found.counts().items())
    out.close()
    out.start(STAT_COLUMNS)
    for name, s in found.stats().items():
        out.write({"indicator": name, **s.as_dict()})
    out.close()


def _candidates(out, found, top: int | None) -> None:
    records = found.candidates.to_records()[:top]
    out.start(CANDIDATE_COLUMNS)
    for row in records:
        out.write(row)
    out.close()


def _picture(env: Environment, output: str, found) -> None:
    from embscope.render.category_histogram import save_category_histogram_png

    values = found.values[found.indicator]
    by_category = {name: values[found.categories == name] for name in found.counts()}
    save_category_histogram_png(by_category, output, bins=80, title=f"{found.name}: {found.matrix}",
                                x_label=f"{found.indicator} (distance from the mean of {len(found.unused)}"
                                        " known-unused rows)", threshold=found.threshold)
    env.note(f"wrote {output}")
