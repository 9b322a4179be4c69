"""What the API returns: small frozen dataclasses holding numpy arrays, with `to_records()` (a list
of dicts) and `to_pandas()` (a DataFrame, when pandas is installed)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from embscope.analysis.norms import Stats, stats
from embscope.analysis.pca import Pca
from embscope.errors import EmbscopeError


class _Records:
    def to_records(self) -> list[dict]:
        raise NotImplementedError

    def to_pandas(self):
        try:
            import pandas as pd
        except ImportError:
            from embscope.errors import missing_extra

            raise missing_extra("pandas", "pandas", "to_pandas()") from None
        return pd.DataFrame.from_records(self.to_records())


@dataclass(frozen=True)
class Neighbor:
    rank: int
    id: int
    token: str
    score: float


@dataclass(frozen=True, eq=False)
class Neighbors(_Records):
    """The nearest tokens to one query, nearest first (euclidean: distances, ascending)."""

    query: str
    metric: str
    ids: np.ndarray  # (k,) int64
    tokens: tuple[str, ...]  # (k,) printable token labels
    scores: np.ndarray  # (k,) float32

    def __len__(self) -> int:
        return len(self.ids)

    def __iter__(self):
        for rank, (i, t, s) in enumerate(zip(self.ids.tolist(), self.tokens, self.scores.tolist()), 1):
            yield Neighbor(rank, i, t, s)

    def to_records(self) -> list[dict]:
        return [n.__dict__.copy() for n in self]


@dataclass(frozen=True, eq=False)
class KnnBlock(_Records):
    """A block of the k-NN graph: the neighbours of tokens `ids`. Rows with fewer than k
    neighbours (NaN/Inf rows left out) end in id -1 and score NaN."""

    metric: str
    ids: np.ndarray  # (b,) token ids
    neighbor_ids: np.ndarray  # (b, k) int64
    scores: np.ndarray  # (b, k) float32

    def to_records(self) -> list[dict]:
        return [{"id": int(i), "rank": r + 1, "neighbor_id": int(n), "score": float(s)}
                for i, row, srow in zip(self.ids, self.neighbor_ids, self.scores)
                for r, (n, s) in enumerate(zip(row, srow)) if n >= 0]


@dataclass(frozen=True, eq=False)
class PositionSimilarity(_Records):
    """Pairwise similarity of learned positions (euclidean: distance)."""

    metric: str
    positions: np.ndarray  # (n,) position numbers
    matrix: np.ndarray  # (n, n) float32

    def by_offset(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(offsets |i - j| (n,), mean over the pairs at that offset (n,), pairs (n,))."""
        from embscope.analysis.positions import by_offset

        n = len(self.positions)
        step = int(self.positions[1] - self.positions[0]) if n > 1 else 1
        return np.arange(n) * step, by_offset(self.matrix), n - np.arange(n)

    def by_offset_array(self) -> np.ndarray:
        """(n, 2) float64: offset and mean similarity, a row per offset (`--by-offset -o x.npy`)."""
        offsets, means, _ = self.by_offset()
        return np.stack([offsets.astype(np.float64), means], axis=1)

    def to_records(self) -> list[dict]:
        return [{"position": int(p), "values": row.tolist()} for p, row in zip(self.positions, self.matrix)]

    def to_pandas(self):
        super().to_pandas()  # the install hint when pandas is missing
        import pandas as pd

        return pd.DataFrame(self.matrix, index=self.positions, columns=self.positions)


