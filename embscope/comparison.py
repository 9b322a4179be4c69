"""Comparing checkpoints: which rows belong together, and the answers of `embscope.diff` and
`embscope.drift` assembled from embscope.analysis.drift. Never prints: what it noticed (tokenizers
that differ, positions of unequal length) comes back as notes."""

from __future__ import annotations

import os
import re

import numpy as np

from embscope.analysis import drift as dr
from embscope.errors import ArgumentError, EmbscopeError, UsageError
from embscope.results import Diff, Drift, PositionDrift

ALIGNMENTS = ("procrustes", "none")
TRAINER_FOLDER = re.compile(r"checkpoint-(\d+)")  # transformers' Trainer: <output_dir>/checkpoint-<step>


class VocabularyMismatchError(ArgumentError):
    """Checkpoints with vocabularies of different sizes compared by id."""

    argument = "by_token"

    def __init__(self, first, other):
        self.first, self.other = first, other
        super().__init__("by_token=True")

    def worded(self, name: str) -> str:
        return (f"{self.first.name} has {self.first.n_tokens} tokens but {self.other.name}"
                f" {self.other.n_tokens}: rows are compared by id, so the vocabularies must match"
                f" ({name} matches rows by token bytes)")


def check_options(align: str, k: int) -> None:
    """The options of a comparison, checked before any checkpoint is read."""
    if align not in ALIGNMENTS:
        raise UsageError(f"unknown alignment '{align}' (choose from {', '.join(ALIGNMENTS)})")
    if k < 0:
        raise UsageError(f"k must be at least 0 (got {k}; 0 leaves out the neighbour overlap)")


def check(models, align: str, k: int) -> None:
    """What every comparison checks before it reads a row."""
    check_options(align, k)
    if len(models) < 2:
        raise UsageError(f"a comparison needs two or more checkpoints (got {len(models)})")
    first = models[0]
    for m in models[1:]:
        if m.emb.dim != first.emb.dim:
            raise EmbscopeError(f"{first.name} holds vectors {first.emb.dim} wide but {m.name}"
                                f" {m.emb.dim} wide: cosines and the Procrustes rotation need equal widths")


def matched_rows(models, by_token: bool) -> tuple[list[dr.Rows], list[str]]:
    """The rows compared in each model (the same tokens, in the same order) and notes."""
    if by_token:
        vocabularies = [_vocabulary(m, required=True) for m in models]
        ids = dr.match_tokens(vocabularies)
        if len(ids[0]) == 0:
            raise EmbscopeError(f"no token of {models[0].name} is in every other vocabulary")
        sizes = ", ".join(str(m.n_tokens) for m in models)
        note = f"matched {len(ids[0])} tokens by their bytes (of {sizes})"
        return [dr.Rows(m.emb.wte, len(i), i) for m, i in zip(models, ids)], [note]
    first = models[0]
    for m in models[1:]:
        if m.n_tokens != first.n_tokens:
            raise VocabularyMismatchError(first, m)
    notes = [note for m in models[1:] if (note := _tokenizer_note(first, m))]
    return [dr.Rows(m.emb.wte, first.n_tokens) for m in models], notes


def _check_k(k: int, n: int) -> None:
    if k >= n:
        raise UsageError(f"{k} neighbours per token: each of the {n} tokens compared has only {n - 1} others")


def _vocabulary(m, required: bool) -> list[bytes | None] | None:
    """id -> token bytes of the model's real tokens, or None without a tokenizer."""
    if m.tokenizer is None:
        if required:
            raise EmbscopeError(f"{m.name} has no tokenizer, so its rows cannot be matched by token")
        return None
    return [m.emb.token_text(i) for i in range(m.n_tokens)]


def _tokenizer_note(a, b) -> str | None:
    """A warning when two vocabularies compared by id hold different tokens at some ids."""
    va, vb = _vocabulary(a, False), _vocabulary(b, False)
    if va is None or vb is None:
        return None
    differ = dr.differing_ids(va, vb)
    if not len(differ):
        return None
    i = int(differ[0])
    return (f"warning: the tokenizers differ at {len(differ)} of {len(va)} ids (#{i} is"
            f" {a.token(i)!r} in {a.name}, {b.token(i)!r} in {b.name}); rows are compared by id")


