"""What a person at a terminal meets (issue 11, items 5, 7 and 10): notes escape tokens as tables
do; the `neighbors --all` progress bar never mixes into the rows and leaves nothing behind;
`-` on a terminal says it reads stdin; `embed --help` names its argument as `neighbors` does;
`--debug` after the command name."""

from __future__ import annotations

import json
import os

import pytest

import embscope
from embscope.cli.main import main
from embscope.errors import EmbscopeError
from embscope.model import default_model_dir
from tests.helpers import run
from tests.terminal import run_on_terminal, screen

# --- 5. one escaping: the note about a several-token word shows tokens as tables show them ---------


def _shown(token: bytes) -> str:
    """A token as the README says tables show it: bytes that are not UTF-8 as \\xNN (no control
    characters or backslashes in these tokens)."""
    text = token.decode("utf-8", "surrogateescape")
    return "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else c for c in text)


def test_the_note_shows_byte_tokens_as_tables_do(hf_models, tiktoken_gpt2, capsys):
    path = hf_models["gpt2-lm"].path
    ids = tiktoken_gpt2.encode("🙂")
    assert len(ids) > 1 and any(b >= 0x80 for b in tiktoken_gpt2.decode_single_token_bytes(ids[0]))
    code, out, err = run(["neighbors", "🙂", "--exact", "-k", "1", "-f", "tsv", "-m", path], capsys)
    parts = ", ".join(f"'{_shown(tiktoken_gpt2.decode_single_token_bytes(i))}' #{i}" for i in ids)
    assert (code, err) == (0, f"'🙂' is {len(ids)} tokens ({parts}): using the mean of their vectors\n")
    assert "\\\\" not in err  # not repr()'s doubled backslash: '\\xf0'
    code, out, _ = run(["neighbors", f"#{ids[0]}", "--include-query", "-k", "1", "-f", "tsv", "-m", path], capsys)
    assert out.splitlines()[1].split("\t")[2] == _shown(tiktoken_gpt2.decode_single_token_bytes(ids[0]))


def test_titles_quote_the_text_without_repr(capsys):
    code, out, err = run(["embed", "a\\b", "-f", "table"], capsys)
    assert code == 0 and out.splitlines()[0] == "'a\\b': sum (preview of 4 of 256 values)"


# --- 7. the progress bar of neighbors --all --------------------------------------------------------

ALL = ["neighbors", "--all", "--rows", "0:300", "-k", "2"]


def test_rows_streamed_to_a_terminal_are_not_mixed_with_a_bar(capsys):
    """Both streams on one terminal, rows streaming (TSV): no bar at all; the screen holds exactly
    the rows (a bar drawn among them used to overwrite one and leave itself behind)."""
    _, want, _ = run([*ALL, "-f", "tsv"], capsys)
    code, raw, _ = run_on_terminal([*ALL, "-f", "tsv"])
    assert code == 0 and "k-NN graph" not in raw
    assert screen(raw) == [line.expandtabs(8).rstrip() for line in want.splitlines()]


def test_a_table_waits_for_the_bar_to_go(capsys, monkeypatch):
    """A table prints when every row is known: the bar is drawn meanwhile on stderr, then erased,
    and the screen holds the table alone."""
    monkeypatch.setenv("COLUMNS", "100")
    _, want, _ = run([*ALL, "-f", "table"], capsys)
    code, raw, _ = run_on_terminal([*ALL, "-f", "table"], columns=100)
    assert code == 0 and "k-NN graph" in raw
    assert screen(raw) == [line.rstrip() for line in want.splitlines()]


def test_the_bar_on_stderr_alone_disappears(capsys):
    """stdout into a pipe, stderr on a terminal: the bar is drawn there, and nothing of it remains."""
    _, want, _ = run([*ALL, "-f", "tsv"], capsys)
    code, raw, out = run_on_terminal([*ALL, "-f", "tsv"], stdout_terminal=False)
    assert (code, out) == (0, want)
    assert "k-NN graph" in raw and screen(raw) == []


