"""Token strings are data: whatever bytes a tokenizer holds, stdout never carries a raw control
character, and every token is written as display.escape specifies, in every output format.

Two models: GPT-2's byte-level vocabulary (single-byte tokens such as NUL, ESC and CR, bytes that
are not UTF-8 on their own, zero-width and direction marks), and a word-level tokenizer.json
whose tokens are whole escape sequences (SGR, OSC title, CSI as one C1 byte), bidi overrides,
line separators and backslashes.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import unicodedata

import numpy as np
import pytest

from embscope.display import escape
from tests import untrusted as u
from tests.helpers import run

FORMATS = ["table", "tsv", "csv", "json", "jsonl"]

# Word-level tokens, and what display.escape must turn each into (its module docstring: control
# characters as \n \t \r or \xNN (C1 as \uNNNN), bytes that are not UTF-8 as \xNN, bidi / zero-width / line
# separators as \uNNNN, the backslash as \\).
CRAFTED = {
    "\x1b[31mred\x1b[0m": "\\x1b[31mred\\x1b[0m",
    "\x1b]0;pwned\x07": "\\x1b]0;pwned\\x07",
    "\x1b[2J\x1b[H": "\\x1b[2J\\x1b[H",
    "\x9b31m": "\\u009b31m",  # CSI as a single C1 character (the lone byte 0x9b is \x9b)
    "car\rriage": "car\\rriage",
    "\u202eevil": "\\u202eevil",
    "\u2066isolate\u2069": "\\u2066isolate\\u2069",
    "nul\x00byte": "nul\\x00byte",
    "line\u2028sep": "line\\u2028sep",
    "para\u2029sep": "para\\u2029sep",
    "zero\u200bwidth": "zero\\u200bwidth",
    "back\\slash": "back\\\\slash",
    "\\x1b": "\\\\x1b",  # a token that looks like an escape stays distinct from ESC itself
    "tab\there": "tab\\there",
    "new\nline": "new\\nline",
    "bell\x07": "bell\\x07",
    "del\x7f": "del\\x7f",
    "bs\x08": "bs\\x08",
    "emoji😀": "emoji😀",
    "space here": "space here",
}

# GPT-2 byte-level tokens and their escapes, as display.escape specifies them.
GPT2_EXPECTED = {
    188: "\\x00", 197: "\\t", 198: "\\n", 201: "\\r", 215: "\\x1b", 221: "\\x7f", 628: "\\n\\n",
    187: "\\xff", 447: "\\xe2\\x80", 59: "\\\\", 9525: "\\u200b", 48261: "\\u200e", 3907: "\\u00ad",
}


def assert_safe(out: str, fmt: str) -> None:
    """No raw control, format, bidi or separator character; tabs only as TSV separators."""
    out.encode("utf-8")  # no lone surrogates: stdout could not even encode it
    for n, ch in enumerate(out):
        if ch == "\n" or (ch == "\t" and fmt == "tsv"):
            continue
        cat = unicodedata.category(ch)
        assert cat not in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"), f"{ch!r} ({cat}) at {n}: {out[max(0, n - 40):n + 40]!r}"


def records(out: str, fmt: str) -> list[dict]:
    """The rows a machine format holds (checking its framing on the way)."""
    if fmt == "tsv":
        lines = out.splitlines()
        width = lines[0].count("\t")
        assert all(line.count("\t") == width for line in lines), "a tab inside a field"
        return list(csv.DictReader(io.StringIO(out), delimiter="\t", quoting=csv.QUOTE_NONE))
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(out)))
        assert len(rows) == len(out.splitlines()) - 1, "a line break inside a field"
        return rows
    if fmt == "json":
        doc = json.loads(out)
        return doc if isinstance(doc, list) else [doc]
    return [json.loads(line) for line in out.splitlines()]


# --- models --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    """A word-level tokenizer.json over CRAFTED, beside a model with one row per token."""
    d = tmp_path_factory.mktemp("crafted")
    tokens = ["[UNK]", "plain", *CRAFTED]
    u.save_word_level_model(d, tokens)
    return d, tokens


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    """GPT-2's vocabulary, with the rows of every hostile byte-level token (control bytes, bytes
    that are not UTF-8, zero-width marks) made near-identical so one query lists them all."""
    from safetensors.numpy import save_file

    from embscope.tokenizer import bundled_gpt2

    tok = bundled_gpt2()
    hostile = sorted(set(GPT2_EXPECTED) | {i for i in range(tok.vocab_size)
                                            if any(b < 0x20 or b == 0x7F for b in tok.token_bytes(i))})
    d = tmp_path_factory.mktemp("gpt2-bytes")
    t = u.gpt2_tensors()
    wte = t["transformer.wte.weight"]
    rng = np.random.default_rng(1)
    direction = 100 * rng.standard_normal(wte.shape[1]).astype(np.float32)  # (d,) shared by them all
    wte[hostile] = direction + rng.standard_normal((len(hostile), wte.shape[1])).astype(np.float32) * 0.01
    save_file({k: t[k] for k in ("transformer.wte.weight", "transformer.wpe.weight")}, str(d / "model.safetensors"))
    return d, hostile, tok


# --- tests ---------------------------------------------------------------------------------------

def test_escape_spec():
    """The expectations above are display.escape's, byte for byte."""
    for token, shown in CRAFTED.items():
        assert escape(token.encode("utf-8")) == shown
    from embscope.tokenizer import bundled_gpt2

    tok = bundled_gpt2()
    for i, shown in GPT2_EXPECTED.items():
        assert escape(tok.token_bytes(i)) == shown, (i, tok.token_bytes(i))


