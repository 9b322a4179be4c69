"""Byte-pair encoding from mergeable ranks, as tiktoken defines it, without tiktoken.

A tiktoken-style vocabulary is a map token bytes -> id (the id is also the token's merge rank),
a split pattern and special tokens. Encoding a text: special tokens are cut out first; the rest
is split by the pattern into pieces; each piece, as UTF-8 bytes, starts as single bytes and the
adjacent pair whose joined bytes have the lowest rank is merged, leftmost first, until no
adjacent pair is a token. llm.c's gpt2_tokenizer.bin and nanochat's tokenizer.pkl both describe
such a vocabulary; the split pattern runs on the `tokenizers` library's regex engine.
"""

from __future__ import annotations

import heapq
import re

from embscope.errors import EmbscopeError, first_line
from embscope.tokenizer import Tokenizer

# tiktoken's pattern for GPT-2 (r50k_base): llm.c writes GPT-2's vocabulary without a pattern.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
_PIECE_CACHE = 4096
_SHORT = 24  # pieces up to this many bytes merge by plain scanning (faster in Python)


class RankBPETokenizer(Tokenizer):
    """tiktoken's encoding (special tokens allowed in the text) from ranks, pattern and specials."""

    def __init__(self, ranks: dict[bytes, int], pattern: str, special: dict[str, int], *, kind: str, source: str):
        self.kind, self.source = kind, source
        self._ranks, self._special = ranks, special
        self._bytes: dict[int, bytes] = {i: b for b, i in ranks.items()}
        self._bytes.update({i: s.encode() for s, i in special.items()})
        if len(self._bytes) != len(ranks) + len(special):
            raise EmbscopeError(f"{source}: two tokens share one id")
        missing = [b for b in range(256) if bytes([b]) not in ranks]
        if missing:
            raise EmbscopeError(f"{source}: byte 0x{missing[0]:02x} has no token, so not every text can be encoded")
        self.vocab_size = max(self._bytes) + 1
        self._split = _splitter(pattern, source)
        specials = sorted(special, key=len, reverse=True)  # longest first: "<|a|>x" before "<|a|>"
        self._special_re = re.compile("|".join(map(re.escape, specials))) if specials else None
        self._cache: dict[bytes, list[int]] = {}

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        start = 0
        for m in self._special_re.finditer(text) if self._special_re else ():
            ids += self._encode_ordinary(text[start:m.start()])
            ids.append(self._special[m.group()])
            start = m.end()
        return ids + self._encode_ordinary(text[start:])

    def token_bytes(self, token_id: int) -> bytes:
        return self._bytes.get(token_id, b"")

    def special_ids(self) -> frozenset[int]:
        return frozenset(self._special.values())

    def _encode_ordinary(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece in self._split(text):
            raw = piece.encode("utf-8", "surrogatepass")
            cached = self._cache.get(raw)
            if cached is None:
                cached = self._bpe(raw)
                if len(self._cache) < _PIECE_CACHE:
                    self._cache[raw] = cached
            ids += cached
        return ids

    def _bpe(self, piece: bytes) -> list[int]:
        rank = self._ranks.get(piece)
        if rank is not None:
            return [rank]
        return [self._ranks[p] for p in merge(piece, self._ranks)]


def merge(piece: bytes, ranks: dict[bytes, int]) -> list[bytes]:
    """The parts `piece` ends as: lowest-rank adjacent pair merged first, leftmost on ties."""
    return _merge_short(piece, ranks) if len(piece) <= _SHORT else _merge_long(piece, ranks)


def _merge_short(piece: bytes, ranks: dict[bytes, int]) -> list[bytes]:
    parts = [piece[i:i + 1] for i in range(len(piece))]
    while len(parts) > 1:
        best, at = None, -1
        for i in range(len(parts) - 1):
            r = ranks.get(parts[i] + parts[i + 1])
            if r is not None and (best is None or r < best):
                best, at = r, i
        if best is None:
            break
        parts[at:at + 2] = [parts[at] + parts[at + 1]]
    return parts


def _merge_long(piece: bytes, ranks: dict[bytes, int]) -> list[bytes]:
    """As _merge_short, with the parts kept as a linked list over byte offsets and a heap of
    candidate merges (rank, left offset): O(n log n) for a long piece, not O(n^2)."""
    n = len(piece)
    ends = list(range(1, n + 1))  # ends[i]: end offset of the part starting at i
    prev = list(range(-1, n - 1))  # start of the part before the one starting at i (-1: none)
    alive = [True] * n
    heap: list[tuple[int, int, int, int]] = []

    def push(left: int) -> None:
        mid = ends[left]
        if mid < n:
            r = ranks.get(piece[left:ends[mid]])
            if r is not None:
                heapq.heappush(heap, (r, left, mid, ends[mid]))

    for i in range(n - 1):
        push(i)
    while heap:
        _, left, mid, end = heapq.heappop(heap)
        if not (alive[left] and alive[mid] and ends[left] == mid and ends[mid] == end):
            continue  # stale: one of the two parts has merged since
        alive[mid] = False
        ends[left] = end
        if end < n:
            prev[end] = left
        if prev[left] >= 0:
            push(prev[left])
        push(left)
    out, i = [], 0
    while i < n:
        out.append(piece[i:ends[i]])
        i = ends[i]
    return out


def _splitter(pattern: str, source: str):
    """pattern -> a function text -> pieces, on the `tokenizers` library's regex engine (the
    same engine that runs tokenizer.json split patterns)."""
    from tokenizers import Regex, pre_tokenizers

    try:
        split = pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False)
    except Exception as e:  # noqa: BLE001 - the library raises bare Exception on a bad pattern
        raise EmbscopeError(
            f"{source}: its split pattern is not a usable regular expression ({first_line(e)})") from None

    def pieces(text: str) -> list[str]:
        return [p for p, _ in split.pre_tokenize_str(text)] if text else []

    return pieces
