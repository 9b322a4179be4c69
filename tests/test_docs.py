"""The examples in README.md and docs/ are real output: rerun them and compare."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_examples_are_up_to_date():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_docs.py"), "--check"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr + "\nRegenerate with: python scripts/make_docs.py"


def test_every_command_has_a_page():
    for command in ("info", "neighbors", "positions", "norms", "embed", "sim", "tokens", "diff", "map", "export",
                    "glitch"):
        page = ROOT / "docs" / f"{command}.md"
        assert page.is_file(), page
        assert re.search(rf"<!-- example: [^\n]*\bembscope {command}\b", page.read_text()), f"{page} shows no real run"
