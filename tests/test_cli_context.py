"""The CLI's Environment: where it runs is decided once, by the entry point, and every command
takes its streams, terminal facts and --debug from it (nothing reads isatty() or a module global)."""

from __future__ import annotations

import io
import os
import shlex
import subprocess
import sys

import pytest
import typer

import embscope
from embscope.cli.context import Environment
from embscope.cli.main import app
from embscope.errors import EmbscopeError
from tests.helpers import run


def invoke(argv: list[str], stdout_isatty: bool, stdin: str = "") -> tuple[Environment, str, str]:
    """Run `embscope argv` with an Environment made here, on in-memory streams."""
    env = Environment(io.TextIOWrapper(io.BytesIO(stdin.encode())), io.StringIO(), io.StringIO(),
                      stdout_isatty=stdout_isatty, stderr_isatty=False)
    command = typer.main.get_command(app)
    with command.make_context("embscope", argv, obj=env) as ctx:
        command.invoke(ctx)
    return env, env.stdout.getvalue(), env.stderr.getvalue()


def test_the_environment_decides_the_default_format():
    """A table where the Environment says stdout is a terminal, TSV where it says it is not,
    whatever the stream object itself would answer (a StringIO is no terminal)."""
    want = embscope.load().neighbors("king", k=2)
    _, out, _ = invoke(["neighbors", "king", "-k", "2"], stdout_isatty=True)
    lines = [line.rstrip() for line in out.splitlines()]
    assert lines[:2] == ["neighbors of king (cosine)", "rank   id  token      score"]
    assert [line.split() for line in lines[2:]] == [[str(n.rank), str(n.id), n.token.replace(" ", "␣"), f"{n.score:.6g}"]
                                                    for n in want]
    _, out, _ = invoke(["neighbors", "king", "-k", "2"], stdout_isatty=False)
    assert out == "rank\tid\ttoken\tscore\n" + "".join(f"{n.rank}\t{n.id}\t{n.token}\t{n.score:.6g}\n" for n in want)


def test_a_picture_has_no_colour_on_a_stream_that_is_not_a_terminal():
    env, out, _ = invoke(["norms", "--top", "1"], stdout_isatty=True)
    assert env.color == "none" and "\x1b" not in out
    assert "token L2 norm" in out  # the histogram under the table


def test_stdin_and_notes_go_through_the_environment():
    m = embscope.load()
    _, out, err = invoke(["neighbors", "-", "-k", "1", "-f", "tsv"], stdout_isatty=False, stdin="king\n#5\n")
    assert [line.split("\t")[:3] for line in out.splitlines()] == [
        ["query", "rank", "id"], ["king", "1", str(m.neighbors("king", k=1).ids[0])],
        ["#5", "1", str(m.neighbors("#5", k=1).ids[0])]]
    _, out, err = invoke(["neighbors", "the queen", "-k", "1", "-f", "tsv"], stdout_isatty=False)
    ids = m.encode("the queen")
    assert len(ids) == 2 and err == (f"'the queen' is 2 tokens ('{m.token(ids[0])}' #{ids[0]}, '{m.token(ids[1])}'"
                                     f" #{ids[1]}): using the mean of their vectors\n")


def test_debug_belongs_to_one_invocation(capsys):
    """--debug sets the invocation's Environment, not a global: the next run is back to one line."""
    with pytest.raises(EmbscopeError, match="/nonexistent: no such file or directory"):
        invoke(["--debug", "info", "-m", "/nonexistent"], stdout_isatty=False)
    env, _, err = invoke(["--debug", "info"], stdout_isatty=False)
    assert env.debug and err.startswith("debug: loaded ")
    code, out, err = run(["info", "-m", "/nonexistent"], capsys)
    assert (code, out, err) == (1, "", "embscope: error: /nonexistent: no such file or directory\n")


def test_progress_only_on_a_terminal():
    env = Environment(io.StringIO(), io.StringIO(), io.StringIO(), stdout_isatty=False, stderr_isatty=False)
    with env.progress(10, "work") as advance:
        advance(10)
    assert env.stderr.getvalue() == ""


@pytest.mark.parametrize("closed,argv,want", [
    (">&-", ["neighbors", "king", "-k", "2"], (0, b"")),  # data to a closed stdout: nowhere, as print() does
    ("<&-", ["neighbors", "-"], (1, b"embscope: error: no queries on stdin\n")),
])
def test_streams_closed_before_start(closed, argv, want):
    env = {k: v for k, v in os.environ.items() if k != "EMBSCOPE_MODEL"}
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "embscope", *argv])
    r = subprocess.run(["sh", "-c", f"exec {command} {closed}"], stderr=subprocess.PIPE, env=env, timeout=120)
    assert (r.returncode, r.stderr) == want
