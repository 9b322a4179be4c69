"""Under-trained ("glitch") token candidates from one matrix, the first stage of Land & Bartolo,
"Fishing for Magikarp: Automatically Detecting Under-trained Tokens in Large Language Models"
(2024; github.com/cohere-ai/magikarp).

Tokens that training never showed keep the vectors they started with, and in the unembedding
(output) matrix those all drift the same way: every softmax pushes the logits of absent tokens
down alike. So the mean of tokens known to be unused is a reference point, and a token whose
vector points the same way is likely under-trained. Three indicators, low = close to the unused
tokens = suspect: the cosine distance to that mean (the default, as magikarp's reports rank
tokens), the same after removing the matrix's first principal component from every row and from
the mean (against a direction all rows share, which can dominate every cosine; where the untrained
rows' drift is itself that direction, it removes the signal), and the euclidean (L2) distance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embscope.analysis.principal_component import PrincipalComponent, first_component, row_mean
from embscope.errors import ArgumentError, EmbscopeError
from embscope.token_categories import NORMAL, NOT_UTF8, PADDING, TokenCategories

INDICATORS = ("cosine", "cosine_no_pc", "l2")  # the first is the default
PERCENTILE = 2.0  # default threshold: this percentile of the normal tokens' indicator (as magikarp)
COSINE_FLOOR = 1e-6  # |x| |m| below this counts as this (magikarp's clip: zero rows score 1)


class UnusedTokensError(ArgumentError):
    """The known-unused tokens given (`unused`) cannot be used: `problem` says why."""

    argument = "unused"

    def __init__(self, problem: str):
        self.problem = problem
        super().__init__("unused=")

    def worded(self, name: str) -> str:
        return f"{name}: {self.problem}"


class NoUnusedTokensError(ArgumentError):
    """The tokenizer and the matrix show no token that is surely unused, and `unused` named none."""

    argument = "unused"

    def __init__(self):
        super().__init__("unused=")

    def worded(self, name: str) -> str:
        return ("no known-unused tokens to compare with: the tokenizer has no single-byte tokens for bytes that"
                " never occur in UTF-8 (0xC0, 0xC1, 0xF5-0xFF) and no unreachable tokens, and the matrix no rows"
                f" past its vocabulary; name tokens training never saw with {name}")


@dataclass(frozen=True)
class KnownUnused:
    """The tokens whose mean vector stands for "never trained"."""

    ids: np.ndarray  # (u,) sorted
    given: bool  # named by the caller, not found from the tokenizer
    parts: dict[str, int]  # default set: how many came from each source (see `known_unused`)


def known_unused(categories: TokenCategories) -> KnownUnused:
    """The default set: single-byte tokens for bytes that never occur in UTF-8 (0xC0, 0xC1,
    0xF5-0xFF), tokens the tokenizer can never produce (unreachable, single bytes among them),
    and matrix rows past the tokenizer's vocabulary (padding)."""
    codes = categories.codes
    parts = {"byte-not-utf8": codes == NOT_UTF8, "unreachable": categories.unreachable & (codes != NOT_UTF8),
             "padding": codes == PADDING}
    ids = np.flatnonzero(np.logical_or.reduce(list(parts.values())))
    return KnownUnused(ids, False, {k: int(v.sum()) for k, v in parts.items()})


def given_unused(ids, rows: int) -> KnownUnused:
    """The caller's set, checked against the matrix's `rows`."""
    ids = np.unique(np.asarray(list(ids), dtype=np.int64))
    if ids.size == 0:
        raise UnusedTokensError("no token ids given")
    out = ids[(ids < 0) | (ids >= rows)]
    if out.size:
        raise UnusedTokensError(f"token id #{out[0]} is out of range (the matrix has {rows} rows)")
    return KnownUnused(ids, True, {})


@dataclass(frozen=True)
class Indicators:
    values: dict[str, np.ndarray]  # name -> (V,) float64; NaN on rows that are not finite
    norms: np.ndarray  # (V,) float64 L2 norm of each row
    component: PrincipalComponent  # the first principal component removed
    explained: float  # the fraction of the variance along it
    unused: np.ndarray  # the known-unused rows whose mean was taken (finite ones only)


@dataclass(frozen=True)
class Fitted:
    """What the indicators need of the matrix alone, before the unused set is known."""

    ok: np.ndarray  # (V,) bool: rows holding no NaN or Inf
    component: PrincipalComponent  # of the finite rows


def fit(x: np.ndarray) -> Fitted:
    """The finite rows of x (V, d) and their first principal component. The rows' float64 sum
    is finite exactly when every row is (float32 values cannot add up past float64's range):
    only then is the pass that finds the bad rows skipped."""
    total = row_mean(x)
    if np.isfinite(total[0]).all():
        return Fitted(np.ones(x.shape[0], dtype=bool), first_component(x, mean=total))
    ok = _finite_rows(x)  # (V,)
    return Fitted(ok, first_component(x, ok))


