"""`--memory-budget SIZE` / `memory_budget=`: sizes as users write them, one-line errors, and what
the budget decides (the prepared copy, the queries per chunk)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import embscope.analysis.similarity
from embscope.errors import EmbscopeError
from embscope.memory import DEFAULT_FRACTION, available_memory, default_budget, parse_size
from tests.helpers import run

HELP = "expected a size such as 512M, 4G, 1.5GiB or 25% (of the available memory)"


@pytest.mark.parametrize("text, size", [
    ("0", 0), ("1000", 1000), ("1000B", 1000), ("512K", 512 << 10), ("512KiB", 512 << 10), ("512kb", 512_000),
    ("512M", 512 << 20), ("512MiB", 512 << 20), ("100MB", 10**8), ("4G", 4 << 30), ("1.5GiB", 3 << 29),
    ("2GB", 2 * 10**9), ("1T", 1 << 40), (" 2 g ", 2 << 30), (".5M", 1 << 19), ("25%", 250), ("100%", 1000),
    ("0.1%", 1), (123, 123),
])
def test_sizes(text, size):
    assert parse_size(text, available=1000) == size


@pytest.mark.parametrize("text, problem", [
    ("12X", HELP), ("", HELP), ("G", HELP), ("-1G", HELP), ("1e9", HELP), ("1.2.3M", HELP), ("4 G B", HELP),
    ("nan", HELP), ("150%", "a share of the available memory is at most 100%"),
])
def test_bad_sizes_say_what_is_expected(text, problem):
    with pytest.raises(EmbscopeError) as e:
        parse_size(text, available=1000)
    assert str(e.value) == f"memory budget '{text}': {problem}"


def test_default_is_a_quarter_of_available_memory():
    available = available_memory()
    assert available and available > 0
    assert abs(default_budget() - DEFAULT_FRACTION * available) <= 0.05 * available  # it moves as others run


@pytest.mark.parametrize("text, problem", [("12X", HELP), ("150%", "a share of the available memory is at most 100%"),
                                           ("-5M", HELP)])
def test_cli_bad_budget_is_one_line_before_the_model_is_read(text, problem, capsys):
    code, out, err = run(["neighbors", "king", "--memory-budget", text, "-m", "/nonexistent/model"], capsys)
    assert (code, out) == (2, "")
    assert err == f"embscope: error: --memory-budget '{text}': {problem}\n"


def test_api_budget(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    monkeypatch.setattr(embscope.analysis.similarity, "worker_count", lambda: 2)  # the arithmetic below
    wte = torch.from_numpy(np.random.default_rng(0).standard_normal((3000, 64)).astype(np.float32))
    save_file({"transformer.wte.weight": wte, "transformer.wpe.weight": torch.zeros(8, 64)},
              str(tmp_path / "m.safetensors"))
    m = embscope.load(str(tmp_path / "m.safetensors"), memory_budget="4M")
    assert m.memory_budget == 4 << 20
    # a query's two columns of fine block maxima (2 x 3072 / 16 x 4 bytes) and its columns of the two
    # workers' tiles of scores (2 x min(8192, 3072) x 4 bytes): 26112 bytes;
    # the unit copy (768000 bytes) fits beside 64 of them, and the rest holds (4 MiB - 768000) // 26112
    plan = m.index.plan(1000, "cosine")
    assert (plan.prepared, plan.chunk) == (True, 131)
    small = embscope.load(str(tmp_path / "m.safetensors"), memory_budget=1024)
    plan = small.index.plan(1000, "cosine")
    assert (plan.prepared, plan.chunk) == (False, 16)  # no copy, the fewest queries a chunk
    a = m.neighbors_many([f"#{i}" for i in range(40)], k=5)
    b = small.neighbors_many([f"#{i}" for i in range(40)], k=5)
    assert all(np.array_equal(x.ids, y.ids) and np.array_equal(x.scores, y.scores) for x, y in zip(a, b))
    m.memory_budget = "1K"
    assert m.index.budget == 1024
    with pytest.raises(EmbscopeError, match=r"^memory budget '2X': expected a size"):
        embscope.load(str(tmp_path / "m.safetensors"), memory_budget="2X")