@dataclass(frozen=True, eq=False)
class Norms(_Records):
    """L2 norms of the token rows, the vocabulary padding rows and the position rows (float64),
    and each token's distance from the mean token (None unless asked for). NaN/Inf rows have
    norms that are not finite and are left out of the statistics and the extremes."""

    token: np.ndarray  # (n_tokens,)
    padding: np.ndarray  # (padding rows,)
    position: np.ndarray | None  # (positions,) or None
    centroid_distance: np.ndarray | None  # (n_tokens,), or None: Model.norms(centroid=False)

    def values(self, of: str = "norm") -> np.ndarray:
        """The token norms ("norm") or centroid distances ("centroid_distance"), (n_tokens,)."""
        if of == "norm":
            return self.token
        if of != "centroid_distance":
            raise EmbscopeError(f"unknown value '{of}' (choose from norm, centroid_distance)")
        if self.centroid_distance is None:
            raise EmbscopeError("centroid distances were not computed: use norms(centroid=True)")
        return self.centroid_distance

    def finite(self, of: str = "norm") -> np.ndarray:
        """`values(of)` without the NaN/Inf rows."""
        v = self.values(of)
        return v[np.isfinite(v)]

    def nonfinite(self) -> np.ndarray:
        """Ids of the token rows holding NaN or Inf (their norm is not finite)."""
        return np.flatnonzero(~np.isfinite(self.token))

    def stats(self) -> dict[str, Stats]:
        sets = {"token": self.token}
        if len(self.padding):
            sets["padding"] = self.padding
        if self.position is not None:
            sets["position"] = self.position
        return {name: stats(v) for name, v in sets.items()}

    def extremes(self, n: int, largest: bool = True, of: str = "norm") -> np.ndarray:
        """Ids of the `n` tokens with the largest (or smallest) norm, or centroid distance."""
        from embscope.analysis.norms import extremes

        return extremes(self.values(of), n, largest)

    def to_records(self) -> list[dict]:
        values = {"token": self.token, "padding": self.padding, "position": self.position}
        return [{"rows": name, **s.as_dict(), "nonfinite": int((~np.isfinite(values[name])).sum())}
                for name, s in self.stats().items()]


@dataclass(frozen=True, eq=False)
class NormOutliers(_Records):
    """Tokens at both ends of the norm distribution ("largest", "smallest"), or of the distance
    from the centroid ("far", "near"): glitch-token candidates. Ranked from each end, ties by id."""

    of: str  # "norm" or "centroid_distance"
    ends: tuple[str, ...]  # (k,) which end each row is at
    ranks: np.ndarray  # (k,) 1, 2, ... from each end
    ids: np.ndarray  # (k,) token ids
    tokens: tuple[str, ...]  # (k,) printable token labels
    values: np.ndarray  # (k,) the norms or centroid distances ranked
    norms: np.ndarray  # (k,) the tokens' norms

    def __len__(self) -> int:
        return len(self.ids)

    def to_records(self) -> list[dict]:
        rows = []
        for end, rank, i, t, v, n in zip(self.ends, self.ranks.tolist(), self.ids.tolist(), self.tokens,
                                         self.values.tolist(), self.norms.tolist()):
            row = {"end": end, "rank": rank, "id": i, "token": t, self.of: v}
            if self.of != "norm":
                row["norm"] = n
            rows.append(row)
        return rows


@dataclass(frozen=True, eq=False)
class Embedding(_Records):
    """What the embedding layer computes for one text: (T, d) arrays, positions 0..T-1."""

    text: str
    ids: tuple[int, ...]
    tokens: tuple[str, ...]
    token: np.ndarray  # (T, d) token embeddings
    position: np.ndarray | None  # (T, d) position embeddings, None without learned positions
    sum: np.ndarray  # (T, d) the layer's output (with token type 0 / LayerNorm where the family has them)

    def vector(self, component: str = "sum", pool: str = "none") -> np.ndarray:
        """The component's (T, d) rows, or one (d,) vector pooled by 'mean' or 'last'."""
        from embscope.analysis.embed import COMPONENTS
        from embscope.analysis.embed import pool as pool_

        if component not in COMPONENTS:
            raise EmbscopeError(f"unknown component '{component}' (choose from {', '.join(COMPONENTS)})")
        if component == "position" and self.position is None:
            raise EmbscopeError("this model has no learned position embeddings")
        return pool_(self.parts()[component], pool)

    def norms(self, component: str = "sum", pool: str = "none") -> np.ndarray:
        """L2 norm of each of the component's (T,) rows, or of the pooled vector (a 0-d array);
        float32, as the vectors are."""
        return np.linalg.norm(self.vector(component, pool), axis=-1)

    def parts(self) -> dict[str, np.ndarray]:
        out = {"token": self.token, "sum": self.sum}
        if self.position is not None:
            out["position"] = self.position
        return out

    def to_records(self) -> list[dict]:
        rows = []
        for p, (i, t) in enumerate(zip(self.ids, self.tokens)):
            row = {"pos": p, "id": i, "token": t, "|token|": float(np.linalg.norm(self.token[p]))}
            if self.position is not None:
                row["|position|"] = float(np.linalg.norm(self.position[p]))
            row["|sum|"] = float(np.linalg.norm(self.sum[p]))
            rows.append(row)
        return rows


