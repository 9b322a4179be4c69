"""The repository carries everything its tests and scripts read: nothing outside it is needed.

Two checks: the code under embscope/, tests/, scripts/, bench/ and .ci/ names no location outside
the repository (a static scan), and running what the suite and the scripts do under an audit hook
opens nothing outside the repository, the temporary folders and the Python installation.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import site
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

from tests.builders import SHAKESPEARE

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ["embscope", "tests", "scripts", "bench", ".ci"]
SKIPPED = {ROOT / "embscope" / "data", ROOT / "bench" / ".fixtures", ROOT / "bench" / "results"}
SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"

# Ways code names a place outside the repository. (Each pattern is written so that its own
# source text does not match it.)
OUTSIDE = [
    (re.compile(r"\.\.[/\\]share[d]"), "the shared folder beside the checkout"),
    (re.compile(r"(?:/\s*|join\([^)]*)[\"']\.\.[\"']"), "a '..' path component"),
    (re.compile(r"(?<![\w.])/(?:wor[k]|hom[e]|mn[t]|sr[v]|User[s]|share[d])/"), "an absolute path outside"),
    (re.compile(r"EMBSCOPE_TES[T]_"), "a test setting that names a file"),
]
CLIMB = re.compile(r"\.parent(?!s)|\.parents\[(\d+)\]|dirname\(")


def code_files():
    for top in SCANNED:
        for dirpath, dirnames, filenames in os.walk(ROOT / top):
            dirnames[:] = [d for d in dirnames if d != "__pycache__" and Path(dirpath, d) not in SKIPPED]
            for name in filenames:
                if name.endswith((".py", ".sh", ".toml", ".cfg")) or top == ".ci":
                    yield Path(dirpath, name)


def climb_levels(line: str) -> int:
    """How many directories up from the file itself a `__file__` expression on this line goes:
    1 is the file's own folder."""
    return sum(int(m.group(1)) + 1 if m.group(1) else 1 for m in CLIMB.finditer(line))


def test_the_corpus_is_in_the_repository_unchanged():
    assert SHAKESPEARE == ROOT / "data" / "tinyshakespeare" / "input.txt"
    assert hashlib.sha256(SHAKESPEARE.read_bytes()).hexdigest() == SHAKESPEARE_SHA256
    note = (SHAKESPEARE.parent / "README.md").read_text(encoding="utf-8")
    assert "public domain" in note and SHAKESPEARE_SHA256 in note


def test_the_scan_sees_the_code():
    files = {p.relative_to(ROOT).as_posix() for p in code_files()}
    assert {"tests/builders.py", "scripts/train_default_model.py", "bench/run.py", ".ci/run",
            "embscope/model.py", "tests/test_self_contained.py"} <= files


def flagged(line: str, depth: int) -> list[str]:
    """Why this line of a file `depth` folders below the root names a place outside (or [])."""
    why = [what for pattern, what in OUTSIDE if pattern.search(line)]
    if "__file__" in line and climb_levels(line) > depth + 1:
        why.append("climbs above the repository root")
    return why


@pytest.mark.parametrize("line, bad", [
    ('DATA = "/wor' 'k/shared/data/tinyshakespeare/input.txt"', True),
    ('p = Path(__fi' 'le__).resolve().parents[2] / "data"', True),
    ('p = Path(__fi' 'le__).resolve().parent.parent.parent', True),
    ('p = Path(ROOT) / ".' '." / "data"', True),
    ('ok = name not in ("", ".", ".' '.")', False),
    ('os.path.join(ROOT, ".' '.", "data")', True),
    ('x = ".' './shared/data"', True),
    ('os.environ.get("EMBSCOPE_TES' 'T_SHAKESPEARE")', True),
    ('open("/proc/self/fd/1")', False),
    ('ROOT = Path(__fi' 'le__).resolve().parent.parent', False),
    ('sys.path.insert(0, os.path.dirname(os.path.abspath(__fi' 'le__)))', False),
])
def test_the_scan_catches_what_it_is_for(line, bad):
    assert bool(flagged(line, depth=1)) == bad


def test_no_code_names_a_place_outside_the_repository():
    found = []
    for path in code_files():
        rel = path.relative_to(ROOT)
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            found += [f"{rel}:{n}: {why}: {line.strip()}" for why in flagged(line, len(rel.parts) - 1)]
    assert found == []


def allowed_roots(tmp_path: Path) -> list[Path]:
    """Where the suite may open files: the repository, the temporary folders, the Python
    installation with its site-packages, and the kernel's pseudo-filesystems."""
    roots = [ROOT, Path(tempfile.gettempdir()), tmp_path, Path(sys.prefix), Path(sys.base_prefix),
             Path(sys.exec_prefix), Path(sysconfig.get_paths()["stdlib"]), Path("/proc"), Path("/sys"),
             Path("/dev")]
    roots += [Path(p) for p in site.getsitepackages() + [site.getusersitepackages()]]
    return [r.resolve() for r in roots]


def is_inside(path: Path, roots: list[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


@pytest.fixture(scope="module")
def opened(tmp_path_factory) -> list[dict]:
    """What tests/open_audit.py saw opened and listed, run in a fresh interpreter from a
    scratch working directory with no EMBSCOPE_ settings."""
    tmp = tmp_path_factory.mktemp("audit")
    report = tmp / "report.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EMBSCOPE_")}
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "open_audit.py"), str(tmp / "work"), str(report)],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [json.loads(line) for line in report.read_text(encoding="utf-8").splitlines() if line]


def test_the_helpers_and_the_training_script_read_the_corpus_from_the_repository(opened):
    reads = {(o["step"], o["path"]) for o in opened if o["event"] == "open"}
    assert ("shakespeare_text", str(SHAKESPEARE)) in reads
    assert ("train_default_model.py", str(SHAKESPEARE)) in reads


def test_nothing_outside_the_repository_is_opened(opened, tmp_path):
    roots = allowed_roots(tmp_path)
    # An editable install puts a pseudo-entry ("__editable__....__path_hook__") on sys.path that
    # the import system lists as if it were a relative folder; it is not a file.
    outside = sorted({f"{o['step']}: {o['event']} {o['path']}" for o in opened
                      if not o["path"].endswith("__path_hook__") and not is_inside(Path(o["path"]).resolve(), roots)})
    assert len(opened) > 100  # imports, fixtures and the commands were all seen
    assert outside == []


def quick_start_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quick start\n", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_ci_runs_the_readmes_test_command_in_a_fresh_clone():
    commands = quick_start_commands()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert len(commands) == 2
    assert commands[1] == "pip install torch==2.13.0 -e '.[dev]' && python -m pytest -q"
    assert re.search(r'^TEST_COMMAND="(.*)"$', ci, re.M).group(1) == commands[1]
    assert 'git clone -q "$repo" "$work/embscope"' in ci and "mktemp -d" in ci
    assert "python3 -m venv .venv" in ci and 'bash -c "$TEST_COMMAND"' in ci