def indicators(x: np.ndarray, unused: np.ndarray, fitted: Fitted | None = None) -> Indicators:
    """Every row's distance from the mean of the `unused` rows of x (V, d): cosine distance, the
    same after removing the first principal component (of all finite rows) from every row and
    from the mean, L2 distance. `fitted`: `fit(x)`, when already done."""
    fitted = fitted or fit(x)
    ok, pc = fitted.ok, fitted.component
    used = unused[ok[unused]]
    if used.size == 0:
        raise EmbscopeError("every known-unused row holds NaN or Inf: there is no mean to compare with")
    p = pc.vector  # (d,)
    rows = x[used].astype(np.float64)  # (u, d)
    mean = rows.mean(axis=0)  # (d,)
    mean_no_pc = (rows - np.outer(rows @ p, p)).mean(axis=0)  # (d,)
    values, norms = _distances(x, p, mean, mean_no_pc)
    for v in values.values():
        v[~ok] = np.nan
    total = float(np.sum(norms[ok] ** 2) - ok.sum() * (pc.mean @ pc.mean))  # n * trace of the covariance
    return Indicators(values, norms, pc, pc.variance * ok.sum() / total if total > 0 else float("nan"), used)


WIDE_BLOCK = 1024  # rows per block of the float64 pass (one reused buffer, 6 MiB for d = 768)


def _float64_blocks(x: np.ndarray):
    """(start, rows [start, start + b) of x as float64), in one reused (WIDE_BLOCK, d) buffer."""
    buffer = np.empty((min(WIDE_BLOCK, x.shape[0]), x.shape[1]))
    for a in range(0, x.shape[0], WIDE_BLOCK):
        rows = x[a:a + WIDE_BLOCK]
        block = buffer[:len(rows)]
        np.copyto(block, rows)
        yield a, block


def _finite_rows(x: np.ndarray) -> np.ndarray:
    """(V,) bool: the rows holding no NaN or Inf (their float32 length, or float64 where that
    overflows, is finite)."""
    from embscope.analysis.norms import lengths

    return np.concatenate([np.isfinite(lengths(x[a:a + WIDE_BLOCK])) for a in range(0, x.shape[0], WIDE_BLOCK)])


def _distances(x: np.ndarray, p: np.ndarray, mean: np.ndarray,
               mean_no_pc: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(the three indicators of every row, its L2 norm), block by block in float64: for a row x
    with s = x.p, x without the component is x - s p, its dot with mean_no_pc (which is
    orthogonal to p) is x.mean_no_pc - s p.mean_no_pc, and its squared length |x|^2 - s^2."""
    n = x.shape[0]
    out = {name: np.empty(n) for name in INDICATORS}
    norms = np.empty(n)
    refs = np.stack([p, mean, mean_no_pc])  # (3, d)
    m_len, m0_len, p_m0 = np.linalg.norm(mean), np.linalg.norm(mean_no_pc), p @ mean_no_pc
    with np.errstate(invalid="ignore", over="ignore"):
        for a, block in _float64_blocks(x):  # (b, d)
            # einsum, not BLAS: a (b, d) x (d, 3) product is a poor fit for its threads
            s, dot, dot0 = np.einsum("ij,kj->ki", block, refs)  # (b,) each
            sq = np.einsum("ij,ij->i", block, block)  # (b,)
            b = slice(a, a + len(block))
            norms[b] = np.sqrt(sq)
            out["cosine"][b] = 1 - dot / np.maximum(norms[b] * m_len, COSINE_FLOOR)
            no_pc_len = np.sqrt(np.maximum(sq - s * s, 0))
            out["cosine_no_pc"][b] = 1 - (dot0 - s * p_m0) / np.maximum(no_pc_len * m0_len, COSINE_FLOOR)
            out["l2"][b] = np.sqrt(np.maximum(sq - 2 * dot + mean @ mean, 0))
    return out, norms


def threshold_at(values: np.ndarray, codes: np.ndarray, percentile: float) -> float:
    """The `percentile` of the indicator over the normal tokens (finite values only); NaN when
    there is none (a character-level vocabulary: every token is a single byte)."""
    v = values[(codes == NORMAL) & np.isfinite(values)]
    return float(np.percentile(v, percentile)) if v.size else float("nan")


def candidates(values: np.ndarray, codes: np.ndarray, threshold: float) -> np.ndarray:
    """Ids of the normal tokens at or below `threshold`, lowest first, ties by id."""
    ids = np.flatnonzero((codes == NORMAL) & (values <= threshold))
    return ids[np.lexsort((ids, values[ids]))]
