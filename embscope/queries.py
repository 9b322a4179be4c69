"""Queries as users type them: words, `#id`s, texts, and `king - man + woman` arithmetic.

Each argument is one term: a word (' word' when that is one token), `#id`, or, when it holds
spaces, a text (the mean of its tokens). Arguments side by side are added, as gensim's
`most_similar(positive=[...])` adds words: `king queen` is king + queen, while the one argument
'king queen' is a text. ` + ` and ` - ` (as arguments of their own or inside one) make arithmetic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from embscope.errors import EmbscopeError, UsageError
from embscope.model import Embeddings

_OPERATOR = re.compile(r"\s+([+-])\s+")
_ID = re.compile(r"#(\d+)")
MAX_ID_DIGITS = 18  # ids are int64 in every format


@dataclass
class Term:
    sign: int  # +1 or -1
    text: str
    ids: list[int]

    @property
    def multi(self) -> bool:
        return len(self.ids) > 1


@dataclass
class Query:
    text: str
    terms: list[Term]
    side_by_side: bool = False  # some terms were added for standing side by side (`king queen`)

    @property
    def ids(self) -> list[int]:
        return [i for t in self.terms for i in t.ids]

    @property
    def positive(self) -> list[Term]:
        return [t for t in self.terms if t.sign > 0]

    @property
    def negative(self) -> list[Term]:
        return [t for t in self.terms if t.sign < 0]


def check_text(text: str) -> str:
    """`text` unchanged if it is valid Unicode. Arguments that are not valid UTF-8 reach Python
    as lone surrogates (PEP 383), which no tokenizer can encode."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        from embscope.display import escape

        shown = escape(text.encode("utf-8", "surrogateescape" if _escapable(text) else "surrogatepass"))
        raise UsageError(f"'{shown}' is not valid UTF-8 text") from None
    return text


def _escapable(text: str) -> bool:
    return all(not 0xD800 <= ord(c) <= 0xDFFF or 0xDC80 <= ord(c) <= 0xDCFF for c in text)


def split_terms(words: list[str]) -> list[tuple[int, str, bool]]:
    """The terms of a query typed as arguments, as (sign, text, side by side):
    ["king", "-", "man"] or ["king - man"] -> [(+1, "king", False), (-1, "man", False)];
    ["king", "queen"] -> [(+1, "king", False), (+1, "queen", True)]: a term with no operator
    before it is added (True marks those that follow another term)."""
    text = check_text(" ".join(words))
    terms: list[tuple[int, str, bool]] = []
    pending = None  # an operator waiting for its term
    for word in words:
        parts = _OPERATOR.split(" " + word.strip() + " ")  # term, op, term, ...
        for j, part in enumerate(parts):
            if j % 2:
                if pending is not None:
                    raise UsageError(f"'{text}': an operator '{pending}' with nothing after it")
                pending = part
            elif part.strip():
                terms.append((-1 if pending == "-" else 1, part.strip(), pending is None and bool(terms)))
                pending = None
    if pending is not None:
        raise UsageError(f"'{text}': an operator '{pending}' with nothing after it")
    if not terms:
        raise UsageError("empty query")
    return terms


def term_ids(emb: Embeddings, text: str, exact: bool, known: list[int] | None = None) -> list[int]:
    """The ids of one term: '#id', or the word's tokens (`known`: already tokenized)."""
    m = _ID.fullmatch(text)
    if m:
        digits = m.group(1).lstrip("0") or "0"
        if len(digits) > MAX_ID_DIGITS:  # no model has that many tokens; int() would refuse > 4300 digits
            shown = f"{digits[:12]}... ({len(digits)} digits)"
            raise EmbscopeError(f"token id #{shown} is out of range (the model has {emb.n_tokens} tokens)")
        token_id = int(digits)
        if token_id >= emb.n_tokens:
            raise EmbscopeError(f"token id #{token_id} is out of range (the model has {emb.n_tokens} tokens)")
        return [token_id]
    if emb.tokenizer is None:
        raise EmbscopeError(f"'{text}': this model has no tokenizer; query by token id, e.g. '#42'")
    ids = emb.tokenizer.word_ids(text, exact=exact) if known is None else known
    if not ids:
        raise UsageError("empty query")
    unk = getattr(emb.tokenizer, "unk_id", None)
    if unk is not None and unk in ids:
        raise EmbscopeError(f"'{text}' is not in the model's vocabulary")
    if max(ids) >= emb.n_tokens:
        raise EmbscopeError(f"'{text}' tokenizes to id {max(ids)}, beyond the model's {emb.n_tokens} tokens")
    return ids


def resolve(emb: Embeddings, words: list[str], exact: bool = False) -> Query:
    """A query typed as arguments (a string: one argument) resolved to token ids."""
    split = split_terms(words)
    terms = [Term(sign, text, term_ids(emb, text, exact)) for sign, text, _ in split]
    return Query(" ".join(words), terms, any(side for _, _, side in split))


def resolve_lines(emb: Embeddings, lines: list[str], exact: bool = False) -> list[Query | EmbscopeError]:
    """`resolve` of each line (one query a line), the words of all lines tokenized in one call;
    a line that cannot be resolved gives its error in its place."""
    split: list[list[tuple[int, str, bool]] | EmbscopeError] = []
    for line in lines:
        try:
            split.append(split_terms([line]))
        except EmbscopeError as e:
            split.append(e)
    words = [text for terms in split if not isinstance(terms, EmbscopeError) for _, text, _ in terms
             if not _ID.fullmatch(text)]
    known = {}
    if words and emb.tokenizer is not None:
        words = list(dict.fromkeys(words))
        try:
            known = dict(zip(words, emb.tokenizer.word_ids_many(words, exact)))
        except EmbscopeError:  # each line tokenized on its own below says which line fails
            known = {}
    out: list[Query | EmbscopeError] = []
    for line, terms in zip(lines, split):
        try:
            if isinstance(terms, EmbscopeError):
                raise terms
            out.append(Query(line, [Term(sign, text, term_ids(emb, text, exact, known.get(text)))
                                    for sign, text, _ in terms], any(side for _, _, side in terms)))
        except EmbscopeError as e:
            out.append(e)
    return out


def term_vector(emb: Embeddings, term: Term) -> np.ndarray:
    """(d,) the token's embedding, or the mean over a several-token term."""
    return emb.wte.take(term.ids).mean(axis=0)
