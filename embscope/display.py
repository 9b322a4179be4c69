"""Token strings as data: lossless, and safe to print to a terminal.

`escape(b)` turns a token's bytes into text in which every byte that is not printable, valid UTF-8
is written as an escape: control characters as \\n, \\t, \\r or \\xNN, bytes that are not valid
UTF-8 as \\xNN, bidi and zero-width controls as \\uNNNN, and the backslash itself as \\\\. So the
result holds no control character, and distinct tokens never look the same.
"""

from __future__ import annotations

import re
import unicodedata

_PLAIN = re.compile(rb"[\x20-\x5b\x5d-\x7e]*")  # printable ASCII but the backslash: shown as is

_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}


def _escape_char(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    cp = ord(ch)
    if cp < 0x20 or 0x7F <= cp < 0xA0:
        return f"\\x{cp:02x}"
    # Cc, Cf (bidi overrides, zero-width joiners...), Cs, Co, Cn, line/paragraph separators.
    if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
        return f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}"
    return ch


def escape(token: bytes | None) -> str:
    """Printable, lossless text for a token's bytes ('' for None)."""
    if not token:
        return ""
    if _PLAIN.fullmatch(token):
        return token.decode("ascii")
    text = token.decode("utf-8", errors="surrogateescape")
    out = []
    for ch in text:
        cp = ord(ch)
        if 0xDC80 <= cp <= 0xDCFF:  # a byte that is not valid UTF-8
            out.append(f"\\x{cp - 0xDC00:02x}")
        else:
            out.append(_escape_char(ch))
    return "".join(out)


def visible_spaces(text: str) -> str:
    """For tables: spaces shown as '␣' so " king" and "king" differ on screen."""
    return text.replace(" ", "\u2423")


def sanitize(text: str) -> str:
    """A message for the terminal: control and bidi characters escaped, backslashes kept."""
    return "".join(ch if ch == "\\" else _escape_char(ch) for ch in text)