@dataclass(frozen=True, eq=False)
class Selection(_Records):
    """Rows chosen for a map or an export (`Model.select`): token ids, or position numbers."""

    kind: str  # "tokens" or "positions"
    ids: np.ndarray  # (n,) token ids or position numbers, in the order chosen
    labels: tuple[str, ...]  # (n,) printable token labels; positions: their numbers
    description: str  # how they were chosen, for titles: "tokens 0..99"
    highlight: tuple[int, ...] = ()  # ids pictures pick out: a neighbourhood's query tokens
    repeats: int = 0  # ids named more than once (kept once)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def id_name(self) -> str:
        return "position" if self.kind == "positions" else "id"

    def to_records(self) -> list[dict]:
        if self.kind == "positions":
            return [{"position": i} for i in self.ids.tolist()]
        return [{"id": i, "token": t} for i, t in zip(self.ids.tolist(), self.labels)]


@dataclass(frozen=True, eq=False)
class Map(_Records):
    """Points in a few dimensions for rows of wte or wpe (`Model.map`): PCA, t-SNE or UMAP.
    Rows holding NaN or Inf cannot be placed: they are left out (`left_out`)."""

    rows: Selection  # the rows placed (without the left-out ones)
    method: str  # "pca", "tsne" or "umap"
    coords: np.ndarray  # (n, k) float64
    pca: Pca | None  # method "pca": components, explained variance, solver, error bound
    left_out: np.ndarray  # (m,) ids (or positions) whose rows hold NaN or Inf

    @property
    def axes(self) -> tuple[str, ...]:
        """Column names of the coordinates: pc1, pc2, ... (tsne1, ..., umap1, ...)."""
        prefix = "pc" if self.method == "pca" else self.method
        return tuple(f"{prefix}{j + 1}" for j in range(self.coords.shape[1]))

    def to_records(self) -> list[dict]:
        return [{**row, **dict(zip(self.axes, xy))} for row, xy in zip(self.rows.to_records(), self.coords.tolist())]

    def variance_records(self) -> list[dict]:
        """Per component: the singular value and its upper bound, the explained variance, its share
        of the total ("ratio") and that share's upper bound, and the cumulative share. The bounds
        equal the values for the exact SVD; for the randomized one see embscope.analysis.pca."""
        if self.pca is None:
            raise EmbscopeError(f"a {self.method} map has no explained variance (only PCA has)")
        p = self.pca
        upper, ratio_upper = p.singular_value_bounds()[1], p.ratio_bounds()[1]
        return [{"component": name, "singular_value": float(s), "singular_max": float(su), "variance": float(v),
                 "ratio": float(r), "ratio_max": float(ru), "cumulative": float(c)}
                for name, s, su, v, r, ru, c in zip(self.axes, p.singular_values, upper, p.explained_variance,
                                                    p.explained_variance_ratio, ratio_upper,
                                                    np.cumsum(p.explained_variance_ratio))]


@dataclass(frozen=True)
class Export:
    """Files `Model.export` wrote."""

    to: str  # "projector", "word2vec" or "npy"
    path: str  # the folder or file named
    files: tuple[str, ...]  # every file written
    rows: int
    dim: int
    renamed: int = 0  # word2vec: tokens whose key was taken already, written with their '\\#id'


@dataclass(frozen=True, eq=False)
class PositionDrift(_Records):
    """How each learned position moved between two checkpoints (positions both have)."""

    positions: np.ndarray  # (P,) 0..P-1
    cosine: np.ndarray  # (P,) float64, after the tokens' alignment (raw when align is none)
    cosine_raw: np.ndarray  # (P,)
    norm_ratio: np.ndarray  # (P,) |B| / |A|

    def to_records(self) -> list[dict]:
        return [{"position": p, "cosine": c, "cosine_raw": r, "norm_ratio": n} for p, c, r, n
                in zip(self.positions.tolist(), self.cosine.tolist(), self.cosine_raw.tolist(),
                       self.norm_ratio.tolist())]


