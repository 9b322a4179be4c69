"""Options that contradict each other, or of which one would be silently ignored, are refused by
every command with the same one-line usage error (issue 11, item 6): exit status 2, nothing on
stdout, no file written, and before the model is read (`-m` names no file here)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import run

NO_MODEL = ["-m", "/nonexistent/model"]  # were it read, the error would be "no such file"

def together(a: str, b: str) -> str:
    return f"{a} and {b} cannot be used together"


CONFLICTS = [
    (["positions", "--heatmap", "--by-offset"], together("--heatmap", "--by-offset")),
    (["positions", "--heatmap", "-f", "tsv"], together("--heatmap", "-f tsv")),
    (["positions", "--heatmap", "-f", "json"], together("--heatmap", "-f json")),
    (["positions", "--heatmap", "-o", "x.npy"],
     "--heatmap draws a picture: -o x.npy holds data (use -o FILE.png for the picture)"),
    (["positions", "-o", "x.npy", "-f", "json"], together("-o x.npy", "-f json")),
    (["positions", "-o", "x.png", "-f", "table"], together("-o x.png", "-f table")),
    (["positions", "--by-offset", "-o", "x.npy", "-f", "tsv"], together("-o x.npy", "-f tsv")),
    (["norms", "--top", "3", "--all"], together("--all", "--top")),
    (["norms", "--bottom", "3", "--all"], together("--all", "--bottom")),
    (["norms", "--centroid", "--all"], together("--all", "--centroid")),
    (["neighbors", "--all", "--exact"], together("--all", "--exact")),
    (["neighbors", "--all", "--include-query"], together("--all", "--include-query")),
    (["neighbors", "--all", "--cosmul"], together("--all", "--cosmul")),
    (["embed", "hello", "-o", "x.npy", "-f", "tsv"], together("-o x.npy", "-f tsv")),
    (["sim", "king", "queen", "-o", "x.npy", "-f", "json"], together("-o x.npy", "-f json")),
    (["sim", "king", "queen", "-o", "x.npy", "--pairs"], together("-o x.npy", "--pairs")),
    (["tokens", "hello", "-o", "x.npy", "-f", "tsv"], together("-o x.npy", "-f tsv")),
    (["info", "--tokenizer", "t.json", "--meta", "meta.pkl"], together("--tokenizer", "--meta")),
    (["neighbors", "king", "--tokenizer", "t.json", "--meta", "meta.pkl"], together("--tokenizer", "--meta")),
]


@pytest.mark.parametrize("argv,message", CONFLICTS, ids=[" ".join(a) for a, _ in CONFLICTS])
def test_conflicting_options_are_one_usage_error(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run([*argv, *NO_MODEL], capsys)
    assert (code, out, err) == (2, "", f"embscope: error: {message}\n")
    assert list(tmp_path.iterdir()) == []


def test_neighbors_keeps_its_own_words_for_what_is_not_a_pair(capsys):
    """The messages `neighbors` already gave, in the same form."""
    for argv, message in ((["neighbors", "--all", "king"], "--all takes no query"),
                          (["neighbors", "king", "--rows", "0:5"], "--rows goes with --all"),
                          (["neighbors", "king", "--metric", "dot", "--cosmul"], "--cosmul works with --metric cosine only")):
        assert run([*argv, *NO_MODEL], capsys) == (2, "", f"embscope: error: {message}\n")


@pytest.fixture
def empty_cache(monkeypatch, tmp_path):
    from embscope.io import hub_cache

    monkeypatch.setattr(hub_cache, "entries", lambda: [])
    monkeypatch.setattr(hub_cache, "root", lambda: tmp_path)


def test_cache_format_goes_with_listing_only(empty_cache, capsys):
    assert run(["cache", "-f", "json", "remove", "org/name"], capsys) == (
        2, "", "embscope: error: -f json and remove cannot be used together\n")
    assert run(["cache", "-o", "x.tsv", "remove", "org/name"], capsys) == (
        2, "", "embscope: error: -o x.tsv and remove cannot be used together\n")
    assert run(["cache", "-f", "json", "list", "-f", "tsv"], capsys) == (
        2, "", "embscope: error: -f json and -f tsv cannot be used together\n")
    for argv in (["cache", "-f", "json"], ["cache", "-f", "json", "list"], ["cache", "list", "-f", "json"]):
        code, out, err = run(argv, capsys)  # `cache -f json list` was a table or TSV: -f was ignored
        assert (code, json.loads(out), err) == (0, [], "")


def test_what_agrees_still_works(capsys, tmp_path):
    """--heatmap with -f table (what a terminal gets anyway) and with -o FILE.png; -o .png of norms
    with -f (the statistics go to stdout, the picture to the file)."""
    pytest.importorskip("matplotlib")
    code, out, err = run(["positions", "--heatmap", "-f", "table", "--range", "0:4"], capsys)
    assert code == 0 and out.startswith("bundled Tiny Shakespeare model: positions 0..3\n")
    picture = tmp_path / "h.png"
    code, out, err = run(["positions", "--heatmap", "-o", str(picture), "--range", "0:4"], capsys)
    assert (code, out, err) == (0, "", f"wrote {picture}\n") and picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, err = run(["norms", "-f", "tsv", "-o", str(tmp_path / "n.png")], capsys)
    assert code == 0 and out.startswith("rows\tcount\t") and err == f"wrote {tmp_path / 'n.png'}\n"