# --- 10. stdin on a terminal, embed's argument, --debug after the command -----------------------------


@pytest.mark.parametrize("argv,what,typed,first_row", [
    (["neighbors", "-", "-k", "1", "-f", "tsv"], "queries", "king", "king\t1\t832\t queen\t"),
    (["embed", "-", "--pool", "mean", "-f", "tsv"], "texts", "To be", "mean\t2\t"),
])
def test_dash_on_a_terminal_says_it_reads_stdin(argv, what, typed, first_row):
    sent = []

    def type_lines(text, write):
        if not sent and "Ctrl-D" in text:
            sent.append(True)
            write(typed.encode() + b"\n\x04")  # a line, then Ctrl-D at the start of the next

    code, raw, _ = run_on_terminal(argv, stdin_terminal=True, on_output=type_lines)
    lines = screen(raw)
    assert code == 0 and lines[:2] == [f"reading {what} from stdin, one per line (end them with Ctrl-D)", typed]
    assert raw.replace("\r\n", "\n").split("\n")[3].startswith(first_row)


def test_dash_from_a_pipe_says_nothing(capsys, monkeypatch):
    code, out, err = run(["neighbors", "-", "-k", "1", "-f", "tsv"], capsys, stdin="king\n", monkeypatch=monkeypatch)
    assert (code, err) == (0, "") and out.splitlines()[1].startswith("king\t1\t832\t")


def test_embed_help_names_its_argument_as_neighbors_does(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    _, embed_help, _ = run(["embed", "--help"], capsys)
    _, neighbors_help, _ = run(["neighbors", "--help"], capsys)
    assert "Usage: embscope embed [OPTIONS] [TEXT...]" in embed_help and "{text}" not in embed_help
    assert "Usage: embscope neighbors [OPTIONS] [QUERY...]" in neighbors_help
    assert "--debug" in embed_help and "--debug" in neighbors_help


def test_embed_joins_several_words_into_one_text(capsys):
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(os.path.join(default_model_dir(), "tokenizer.json")).encode("To be", add_special_tokens=False).ids
    code, words, err = run(["embed", "To", "be", "-f", "json"], capsys)
    assert (code, err) == (0, "")
    assert json.loads(words)["ids"] == ids and words == run(["embed", "To be", "-f", "json"], capsys)[1]
    assert run(["embed"], capsys) == (2, "", "embscope: error: give a text (or '-' to read texts from stdin)\n")


def test_debug_after_the_command(capsys):
    code, out, err = run(["info", "--debug", "-f", "tsv"], capsys)
    assert code == 0 and err.startswith("debug: loaded ") and out.startswith("field\tvalue\n")
    before = run(["--debug", "info", "-f", "tsv"], capsys)
    assert before[2].startswith("debug: loaded ") and before[1].splitlines()[:-1] == out.splitlines()[:-1]  # but load_seconds
    with pytest.raises(EmbscopeError, match="^/nonexistent: no such file or directory$"):  # the traceback
        main(["info", "-m", "/nonexistent", "--debug"])
    assert run(["info", "-m", "/nonexistent"], capsys) == (1, "", "embscope: error: /nonexistent: no such file or directory\n")


def test_debug_after_a_cache_command(capsys, monkeypatch, tmp_path):
    from embscope.io import hub_cache

    monkeypatch.setattr(hub_cache, "entries", lambda: [])
    monkeypatch.setattr(hub_cache, "root", lambda: tmp_path)
    for argv in (["cache", "--debug", "-f", "json"], ["cache", "list", "--debug", "-f", "json"]):
        assert run(argv, capsys) == (0, "[]\n", "")
    with pytest.raises(EmbscopeError, match="^org/none: nothing cached for it"):
        main(["cache", "remove", "org/none", "--debug"])


def test_the_bundled_model_is_what_the_reference_says():
    """The embed and neighbors rows above name ids of the bundled model: ' queen' is #832."""
    assert embscope.load().token(832) == " queen"