@dataclass(frozen=True, eq=False)
class Diff(_Records):
    """How each token moved from checkpoint `a` to checkpoint `b`: the cosine between its two
    vectors after aligning B to A (raw when `align` is "none"), the raw cosine, |B| / |A|, and
    the Jaccard overlap of its k nearest neighbours in each (None when k is 0). Rows that are
    zero or not finite in either checkpoint hold NaN. `ids` are A's token ids, `ids_b` B's ids
    of the same tokens (equal unless matched by token bytes)."""

    a: str
    b: str
    align: str  # "procrustes" or "none"
    k: int
    by_token: bool
    n_tokens: tuple[int, int]  # real tokens in A and in B
    ids: np.ndarray  # (n,) int64
    ids_b: np.ndarray  # (n,) int64
    tokens: tuple[str, ...]  # (n,) printable labels (A's)
    cosine: np.ndarray  # (n,) float64
    cosine_raw: np.ndarray  # (n,)
    norm_ratio: np.ndarray  # (n,)
    jaccard: np.ndarray | None  # (n,)
    rotation: np.ndarray | None  # (d, d): B @ rotation is aligned to A
    positions: PositionDrift | None
    notes: tuple[str, ...] = ()  # what the comparison noticed, for people

    def __len__(self) -> int:
        return len(self.ids)

    def measures(self) -> dict[str, np.ndarray]:
        """The per-token measures by name ("cosine" first: what drift is ranked by)."""
        out = {"cosine": self.cosine}
        if self.align != "none":
            out["cosine_raw"] = self.cosine_raw
        out["norm_ratio"] = self.norm_ratio
        if self.jaccard is not None:
            out["jaccard"] = self.jaccard
        return out

    def stats(self) -> dict[str, Stats]:
        """Statistics of each measure over the compared tokens (NaN rows left out), and of the
        positions' cosine when both checkpoints have learned positions."""
        out = {name: stats(v) for name, v in self.measures().items()}
        if self.positions is not None:
            out["position_cosine"] = stats(self.positions.cosine)
        return out

    def left_out(self) -> np.ndarray:
        """A's ids of the tokens left out (zero or not finite in either checkpoint)."""
        return self.ids[~np.isfinite(self.cosine)]

    def movers(self, n: int, most: bool = True) -> np.ndarray:
        """Row indices of the `n` tokens that moved most (lowest cosine) or least, ties by id."""
        from embscope.analysis.norms import extremes

        return extremes(self.cosine, n, largest=not most)

    def rows(self, index) -> list[dict]:
        """The records of rows `index` (positions in the arrays)."""
        measures = self.measures()
        out = []
        for i in np.asarray(index, dtype=np.int64).tolist():
            row = {"id": int(self.ids[i])}
            if self.by_token:
                row["id_b"] = int(self.ids_b[i])
            row["token"] = self.tokens[i]
            row.update({name: float(v[i]) for name, v in measures.items()})
            out.append(row)
        return out

    def mover_records(self, n: int) -> list[dict]:
        """The `n` tokens that moved most and the `n` that moved least, ranked from each end."""
        return [{"end": end, "rank": r, **row} for end in ("most", "least")
                for r, row in enumerate(self.rows(self.movers(n, end == "most")), 1)]

    def summary_records(self) -> list[dict]:
        return [{"measure": name, **s.as_dict()} for name, s in self.stats().items()]

    def to_records(self) -> list[dict]:
        """One record per compared token."""
        return self.rows(np.arange(len(self.ids)))


