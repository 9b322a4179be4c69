"""Shell completion (Typer's): the script `--show-completion` prints, run by bash as bash would
run it when TAB is pressed, offers the subcommands and their options."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = str(Path(sys.executable).parent)  # where pip put the `embscope` console script
ENV = {**os.environ, "PATH": BIN + os.pathsep + os.environ.get("PATH", ""), "EMBSCOPE_MODEL": ""}
COMMANDS = ["info", "neighbors", "positions", "norms", "embed", "sim", "tokens", "diff", "map", "export", "glitch",
            "cache"]


def bash(script: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "--norc", "--noprofile", "-c", script], capture_output=True, text=True,
                          env=env or ENV, timeout=120)


@pytest.fixture(scope="module")
def script(tmp_path_factory) -> Path:
    """The completion script, as `embscope --show-completion` prints it when bash runs it."""
    r = bash("embscope --show-completion")
    assert r.returncode == 0, r.stderr
    assert "complete -o default -F _embscope_completion embscope" in r.stdout
    path = tmp_path_factory.mktemp("completion") / "embscope.bash"
    path.write_text(r.stdout)
    return path


def complete(script: Path, *words: str) -> list[str]:
    """What the completion function puts in COMPREPLY for the command line `words` (the cursor
    on the last word)."""
    quoted = " ".join(f"'{w}'" for w in words)
    r = bash(f"source '{script}'; COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1};"
             f" _embscope_completion embscope; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
    assert r.returncode == 0, r.stderr
    return [line for line in r.stdout.splitlines() if line]


def test_offers_the_subcommands(script):
    assert complete(script, "embscope", "") == COMMANDS
    assert complete(script, "embscope", "n") == ["neighbors", "norms"]
    assert complete(script, "embscope", "to") == ["tokens"]


def test_offers_options(script):
    assert complete(script, "embscope", "sim", "--me") == ["--metric", "--meta"]
    assert complete(script, "embscope", "tokens", "--gr") == ["--grep"]


def test_install_completion_writes_the_script(tmp_path):
    env = {**ENV, "HOME": str(tmp_path)}
    r = bash("embscope --install-completion", env=env)
    assert r.returncode == 0, r.stderr
    installed = tmp_path / ".bash_completions" / "embscope.sh"
    assert "_embscope_completion" in installed.read_text()
    assert f"source '{installed}'" in (tmp_path / ".bashrc").read_text()