def test_distinct_tokens_look_distinct():
    """Every C1 control (valid UTF-8, two bytes) against the same lone byte (not UTF-8), and all
    of GPT-2's tokens: no two distinct byte strings escape to the same text."""
    for cp in range(0x80, 0xA0):
        assert escape(chr(cp).encode("utf-8")) == f"\\u{cp:04x}" != escape(bytes([cp])) == f"\\x{cp:02x}"
    from embscope.tokenizer import bundled_gpt2

    tok = bundled_gpt2()
    shown = {escape(tok.token_bytes(i)) for i in range(tok.vocab_size)}
    assert len(shown) == tok.vocab_size


@pytest.mark.parametrize("fmt", FORMATS)
def test_gpt2_byte_tokens(gpt2, capsys, fmt):
    d, hostile, tok = gpt2
    code, out, err = run(["neighbors", f"#{hostile[0]}", "--include-query", "-k", str(len(hostile)),
                          "-m", str(d), "-f", fmt], capsys)
    assert (code, err) == (0, "")
    assert_safe(out, fmt)
    if fmt == "table":
        for i, shown in GPT2_EXPECTED.items():
            assert shown.replace(" ", "\u2423") in out
        return
    rows = records(out, fmt)
    assert sorted(int(r["id"]) for r in rows) == hostile
    for r in rows:
        assert r["token"] == escape(tok.token_bytes(int(r["id"])))
        if int(r["id"]) in GPT2_EXPECTED:
            assert r["token"] == GPT2_EXPECTED[int(r["id"])]