@dataclass(frozen=True, eq=False)
class Drift(_Records):
    """Drift over training: for each checkpoint, the mean aligned cosine (raw when `align` is
    "none") and mean Jaccard@k of its tokens against the previous checkpoint and against the
    last (NaN where there is none; jaccard None when k is 0)."""

    names: tuple[str, ...]
    steps: tuple[int | None, ...]
    align: str
    k: int
    n_compared: int  # tokens compared in every checkpoint
    cosine_prev: np.ndarray  # (c,)
    cosine_last: np.ndarray  # (c,)
    jaccard_prev: np.ndarray | None  # (c,)
    jaccard_last: np.ndarray | None  # (c,)
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.names)

    def columns(self) -> dict[str, np.ndarray]:
        out = {"cosine_prev": self.cosine_prev}
        if self.jaccard_prev is not None:
            out["jaccard_prev"] = self.jaccard_prev
        out["cosine_last"] = self.cosine_last
        if self.jaccard_last is not None:
            out["jaccard_last"] = self.jaccard_last
        return out

    def to_records(self) -> list[dict]:
        columns = self.columns()
        return [{"checkpoint": name, "step": step,
                 **{c: (float(v[i]) if np.isfinite(v[i]) else None) for c, v in columns.items()}}
                for i, (name, step) in enumerate(zip(self.names, self.steps))]


@dataclass(frozen=True, eq=False)
class Info(_Records):
    """What a checkpoint holds and how embscope read it: (field, value) facts, in the order
    `embscope info` prints them (source, format, family, files, tensors, sizes, dtype, tokenizer,
    bytes read, training facts, file metadata, load time)."""

    name: str
    facts: tuple[tuple[str, object], ...]

    def __getitem__(self, field: str) -> object:
        for f, value in self.facts:
            if f == field:
                return value
        raise KeyError(field)

    def as_dict(self) -> dict[str, object]:
        return dict(self.facts)

    def to_records(self) -> list[dict]:
        return [{"field": f, "value": v} for f, v in self.facts]


@dataclass(frozen=True, eq=False)
class Similarity(_Records):
    """Pairwise similarity of words or texts (euclidean: distance), each the vector `neighbors`
    searches with: a token's row, or the mean of a text's token rows."""

    metric: str
    items: tuple[str, ...]  # (n,) as given
    ids: tuple[tuple[int, ...], ...]  # (n,) each item's token ids
    tokens: tuple[tuple[str, ...], ...]  # (n,) their printable labels
    vectors: np.ndarray  # (n, d) float32
    matrix: np.ndarray  # (n, n) float32

    def __len__(self) -> int:
        return len(self.items)

    @property
    def score(self) -> float:
        """The score of two items (more items: `matrix`)."""
        if len(self.items) != 2:
            raise EmbscopeError(f"{len(self.items)} items have {len(self.items) * (len(self.items) - 1) // 2}"
                                " scores: read them from .matrix or .to_records()")
        return float(self.matrix[0, 1])

    def pairs(self):
        """(i, j) for every pair of items, i < j, in order."""
        n = len(self.items)
        return [(i, j) for i in range(n) for j in range(i + 1, n)]

    def to_records(self) -> list[dict]:
        return [{"a": self.items[i], "b": self.items[j], "score": float(self.matrix[i, j])} for i, j in self.pairs()]

    def to_pandas(self):
        super().to_pandas()  # the install hint when pandas is missing
        import pandas as pd

        return pd.DataFrame(self.matrix, index=list(self.items), columns=list(self.items))


@dataclass(frozen=True, eq=False)
class Tokens(_Records):
    """Tokens with their ids and the norms of their rows: a text as it tokenizes (`text`, at
    positions 0..T-1), or vocabulary entries (by id, or found by a pattern; `text` None)."""

    text: str | None
    ids: np.ndarray  # (n,) int64
    tokens: tuple[str, ...]  # (n,) printable token labels
    norms: np.ndarray  # (n,) float64 L2 norm of each token's row in the token matrix

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def columns(self) -> list[str]:
        """The fields of `to_records()`: a position first for a tokenized text."""
        return ["id", "token", "norm"] if self.text is None else ["pos", "id", "token", "norm"]

    def to_records(self) -> list[dict]:
        rows = [{"id": i, "token": t, "norm": n}
                for i, t, n in zip(self.ids.tolist(), self.tokens, self.norms.tolist())]
        if self.text is None:
            return rows
        return [{"pos": p, **row} for p, row in enumerate(rows)]


IN_OTHER_SHOWN = 3  # longer tokens named in a candidate's `in_other_tokens` (the ids: all of them)


