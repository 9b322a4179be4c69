"""What the tokenizer alone says about each token: special, a single byte, a piece of a UTF-8
character, unreachable, or normal (Land & Bartolo 2024, "Fishing for Magikarp", section 3.1).

- special: the tokenizer's special tokens (end of text, padding, unknown...).
- byte-*: tokens of exactly one byte (GPT-2's 256 byte tokens, SentencePiece's `<0xNN>`, a
  character-level vocabulary's ASCII characters), by what the byte can be in UTF-8 text:
  byte-ascii (0x00-0x7F), byte-continuation (0x80-0xBF), byte-lead (0xC2-0xF4) and
  byte-not-utf8 (0xC0, 0xC1, 0xF5-0xFF: never in any UTF-8 text, so never seen in training
  on UTF-8 text).
- partial-utf8: longer tokens whose bytes are not valid UTF-8 on their own (a character's first
  bytes, its last bytes, or such pieces joined).
- unreachable: tokens whose text, encoded by the tokenizer, is not that one token (the encoder
  always prefers other tokens), so training text never held them.
- normal: every other token: the ones whose embeddings training should have moved.
- padding: rows of the matrix past the tokenizer's vocabulary.

A single-byte token can be unreachable too (SentencePiece's `<0x41>` when "A" is a piece of
its own): `TokenCategories.unreachable` marks those as well, for the known-unused set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embscope.tokenizer import Tokenizer

CATEGORIES = ("special", "byte-ascii", "byte-continuation", "byte-lead", "byte-not-utf8", "partial-utf8",
              "unreachable", "normal", "padding")
SPECIAL, ASCII, CONTINUATION, LEAD, NOT_UTF8, PARTIAL, UNREACHABLE, NORMAL, PADDING = range(len(CATEGORIES))
NOT_UTF8_BYTES = (0xC0, 0xC1, *range(0xF5, 0x100))  # bytes no UTF-8 text holds
# Texts the tokenizer encodes with a word-start space of its own ("hello" as "▁hello") are tried
# behind one of these first, so that a word-inner piece is found where it occurs (as magikarp does).
PREFIXES = ("«", "»")


def byte_category(b: int) -> int:
    """The category of a one-byte token holding byte `b`."""
    if b < 0x80:
        return ASCII
    if b < 0xC0:
        return CONTINUATION
    return NOT_UTF8 if b in NOT_UTF8_BYTES else LEAD


@dataclass(frozen=True)
class TokenCategories:
    codes: np.ndarray  # (V,) int8: index into CATEGORIES of every row of the matrix
    unreachable: np.ndarray  # (V,) bool: decodable, not special, does not encode back to itself
    token_bytes: tuple[bytes, ...]  # (n_tokens,) each token's bytes

    def names(self) -> np.ndarray:
        """(V,) the category name of every row."""
        return np.asarray(CATEGORIES, dtype=object)[self.codes]

    def ids(self, *categories: int) -> np.ndarray:
        return np.flatnonzero(np.isin(self.codes, categories))

    def counts(self) -> dict[str, int]:
        """Rows in each category, in CATEGORIES order (all of them, zeros included)."""
        found = np.bincount(self.codes, minlength=len(CATEGORIES))
        return {name: int(n) for name, n in zip(CATEGORIES, found)}


def categorize(tokenizer: Tokenizer, rows: int) -> TokenCategories:
    """The category of each of `rows` matrix rows: the tokenizer's ids first, then padding."""
    n = tokenizer.vocab_size
    pieces = tuple(tokenizer.all_token_bytes())
    codes = np.full(rows, PADDING, dtype=np.int8)
    codes[:n] = NORMAL
    special = np.zeros(rows, dtype=bool)
    special[[i for i in tokenizer.special_ids() if 0 <= i < n]] = True
    texts: dict[int, str] = {}  # decodable, not special: to be encoded again
    for i, b in enumerate(pieces):
        if len(b) == 1:  # before special: a byte-fallback <0xNN> may be listed as special
            codes[i] = byte_category(b[0])
        elif special[i]:
            codes[i] = SPECIAL
            continue
        try:
            texts[i] = b.decode("utf-8")
        except UnicodeDecodeError:
            if len(b) > 1:
                codes[i] = PARTIAL
    unreachable = np.zeros(rows, dtype=bool)
    unreachable[_unreachable(tokenizer, texts)] = True
    codes[unreachable & (codes == NORMAL)] = UNREACHABLE
    return TokenCategories(codes, unreachable, pieces)


def _unreachable(tokenizer: Tokenizer, texts: dict[int, str]) -> list[int]:
    """The ids whose text does not encode as that one id, even behind a prefix token when the
    tokenizer adds a word-start space (its encoding of "test" starts with one)."""
    ids = list(texts)
    encoded = tokenizer.encode_batch([texts[i] for i in ids])
    missed = [i for i, e in zip(ids, encoded) if e != [i]]
    first = tokenizer.encode("test")
    if missed and first and tokenizer.token_bytes(first[0]).startswith(b" "):
        for prefix in PREFIXES:
            missed = _missed_behind(tokenizer, prefix, missed, texts)
    return missed


def _missed_behind(tokenizer: Tokenizer, prefix: str, ids: list[int], texts: dict[int, str]) -> list[int]:
    """The ids whose text, written after `prefix`, does not encode as prefix's tokens and that id."""
    head = tokenizer.encode(prefix)
    if not ids or not head:
        return ids
    encoded = tokenizer.encode_batch([prefix + texts[i] for i in ids])
    return [i for i, e in zip(ids, encoded) if e != head + [i]]


