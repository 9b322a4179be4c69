"""`Model.glitch`: the tokenizer's categories (embscope.token_categories) and the matrix's
indicators (embscope.analysis.glitch) put together into one `Glitch` answer."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from embscope.analysis import glitch as g
from embscope.results import IN_OTHER_SHOWN, Glitch, GlitchCandidates
from embscope.token_categories import CATEGORIES, NORMAL, SPECIAL, TokenCategories, categorize, containing


def glitch(model, indicator: str, unused: Iterable[int] | None, threshold: float | None,
           percentile: float) -> Glitch:
    """The answer of `Model.glitch` (arguments checked there)."""
    rows = model.emb.vocab_rows
    given = None if unused is None else g.given_unused(unused, rows)
    # The tokenizer's part (encoding every token: native code) runs beside the matrix's (its
    # first principal component: BLAS); both let go of the GIL for most of their time.
    with ThreadPoolExecutor(max_workers=1) as pool:
        tokens = pool.submit(categorize, model.tokenizer, rows)
        fitted = g.fit(model.wte)
        cats = tokens.result()
    known = given or g.known_unused(cats)
    if known.ids.size == 0:
        raise g.NoUnusedTokensError()
    found = g.indicators(model.wte, known.ids, fitted)
    pct = percentile if threshold is None else None
    if threshold is None:
        threshold = g.threshold_at(found.values[indicator], cats.codes, percentile)
    return Glitch(model.name, matrix_name(model), indicator, np.asarray(CATEGORIES, dtype=object)[cats.codes],
                  cats.unreachable, found.values, found.norms, found.unused, known.given, known.parts,
                  float(threshold), pct, found.explained, found.component.steps,
                  _candidates(model, cats, found, indicator, threshold),
                  tuple(_notes(model, cats.codes, found.component)), model.token)


def _candidates(model, cats: TokenCategories, found: g.Indicators, indicator: str,
                threshold: float) -> GlitchCandidates:
    values = found.values[indicator]
    ids = g.candidates(values, cats.codes, threshold)  # (k,)
    inside = containing(cats.token_bytes, ids, cats.codes[:len(cats.token_bytes)] != SPECIAL)
    return GlitchCandidates(indicator, ids, tuple(model.token(i) for i in ids.tolist()), values[ids],
                            tuple(CATEGORIES[c] for c in cats.codes[ids]), found.norms[ids], tuple(inside),
                            tuple(tuple(model.token(j) for j in o[:IN_OTHER_SHOWN].tolist()) for o in inside))


def matrix_name(model) -> str:
    """The tensor the model's token matrix is, for people: "(tied)" when it is both embeddings."""
    e = model.emb
    if model.matrix == "output" and e.head_key and not e.tied:
        return e.head_key
    return e.layout.wte_key + (" (tied)" if e.tied else "")


def _notes(model, codes: np.ndarray, component) -> list[str]:
    """What the caller should know about this answer, most important first."""
    notes = []
    if model.matrix == "input" and model.emb.tied is not True:
        notes.append("note: computed on the input embedding; the method asks for the output embedding (the LM"
                     " head), which this model keeps apart: load it with matrix='output'" if model.emb.tied is False
                     else "note: computed on the input embedding; the method asks for the output embedding (the"
                     " LM head), and whether this model ties the two is not known")
    if not component.converged:
        notes.append(f"note: the first principal component is not settled after {component.steps} passes (no"
                     " direction stands out, as in a matrix never trained), so cosine_no_pc depends on which"
                     " one was taken")
    if not (codes == NORMAL).any():
        notes.append("note: no token is of the normal category (each is special, a single byte, partial UTF-8"
                     " or unreachable), so none is a candidate")
    return notes