@dataclass(frozen=True, eq=False)
class GlitchCandidates(_Records):
    """Under-trained token candidates: normal tokens at or below the threshold, lowest first
    (ties by id), with the longer tokens that contain each (shortest first, ties by id)."""

    indicator: str  # which indicator ranked them
    ids: np.ndarray  # (k,) token ids
    tokens: tuple[str, ...]  # (k,) printable token labels
    values: np.ndarray  # (k,) float64 the indicator
    categories: tuple[str, ...]  # (k,)
    norms: np.ndarray  # (k,) float64 L2 norms of the rows
    in_other_ids: tuple[np.ndarray, ...]  # (k,) ids of the longer tokens holding each token's bytes
    in_other_labels: tuple[tuple[str, ...], ...]  # (k,) labels of the first IN_OTHER_SHOWN of them

    def __len__(self) -> int:
        return len(self.ids)

    def in_other_text(self, j: int) -> str:
        """The `in_other_tokens` cell of row j: the first labels, and how many more, between "|"
        (labels may begin or end with spaces, which tables show as ␣)."""
        more = len(self.in_other_ids[j]) - len(self.in_other_labels[j])
        return "|".join(self.in_other_labels[j]) + (f"|…+{more}" if more > 0 else "")

    def to_records(self) -> list[dict]:
        return [{"rank": j + 1, "id": i, "token": t, "indicator": v, "category": c, "norm": n,
                 "in_other_tokens": self.in_other_text(j)}
                for j, (i, t, v, c, n) in enumerate(zip(self.ids.tolist(), self.tokens, self.values.tolist(),
                                                        self.categories, self.norms.tolist()))]


@dataclass(frozen=True, eq=False)
class Glitch(_Records):
    """`Model.glitch()`: every row's category and indicators, the known-unused set they were
    measured against, the threshold and the candidates below it. `to_records()` gives a record
    per row of the matrix; `candidates.to_records()` the candidates."""

    name: str
    matrix: str  # the tensor the indicators were computed on, "(tied)" when it is also the input one
    indicator: str  # the indicator that ranks (one of `values`)
    categories: np.ndarray  # (V,) category names, embscope.token_categories.CATEGORIES
    unreachable: np.ndarray  # (V,) bool: the token's text does not encode as that token
    values: dict[str, np.ndarray]  # indicator name -> (V,) float64, NaN on rows that are not finite
    norms: np.ndarray  # (V,) float64 L2 norms of the rows
    unused: np.ndarray  # (u,) the known-unused rows whose mean vector is the reference
    unused_given: bool  # named by the caller (else found from the tokenizer and the matrix)
    unused_parts: dict[str, int]  # the default set: how many rows from each source
    threshold: float
    percentile: float | None  # the percentile of the normal tokens the threshold is, None when given
    explained: float  # the fraction of the variance along the first principal component
    pc_steps: int  # matrix passes the first principal component took
    candidates: GlitchCandidates
    notes: tuple[str, ...]
    label: Callable[[int], str]  # id -> printable token label (Model.token)

    def counts(self) -> dict[str, tuple[int, int]]:
        """Category -> (rows, rows at or below the threshold), for the categories present."""
        from embscope.token_categories import CATEGORIES

        below = self.values[self.indicator] <= self.threshold  # (V,)
        out = {}
        for name in CATEGORIES:
            mine = self.categories == name
            if mine.any():
                out[name] = (int(mine.sum()), int((mine & below).sum()))
        return out

    def stats(self) -> dict[str, Stats]:
        """Statistics of each indicator over the rows where it is finite."""
        return {name: stats(v) for name, v in self.values.items()}

    def nonfinite(self) -> np.ndarray:
        """Ids of the rows holding NaN or Inf (no indicator)."""
        return np.flatnonzero(~np.isfinite(self.norms))

    def rows(self):
        """A tuple per row of the matrix: id, token, category, the ranking indicator, the three
        indicators, norm (what `glitch --all` prints)."""
        from embscope.analysis.glitch import INDICATORS

        columns = [self.categories.tolist(), self.values[self.indicator].tolist(),
                   *(self.values[name].tolist() for name in INDICATORS), self.norms.tolist()]
        for i, row in enumerate(zip(*columns)):
            yield (i, self.label(i), *row)

    def to_records(self) -> list[dict]:
        from embscope.analysis.glitch import INDICATORS

        names = ["id", "token", "category", "indicator", *INDICATORS, "norm"]
        return [dict(zip(names, row)) for row in self.rows()]
