"""Tables never cut a value or a column name (issue 11, items 1 and 2): embscope.table_layout
directly, with exact lines, then every command's tables at 60, 80 and 120 columns (COLUMNS forced,
`-f table` into a pipe, and on a pseudo-terminal), checked against the same command's TSV rows."""

from __future__ import annotations

import pytest
from rich.cells import cell_len

import embscope
from embscope.output import text_value
from embscope.table_layout import MIN_WRAP, lay_out, shorten, wrap
from tests.helpers import run, tsv
from tests.terminal import run_on_terminal, screen

WIDTHS = (60, 80, 120)


def lines(columns, rows, right, width, title=None) -> list[str]:
    return [text for text, _ in lay_out(title, columns, rows, right, width)]


# --- the layout, exactly ---------------------------------------------------------------------------

def test_a_table_that_fits_is_one_table_with_its_title_and_bold_header():
    got = lay_out("neighbors of king", ["rank", "id", "token"], [["1", "832", "␣queen"]], [True, True, False], 40)
    assert got == [("neighbors of king", "italic"), ("rank   id  token", "bold"), ("   1  832  ␣queen", None)]


def test_no_width_never_narrows():
    """`-f table` into a pipe or a file: the table as wide as its cells."""
    row = ["x" * 300, "1"]
    assert lines(["a", "b"], [row], [False, True], None) == ["a" + " " * 299 + "  b", "x" * 300 + "  1"]


def test_a_text_column_wraps_between_words():
    got = lines(["field", "value"], [["dim", "16"], ["model_args", "n_layer=1, n_head=2, n_embd=16, block_size=32"]],
                [False, False], 34, title="embscope info: ckpt.pt")
    assert got == [
        "embscope info: ckpt.pt",
        "field       value",
        "dim         16",
        "model_args  n_layer=1, n_head=2,",
        "            n_embd=16,",
        "            block_size=32",
    ]


def test_numbers_split_into_narrower_tables_led_by_the_key_column():
    got = lines(["rows", "count", "mean", "std"], [["token", "3072", "0.767343", "0.151779"], ["position", "128", "0.28", "0.09"]],
                [False, True, True, True], 26)
    assert got == [
        "rows      count      mean",
        "token      3072  0.767343",
        "position    128      0.28",
        "",
        "rows           std",
        "token     0.151779",
        "position      0.09",
    ]


def test_too_narrow_for_any_table_stacks_one_field_a_line():
    got = lines(["rows", "count", "mean"], [["token", "3072", "0.767343"], ["position", "128", "0.28"]],
                [False, True, True], 12)
    assert got == ["rows   token", "count  3072", "mean   0.767343", "", "rows   position", "count  128", "mean   0.28"]


def test_a_long_token_folds_inside_its_column():
    got = lines(["rank", "token", "score"], [["1", "x" * 50, "0.5"]], [True, False, True], 34)
    assert got == ["rank  token" + " " * 18 + "score", "   1  " + "x" * 21 + "    0.5",
                   "      " + "x" * 21, "      " + "x" * 8]


def test_wide_characters_are_two_cells():
    assert lines(["id", "token", "score"], [["1", "漢字", "0.5"]], [True, False, True], 40) == [
        "id  token  score", " 1  漢字     0.5"]


def test_wrap_and_shorten():
    assert wrap("aa bb cc", 5) == ["aa bb", "cc"]
    assert wrap("abcdefgh", 3) == ["abc", "def", "gh"]
    assert wrap("a 漢字漢字", 4) == ["a", "漢字", "漢字"]
    assert shorten("neighbors of king - man + woman (cosine)", 20) == "neighbors of king -…"
    assert shorten("short", 20) == "short" and shorten("x" * 50, None) == "x" * 50


# --- every command's tables at 60, 80, 120 columns --------------------------------------------------

TOKEN_COLUMNS = ("token", "neighbor")


def shown(records: list[dict]) -> list[str]:
    """The cells of `records` as a table shows them (spaces in tokens as '␣'), and the column names."""
    cells = list(records[0]) if records else []
    for r in records:
        cells += [text_value(v).replace(" ", "␣") if c in TOKEN_COLUMNS else text_value(v) for c, v in r.items()]
    return cells


def assert_nothing_cut(out: str, cells: list[str], width: int) -> None:
    """Every line fits `width`; every cell and column name is there whole: on one line when it is
    short enough never to be wrapped, else its characters in order across the wrapped lines."""
    assert max(cell_len(line) for line in out.splitlines()) <= width
    flat = "".join(out.split())
    for cell in cells:
        if cell_len(cell) <= MIN_WRAP:
            assert cell in out, (cell, out)
        assert "".join(cell.split()) in flat, (cell, out)


def table(argv, width, capsys, monkeypatch, stdin=None) -> str:
    monkeypatch.setenv("COLUMNS", str(width))
    code, out, err = run([*argv, "-f", "table"], capsys, stdin=stdin, monkeypatch=monkeypatch)
    assert code == 0, err
    return out


def records(argv, capsys, monkeypatch, stdin=None) -> list[dict]:
    code, out, err = run([*argv, "-f", "tsv"], capsys, stdin=stdin, monkeypatch=monkeypatch)
    assert code == 0, err
    return tsv(out)