def _crafted_runs(tokens):
    """(argv, column holding a token label, its id column) for every command that prints tokens."""
    k = str(len(tokens))
    return {
        "neighbors": (["neighbors", "#1", "--include-query", "-k", k], "token", "id"),
        "knn-graph": (["neighbors", "--all", "-k", "2"], "token", "id"),
        "norms-all": (["norms", "--all"], "token", "id"),
        "norms-top": (["norms", "--top", k], "token", "id"),
    }


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("command", ["neighbors", "knn-graph", "norms-all", "norms-top"])
def test_crafted_tokens(crafted, capsys, fmt, command):
    d, tokens = crafted
    argv, label, id_col = _crafted_runs(tokens)[command]
    code, out, err = run([*argv, "-m", str(d), "-f", fmt], capsys)
    assert (code, err) == (0, "")
    assert_safe(out, fmt)
    expected = {i: CRAFTED.get(t, t) for i, t in enumerate(tokens)}
    if fmt == "table":
        for shown in CRAFTED.values():
            assert shown.replace(" ", "\u2423") in out
        return
    rows = records(out, fmt)
    seen = {int(r[id_col]) for r in rows}
    assert seen == set(range(len(tokens)))
    for r in rows:
        assert r[label] == expected[int(r[id_col])]
        if "neighbor" in r:
            assert r["neighbor"] == expected[int(r["neighbor_id"])]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("token", [t for t in CRAFTED if "\x00" not in t])  # argv cannot hold NUL
def test_embed_echoes_safely(crafted, capsys, fmt, token):
    """embed shows the token of the text, and (table, json) the text itself."""
    d, tokens = crafted
    code, out, err = run(["embed", token, "-m", str(d), "-f", fmt], capsys)
    assert (code, err) == (0, "")
    assert_safe(out, fmt)
    if fmt in ("tsv", "csv"):
        assert [r["token"] for r in records(out, fmt)] == [CRAFTED[token]]
    elif fmt in ("json", "jsonl"):
        doc = records(out, fmt)[0]
        assert doc["tokens"] == [CRAFTED[token]] and doc["ids"] == [tokens.index(token)]


@pytest.mark.parametrize("fmt", FORMATS)
def test_batch_queries_echo_safely(crafted, capsys, monkeypatch, fmt):
    d, tokens = crafted
    lines = [t for t in CRAFTED if "\n" not in t and "\r" not in t and "\x00" not in t
             and "\u2028" not in t and "\u2029" not in t and "\x1c" not in t]
    stdin = "\n".join(lines).encode("utf-8") + b"\n"
    code, out, err = run(["neighbors", "-", "-k", "1", "--exact", "-m", str(d), "-f", fmt], capsys,
                         stdin=stdin, monkeypatch=monkeypatch)
    assert (code, err) == (0, "")
    assert_safe(out, fmt)
    if fmt != "table":
        assert [r["query"] for r in records(out, fmt)] == [CRAFTED[t].strip() for t in lines]


def test_stdout_bytes_of_a_real_process(gpt2, crafted):
    """The bytes a terminal would get, from the installed entry point."""
    for d, query, k in [(gpt2[0], f"#{gpt2[1][0]}", len(gpt2[1])), (crafted[0], "#1", len(crafted[1]))]:
        for fmt in ("tsv", "table"):
            r = subprocess.run([sys.executable, "-m", "embscope", "neighbors", query, "--include-query", "-k", str(k),
                                "-m", str(d), "-f", fmt], capture_output=True, timeout=120)
            assert (r.returncode, r.stderr) == (0, b"")
            text = r.stdout.decode("utf-8")  # strict: valid UTF-8
            allowed = b"\n\t" if fmt == "tsv" else b"\n"
            assert not [b for b in r.stdout if (b < 0x20 and b not in allowed) or b == 0x7F]
            assert_safe(text, fmt)


def test_info_shows_file_metadata_safely(tmp_path, capsys):
    """safetensors __metadata__ and tensor names come from the file too."""
    from safetensors.numpy import save_file

    t = u.gpt2_tensors(vocab=100)
    save_file({"transformer.wte.weight": t["transformer.wte.weight"]}, str(tmp_path / "model.safetensors"),
              metadata={"format": "\x1b]0;pwned\x07", "note": "\u202eevil\r\n"})
    for fmt in FORMATS:
        code, out, err = run(["info", "-m", str(tmp_path), "-f", fmt], capsys)
        assert (code, err) == (0, "")
        assert_safe(out, fmt)
