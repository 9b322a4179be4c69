"""The Python API: `embscope.load(spec)` and the questions a `Model` answers.

Every CLI command is a thin wrapper over one of these calls, so a notebook gets the same numbers
and the same errors (`EmbscopeError`, with the messages the CLI prints, naming `load`'s
arguments where the CLI names its options).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from embscope.analysis.similarity import METRICS, Index
from embscope.errors import EmbscopeError
from embscope.model import Embeddings
from embscope.results import (
    Embedding, Export, Glitch, Info, KnnBlock, Map, Neighbors, NormOutliers, Norms, PositionSimilarity,
    Selection, Similarity, Tokens,
)

if TYPE_CHECKING:
    from embscope.results import Diff, Drift


def load(spec: str | None = None, *, wte_key: str | None = None, wpe_key: str | None = None,
         tokenizer: str | None = None, meta: str | None = None, step: int | None = None,
         progress: bool = False, matrix: str = "input", memory_budget: int | str | None = None) -> Model:
    """The embedding layer of a model: a ckpt.pt, a .safetensors file, a model directory, a
    training-run folder (nanochat, llm.c: the last step, or `step`) or a Hugging Face hub id
    (`org/name@rev`); the bundled Tiny Shakespeare model when `spec` is None and $EMBSCOPE_MODEL
    is unset. Reads only the embedding tensors, memory-mapped; never torch. What loading noticed
    (which keys were taken, say) is in `Model.emb.notes`. `progress=True` shows a progress bar
    on stderr while weights come from the Hugging Face Hub. `matrix="output"`: every question
    about tokens is asked of the output embedding (the LM head: `lm_head.weight`, Pythia's
    `embed_out.weight`) instead of the input one; a model that ties them has one matrix for both
    (said in `Model.emb.notes`). `memory_budget`: see `Model.memory_budget`."""
    from embscope.model import load as load_embeddings

    return Model(load_embeddings(spec, wte_key=wte_key, wpe_key=wpe_key, tokenizer=tokenizer, meta=meta,
                                 step=step, progress=progress, matrix=matrix), memory_budget)


def diff(a: Model | str, b: Model | str, *, align: str = "procrustes", k: int = 10,
         by_token: bool = False) -> Diff:
    """How each token moved from checkpoint `a` to `b` (Models, or specs for `load`): cosine
    after aligning B to A by an orthogonal Procrustes rotation (`align="none"`: raw only), raw
    cosine, norm ratio |B|/|A|, Jaccard overlap of the k nearest neighbours (k=0: skipped), and
    the learned positions' drift. Rows are compared by id (the real tokens: padding rows are left
    out); `by_token=True` matches them by token bytes instead."""
    from embscope import comparison

    comparison.check_options(align, k)
    return comparison.diff(_model(a), _model(b), align, k, by_token)


def drift(models: Iterable[Model | str], *, align: str = "procrustes", k: int = 10,
          by_token: bool = False) -> Drift:
    """Drift over training: each checkpoint's mean aligned cosine and mean Jaccard@k against the
    previous checkpoint and against the last (`models`: in training order)."""
    from embscope import comparison

    comparison.check_options(align, k)
    return comparison.drift([_model(m) for m in models], align, k, by_token)


def run_steps(spec: str) -> list[int]:
    """The training steps saved in a nanochat checkpoint folder or an llm.c log folder; load one
    with `load(spec, step=s)`."""
    from embscope.io.runs import saved_steps

    return saved_steps(spec)


def _model(m: Model | str) -> Model:
    return m if isinstance(m, Model) else load(m)


def _choice(name: str, value: str, allowed: Iterable[str]) -> str:
    if value not in allowed:
        raise EmbscopeError(f"unknown {name} '{value}' (choose from {', '.join(allowed)})")
    return value


class Model:
    """One model's token matrix `wte` (V, d), learned positions `wpe` (P, d) and tokenizer."""

    def __init__(self, emb: Embeddings, memory_budget: int | str | None = None):
        from embscope.timing import Stages

        self.emb = emb
        self._index: Index | None = None
        self._labels: dict[int, str] = {}
        self._budget: int | None = None
        self.memory_budget = memory_budget
        self.stages = Stages()  # seconds per stage of the searches (and of the CLI around them)

    def __repr__(self) -> str:
        return f"<embscope.Model {self.emb.name}: {self.emb.vocab_rows} x {self.emb.dim} {self.emb.format}>"

    # --- what the model holds ---------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.emb.name

    @property
    def tokenizer(self):
        return self.emb.tokenizer

    @property
    def matrix(self) -> str:
        """"input" or "output": which token matrix `wte` and every question about tokens use."""
        return self.emb.matrix

    @property
    def n_tokens(self) -> int:
        """Real tokens: rows [n_tokens, V) of `wte` are vocabulary padding."""
        return self.emb.n_tokens

    def info(self) -> Info:
        """What the checkpoint holds and how it was read: format, family, files, tensor names,
        sizes, dtype, tokenizer, bytes read, training facts and file metadata."""
        from embscope.summary import describe

        return Info(self.name, tuple(describe(self.emb)))

    @functools.cached_property
    def wte(self) -> np.ndarray:
        """(V, d) float32 token embeddings (the output embedding when loaded with
        `matrix="output"`): memory-mapped when stored as float32, else converted
        (once: the array is kept)."""
        m = self.emb.wte
        return m.raw if m.raw.dtype == np.float32 else m.to_float32()

    @property
    def wpe(self) -> np.ndarray | None:
        """(P, d) float32 embeddings of positions 0..P-1 (after the family's row offset), or None."""
        return None if self.emb.wpe is None else self.emb.position_rows(0, self.emb.n_positions)

    @property
    def n_positions(self) -> int:
        """Learned positions (rows of `wpe` after the family's offset); 0 for rotary / ALiBi models."""
        return self.emb.n_positions

    def require_positions(self) -> None:
        """The error every question about positions gives on a model without learned positions."""
        self.emb.require_positions()

    def token(self, token_id: int) -> str:
        """The token as printable, lossless text (what the CLI prints: control bytes and invalid
        UTF-8 escaped, e.g. '\\xe2'); `tokenizer.token_bytes(id)` gives the raw bytes."""
        label = self._labels.get(token_id)
        if label is None:
            from embscope.display import escape

            if not 0 <= token_id < self.emb.vocab_rows:
                raise EmbscopeError(f"token id #{token_id} is out of range (the model has {self.n_tokens} tokens)")
            if token_id >= self.n_tokens:
                label = "<pad>"
            else:
                label = escape(self.emb.token_text(token_id)) if self.tokenizer else f"#{token_id}"
            self._labels[token_id] = label
        return label

    def labels(self) -> list[str]:
        """`token(i)` of every token id 0..n_tokens-1."""
        return [self.token(i) for i in range(self.n_tokens)]

    # --- questions --------------------------------------------------------------------------

    @property
    def memory_budget(self) -> int | None:
        """Bytes that searches of many queries may hold in a prepared float32 copy of the rows
        and in buffers (None: a quarter of the available memory, read when first needed).
        Set it to bytes or a size: '512M', '4G', '25%'."""
        return self._budget

    @memory_budget.setter
    def memory_budget(self, size: int | str | None) -> None:
        from embscope.memory import parse_size

        self._budget = None if size is None else parse_size(size)
        if self._index is not None:
            self._index.budget = self._budget

    @property
    def index(self) -> Index:
        """The searchable token rows, with cached norms (built on first use)."""
        if self._index is None:
            self._index = Index(self.emb.wte, self.n_tokens, self._budget, stages=self.stages)
        return self._index

    def prepare_search(self, n_queries: int, metric: str = "cosine") -> None:
        """Do now what a search of `n_queries` queries first needs: the row norms and, within
        the memory budget, the prepared copy of the rows. (The CLI runs it in a thread while
        the queries are tokenized; a search does it itself when it has not been done.)"""
        self.index.plan(n_queries, metric)

    def queries(self, texts: list[str], exact: bool = False) -> list:
        """`query` of each text, all words tokenized at once; a text that cannot be resolved
        gives its error (an EmbscopeError) in its place."""
        from embscope.queries import resolve_lines

        return resolve_lines(self.emb, list(texts), exact)

    def query(self, text: str | list[str], exact: bool = False):
        """A word, '#id', text or arithmetic ('king - man + woman') resolved to token ids. A
        string is one argument; a list is the arguments of the CLI, where words side by side
        (["king", "queen"]) are added."""
        from embscope import queries

        return queries.resolve(self.emb, [text] if isinstance(text, str) else list(text), exact)

    def neighbors(self, query: str | list[str], k: int = 10, *, metric: str = "cosine", exact: bool = False,
                  include_query: bool = False, cosmul: bool = False) -> Neighbors:
        """The k nearest tokens to a word (' word' when that is one token), '#id', text or
        arithmetic; a list of words is added as gensim's most_similar(positive=[...]) adds them."""
        return self.neighbors_many([query], k, metric=metric, exact=exact, include_query=include_query,
                                   cosmul=cosmul)[0]

    def neighbors_many(self, queries: Iterable[str | list[str]], k: int = 10, *, metric: str = "cosine",
                       exact: bool = False, include_query: bool = False, cosmul: bool = False) -> list[Neighbors]:
        """`neighbors` for many queries at once: one blocked matrix product for all of them."""
        queries = list(queries)
        if all(isinstance(q, str) for q in queries):  # one argument each: tokenized at once
            qs = self.queries(queries, exact)
            for q in qs:
                if isinstance(q, EmbscopeError):
                    raise q
        else:  # lists are the CLI's arguments (words side by side are added)
            qs = [self.query(q, exact) for q in queries]
        return self.answer(qs, k, metric=metric, include_query=include_query, cosmul=cosmul)

    def answer(self, qs, k: int = 10, *, metric: str = "cosine", include_query: bool = False,
               cosmul: bool = False) -> list[Neighbors]:
        """Neighbours of already resolved queries (`Model.query`)."""
        return list(self.answer_iter(qs, k, metric=metric, include_query=include_query, cosmul=cosmul))

    def answer_iter(self, qs, k: int = 10, *, metric: str = "cosine", include_query: bool = False,
                    cosmul: bool = False) -> Iterator[Neighbors]:
        """`answer`, streamed: each query's Neighbors as soon as its chunk is answered. Errors
        (a query vector that is not finite, scores that would overflow) come before the first."""
        from embscope.analysis.neighbors import answer

        self._check_search(k, metric, cosmul)
        found = answer(self.emb, self.index, qs, k, metric, include_query, cosmul)
        first = next(found, None)  # the checks run before anything is yielded
        if first is None:
            return
        for q, (ids, scores) in zip(qs, itertools.chain([first], found)):
            yield Neighbors(q.text, metric, ids, tuple(self.token(i) for i in ids.tolist()), scores)

    def knn_graph(self, k: int = 10, *, metric: str = "cosine", rows: slice = slice(None)) -> Iterator[KnnBlock]:
        """The k nearest other tokens of every token in `rows`, streamed in blocks."""
        from embscope.analysis.neighbors import knn_blocks

        self._check_search(k, metric, False)
        start, stop, step = rows.indices(self.n_tokens)
        if step != 1 or start >= stop:
            raise EmbscopeError(f"rows {start}:{stop}: need a non-empty range of tokens with step 1")
        for ids, found, scores in knn_blocks(self.index, k, metric, start, stop):
            yield KnnBlock(metric, ids, found, scores)

    def _check_search(self, k: int, metric: str, cosmul: bool) -> None:
        _choice("metric", metric, METRICS)
        if k < 1:
            raise EmbscopeError(f"k must be at least 1 (got {k})")
        if k > self.n_tokens:
            raise EmbscopeError(f"k={k} is more than the model's {self.n_tokens} tokens")
        if cosmul and metric != "cosine":
            raise EmbscopeError("3CosMul works with the cosine metric only")

    def sim(self, *items: str, metric: str = "cosine", exact: bool = False) -> Similarity:
        """Similarity of two or more words, '#id's or texts, pairwise: each item as `neighbors`
        reads one argument (a text of several tokens is the mean of their vectors); `.score`
        for two items, `.matrix` (n, n) for more. Euclidean: distances."""
        from embscope.analysis.sim import item_vectors, pairwise

        if len(items) == 1 and not isinstance(items[0], str):  # sim(["a", "b", "c"])
            items = tuple(items[0])
        _choice("metric", metric, METRICS)
        qs = [self.query(text, exact) for text in items]
        vectors = item_vectors(self.emb, qs)  # (n, d)
        ids = tuple(tuple(q.ids) for q in qs)
        return Similarity(metric, tuple(items), ids, tuple(tuple(self.token(i) for i in t) for t in ids),
                          vectors, pairwise(vectors, metric))

    def positions(self, metric: str = "cosine", *, start: int = 0, stop: int | None = None,
                  step: int = 1) -> PositionSimilarity:
        """Similarity of positions start, start+step, ... < stop (euclidean: distance)."""
        from embscope.analysis.positions import similarity_matrix

        _choice("metric", metric, METRICS)
        self.emb.require_positions()
        stop = self.emb.n_positions if stop is None else stop
        if not 0 <= start < stop <= self.emb.n_positions or step < 1:
            raise EmbscopeError(f"positions {start}:{stop} step {step}: need 0 <= start < stop <="
                                f" {self.emb.n_positions} and step >= 1")
        vectors = self.emb.position_rows(start, stop)[::step]  # (n, d)
        return PositionSimilarity(metric, np.arange(start, stop, step), similarity_matrix(vectors, metric))

    def norms(self, *, centroid: bool = True) -> Norms:
        """Norms of token, padding and position rows, and (unless `centroid` is False: two more
        passes over the matrix) each token's distance from the mean token."""
        from embscope.analysis import norms as nm

        e = self.emb
        position = nm.row_norms(e.wpe, e.layout.position_offset, e.wpe.shape[0]) if e.wpe is not None else None
        distance = nm.centroid_distances(e.wte, e.n_tokens)[0] if centroid else None
        return Norms(token=nm.row_norms(e.wte, 0, e.n_tokens), padding=nm.row_norms(e.wte, e.n_tokens, e.vocab_rows),
                     position=position, centroid_distance=distance)

    def norm_outliers(self, top: int = 10, bottom: int = 10, *, centroid: bool = False,
                      norms: Norms | None = None) -> NormOutliers:
        """The `top` tokens with the largest norms and the `bottom` with the smallest; with
        `centroid`, the farthest from the mean token and the nearest to it. `norms`: a
        `Model.norms()` already computed (with centroid distances when `centroid`)."""
        if top < 0 or bottom < 0:
            raise EmbscopeError(f"top and bottom must be at least 0 (got {top}, {bottom})")
        of = "centroid_distance" if centroid else "norm"
        if norms is None or (centroid and norms.centroid_distance is None):
            norms = self.norms(centroid=centroid)
        far, near = norms.extremes(top, True, of), norms.extremes(bottom, False, of)  # (top,), (bottom,)
        ids = np.concatenate([far, near])
        names = ("far", "near") if centroid else ("largest", "smallest")
        return NormOutliers(of, (names[0],) * len(far) + (names[1],) * len(near),
                            np.concatenate([np.arange(1, len(far) + 1), np.arange(1, len(near) + 1)]), ids,
                            tuple(self.token(i) for i in ids.tolist()), norms.values(of)[ids], norms.token[ids])

    def glitch(self, *, indicator: str = "cosine", unused: Iterable[int] | None = None,
               threshold: float | None = None, percentile: float = 2.0) -> Glitch:
        """Under-trained ("glitch") token candidates, the first stage of Land & Bartolo's "Fishing
        for Magikarp" (2024): each token's category from the tokenizer, and its distance from the
        mean of tokens known to be unused, measured on the unembedding matrix (load the model with
        `matrix="output"`; a tied model has one matrix for both). `indicator`: "cosine" (cosine
        distance), "cosine_no_pc" (the same with the first principal component removed) or "l2".
        `unused`: the known-unused token ids (default: single-byte tokens for bytes never in
        UTF-8, unreachable tokens, rows past the vocabulary). Candidates: normal tokens at or
        below `threshold`, by default the `percentile` of the normal tokens' indicator."""
        from embscope.analysis.glitch import INDICATORS
        from embscope.glitch import glitch

        _choice("indicator", indicator, INDICATORS)
        if not 0 <= percentile <= 100:
            raise EmbscopeError(f"percentile must be between 0 and 100 (got {percentile:g})")
        if self.tokenizer is None:
            raise EmbscopeError(f"{self.name}: this model has no tokenizer, and glitch needs one to tell"
                                " unused and unusable tokens from normal ones")
        return glitch(self, indicator, unused, threshold, percentile)

    # --- maps and exports ------------------------------------------------------------------

    def select(self, words: Iterable[str] | None = None, *, near: str | None = None, k: int = 10,
               ids: slice | None = None, sample: int | None = None, seed: int = 0, positions: bool = False,
               metric: str = "cosine", exact: bool = False) -> Selection:
        """Rows for `map` or `export`, chosen by one of: `words` (each one token: a word, ' word'
        when that is one token, or '#id'), `near` (a query and its k nearest tokens, as
        `neighbors` finds them), `ids` (a slice of token ids), `sample` (that many token ids,
        `np.random.default_rng(seed).choice(n_tokens, sample, replace=False)`, sorted) or
        `positions` (every learned position). None of them: every token."""
        from embscope.analysis import selection as sel

        chosen = [name for name, v in (("words", words), ("near", near), ("ids", ids), ("sample", sample))
                  if v is not None] + (["positions"] if positions else [])
        if len(chosen) > 1:
            raise EmbscopeError(f"{chosen[0]} and {chosen[1]} cannot be used together")
        if positions:
            self.require_positions()
            return self._rows("positions", np.arange(self.n_positions), f"positions 0..{self.n_positions - 1}")
        if words is not None:
            found, repeats = sel.unique_ids([self._single_token(w, exact) for w in words])
            if not len(found):
                raise EmbscopeError("no tokens named")
            return self._rows("tokens", found, f"{len(found)} named tokens", repeats=repeats)
        if near is not None:
            q = self.query(near, exact)
            found = self.answer([q], k, metric=metric)[0]
            query_ids, _ = sel.unique_ids(q.ids)
            return self._rows("tokens", np.concatenate([query_ids, found.ids]),
                              f"{q.text} and its {len(found)} nearest tokens ({metric})",
                              highlight=tuple(query_ids.tolist()))
        if ids is not None:
            start, stop, step = ids.indices(self.n_tokens)
            if step != 1 or start >= stop:
                raise EmbscopeError(f"ids {start}:{stop}: need a non-empty range of tokens with step 1")
            return self._rows("tokens", np.arange(start, stop), f"tokens {start}..{stop - 1}")
        if sample is not None:
            return self._rows("tokens", sel.sample_ids(self.n_tokens, sample, seed, np.empty(0, np.int64)),
                              f"a sample of {sample} tokens (seed {seed})")
        return self._rows("tokens", np.arange(self.n_tokens), f"all {self.n_tokens} tokens")

    def _single_token(self, word: str, exact: bool) -> int:
        from embscope.queries import check_text, term_ids

        ids = term_ids(self.emb, check_text(word.strip()), exact)
        if len(ids) > 1:
            parts = ", ".join(f"'{self.token(i)}' #{i}" for i in ids)  # escaped as in the tables, not repr()
            raise EmbscopeError(f"'{word.strip()}' is {len(ids)} tokens ({parts}): name single tokens,"
                                " one by one or as '#id'")
        return ids[0]

    def _rows(self, kind: str, ids: np.ndarray, description: str, **more) -> Selection:
        ids = np.asarray(ids, dtype=np.int64)
        labels = tuple(str(i) for i in ids.tolist()) if kind == "positions" else tuple(self.token(i) for i in ids.tolist())
        return Selection(kind, ids, labels, description, **more)

    def vectors(self, rows: Selection):
        """The selected rows of wte (or wpe) as a (n, d) matrix read block by block (`rows(a, b)`)."""
        from embscope.export.source import RowView

        if rows.kind == "positions":
            return RowView(self.emb.require_positions(), rows.ids, self.emb.layout.position_offset)
        return RowView(self.emb.wte, rows.ids)

    def map(self, rows: Selection, *, method: str = "pca", components: int = 2, svd: str = "auto",
            seed: int = 0) -> Map:
        """The rows as points in `components` dimensions: PCA (`svd`: "exact", "randomized" or
        "auto": exact up to 500 rows or dimensions), or t-SNE / UMAP (the "tsne" / "umap" extras).
        Rows holding NaN or Inf are left out (`Map.left_out`)."""
        from embscope.analysis.pca import SOLVERS
        from embscope.analysis.projection import METHODS, project
        from embscope.analysis.selection import nonfinite_rows

        _choice("method", method, METHODS)
        _choice("svd solver", svd, SOLVERS)
        x = self.vectors(rows).rows(0, len(rows))  # (n, d)
        bad = nonfinite_rows(x)
        if len(bad):
            keep = np.setdiff1d(np.arange(len(rows)), bad)
            x, placed = x[keep], self._subset(rows, keep)
        else:
            placed = rows
        need = max(3, components + 1)
        if len(x) < need:
            raise EmbscopeError(f"a map in {components} dimensions needs at least {need} points with finite"
                                f" values (got {len(x)})")
        if not 1 <= components <= x.shape[1]:
            raise EmbscopeError(f"components must be between 1 and the width {x.shape[1]} (got {components})")
        try:
            coords, p = project(x, method, components, solver=svd, seed=seed)
        except ValueError as e:  # the rows are all the same
            raise EmbscopeError(f"cannot map {rows.description}: {e}") from None
        return Map(placed, method, coords, p, rows.ids[bad])

    @staticmethod
    def _subset(rows: Selection, keep: np.ndarray) -> Selection:
        return Selection(rows.kind, rows.ids[keep], tuple(rows.labels[i] for i in keep.tolist()),
                         rows.description, rows.highlight, rows.repeats)

    def export(self, to: str, path: str, rows: Selection | None = None, *, progress=None) -> Export:
        """Write the rows (default: every token) for another tool: "projector" (a folder with
        tensors.tsv, metadata.tsv and projector_config.pbtxt for TensorBoard's projector),
        "word2vec" (a file gensim's KeyedVectors.load_word2vec_format reads; binary when it ends
        in .bin) or "npy" (a folder with embeddings.npy and vocab.tsv). Tokens are written as
        embscope.export.keys describes. `progress(rows)` is called as rows are written."""
        from embscope.analysis.norms import row_norms
        from embscope.export import writers as w

        _choice("export format", to, w.FORMATS)
        rows = self.select() if rows is None else rows
        w.check_target(to, path)
        view = self.vectors(rows)
        keys = None if rows.kind == "positions" else self.keys(rows, spaces=to == "word2vec")
        renamed = 0
        if to == "projector":
            norms = row_norms(view, 0, len(rows))
            files = w.write_projector(path, view, rows.ids, keys, norms, self._tensor_name(rows), progress)
        elif to == "word2vec":
            keys, renamed = w.unique_keys(keys or [str(i) for i in rows.ids.tolist()], rows.ids)
            files = w.write_word2vec(path, view, keys, path.lower().endswith(".bin"), progress)
        else:
            files = w.write_npy(path, view, rows.ids, keys, rows.id_name)
        return Export(to, path, files, len(rows), view.shape[1], renamed)

    def keys(self, rows: Selection, *, spaces: bool = False) -> list[str]:
        """The tokens of `rows` as lossless text for files (embscope.export.keys); '#id' for a
        model without a tokenizer."""
        from embscope.export.keys import token_key

        out = []
        for i in rows.ids.tolist():
            b = self.emb.token_text(i)
            out.append(f"#{i}" if b is None else token_key(b, spaces=spaces))
        return out

    def _tensor_name(self, rows: Selection) -> str:
        """The name of the tensor the rows come from (the LM head's with matrix="output")."""
        e = self.emb
        if rows.kind == "positions":
            return e.layout.wpe_key or "positions"
        return (e.head_key if e.matrix == "output" and e.head_key else e.layout.wte_key) or "embeddings"

    def encode(self, text: str, *, bos: bool = False) -> list[int]:
        """The token ids the model sees for `text` (special tokens only with `bos`)."""
        from embscope.analysis.embed import bos_id

        if self.tokenizer is None:
            raise EmbscopeError(f"{self.name}: this model has no tokenizer, so text cannot be embedded")
        return ([bos_id(self.emb)] if bos else []) + self.tokenizer.encode(text)

    def tokenize(self, text: str, *, bos: bool = False) -> Tokens:
        """How `text` tokenizes: the ids the model sees (`encode`), their tokens and row norms."""
        self._require_tokenizer()
        ids = self.encode(text, bos=bos)
        if ids and max(ids) >= self.n_tokens:  # a tokenizer larger than the matrix
            raise EmbscopeError(f"token id {max(ids)} is beyond the model's {self.n_tokens} tokens")
        return self._tokens(text, ids)

    def lookup(self, ids: Iterable[int]) -> Tokens:
        """Tokens by id, with their row norms."""
        ids = [int(i) for i in ids]
        for i in ids:
            if not 0 <= i < self.n_tokens:
                raise EmbscopeError(f"token id #{i} is out of range (the model has {self.n_tokens} tokens)")
        self._require_tokenizer()
        return self._tokens(None, ids)

    def grep(self, pattern: str, *, seconds: float | None = None) -> Tokens:
        """The tokens whose printed text (`token(id)`: escaped as the CLI prints it, spaces as
        spaces) `pattern` finds (`re.search`), by id. A pattern still running after `seconds`
        (default 10) is stopped with an error."""
        from embscope.analysis.vocab import GREP_SECONDS, grep

        self._require_tokenizer()
        labels = [self.token(i) for i in range(self.n_tokens)]
        return self._tokens(None, grep(labels, pattern, GREP_SECONDS if seconds is None else seconds).tolist())

    def _require_tokenizer(self) -> None:
        if self.tokenizer is None:
            raise EmbscopeError(f"{self.name}: this model has no tokenizer, so its tokens have no text")

    def _tokens(self, text: str | None, ids: list[int]) -> Tokens:
        from embscope.analysis.vocab import token_norms

        return Tokens(text, np.array(ids, dtype=np.int64), tuple(self.token(i) for i in ids),
                      token_norms(self.emb.wte, ids) if ids else np.zeros(0))

    def embed(self, text: str, *, bos: bool = False, truncate: bool = False) -> Embedding:
        """Token + position embedding of each token of `text`, as the model's embedding layer
        computes it (eval mode). `truncate` keeps the first tokens that fit the positions."""
        ids = self.encode(text, bos=bos)
        if truncate and self.emb.wpe is not None:
            ids = ids[: self.emb.n_positions]
        return self.embed_ids(ids, text)

    def embed_ids(self, ids: list[int], text: str = "") -> Embedding:
        """What the embedding layer computes for token ids at positions 0..T-1."""
        from embscope.analysis.embed import embed_ids

        if not ids:
            raise EmbscopeError(f"'{text}' has no tokens")
        if self.matrix != "input":
            raise EmbscopeError("the embedding layer adds the input embedding to the positions: load the"
                                " model with matrix='input' to embed a text")
        parts = embed_ids(self.emb, ids)
        return Embedding(text, tuple(ids), tuple(self.token(i) for i in ids), parts["token"],
                         parts.get("position"), parts["sum"])
