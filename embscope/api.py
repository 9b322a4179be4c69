"""The Python API: `embscope.load(spec)` and the questions a `Model` answers.

Every CLI command is a thin wrapper over one of these calls, so a notebook gets the same numbers
and the same errors (`EmbscopeError`, with the messages the CLI prints, naming `load`'s
arguments where the CLI names its options).
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable, Iterator

import numpy as np

from embscope.analysis.similarity import METRICS, Index
from embscope.errors import EmbscopeError
from embscope.model import Embeddings
from embscope.results import Embedding, Info, KnnBlock, Neighbors, NormOutliers, Norms, PositionSimilarity


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
        and in score buffers (None: a quarter of the available memory, read when first needed).
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
        """A word, '#id', or arithmetic ('king - man + woman') resolved to token ids."""
        from embscope import queries

        return queries.resolve(self.emb, [text] if isinstance(text, str) else list(text), exact)

    def neighbors(self, query: str, k: int = 10, *, metric: str = "cosine", exact: bool = False,
                  include_query: bool = False, cosmul: bool = False) -> Neighbors:
        """The k nearest tokens to a word (' word' when that is one token), '#id' or arithmetic."""
        return self.neighbors_many([query], k, metric=metric, exact=exact, include_query=include_query,
                                   cosmul=cosmul)[0]

    def neighbors_many(self, queries: Iterable[str], k: int = 10, *, metric: str = "cosine",
                       exact: bool = False, include_query: bool = False, cosmul: bool = False) -> list[Neighbors]:
        """`neighbors` for many queries at once: one blocked matrix product for all of them."""
        qs = self.queries(list(queries), exact)
        for q in qs:
            if isinstance(q, EmbscopeError):
                raise q
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

    def sim(self, a: str, b: str, *, metric: str = "cosine", exact: bool = False) -> float:
        """Similarity of two words, '#id's or texts (several tokens: the mean of their vectors):
        the number `neighbors` prints for the same pair, computed the same way."""
        from embscope.analysis.search import pair_scores
        from embscope.queries import term_vector

        _choice("metric", metric, METRICS)
        vectors = []
        for text in (a, b):
            q = self.query([text], exact)
            if len(q.terms) != 1:
                raise EmbscopeError(f"'{text}': sim compares words or texts, not arithmetic")
            vectors.append(term_vector(self.emb, q.terms[0]).astype(np.float64)[None, :])  # (1, d)
        return float(np.float32(pair_scores(vectors[1], vectors[0], metric)[0]))

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

    def encode(self, text: str, *, bos: bool = False) -> list[int]:
        """The token ids the model sees for `text` (special tokens only with `bos`)."""
        from embscope.analysis.embed import bos_id

        if self.tokenizer is None:
            raise EmbscopeError(f"{self.name}: this model has no tokenizer, so text cannot be embedded")
        return ([bos_id(self.emb)] if bos else []) + self.tokenizer.encode(text)

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
