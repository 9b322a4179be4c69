"""Edge cases of the commands found in review: each was a traceback, a silent no-op or bad JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors import safe_open

from embscope.model import default_model_dir
from tests.helpers import run, tsv


def bundled_wte() -> np.ndarray:
    with safe_open(f"{default_model_dir()}/model.safetensors", framework="numpy") as f:
        return f.get_tensor("transformer.wte.weight").astype(np.float64)


def strict_json(text: str):
    """json.loads that refuses NaN and Infinity, which are not JSON."""

    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_bare_embscope_prints_the_help(capsys):
    code, out, err = run([], capsys)
    assert (code, err) == (0, "")
    assert "neighbors" in out and "positions" in out


def test_a_query_of_only_negative_terms_is_the_opposite_direction(capsys, monkeypatch):
    monkeypatch.delenv("EMBSCOPE_MODEL", raising=False)
    king = 504  # " king" in the bundled tokenizer
    code, out, err = run(["neighbors", "-k", "5", "-f", "tsv", "--", "- king"], capsys)
    assert code == 0, err
    wte = bundled_wte()
    scores = -(wte @ wte[king]) / (np.linalg.norm(wte, axis=1) * np.linalg.norm(wte[king]))
    scores[king] = -np.inf
    assert [int(r["id"]) for r in tsv(out)] == list(np.argsort(-scores, kind="stable")[:5])


def test_norms_all_with_output_writes_the_histogram(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("EMBSCOPE_MODEL", raising=False)
    code, out, err = run(["norms", "--all", "-o", str(tmp_path / "h.png")], capsys)
    assert code == 0 and len(tsv(out)) == 3072
    assert (tmp_path / "h.png").stat().st_size > 1000


def test_json_outputs_stay_json_with_nan_rows(capsys, tmp_path):
    from safetensors.numpy import save_file

    wte = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    wpe = np.random.default_rng(1).standard_normal((6, 8)).astype(np.float32)
    wpe[2] = np.nan
    save_file({"wte.weight": wte, "wpe.weight": wpe}, str(tmp_path / "model.safetensors"))
    code, out, err = run(["positions", "-m", str(tmp_path), "-f", "json"], capsys)
    assert code == 0, err
    matrix = strict_json(out)["matrix"]
    assert matrix[2][0] is None and matrix[0][2] is None and matrix[0][0] == 1.0
    code, out, err = run(["positions", "-m", str(tmp_path), "-f", "jsonl"], capsys)
    assert [strict_json(line)["values"][2] for line in out.splitlines()] == [None] * 6


def test_a_nan_query_in_a_batch_names_its_line(capsys, monkeypatch, tmp_path):
    from safetensors.numpy import save_file

    wte = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    wte[7] = np.nan
    save_file({"wte.weight": wte, "wpe.weight": wte[:4]}, str(tmp_path / "model.safetensors"))
    code, out, err = run(["neighbors", "-", "-m", str(tmp_path)], capsys, stdin="#3\n#7\n", monkeypatch=monkeypatch)
    assert (code, out) == (1, "")
    assert err.endswith("embscope: error: stdin line 2: the query vector holds NaN or Inf"
                        " (its token rows are not finite)\n")


@pytest.mark.parametrize("command", [["neighbors", "king"], ["info"], ["positions"], ["norms"], ["embed", "hi"]])
def test_a_bad_format_is_refused_before_the_model_is_read(capsys, command):
    """`-f xml` is a usage error even when the model could not be read (or would take a download)."""
    code, out, err = run([*command, "-f", "xml", "-m", "/no/such/model"], capsys)
    assert (code, out, err) == (2, "", "embscope: error: unknown format 'xml' (choose from table, tsv, csv, json, jsonl)\n")