PACKED = 8  # needles up to this many bytes are found by exact 64-bit keys of every window, in numpy


def containing(pieces: tuple[bytes, ...], ids: np.ndarray, eligible: np.ndarray) -> list[np.ndarray]:
    """For each id in `ids`, the longer tokens whose bytes contain its bytes (among those where
    `eligible` (n,) is True), shortest first, ties by id: magikarp's "in other tokens", which
    explains most finds (" InstoreAndOnline" lives inside "BuyableInstoreAndOnline").

    The tokens are joined longest first, so a token of L bytes is looked for only where longer
    tokens are. Needles of up to 8 bytes: every window of that length packed into one uint64
    and matched at once; longer ones (found in the few long tokens): bytes.find."""
    lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=len(pieces))  # (n,)
    order = np.lexsort((np.arange(len(pieces)), -lengths))  # longest first
    blob = b"".join(pieces[i] for i in order.tolist())
    ends = np.cumsum(lengths[order])  # (n,) end offset of each token in the blob
    longer = np.searchsorted(-lengths[order], -np.arange(lengths.max(initial=0) + 2), side="left")  # L -> tokens > L
    stops = np.concatenate([[0], ends])[longer]  # L -> where the tokens longer than L end in the blob
    needles = [pieces[i] for i in ids.tolist()]
    starts: list[np.ndarray] = [np.zeros(0, dtype=np.int64)] * len(needles)
    by_length: dict[int, list[int]] = {}
    for j, needle in enumerate(needles):
        if 0 < len(needle) <= PACKED:
            by_length.setdefault(len(needle), []).append(j)
        elif needle:
            starts[j] = np.array(_starts(blob, needle, int(stops[len(needle)])), dtype=np.int64)
    data = np.frombuffer(blob, dtype=np.uint8)
    for size, js in by_length.items():
        for j, found in zip(js, _packed_starts(data[:stops[size]], [needles[j] for j in js], size)):
            starts[j] = found
    return _owners(starts, np.array([len(nd) for nd in needles], dtype=np.int64), order, ends, lengths, eligible)


def _owners(starts: list[np.ndarray], sizes: np.ndarray, order: np.ndarray, ends: np.ndarray,
            lengths: np.ndarray, eligible: np.ndarray) -> list[np.ndarray]:
    """For each needle (its match offsets in the blob `starts`, its length in `sizes` (k,)), the
    eligible tokens a match lies wholly inside, shortest first, ties by id: all needles at once."""
    counts = np.array([len(a) for a in starts], dtype=np.int64)  # (k,)
    which = np.repeat(np.arange(len(starts)), counts)  # (m,) the needle of each match
    at = np.concatenate(starts + [np.zeros(0, dtype=np.int64)])  # (m,)
    owner = np.searchsorted(ends, at, side="right")  # (m,) position in `order` of each match's token
    inside = at + sizes[which] <= ends[np.minimum(owner, len(ends) - 1)]
    which, token = which[inside], order[owner[inside]]
    keep = eligible[token]
    which, token = which[keep], token[keep]
    pairs = np.unique(np.stack([which, lengths[token], token], axis=1), axis=0)  # by needle, length, id
    bounds = np.searchsorted(pairs[:, 0], np.arange(len(starts) + 1))  # (k + 1,)
    return [pairs[bounds[j]:bounds[j + 1], 2] for j in range(len(starts))]


def _packed(data: np.ndarray, size: int) -> np.ndarray:
    """(len(data) - size + 1,) uint64: the `size` bytes starting at each offset, as one number."""
    n = len(data) - size + 1
    key = np.zeros(max(n, 0), dtype=np.uint64)
    for k in range(size):
        key |= data[k:k + n].astype(np.uint64) << np.uint64(8 * k)
    return key


def _packed_starts(data: np.ndarray, needles: list[bytes], size: int) -> list[np.ndarray]:
    """Every offset in `data` where each needle (all `size` bytes long) starts."""
    keys = _packed(data, size)  # (w,)
    wanted = np.array([int.from_bytes(nd, "little") for nd in needles], dtype=np.uint64)  # (k,)
    unique, inverse = np.unique(wanted, return_inverse=True)  # (u,), (k,)
    at = np.minimum(np.searchsorted(unique, keys), len(unique) - 1)  # (w,) the needle each window could be
    hits = np.flatnonzero(unique[at] == keys)  # (m,) offsets where some needle starts
    which = at[hits]  # (m,) which one (of the unique ones)
    by_needle = np.argsort(which, kind="stable")
    bounds = np.searchsorted(which[by_needle], np.arange(len(unique) + 1))  # (u + 1,)
    starts = [hits[by_needle[bounds[u]:bounds[u + 1]]].astype(np.int64) for u in range(len(unique))]
    return [starts[u] for u in inverse.ravel().tolist()]


def _starts(blob: bytes, needle: bytes, stop: int) -> list[int]:
    """Every offset where `needle` starts in blob[:stop], overlapping ones too: a match across
    two tokens must not hide one inside a token."""
    found, at = [], blob.find(needle, 0, stop)
    while at >= 0:
        found.append(at)
        at = blob.find(needle, at + 1, stop)
    return found
