"""The options `map` and `export` share to choose rows: words (or '-' for stdin), --near, --ids,
--sample, --positions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Optional

import typer

from embscope.cli.common import at_least_one, choice, parse_range, stdin_lines
from embscope.cli.context import Environment
from embscope.errors import UsageError

WordsArg = Annotated[Optional[list[str]], typer.Argument(
    metavar="[WORD...]", show_default=False,
    help="Tokens to take: words (' word' when that is one token) or '#id'; '-' reads one per line from stdin.")]
PositionsOpt = Annotated[bool, typer.Option("--positions", help="The learned position embeddings (wpe), not tokens.")]
NearOpt = Annotated[Optional[str], typer.Option(
    "--near", metavar="QUERY", help="A word, '#id' or arithmetic, and its -k nearest tokens.")]
TopOpt = Annotated[int, typer.Option("--top", "-k", help="With --near: how many neighbours.")]
IdsOpt = Annotated[Optional[str], typer.Option("--ids", metavar="A:B", help="Tokens A..B-1.")]
SampleOpt = Annotated[Optional[int], typer.Option("--sample", metavar="N", help="N tokens drawn at random (--seed).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of --sample (map: also of the randomized SVD, t-SNE and UMAP).")]
MetricOpt = Annotated[str, typer.Option("--metric", help="With --near: cosine, dot or euclidean.")]
ExactOpt = Annotated[bool, typer.Option("--exact", help="Words as typed: no leading-space variant.")]

CHOICES = "WORD..., '-' (stdin), --near QUERY, --ids A:B, --sample N or --positions"


@dataclass
class RowChoice:
    """What the options asked for; `check` before the model is read, `select` after."""

    words: list[str] | None
    positions: bool
    near: str | None
    top: int
    ids: str | None
    sample: int | None
    seed: int
    metric: str
    exact: bool

    def given(self) -> list[str]:
        named = [("WORD", self.words), ("--near", self.near), ("--ids", self.ids), ("--sample", self.sample)]
        return [name for name, v in named if v is not None and v != []] + (["--positions"] if self.positions else [])

    def check(self, required_for: str | None) -> None:
        """Usage errors: more than one way to choose (or none, when `required_for` names what
        needs one), a bad -k, --sample or --metric."""
        from embscope.analysis.similarity import METRICS

        given = self.given()
        if len(given) > 1:  # worded as common.not_together words every other conflict
            raise UsageError(f"{given[0]} and {given[1]} cannot be used together")
        if not given and required_for:
            raise UsageError(f"choose what to {required_for}: {CHOICES}")
        at_least_one("--top", self.top)
        at_least_one("--sample", self.sample)
        choice("metric", self.metric, METRICS)

    def select(self, env: Environment, m):
        """The rows, as `Model.select` chooses them; repeats said on stderr."""
        if self.near is not None and self.top > m.n_tokens:
            raise UsageError(f"--top {self.top} is more than the model's {m.n_tokens} tokens")
        words = stdin_lines(env, "tokens") if self.words == ["-"] else self.words
        if self.words == ["-"] and not words:
            raise UsageError("no tokens on stdin")
        ids = slice(*parse_range(self.ids, m.n_tokens, option="--ids")) if self.ids is not None else None
        rows = m.select(words, near=self.near, k=self.top, ids=ids, sample=self.sample, seed=self.seed,
                        positions=self.positions, metric=self.metric, exact=self.exact)
        if self.near is not None:
            from embscope.cli.common import note_multi_token

            for term in m.query(self.near, self.exact).terms:
                note_multi_token(env, m, term.text, term.ids)
        if rows.repeats:
            env.note(f"{rows.repeats} repeated token{'s' * (rows.repeats > 1)} left out: each token is taken once")
        return rows