COMMANDS = {
    "info": ["info"],
    "norms": ["norms"],
    "norms --top --bottom": ["norms", "--top", "3", "--bottom", "3"],
    "norms --centroid": ["norms", "--centroid"],
    "norms --all": ["norms", "--all"],
    "neighbors": ["neighbors", "king"],
    "neighbors arithmetic": ["neighbors", "king - man + woman"],
    "neighbors --all": ["neighbors", "--all", "--rows", "0:20", "-k", "3"],
    "positions --by-offset": ["positions", "--by-offset", "--step", "4"],
    "sim matrix": ["sim", "king", "queen", "crown", "prince", "duke", "father", "son", "traitor", "Tower"],
    "sim pairs": ["sim", "king", "queen", "the king's crown"],
    "tokens": ["tokens", "To be, or not to be: that is the question"],
    "tokens --grep": ["tokens", "--grep", "^kin"],
}


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", list(COMMANDS))
def test_no_command_cuts_a_value(name, width, capsys, monkeypatch):
    argv = COMMANDS[name]
    want = records(argv, capsys, monkeypatch)
    if name == "info":
        want = [r for r in want if r["field"] != "load_seconds"]  # the time differs from run to run
    out = table(argv, width, capsys, monkeypatch)
    assert_nothing_cut(out, shown(want), width)


@pytest.mark.parametrize("width", WIDTHS)
def test_info_of_a_nanogpt_checkpoint_tells_every_field_apart(nanogpt_ckpts, width, capsys, monkeypatch):
    """The reported case: 'positio…' three times and 'tokeniz…' twice at 80 columns."""
    argv = ["info", "-m", nanogpt_ckpts["bpe"].path]
    want = [r for r in records(argv, capsys, monkeypatch) if r["field"] != "load_seconds"]
    out = table(argv, width, capsys, monkeypatch)
    assert_nothing_cut(out, shown(want), width)
    starts = [line.split("  ")[0] for line in out.splitlines()[2:] if not line.startswith(" ")]
    assert starts == [r["field"] for r in want] + ["load_seconds"]  # one line starts with each field
    assert "model_args" in starts and any(line.startswith(" ") for line in out.splitlines()) == (width < 100)


@pytest.mark.parametrize("width", WIDTHS)
def test_neighbors_batch_from_stdin(width, capsys, monkeypatch):
    argv = ["neighbors", "-"]
    stdin = "king\nking - man + woman\n"
    want = records(argv, capsys, monkeypatch, stdin=stdin)
    out = table(argv, width, capsys, monkeypatch, stdin=stdin)
    assert_nothing_cut(out, shown(want), width)


@pytest.mark.parametrize("width", WIDTHS)
def test_embed_tables_shrink_the_preview_not_the_values(width, capsys, monkeypatch):
    text = "To be, or not to be"
    e = embscope.load().embed(text)
    out = table(["embed", text], width, capsys, monkeypatch)
    n = {60: 1, 80: 3, 120: 4}[width]  # as many values of the preview as fit beside the norms
    assert out.splitlines()[0] == f"'{text}': sum (preview of {n} of 256 values)"
    previews = [" ".join(f"{x:+.4f}" for x in v[:n]) + " …" for v in e.sum]
    assert_nothing_cut(out, shown(e.to_records()) + ["preview"] + previews, width)
    pooled = table(["embed", text, "--pool", "mean"], width, capsys, monkeypatch)
    assert_nothing_cut(pooled, ["pool", "tokens", "norm", "preview", "mean", str(len(e.ids))], width)


@pytest.mark.parametrize("width", WIDTHS)
def test_the_cache_listing(width, capsys, monkeypatch, tmp_path):
    from embscope.io import hub_cache

    entry = {"repo": "openai-community/gpt2-medium", "commit": "6dcaa7a952f72f9298047fd5137cd6e4f05f41da",
             "revisions": ["main", "v1.0"], "tensors": 2, "bytes": 162_000_000}
    monkeypatch.setattr(hub_cache, "entries", lambda: [entry])
    monkeypatch.setattr(hub_cache, "root", lambda: tmp_path)
    want = records(["cache"], capsys, monkeypatch)
    out = table(["cache"], width, capsys, monkeypatch)
    assert_nothing_cut(out, shown(want), width)


@pytest.mark.parametrize("argv,title", [
    (["neighbors", "king - man + woman"], "neighbors of king - man + woman (cosine)"),
    (["positions", "--by-offset"], "bundled Tiny Shakespeare model: positions 0..127: mean cosine by offset"),
])
def test_titles_are_one_line_and_shortened_only_when_wider_than_the_terminal(argv, title, capsys, monkeypatch):
    for width in WIDTHS:
        first = table(argv, width, capsys, monkeypatch).splitlines()[0]
        assert first == (title if len(title) <= width else title[:width - 1] + "…")


def test_a_table_into_a_pipe_without_columns_is_never_narrowed(capsys, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    code, out, err = run(["norms", "-f", "table"], capsys)
    assert (code, err) == (0, "")
    header = out.splitlines()[1].split()
    assert header == ["rows", "count", "mean", "std", "min", "p1", "p50", "p99", "max", "nonfinite"]


@pytest.mark.parametrize("argv,width", [(["norms"], 60), (["info"], 80)])
def test_on_a_terminal(argv, width, capsys, monkeypatch):
    """What a person sees: the screen of a pseudo-terminal `width` columns wide."""
    want = records(argv, capsys, monkeypatch)
    code, raw, _ = run_on_terminal(argv, columns=width)
    assert code == 0
    seen = "\n".join(screen(raw))
    assert_nothing_cut(seen, shown([r for r in want if r.get("field") != "load_seconds"]), width)
