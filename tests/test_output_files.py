"""`-o FILE` on every command that prints data: the format is the suffix, the file holds exactly
what `-f FORMAT` prints, it is written whole when the command succeeds and not at all when it
fails; a suffix a command does not take, or a missing extra, is one line before any work; each
command's help names exactly the suffixes it takes."""

from __future__ import annotations

import re
import sys

import pytest

from tests import untrusted as u
from tests.helpers import run

DATA = ("tsv", "csv", "json", "jsonl")
# command -> (argv before -o, the suffixes it takes)
COMMANDS = {
    "info": (["info"], DATA),
    "neighbors": (["neighbors", "king", "-k", "3"], DATA),
    "positions": (["positions", "--step", "16"], DATA + ("npy", "png")),
    "norms": (["norms"], DATA + ("png",)),
    "embed": (["embed", "the king"], DATA + ("npy",)),
    "sim": (["sim", "king", "queen", "#5"], DATA + ("npy",)),
    "tokens": (["tokens", "the king"], DATA + ("npy",)),
    "map": (["map", "--positions"], DATA + ("npy", "png", "html")),
}
EVERY = DATA + ("npy", "png", "html", "txt", "xml")
# More ways each command prints data: every one must reach the file the same.
VARIANTS = [
    ["neighbors", "--all", "-k", "2", "--rows", "0:40"],
    ["neighbors", "king", "queen"],
    ["positions", "--by-offset", "--step", "8"],
    ["norms", "--top", "3", "--centroid"],
    ["norms", "--all"],
    ["embed", "the king", "--pool", "mean"],
    ["sim", "king", "queen", "#5", "--pairs"],
    ["tokens", "--grep", "^ kin"],
    ["tokens", "--id", "1:4"],
    ["map", "--near", "king", "-k", "5"],
    ["map", "--ids", "0:30", "--variance"],
]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("outputs") / "gpt2"
    u.save_gpt2_safetensors(d)
    return str(d)


def _without_load_time(text: str) -> str:
    return re.sub(r"load_seconds[^0-9]*[0-9.]+", "load_seconds", text)  # the one value that changes


@pytest.mark.parametrize("argv", [c[0] for c in COMMANDS.values()] + VARIANTS, ids=" ".join)
@pytest.mark.parametrize("suffix", DATA)
def test_file_holds_what_f_prints(model, tmp_path, capsys, argv, suffix):
    code, printed, _ = run([*argv, "-m", model, "-f", suffix], capsys)
    assert code == 0
    path = tmp_path / f"out.{suffix}"
    code, out, err = run([*argv, "-m", model, "-o", str(path)], capsys)
    assert (code, out) == (0, "")
    assert err.endswith(f"wrote {path}\n")
    assert _without_load_time(path.read_text(encoding="utf-8")) == _without_load_time(printed)
    code, out, _ = run([*argv, "-m", model, "-o", str(tmp_path / f"again.{suffix.upper()}"), "-f", suffix], capsys)
    assert (code, out) == (0, "")  # -f naming the suffix's own format agrees; the suffix's case does not matter


def _listed(suffixes) -> str:
    names = [f".{s}" for s in suffixes]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_names_exactly_what_is_taken(command, capsys, tmp_path):
    """The suffixes the -o help names are the ones the command takes: each other one is refused
    with the usage error listing them, before the model is even looked for."""
    import typer

    from embscope.cli.main import app

    argv, takes = COMMANDS[command]
    click_command = typer.main.get_command(app).commands[command]
    help_text = next(p.help for p in click_command.params if p.name == "output")
    assert re.findall(r"\.(npy|png|html|tsv|csv|jsonl|json)\b", help_text) == list(takes)
    for suffix in EVERY:
        target = tmp_path / f"x.{suffix}"
        code, out, err = run([*argv, "-m", str(tmp_path / "no-such-model"), "-o", str(target)], capsys)
        assert out == ""
        if suffix in takes:
            assert code == 1 and "no-such-model" in err, err  # got as far as looking for the model
        else:
            assert (code, err) == (2, f"embscope: error: -o {target}: unknown file type (use {_listed(takes)})\n")


@pytest.mark.parametrize("command", ["positions", "norms", "map"])
def test_png_without_matplotlib_before_any_output(model, tmp_path, capsys, monkeypatch, command):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    argv, _ = COMMANDS[command]
    code, out, err = run([*argv, "-m", model, "-o", str(tmp_path / "p.png"), "-f", "tsv"], capsys)
    assert (code, out) == (1, "")
    assert err == ("embscope: error: Writing a PNG needs matplotlib, which is not installed:"
                   " pip install 'embscope[plot]'\n")
    assert list(tmp_path.iterdir()) == []


def test_f_and_suffix_disagree(model, tmp_path, capsys):
    code, out, err = run(["neighbors", "king", "-m", model, "-o", str(tmp_path / "n.tsv"), "-f", "json"], capsys)
    assert (code, out, err) == (2, "", f"embscope: error: -f json and -o {tmp_path / 'n.tsv'} disagree: a file's"
                                       " format is its suffix\n")


def test_heatmap_is_a_picture_not_data(model, tmp_path, capsys):
    code, out, err = run(["positions", "--heatmap", "-m", model, "-o", str(tmp_path / "h.csv")], capsys)
    assert (code, out, err) == (2, "", f"embscope: error: --heatmap draws a picture: -o {tmp_path / 'h.csv'}"
                                       " holds data (use -o FILE.png for the picture)\n")


def test_failure_mid_output_writes_nothing(model, tmp_path, capsys, monkeypatch):
    """The k-NN graph fails after its first block was written: the old file stays as it was,
    and nothing else is left in the directory."""
    from embscope.api import Model
    from embscope.errors import EmbscopeError

    real = Model.knn_graph

    def one_block_then_fail(self, *args, **kwargs):
        yield next(real(self, *args, **kwargs))
        raise EmbscopeError("the disk went away")

    monkeypatch.setattr(Model, "knn_graph", one_block_then_fail)
    target = tmp_path / "graph.tsv"
    target.write_text("the previous version")
    code, out, err = run(["neighbors", "--all", "-k", "2", "-m", model, "-o", str(target)], capsys)
    assert (code, out, err) == (1, "", "embscope: error: the disk went away\n")
    assert target.read_text() == "the previous version"
    assert [p.name for p in tmp_path.iterdir()] == ["graph.tsv"]
