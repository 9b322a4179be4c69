"""`embscope info`, `--version`, `--help` and error reporting, in-process and as real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from embscope import __version__
from embscope.cli.main import app, main

from tests.conftest import GPT2_VOCAB, N_EMBD, N_POS, REV_MAIN
from tests.helpers import run

runner = CliRunner()
HEAVY = ("torch", "transformers")


def info_json(path: str, *extra: str) -> dict:
    result = runner.invoke(app, ["info", "-m", path, "-f", "json", *extra])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)  # one object keyed by field, in the order of the table's rows
    assert isinstance(facts, dict)
    return facts


def run_main(argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    return (0 if e.value.code is None else e.value.code), out, err


def embscope(*args, env=None, importtime=False) -> subprocess.CompletedProcess:
    """`python -m embscope ARGS` in a fresh interpreter, offline, with no default model."""
    full_env = {k: v for k, v in os.environ.items() if k != "EMBSCOPE_MODEL"}
    full_env.update({"HF_HUB_OFFLINE": "1", **(env or {})})
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", "embscope", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=120)


def imported_modules(importtime_stderr: str) -> set[str]:
    """Module names from `python -X importtime` lines: 'import time: self | cumulative | name'."""
    names = set()
    for line in importtime_stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                names.add(name)
    return names


# --- info -f json ----------------------------------------------------------------------------

def test_info_gpt2_safetensors(hf_models):
    ref = hf_models["gpt2-lm"]
    facts = info_json(ref.path)
    assert facts["source"] == ref.path
    assert facts["format"] == "safetensors"
    assert facts["family"] == "gpt2"
    assert facts["files"] == os.path.join(ref.path, "model.safetensors")
    assert facts["token_tensor"] == "transformer.wte.weight"
    assert facts["position_tensor"] == "transformer.wpe.weight"
    assert (facts["vocab_rows"], facts["tokens"], facts["padding_rows"]) == (GPT2_VOCAB, GPT2_VOCAB, 0)
    assert (facts["dim"], facts["positions"], facts["position_offset"]) == (N_EMBD, N_POS, 0)
    assert facts["dtype"] == "float32"
    assert facts["tied_lm_head"] == "yes"
    assert facts["tokenizer"] == "tokenizer.json (tokenizers)"
    assert facts["tokenizer_source"] == os.path.join(ref.path, "tokenizer.json")
    assert facts["file_bytes"] == os.path.getsize(os.path.join(ref.path, "model.safetensors"))
    assert facts["read_bytes"] < facts["file_bytes"]
    assert facts["meta.format"] == "pt"  # safetensors __metadata__
    assert isinstance(facts["load_seconds"], float)


def test_info_nanogpt(nanogpt_ckpts):
    ref = nanogpt_ckpts["bpe"]
    facts = info_json(ref.path)
    assert facts["format"] == "nanoGPT checkpoint (torch zip)"
    assert facts["iter_num"] == 600 and type(facts["iter_num"]) is int
    assert facts["best_val_loss"] == ref.facts["best_val_loss"] and type(facts["best_val_loss"]) is float
    assert facts["dataset"] == "openwebtext"
    assert (facts["vocab_rows"], facts["tokens"], facts["padding_rows"]) == (50304, GPT2_VOCAB, 47)
    assert facts["tokenizer"] == "GPT-2 BPE (bundled with embscope)"
    assert facts["tied_lm_head"] == "yes"
    assert facts["model_args"] == ", ".join(f"{k}={v}" for k, v in ref.facts["model_args"].items())
    assert facts["read_bytes"] < 0.4 * facts["file_bytes"]


def test_info_json_is_one_object_with_numbers_as_numbers(capsys):
    """-f json: one object keyed by field, in the table's order (issue 11, item 4). Training facts
    that safetensors metadata holds as strings ("1200") are numbers; other metadata stays the
    strings the file holds. jsonl: the same object on one line; tsv: a field a row."""
    from safetensors import safe_open

    from embscope.model import default_model_dir

    with safe_open(os.path.join(default_model_dir(), "model.safetensors"), "np") as f:
        meta, shape = f.metadata(), f.get_slice("transformer.wte.weight").get_shape()
    code, out, err = run(["info", "-f", "json"], capsys)
    assert (code, err) == (0, "")
    facts = json.loads(out)
    assert out.count("\n") == 1 and isinstance(facts, dict)
    assert [facts["vocab_rows"], facts["dim"]] == shape and type(facts["dim"]) is int
    assert facts["iter_num"] == int(meta["iter_num"]) and type(facts["iter_num"]) is int
    assert facts["best_val_loss"] == float(meta["best_val_loss"]) and type(facts["best_val_loss"]) is float
    assert facts["meta.n_embd"] == meta["n_embd"] == "256"
    code, out, err = run(["info", "-f", "jsonl"], capsys)
    assert out.count("\n") == 1 and list(json.loads(out)) == list(facts)
    assert {k: v for k, v in json.loads(out).items() if k != "load_seconds"} == {
        k: v for k, v in facts.items() if k != "load_seconds"}
    code, out, err = run(["info", "-f", "tsv"], capsys)
    rows = [line.split("\t") for line in out.splitlines()]
    assert rows[0] == ["field", "value"] and [r[0] for r in rows[1:]] == list(facts)
    assert dict(rows[1:])["iter_num"] == meta["iter_num"]


def test_info_char_level_with_meta(nanogpt_ckpts, nanogpt_checkout, monkeypatch):
    monkeypatch.chdir(nanogpt_checkout)
    facts = info_json(nanogpt_ckpts["char"].path)
    assert facts["tokenizer"] == "character-level (nanoGPT meta.pkl)"
    assert facts["tokenizer_source"] == os.path.join("data", "shakespeare_char", "meta.pkl")
    assert facts["token_tensor"] == "_orig_mod.transformer.wte.weight"
    assert (facts["vocab_rows"], facts["tokens"]) == (65, 65)
    assert facts["dataset"] == "shakespeare_char"


@pytest.mark.parametrize("name,family,positions,offset,tied", [
    ("llama", "llama", 0, 0, "no"),
    ("bloom", "bloom", 0, 0, "yes"),
    ("opt-lm", "opt", N_POS, 2, "yes"),
    ("roberta", "bert", N_POS, 2, "unknown"),
])
def test_info_families(hf_models, name, family, positions, offset, tied):
    facts = info_json(hf_models[name].path)
    assert facts["family"] == family
    assert facts["positions"] == positions
    assert facts["position_offset"] == offset
    assert facts["tied_lm_head"] == tied
    if positions == 0:
        assert facts["position_tensor"] == "none (no learned positions)"


def test_info_bf16_and_sharded(hf_models):
    assert info_json(hf_models["gpt2-lm-bf16"].path)["dtype"] == "bfloat16"
    facts = info_json(hf_models["gpt2-sharded"].path)
    assert facts["format"] == "safetensors (sharded)"
    assert len(facts["files"].split(", ")) == 2


def test_info_overrides(hf_models):
    ref = hf_models["llama"]
    facts = info_json(ref.path, "--wte-key", "lm_head.weight")
    assert facts["token_tensor"] == "lm_head.weight" and facts["family"] == "custom"


def test_info_tsv_when_piped(hf_models):
    result = runner.invoke(app, ["info", "-m", hf_models["gpt2-lm"].path])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0] == "field\tvalue"
    assert "family\tgpt2" in lines


# --- version, help, imports ------------------------------------------------------------------

def test_version_in_process(capsys):
    code, out, err = run_main(["--version"], capsys)
    assert (code, out, err) == (0, f"embscope {__version__}\n", "")


def test_version_subprocess():
    p = embscope("--version")
    assert (p.returncode, p.stdout, p.stderr) == (0, f"embscope {__version__}\n", "")


def test_help_does_not_import_torch_or_transformers():
    p = embscope("--help", importtime=True)
    assert p.returncode == 0
    assert "info" in p.stdout
    modules = imported_modules(p.stderr)
    assert "embscope.cli.main" in modules  # the importtime parse works
    assert not {m.split(".")[0] for m in modules} & set(HEAVY)


@pytest.mark.parametrize("argv", [["positions", "-o", "h.png"], ["norms", "-f", "tsv", "-o", "n.png"]])
def test_a_png_imports_what_drawing_needs(argv, tmp_path):
    """matplotlib's object API with the Agg canvas (issue 11, item 8): no pyplot (it would pick a
    GUI backend and load much more), no torch or transformers."""
    pytest.importorskip("matplotlib")
    p = embscope(*argv[:-1], str(tmp_path / argv[-1]), importtime=True)
    assert p.returncode == 0, p.stderr[-2000:]
    assert (tmp_path / argv[-1]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    modules = imported_modules(p.stderr)
    assert {"matplotlib.figure", "matplotlib.backends.backend_agg"} <= modules
    assert "matplotlib.pyplot" not in modules and not {m.split(".")[0] for m in modules} & set(HEAVY)


@pytest.mark.parametrize("which", ["safetensors", "nanoGPT"])
def test_info_reads_checkpoints_without_torch(hf_models, nanogpt_ckpts, which):
    path = hf_models["gpt2-lm"].path if which == "safetensors" else nanogpt_ckpts["bpe"].path
    p = embscope("info", "-m", path, "-f", "json", importtime=True)
    assert p.returncode == 0, p.stderr[-2000:]
    assert json.loads(p.stdout)["family"] == "gpt2"
    modules = imported_modules(p.stderr)
    assert "embscope.model" in modules
    assert not {m.split(".")[0] for m in modules} & set(HEAVY)


# --- errors: one line on stderr, nothing on stdout -------------------------------------------

def test_missing_path_in_process(capsys):
    code, out, err = run_main(["info", "-m", "/nonexistent/ckpt.pt"], capsys)
    assert code == 1 and out == ""
    assert err == "embscope: error: /nonexistent/ckpt.pt: no such file or directory\n"


def test_missing_path_subprocess():
    p = embscope("info", "-m", "/nonexistent/ckpt.pt")
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr == "embscope: error: /nonexistent/ckpt.pt: no such file or directory\n"


def test_bad_key_in_process(hf_models, capsys):
    code, out, err = run_main(["info", "-m", hf_models["gpt2-lm"].path, "--wpe-key", "nope"], capsys)
    assert (code, out) == (1, "")
    assert err == "embscope: error: --wpe-key: no tensor named 'nope' in the checkpoint\n"


def test_not_a_checkpoint(tmp_path, capsys):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    code, out, err = run_main(["info", "-m", str(bad)], capsys)
    assert (code, out) == (1, "")
    assert err == f"embscope: error: {bad}: not a valid safetensors file: the header is not valid JSON\n"


def test_unknown_format_is_a_usage_error(hf_models, capsys):
    code, out, err = run_main(["info", "-m", hf_models["opt-base"].path, "-f", "xml"], capsys)
    assert (code, out) == (2, "")
    assert err == "embscope: error: unknown format 'xml' (choose from table, tsv, csv, json, jsonl)\n"


def test_unknown_option_is_a_usage_error(capsys):
    code, out, err = run_main(["info", "--no-such-option"], capsys)
    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and err.startswith("embscope: error: No such option: --no-such-option")


# --- hub ids, through the environment a user would set ---------------------------------------

def test_hub_id_subprocess(hub_cache_dir, hf_models):
    p = embscope("info", "-m", "org/name", "-f", "json", env={"HF_HUB_CACHE": str(hub_cache_dir)})
    assert p.returncode == 0, p.stderr
    facts = json.loads(p.stdout)
    snapshot = os.path.join(str(hub_cache_dir), "models--org--name", "snapshots", REV_MAIN)
    assert facts["files"] == os.path.join(snapshot, "model.safetensors")
    assert facts["tokenizer_source"] == os.path.join(snapshot, "tokenizer.json")


def test_uncached_hub_id_subprocess(hub_cache_dir):
    p = embscope("info", "-m", "nobody/nothing", env={"HF_HUB_CACHE": str(hub_cache_dir)})
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr == ("embscope: error: nobody/nothing: not a local path, and not in the Hugging Face"
                        " cache (the hub is offline or unreachable)\n")
