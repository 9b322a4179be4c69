"""Run the tests' data helpers, the CLI and the training script under an audit hook.

    python -m tests.open_audit WORKDIR REPORT

Every file the interpreter opens (`open` audit events: builtins.open, io.open, os.open) and every
directory it lists (`os.listdir`, `os.scandir`) while doing what the test suite and the scripts do
is written to REPORT, one JSON object per line: {"event", "path", "step"}. Relative paths are made
absolute against the working directory of the moment. WORKDIR is a scratch folder (a tmp dir) for
the files the helpers write. tests/test_self_contained.py decides which of the paths are allowed.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEEN: list[dict] = []
STEP = ["import"]


def _hook(event: str, args: tuple) -> None:
    if event not in ("open", "os.listdir", "os.scandir") or not args:
        return
    path = args[0]
    if isinstance(path, int) or path is None:  # an already-open descriptor
        return
    path = os.fsdecode(path)
    SEEN.append({"event": event, "path": os.path.abspath(path), "step": STEP[0]})


def _steps(work: Path):
    """(name, thunk) for each representative thing the suite and the scripts do."""
    from tests import builders
    from tests.helpers import run as _unused  # noqa: F401  (the in-process CLI runner's imports)

    from embscope.cli.main import main

    def cli(*argv):
        try:
            main(list(argv))
        except SystemExit as e:
            if e.code not in (None, 0):
                raise RuntimeError(f"embscope {' '.join(argv)} exited {e.code}") from None

    yield "shakespeare_text", builders.shakespeare_text
    yield "gpt2_tokenizer", builders.gpt2_tokenizer
    yield "save_gpt2", lambda: builders.save_gpt2(work / "gpt2")
    yield "save_char_nanogpt", lambda: builders.save_char_nanogpt(_mkdir(work / "char"))
    yield "save_hf bert", lambda: builders.save_hf(work / "bert", "bert")
    yield "embscope neighbors king", lambda: cli("neighbors", "king", "-f", "tsv")
    yield "embscope embed gpt2", lambda: cli("embed", "To be, or not to be", "-m", str(work / "gpt2"), "-f", "tsv")
    yield "embscope info char", lambda: cli("info", "-m", str(work / "char" / "ckpt.pt"), "-f", "tsv")
    yield "train_default_model.py", lambda: _train(work / "trained")


def _mkdir(d: Path) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    return d


def _train(out: Path) -> None:
    """The retraining script with its default --data, shrunk to a couple of steps."""
    argv = ["train_default_model.py", "--out", str(out), "--max-iters", "2", "--n-layer", "1",
            "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "2",
            "--eval-interval", "2", "--warmup-iters", "1", "--threads", "1"]
    saved = sys.argv
    sys.argv = argv
    try:
        runpy.run_path(str(ROOT / "scripts" / "train_default_model.py"), run_name="__main__")
    finally:
        sys.argv = saved


def main(work: str, report: str) -> None:
    sys.path.insert(0, str(ROOT))
    sys.addaudithook(_hook)
    for name, thunk in _steps(Path(work)):
        STEP[0] = name
        thunk()
    STEP[0] = "done"
    lines = [json.dumps(s) for s in SEEN]
    with open(report, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
