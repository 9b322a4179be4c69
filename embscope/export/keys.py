"""Tokens as text in exported files: one key per token, from which its bytes can be recovered.

`token_key(b)` writes a token's bytes as embscope prints them (embscope.display), with three
differences that make the text decodable without any ambiguity:

- a byte that is not valid UTF-8 is `\\xNN` with NN >= 80, and only such a byte is: control
  characters below U+0080 are `\\n`, `\\t`, `\\r` or `\\xNN` with NN < 80, and the C1 controls
  U+0080..U+009F (valid UTF-8 characters) are `\\u0080`..`\\u009f`;
- with `spaces=True` (word2vec, where a space ends the word) the space is `\\x20` and every other
  whitespace character `\\uNNNN`;
- a backslash is `\\\\`, so a backslash in a key always starts an escape.

Format, bidi and zero-width characters, separators, private-use and unassigned code points are
`\\uNNNN` (`\\UNNNNNNNN` beyond U+FFFF), as everywhere in embscope. `key_bytes(key)` is the
inverse: `key_bytes(token_key(b, spaces=s)) == b` for all bytes b. Where two tokens have the same
bytes (a file must not hold one key twice), the later ones get `\\#ID`, their token id, at the
end of the key; `key_bytes` drops it.
"""

from __future__ import annotations

import re
import unicodedata

from embscope.display import UNSAFE_CATEGORIES

_PLAIN = {False: re.compile(r"[\x20-\x5b\x5d-\x7e]*"), True: re.compile(r"[\x21-\x5b\x5d-\x7e]*")}
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}
_UNNAMED = {v: k for k, v in _NAMED.items()}
_ESCAPE = re.compile(r"\\(?:x([0-9a-f]{2})|u([0-9a-f]{4})|U([0-9a-f]{8})|([nrt\\])|#[0-9]+\Z)")


def _char(ch: str, spaces: bool) -> str:
    cp = ord(ch)
    if ch in _NAMED:
        return _NAMED[ch]
    if 0xDC80 <= cp <= 0xDCFF:  # a byte that is not valid UTF-8 (surrogateescape)
        return f"\\x{cp - 0xDC00:02x}"
    if cp < 0x20 or cp == 0x7F or (spaces and ch == " "):
        return f"\\x{cp:02x}"
    if 0x80 <= cp < 0xA0 or unicodedata.category(ch) in UNSAFE_CATEGORIES or (spaces and ch.isspace()):
        return f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}"
    return ch


def token_key(token: bytes, *, spaces: bool = False) -> str:
    """The key of a token's bytes (module docstring): printable, lossless text."""
    text = token.decode("utf-8", errors="surrogateescape")
    if _PLAIN[spaces].fullmatch(text):
        return text
    return "".join(_char(ch, spaces) for ch in text)


def _unescape(m: re.Match) -> str:
    byte, u4, u8, named = m.groups()
    if m.group(0).startswith("\\#"):  # the id that keeps a repeated token's key unique
        return ""
    if byte is not None:
        value = int(byte, 16)
        return chr(value) if value < 0x80 else chr(0xDC00 + value)  # >= 80: a raw byte
    if named is not None:
        return _UNNAMED["\\" + named]
    return chr(int(u4 or u8, 16))


def key_bytes(key: str) -> bytes:
    """The token bytes a key stands for (the inverse of `token_key`)."""
    return _ESCAPE.sub(_unescape, key).encode("utf-8", errors="surrogateescape")
