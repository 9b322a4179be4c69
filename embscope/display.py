"""Token strings as data: lossless, and safe to print to a terminal. The one place where
embscope escapes text, for every output.

`escape(b)` turns a token's bytes into text in which every byte that is not printable, valid UTF-8
is written as an escape: control characters as \\n, \\t, \\r or \\xNN (C1 controls, U+0080 to
U+009F, as \\uNNNN), bytes that are not valid UTF-8 as \\xNN, bidi and zero-width controls as
\\uNNNN, and the backslash itself as \\\\. So the
result holds no control character, and distinct tokens never look the same.

`sanitize(text)` does the same for messages (keeping backslashes), and `json_safe(json)` for JSON
text (as JSON's own \\uNNNN escapes, which parse back to the same strings).
"""

from __future__ import annotations

import functools
import re
import unicodedata

_PLAIN = re.compile(rb"[\x20-\x5b\x5d-\x7e]*")  # printable ASCII but the backslash: shown as is

_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r", "\\": "\\\\"}

# Characters never written raw: controls (Cc), format characters such as bidi overrides and
# zero-width joiners (Cf), surrogates (Cs), private-use (Co) and unassigned (Cn) code points, and
# the line and paragraph separators (Zl, Zp).
UNSAFE_CATEGORIES = frozenset(("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))


def _escape_char(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    cp = ord(ch)
    if cp < 0x20 or cp == 0x7F:
        return f"\\x{cp:02x}"
    if unicodedata.category(ch) in UNSAFE_CATEGORIES:
        return f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}"
    return ch


_CHUNK = 256  # characters checked at once with str.isprintable (C speed) before any one by one


def _escape_token_char(ch: str) -> str:
    cp = ord(ch)
    if 0xDC80 <= cp <= 0xDCFF:  # a byte that is not valid UTF-8
        return f"\\x{cp - 0xDC00:02x}"
    return _escape_char(ch)


@functools.lru_cache(maxsize=2)
def _table(one, keep_backslash: bool) -> dict[int, str]:
    """str.translate table of `one` for the characters most often escaped: C0 and C1 controls,
    DEL, the bytes that are not UTF-8 (surrogate escapes) and, unless kept, the backslash."""
    cps = [*range(0x20), *range(0x7F, 0xA0), *range(0xDC80, 0xDD00)] + ([] if keep_backslash else [0x5C])
    return {cp: one(chr(cp)) for cp in cps}


def _bulk(text: str, one, keep_backslash: bool) -> str:
    """`text` with `one(ch)` applied to each character, in chunks, at C speed where possible: a
    chunk that is printable (no control, format, surrogate, private-use, unassigned or separator
    character, which is what `one` escapes) and holds no backslash to escape is kept as it is;
    one whose only such characters are controls or byte escapes is translated with a table; the
    rest go one character at a time. 60 MB of text take well under a second."""
    table = _table(one, keep_backslash)
    parts = []
    for i in range(0, len(text), _CHUNK):
        chunk = text[i:i + _CHUNK]
        if chunk.isprintable() and (keep_backslash or "\\" not in chunk):
            parts.append(chunk)
            continue
        done = chunk.translate(table)
        if not done.isprintable():  # something the table does not cover (bidi marks, NBSP...)
            done = "".join(ch if keep_backslash and ch == "\\" else one(ch) for ch in chunk)
        parts.append(done)
    return "".join(parts)


def escape(token: bytes | None) -> str:
    """Printable, lossless text for a token's bytes ('' for None)."""
    if not token:
        return ""
    if _PLAIN.fullmatch(token):
        return token.decode("ascii")
    return _bulk(token.decode("utf-8", errors="surrogateescape"), _escape_token_char, keep_backslash=False)


def visible_spaces(text: str) -> str:
    """For tables: spaces shown as '␣' so " king" and "king" differ on screen."""
    return text.replace(" ", "\u2423")


def sanitize(text: str) -> str:
    """A message for the terminal: control and bidi characters escaped, backslashes kept."""
    return _bulk(text, _escape_char, keep_backslash=True)


def shorten(text: str, limit: int = 1000) -> str:
    """`text`, or its first `limit` characters and how long it is: for strings from a file
    (safetensors metadata, tensor names) that can be megabytes long."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x7e\n]")  # "\n": json.dumps' own indentation


def _json_char(m: re.Match) -> str:
    ch = m.group()
    if unicodedata.category(ch) not in UNSAFE_CATEGORIES:
        return ch
    cp = ord(ch)
    if cp > 0xFFFF:  # JSON spells these as a surrogate pair
        cp -= 0x10000
        return f"\\u{0xD800 + (cp >> 10):04x}\\u{0xDC00 + (cp & 0x3FF):04x}"
    return f"\\u{cp:04x}"


def json_safe(json_text: str) -> str:
    """JSON text (from json.dumps with ensure_ascii off: readable) made safe for a terminal: DEL,
    C1 controls, bidi and zero-width marks and line separators inside strings become \\uNNNN
    escapes, which parse back to the very same strings."""
    return _NOT_PRINTABLE_ASCII.sub(_json_char, json_text)
