"""The writers of embscope.output, one per format, and the JSON escaping of embscope.display, tested
directly: against the csv and json modules' own parsing, and exact bytes where the format is ours."""

from __future__ import annotations

import csv
import io
import json
import unicodedata

import numpy as np
import pytest
from rich.console import Console

from embscope.display import UNSAFE_CATEGORIES, json_safe, sanitize
from embscope.errors import UsageError
from embscope.output import FORMATS, resolve_format, writer_for

COLUMNS = ["rank", "id", "token", "score"]
ROWS = [
    (1, 832, " queen", 0.6112455725669861),
    (2, 7, 'a,"b"\tc', float("nan")),  # a CSV delimiter and quotes; TSV: tokens never hold a raw tab
    (3, 11, "\\xe2\\x80", float("inf")),
]


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, which are not JSON."""

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def write(fmt: str, rows=ROWS, columns=COLUMNS, title=None, how="values", width=80) -> str:
    stream = io.StringIO()
    console = Console(file=stream, width=width, color_system=None, highlight=False, soft_wrap=False)
    out = writer_for(fmt, stream, lambda: console).start(columns, title=title)
    if how == "values":
        for r in rows:
            out.write_values(r)
    elif how == "dicts":
        for r in rows:
            out.write(dict(zip(columns, r)))
    elif how == "columns":  # numbers as numpy arrays, as `neighbors -` and `--all` give them
        cols = [list(c) for c in zip(*rows)]
        out.write_columns([np.array(c) if all(type(v) in (int, float) for v in c) else c for c in cols])
    else:
        out.write_rows(rows)
    out.close()
    return stream.getvalue()


@pytest.mark.parametrize("how", ["values", "dicts", "rows", "columns"])
@pytest.mark.parametrize("fmt", ["tsv", "csv", "json", "jsonl", "table"])
def test_every_way_of_writing_a_row_gives_the_same_output(fmt, how):
    assert write(fmt, how=how) == write(fmt, how="values")


def test_tsv_exact():
    assert write("tsv") == (
        "rank\tid\ttoken\tscore\n"
        "1\t832\t queen\t0.611246\n"  # floats to 6 significant digits, as '%.6g' does
        '2\t7\ta,"b"\tc\tnan\n'
        "3\t11\t\\xe2\\x80\tinf\n"
    )


def test_csv_parses_back_with_the_csv_module():
    text = write("csv")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == COLUMNS
    assert rows[1:] == [["1", "832", " queen", "0.611246"], ["2", "7", 'a,"b"\tc', "nan"],
                        ["3", "11", "\\xe2\\x80", "inf"]]
    assert text.splitlines()[2] == '2,7,"a,""b""\tc",nan'


def test_json_is_one_array_with_null_for_nan_and_inf():
    text = write("json")
    assert strict_json(text) == [
        {"rank": 1, "id": 832, "token": " queen", "score": 0.6112455725669861},
        {"rank": 2, "id": 7, "token": 'a,"b"\tc', "score": None},
        {"rank": 3, "id": 11, "token": "\\xe2\\x80", "score": None},
    ]
    assert text == json.dumps(strict_json(text), indent=1, ensure_ascii=False) + "\n"


def test_jsonl_is_one_object_a_line():
    lines = write("jsonl").splitlines()
    assert [strict_json(line) for line in lines] == strict_json(write("json"))
    assert lines[0] == '{"rank": 1, "id": 832, "token": " queen", "score": 0.6112455725669861}'


def test_table_exact():
    """Numbers right-aligned, text left, two spaces between columns, spaces in tokens visible,
    the title on its own line; no trailing spaces."""
    rows = [ROWS[0], (2, 7, 'a,"b"', float("nan")), ROWS[2]]
    assert write("table", rows=rows, title="neighbors of king").splitlines() == [
        "neighbors of king",
        "rank   id  token        score",
        "   1  832  ␣queen    0.611246",
        '   2    7  a,"b"          nan',
        "   3   11  \\xe2\\x80       inf",
    ]


def test_table_title_is_text_not_markup():
    """A query like '[/x]' or an ESC byte in a title: printed literally and escaped, never a
    Rich markup error or a raw control character."""
    out = write("table", title="[/x] [bold]q\x1b[31m", rows=ROWS[:1])
    assert out.splitlines()[0].rstrip() == "[/x] [bold]q\\x1b[31m"
    assert "\x1b" not in out


def test_an_empty_table_still_has_its_header():
    assert write("tsv", rows=[]) == "rank\tid\ttoken\tscore\n"
    assert write("json", rows=[]) == "[]\n"
    assert write("jsonl", rows=[]) == ""


def test_a_writer_can_start_several_tables():
    stream = io.StringIO()
    console = Console(file=stream, width=40, color_system=None)
    out = writer_for("table", stream, lambda: console)
    for title in ("first", "second"):
        out.start(["a"], title=title)
        out.write({"a": title})
        out.close()
    assert [line.rstrip() for line in stream.getvalue().splitlines()] == ["first", "a", "first", "second", "a", "second"]


def test_json_documents_with_arrays_nan_and_ints():
    doc = {"ids": (5, 6), "matrix": np.array([[1.0, np.nan], [np.inf, 0.5]], dtype=np.float32),
           "positions": np.arange(2), "scalar": np.float32(0.25), "name": "x"}
    parts = [{"position": 0, "values": np.array([np.nan, 2.0])}]
    stream = io.StringIO()
    writer_for("json", stream, None).document(doc, parts)
    assert strict_json(stream.getvalue()) == {"ids": [5, 6], "matrix": [[1.0, None], [None, 0.5]],
                                              "positions": [0, 1], "scalar": 0.25, "name": "x"}
    assert stream.getvalue().count("\n") == 1  # one document, one line
    stream = io.StringIO()
    writer_for("jsonl", stream, None).document(doc, parts * 2)
    assert [strict_json(line) for line in stream.getvalue().splitlines()] == [{"position": 0, "values": [None, 2.0]}] * 2


@pytest.mark.parametrize("fmt", ["tsv", "csv", "table"])
def test_text_formats_take_no_documents(fmt):
    with pytest.raises(TypeError, match=f"^{fmt} output holds records, not documents$"):
        writer_for(fmt, io.StringIO(), None).document({}, [])


def test_the_format_is_resolved_once_from_the_terminal():
    assert resolve_format(None, stdout_isatty=True) == "table"
    assert resolve_format(None, stdout_isatty=False) == "tsv"
    for fmt in FORMATS:
        assert resolve_format(fmt, stdout_isatty=True) == fmt
    with pytest.raises(UsageError, match=r"^unknown format 'xml' \(choose from table, tsv, csv, json, jsonl\)$"):
        resolve_format("xml", stdout_isatty=False)


# --- JSON escaping -------------------------------------------------------------------------------

UNSAFE = ["\x7f", "\x85", "\u202e", "\u2066", "\u200b", "\u2028", "\u2029", "\ue000", "\U0010ffff", "\U000e0001"]
SAFE = ["é", "☕", "\U0001f600", "中", "\u00a0"]


def test_json_escapes_what_a_terminal_would_act_on_and_parses_back():
    text = "".join(UNSAFE + SAFE) + "\x1b\n"
    out = json_safe(json.dumps({"t": text}, ensure_ascii=False))
    assert out == ('{"t": "\\u007f\\u0085\\u202e\\u2066\\u200b\\u2028\\u2029\\ue000\\udbff\\udfff\\udb40\\udc01'
                   'é☕\U0001f600中\u00a0\\u001b\\n"}')
    assert json.loads(out) == {"t": text}
    assert [c for c in out if unicodedata.category(c) in UNSAFE_CATEGORIES] == []


@pytest.mark.parametrize("ch", UNSAFE + SAFE)
def test_json_and_messages_escape_the_same_characters(ch):
    """One rule for both: a character a message shows escaped is escaped in JSON too."""
    in_json = json_safe(json.dumps(ch, ensure_ascii=False)) != json.dumps(ch, ensure_ascii=False)
    assert in_json == (sanitize(ch) != ch)


def test_writers_escape_through_display():
    stream = io.StringIO()
    out = writer_for("jsonl", stream, None).start(["token"])
    out.write_values(["\u202eevil"])
    out.close()
    assert stream.getvalue() == '{"token": "\\u202eevil"}\n'