def diff(a, b, align: str = "procrustes", k: int = 10, by_token: bool = False, advance=None) -> Diff:
    """Per-token drift from model `a` to model `b` (both `embscope.api.Model`). `advance(n)`:
    called as the neighbour searches finish rows (2 x the compared tokens in all)."""
    check([a, b], align, k)
    (ra, rb), notes = matched_rows([a, b], by_token)
    _check_k(k, ra.n)
    r = dr.fit_rotation(ra, rb) if align == "procrustes" else None
    raw, cos, ratio = dr.compare(ra, rb, r)
    jac = dr.jaccard(dr.neighbor_sets(ra, k, advance), dr.neighbor_sets(rb, k, advance)) if k else None
    if jac is not None:
        jac[~np.isfinite(cos)] = np.nan
    ids_a = np.arange(ra.n) if ra.ids is None else ra.ids
    ids_b = np.arange(rb.n) if rb.ids is None else rb.ids
    positions, position_notes = _positions(a, b, r)
    return Diff(a.name, b.name, align, k, by_token, (a.n_tokens, b.n_tokens), ids_a, ids_b,
                tuple(a.token(i) for i in ids_a.tolist()), cos, raw, ratio, jac, r, positions,
                tuple(notes + position_notes))


def _positions(a, b, r: np.ndarray | None) -> tuple[PositionDrift | None, list[str]]:
    """Drift of the learned positions both models have, turned by the tokens' rotation (which
    belongs to the positions only when the tokens compared are the input embeddings)."""
    if a.n_positions == 0 or b.n_positions == 0 or "output" in (a.matrix, b.matrix):
        return None, []
    n = min(a.n_positions, b.n_positions)
    raw, cos, ratio = dr.measures(a.emb.position_rows(0, n), b.emb.position_rows(0, n), r)
    notes = []
    if a.n_positions != b.n_positions:
        notes.append(f"note: {a.name} has {a.n_positions} positions and {b.name} {b.n_positions}:"
                     f" positions 0..{n - 1} are compared")
    return PositionDrift(np.arange(n), cos, raw, ratio), notes


def drift(models, align: str = "procrustes", k: int = 10, by_token: bool = False,
          names: list[str] | None = None, steps: list[int | None] | None = None, advance=None) -> Drift:
    """Mean drift of each model against the previous one and against the last. `advance(n)`:
    called as the neighbour searches finish rows (the compared tokens x the models in all)."""
    check(models, align, k)
    rows, notes = matched_rows(models, by_token)
    _check_k(k, rows[0].n)
    sets = [dr.neighbor_sets(r, k, advance) for r in rows] if k else None
    c = len(models)
    means = {}  # (earlier, later) -> (mean cosine, mean Jaccard)
    for i in range(c - 1):
        for j in sorted({i + 1, c - 1}):
            means[i, j] = _mean_drift(rows[i], rows[j], align, None if sets is None else (sets[i], sets[j]))
    nan = (np.nan, np.nan)
    prev = np.array([nan] + [means[i - 1, i] for i in range(1, c)])  # (c, 2)
    last = np.array([means[i, c - 1] for i in range(c - 1)] + [nan])  # (c, 2)
    names = names or [m.name for m in models]
    steps = steps or [training_step(m) for m in models]
    return Drift(tuple(names), tuple(steps), align, k, rows[0].n, prev[:, 0], last[:, 0],
                 prev[:, 1] if k else None, last[:, 1] if k else None, tuple(notes))


def _mean_drift(a: dr.Rows, b: dr.Rows, align: str, sets) -> tuple[float, float]:
    """(mean cosine, mean Jaccard or NaN) over the tokens usable in both."""
    r = dr.fit_rotation(a, b) if align == "procrustes" else None
    _, cos, _ = dr.compare(a, b, r)
    ok = np.isfinite(cos)
    if not ok.any():
        return np.nan, np.nan
    if sets is None:
        return float(cos[ok].mean()), np.nan
    jac = dr.jaccard(*sets)[ok]
    jac = jac[np.isfinite(jac)]
    return float(cos[ok].mean()), float(jac.mean()) if jac.size else np.nan


def training_step(m) -> int | None:
    """The training step a checkpoint records (nanochat, llm.c and modded-nanogpt `step`,
    nanoGPT `iter_num`, Lightning `global_step`), or that its folder's name gives (the
    `checkpoint-N` folders of the Hugging Face Trainer); None when neither says."""
    for key in ("step", "iter_num", "global_step"):
        value = m.emb.facts.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    found = TRAINER_FOLDER.fullmatch(os.path.basename(os.path.normpath(m.emb.source)))
    return int(found.group(1)) if found else None
