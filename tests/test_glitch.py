"""`embscope glitch` / `Model.glitch`: the first principal component against scikit-learn's PCA,
the indicators against a numpy transcription of magikarp's `embedding_distance_metrics`, and
candidates on models whose untrained rows are known: one trained in the test with some tokens
kept out of its data, and an untied Llama whose head transformers loads back."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import embscope
from embscope.analysis.glitch import indicators
from embscope.analysis.principal_component import MAX_STEPS, first_component
from embscope.errors import EmbscopeError
from embscope.model import default_model_dir
from embscope.token_categories import NOT_UTF8_BYTES
from tests.builders import shakespeare_text
from tests.helpers import run, tsv
from tests.test_token_categories import byte_fallback_dir, byte_fallback_unreachable  # noqa: F401 (fixture)

SHAKESPEARE_TOKENIZER = os.path.join(default_model_dir(), "tokenizer.json")


def magikarp_distances(mat: np.ndarray, unused) -> dict[str, np.ndarray]:
    """cohere-ai/magikarp's `embedding_distance_metrics` (magikarp/utils.py) written out with
    numpy and scikit-learn: PCA(n_components=1) fitted on the matrix, that component removed from
    every row by its (uncentred) projection, cosine distance to the mean of the unused rows with
    the product of norms clipped at 1e-6, and L2 distance to the mean of the unused rows."""
    from sklearn.decomposition import PCA

    pc = PCA(n_components=1).fit(mat).components_[0]
    without = mat - np.outer(mat.dot(pc), pc)

    def cosine_distance(m, v):
        return 1 - np.dot(m, v) / (np.linalg.norm(m, axis=1) * np.linalg.norm(v)).clip(min=1e-6)

    mean = mat[unused].mean(axis=0)
    return {"cosine": cosine_distance(mat, mean),
            "cosine_no_pc": cosine_distance(without, without[unused].mean(axis=0)),
            "l2": np.linalg.norm(mat - mean, axis=1)}


def assert_matches_magikarp(values: dict, mat: np.ndarray, unused) -> None:
    """Our float32-stored matrix, in float64 for the reference. The first principal component comes
    from products of float32 rows: cosine_no_pc agrees to 2e-6, the others to rounding."""
    ref = magikarp_distances(mat.astype(np.float64), unused)
    np.testing.assert_allclose(values["cosine"], ref["cosine"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(values["l2"], ref["l2"], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(values["cosine_no_pc"], ref["cosine_no_pc"], rtol=0, atol=2e-6)


def structured(rows: int, dim: int, seed: int) -> np.ndarray:
    """Rows with a common offset, a decaying spectrum and one strong direction, float32."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.02, (rows, dim)) * np.linspace(1, 0.2, dim) ** 2
    u = rng.normal(size=dim)
    u /= np.linalg.norm(u)
    return (x + np.outer(rng.normal(0, 0.05, rows), u) + 0.1 * rng.normal(size=dim) * 0.02).astype(np.float32)


# --- the first principal component -------------------------------------------------------------

@pytest.mark.parametrize("source", ["structured", "bundled"])
def test_first_component_is_sklearns(source):
    from sklearn.decomposition import PCA

    x = structured(4000, 96, 0) if source == "structured" else embscope.load().wte
    ref = PCA(n_components=1).fit(x.astype(np.float64))
    found = first_component(x)
    sin = np.sqrt(max(0.0, 1 - float(found.vector @ ref.components_[0]) ** 2))
    assert sin < 1e-6
    assert found.converged and found.steps <= 10 < MAX_STEPS  # a few passes over the matrix
    n = len(x)
    assert found.variance == pytest.approx(ref.explained_variance_[0] * (n - 1) / n, rel=1e-6)
    np.testing.assert_allclose(found.mean, x.astype(np.float64).mean(axis=0), rtol=0, atol=1e-12)


def test_first_component_leaves_out_rows_that_are_not_finite():
    from sklearn.decomposition import PCA

    x = structured(3000, 64, 1)
    bad = [5, 17, 2999]
    x[5, 3], x[17] = np.nan, np.inf
    x[2999, 0] = -np.inf
    ok = np.ones(len(x), dtype=bool)
    ok[bad] = False
    ref = PCA(n_components=1).fit(x[ok].astype(np.float64)).components_[0]
    found = first_component(x, ok)
    assert abs(float(found.vector @ ref)) > 1 - 1e-12


# --- the indicators ------------------------------------------------------------------------------

def test_indicators_are_magikarps_with_zero_and_padding_rows():
    x = structured(5000, 48, 2)
    x[10] = 0  # a zero row: its cosine distance is 1 (the clip)
    unused = np.arange(4900, 5000)  # rows past a vocabulary
    found = indicators(x, unused)
    assert_matches_magikarp(found.values, x, unused)
    assert found.values["cosine"][10] == 1.0 and found.values["cosine_no_pc"][10] == 1.0
    np.testing.assert_allclose(found.norms, np.linalg.norm(x.astype(np.float64), axis=1), rtol=1e-12)


def test_indicators_skip_rows_that_are_not_finite():
    """NaN/Inf rows get NaN and stay out of the component and of the unused mean: the rest is
    magikarp's computation on the finite rows alone."""
    x = structured(3000, 32, 3)
    x[7, 1], x[2995] = np.nan, np.inf
    unused = np.arange(2990, 3000)
    found = indicators(x, unused)
    keep = np.isfinite(x).all(axis=1)
    rows = np.flatnonzero(keep)
    assert_matches_magikarp({k: v[rows] for k, v in found.values.items()}, x[rows],
                            np.searchsorted(rows, unused[keep[unused]]))
    for v in found.values.values():
        assert np.isnan(v[[7, 2995]]).all()
    assert found.unused.tolist() == [i for i in range(2990, 3000) if i != 2995]


def test_bundled_model_against_magikarp():
    m = embscope.load(matrix="output")
    g = m.glitch()
    from tokenizers import Tokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    tok = Tokenizer.from_file(SHAKESPEARE_TOKENIZER)  # byte-level: byte b is the piece bytes_to_unicode()[b]
    expect_unused = sorted(tok.token_to_id(bytes_to_unicode()[b]) for b in NOT_UTF8_BYTES)
    assert g.unused.tolist() == expect_unused and len(expect_unused) == 13
    assert g.unused_parts == {"byte-not-utf8": 13, "unreachable": 0, "padding": 0} and not g.unused_given
    assert_matches_magikarp(g.values, m.wte, expect_unused)
    assert g.matrix == "transformer.wte.weight (tied)" and g.indicator == "cosine"
    normal = g.categories == "normal"
    assert g.threshold == pytest.approx(np.percentile(g.values["cosine"][normal], 2), abs=0)
    below = np.flatnonzero(normal & (g.values["cosine"] <= g.threshold))
    assert g.candidates.ids.tolist() == below[np.lexsort((below, g.values["cosine"][below]))].tolist()
    first = g.candidates.to_records()[0]
    assert first == {"rank": 1, "id": 1173, "token": "OKE", "indicator": g.values["cosine"][1173],
                     "category": "normal", "norm": pytest.approx(np.linalg.norm(m.wte[1173].astype(np.float64))),
                     "in_other_tokens": "INGBROKE| BOLINGBROKE"}  # "INGBROKE" and " BOLINGBROKE"


def test_bundled_candidates_are_tokens_its_corpus_never_holds():
    """Tiny Shakespeare, encoded by the `tokenizers` library with the bundled tokenizer.json: of
    the 57 candidates of the cosine indicator, 55 never occur in it (BPE's intermediate pieces
    of names, such as "MERC" of "MERCUTIO"); of the first-component variant's, 11. The numbers
    docs/glitch.md gives."""
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(SHAKESPEARE_TOKENIZER).encode(shakespeare_text()).ids
    seen = np.zeros(3072, dtype=bool)
    seen[ids] = True
    m = embscope.load(matrix="output")
    found = {name: m.glitch(indicator=name).candidates.ids for name in ("cosine", "cosine_no_pc", "l2")}
    assert {name: (len(c), int((~seen[c]).sum())) for name, c in found.items()} == \
        {"cosine": (57, 55), "cosine_no_pc": (57, 11), "l2": (57, 54)}
    assert int((~seen & (m.glitch().categories == "normal")).sum()) == 155
    # Tiny Shakespeare is ASCII: every non-ASCII byte token is untrained. Below the threshold:
    for name, below in (("cosine", 47), ("cosine_no_pc", 9), ("l2", 45)):
        g = m.glitch(indicator=name)
        multibyte = np.isin(g.categories, ["byte-continuation", "byte-lead"])
        assert (int(multibyte.sum()), int((g.values[name][multibyte] <= g.threshold).sum())) == (115, below)
    # ... because the untrained rows' drift is the first principal component itself
    x = m.wte.astype(np.float64)
    untrained = np.isin(m.glitch().categories, ["byte-continuation", "byte-lead", "byte-not-utf8"])
    drift = x[untrained].mean(axis=0) - x.mean(axis=0)
    assert abs(first_component(m.wte).vector @ drift) / np.linalg.norm(drift) > 0.98


# --- a model with rows training never reached ----------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """embscope's GPT (scripts/gpt.py) with the bundled Tiny Shakespeare tokenizer's 3072 tokens,
    trained 60 AdamW steps on random token streams that never hold 24 chosen normal tokens nor the
    13 tokens of bytes outside UTF-8; saved as nanoGPT's ckpt.pt (torch.save)."""
    import torch

    from scripts.gpt import GPT, save_checkpoint, train_step
    from embscope.token_categories import categorize
    from embscope.tokenizer import from_tokenizer_json

    cats = categorize(from_tokenizer_json(SHAKESPEARE_TOKENIZER), 3072)
    normal = np.flatnonzero(cats.names() == "normal")
    kept_out = np.sort(np.random.default_rng(0).choice(normal, 24, replace=False))
    allowed = torch.tensor(np.setdiff1d(np.arange(3072), np.union1d(kept_out, np.flatnonzero(
        cats.names() == "byte-not-utf8"))))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is faster than several on a busy machine
    try:
        torch.manual_seed(0)
        model = GPT(3072, 32, 1, 2, 16, 0.0, False)
        optimizer = model.adamw(1e-2, 0.1, (0.9, 0.99))
        g = torch.Generator().manual_seed(0)
        for _ in range(60):
            ids = allowed[torch.randint(len(allowed), (16, 33), generator=g)]
            train_step(model, optimizer, ids[:, :-1], ids[:, 1:], 1.0)
    finally:
        torch.set_num_threads(threads)
    path = tmp_path_factory.mktemp("kept-out") / "ckpt.pt"
    save_checkpoint(path, model, optimizer, iter_num=60, best_val_loss=torch.tensor(0.0), config={})
    return str(path), kept_out, model.transformer.wte.weight.detach().numpy().copy()


@pytest.mark.parametrize("indicator", ["cosine", "cosine_no_pc", "l2"])
def test_rows_kept_out_of_training_rank_first(trained, indicator):
    path, kept_out, wte = trained
    m = embscope.load(path, tokenizer=SHAKESPEARE_TOKENIZER, matrix="output")
    g = m.glitch(indicator=indicator)
    assert_matches_magikarp(g.values, wte, g.unused)
    assert np.array_equal(m.wte, wte)
    assert sorted(g.candidates.ids[:24].tolist()) == kept_out.tolist()
    assert set(kept_out) <= set(g.candidates.ids.tolist())


def test_cli_lists_the_rows_kept_out(trained, capsys):
    path, kept_out, _ = trained
    code, out, err = run(["glitch", "-m", path, "--tokenizer", SHAKESPEARE_TOKENIZER, "--top", "24", "-f", "tsv"],
                         capsys)
    assert code == 0, err
    rows = tsv(out)
    assert list(rows[0]) == ["rank", "id", "token", "indicator", "category", "norm", "in_other_tokens"]
    assert sorted(int(r["id"]) for r in rows) == kept_out.tolist()
    g = embscope.load(path, tokenizer=SHAKESPEARE_TOKENIZER, matrix="output").glitch()
    assert rows == [{k: _text(v) for k, v in r.items()} for r in g.candidates.to_records()[:24]]
    assert err == ("note: the output embedding is tied to the input embedding (one matrix)\n"
                   "known unused: 13 rows: 13 single-byte tokens for bytes never in UTF-8 (0xC0, 0xC1, 0xF5-0xFF);"
                   f" threshold cosine <= {g.threshold:.6g} (percentile 2 of the normal tokens):"
                   f" {len(g.candidates)} candidates\n")


def _text(v) -> str:
    from embscope.output import text_value

    return text_value(v)


def test_a_matrix_never_trained_has_no_settled_component(tmp_path, capsys):
    """GPT-2's random initialisation (transformers' save_pretrained): every direction has about
    the same variance, so the passes stop early and the command says the first-component
    variant is unsettled."""
    from tests.builders import save_gpt2

    save_gpt2(tmp_path)
    m = embscope.load(str(tmp_path), matrix="output")
    g = m.glitch()
    ref = magikarp_distances(m.wte.astype(np.float64), g.unused)
    np.testing.assert_allclose(g.values["cosine"], ref["cosine"], rtol=0, atol=1e-12)  # not the PC's business
    assert g.pc_steps == 6
    note = ("note: the first principal component is not settled after 6 passes (no direction stands out, as in a"
            " matrix never trained), so cosine_no_pc depends on which one was taken")
    assert g.notes == (note,)
    code, out, err = run(["glitch", "-m", str(tmp_path), "-f", "tsv", "--top", "1"], capsys)
    assert code == 0 and note + "\n" in err


# --- an untied model: the head, not the input embedding -----------------------------------------

@pytest.fixture(scope="module")
def untied_llama(tmp_path_factory, byte_fallback_dir):  # noqa: F811
    """A LlamaForCausalLM (untied lm_head) over the byte-fallback tokenizer, its vocabulary padded
    to a multiple of 16 rows, saved with save_pretrained beside the tokenizer."""
    import torch
    import transformers as T

    d, fast = byte_fallback_dir
    out = tmp_path_factory.mktemp("llama-glitch")
    rows = -(-len(fast) // 16) * 16
    torch.manual_seed(0)
    model = T.LlamaForCausalLM(T.LlamaConfig(vocab_size=rows, hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                                             max_position_embeddings=64))
    with torch.no_grad():  # the head as training leaves it: used rows moved, the rest drifted together
        head = model.lm_head.weight
        head[259:len(fast)] += torch.randn(len(fast) - 259, 32) * 0.2
        head[:259] += 0.05
    model.save_pretrained(str(out))
    fast.save_pretrained(str(out))
    return str(out), fast, rows


def test_untied_model_uses_its_head(untied_llama):
    from transformers import AutoModelForCausalLM

    path, fast, rows = untied_llama
    head = AutoModelForCausalLM.from_pretrained(path).get_output_embeddings().weight.detach().numpy()
    g = embscope.load(path, matrix="output").glitch()
    assert g.matrix == "lm_head.weight" and g.notes == ()
    expect = sorted([3 + b for b in NOT_UTF8_BYTES] + byte_fallback_unreachable(fast) + list(range(len(fast), rows)))
    assert g.unused.tolist() == expect
    assert g.unused_parts == {"byte-not-utf8": 13, "unreachable": len(byte_fallback_unreachable(fast)),
                              "padding": rows - len(fast)}
    assert_matches_magikarp(g.values, head, expect)
    inp = embscope.load(path).glitch()  # the input matrix, said in a note
    assert inp.matrix == "model.embed_tokens.weight" and "load it with matrix='output'" in inp.notes[0]
    assert not np.allclose(inp.values["cosine"], g.values["cosine"])
    assert set(g.categories[len(fast):]) == {"padding"}


def test_cli_untied_and_input_matrix(untied_llama, capsys):
    path, fast, rows = untied_llama
    code, out, err = run(["glitch", "-m", path, "--all", "-f", "jsonl"], capsys)
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    g = embscope.load(path, matrix="output").glitch()
    assert len(records) == rows
    assert records[3 + 0xC0] == {"id": 3 + 0xC0, "token": "\\xc0", "category": "byte-not-utf8",
                                 "indicator": g.values["cosine"][3 + 0xC0], "cosine": g.values["cosine"][3 + 0xC0],
                                 "cosine_no_pc": g.values["cosine_no_pc"][3 + 0xC0], "l2": g.values["l2"][3 + 0xC0],
                                 "norm": g.norms[3 + 0xC0]}
    assert [r["category"] for r in records[rows - 3:]] == ["padding"] * 3
    assert records[rows - 1]["token"] == "<pad>"
    code, out, err = run(["glitch", "-m", path, "--matrix", "input", "-f", "tsv"], capsys)
    assert code == 0 and err.startswith("note: computed on the input embedding; the method asks for the output"
                                        " embedding (the LM head), which this model keeps apart: load it with"
                                        " matrix='output'\n")


# --- options, formats and errors -------------------------------------------------------------------

def test_given_unused_set_and_threshold(tmp_path, capsys):
    m = embscope.load(matrix="output")
    g = m.glitch(unused=range(3000, 3072), threshold=0.5, indicator="l2")
    assert g.unused.tolist() == list(range(3000, 3072)) and g.unused_given and g.percentile is None
    assert_matches_magikarp(g.values, m.wte, list(range(3000, 3072)))
    normal = np.flatnonzero(g.categories == "normal")
    assert g.candidates.ids.tolist() == sorted(normal[g.values["l2"][normal] <= 0.5].tolist(),
                                               key=lambda i: (g.values["l2"][i], i))
    code, out, err = run(["glitch", "--unused", "3000:3050,3050:3072", "--threshold", "0.5", "--indicator", "l2",
                          "-f", "csv"], capsys)
    assert code == 0, err
    assert "known unused: 72 rows given with --unused; threshold l2 <= 0.5 (--threshold)" in err
    assert len(out.splitlines()) == len(g.candidates) + 1
    path = tmp_path / "candidates.tsv"  # -o FILE.tsv: the rows -f tsv would print, in the file
    code, out, err = run(["glitch", "--unused", "3000:3072", "--threshold", "0.5", "--indicator", "l2",
                          "-o", str(path)], capsys)
    assert code == 0 and out == "" and tsv(path.read_text()) == [
        {k: _text(v) for k, v in r.items()} for r in g.candidates.to_records()]
    code, out, err = run(["glitch", "--percentile", "10", "-f", "json"], capsys)
    records = json.loads(out)
    assert len(records) == len(m.glitch(percentile=10).candidates) > len(m.glitch().candidates)


@pytest.mark.parametrize("argv,message", [
    (["--unused", "abc"], "--unused 'abc': expected ids and A:B ranges separated by commas, e.g. 177:188 or"
                          " 124,125,177:188"),
    (["--unused", "5:5"], "--unused '5:5': the range 5:5 is empty (need 0 <= A < B)"),
    (["--threshold", "0.1", "--percentile", "3"], "--threshold and --percentile cannot be used together"),
    (["--percentile", "101"], "--percentile must be between 0 and 100 (got 101)"),
    (["--indicator", "dot"], "unknown indicator 'dot' (choose from cosine, cosine_no_pc, l2)"),
    (["--top", "0"], "--top must be at least 1 (got 0)"),
    (["--top", "5", "--all"], "--all and --top cannot be used together"),
    (["--threshold", "nan"], "--threshold must be a finite number (got nan)"),
    (["-o", "x.svg"], "-o x.svg: unknown file type (use .tsv, .csv, .json, .jsonl or .png)"),
    (["-o", "x.tsv", "-f", "csv"], "-f csv and -o x.tsv disagree: a file's format is its suffix"),
])
def test_usage_errors(argv, message, capsys):
    code, out, err = run(["glitch", *argv], capsys)
    assert (code, out) == (2, "")
    assert err == f"embscope: error: {message}\n"


def test_unused_out_of_range(capsys):
    code, out, err = run(["glitch", "--unused", "3070:3080"], capsys)
    assert (code, out) == (1, "")
    assert err == ("note: the output embedding is tied to the input embedding (one matrix)\n"
                   "embscope: error: --unused: token id #3072 is out of range (the matrix has 3072 rows)\n")
    with pytest.raises(EmbscopeError, match=r"^unused=: token id #-1 is out of range"):
        embscope.load().glitch(unused=[-1, 5])


def test_no_known_unused_tokens_is_refused(nanogpt_ckpts, capsys):
    """A character-level model: every token is one ASCII character the tokenizer produces, and
    no row is padding: nothing is known to be unused."""
    ref = nanogpt_ckpts["char-beside"]
    code, out, err = run(["glitch", "-m", ref.path], capsys)
    assert (code, out) == (1, "")
    assert err.endswith("embscope: error: no known-unused tokens to compare with: the tokenizer has no"
                        " single-byte tokens for bytes that never occur in UTF-8 (0xC0, 0xC1, 0xF5-0xFF) and no"
                        " unreachable tokens, and the matrix no rows past its vocabulary; name tokens training"
                        " never saw with --unused\n")
    with pytest.raises(EmbscopeError, match="name tokens training never saw with unused=$"):
        embscope.load(ref.path, matrix="output").glitch()
    # every token is one character, a single byte: no normal token, so no candidate (said), but
    # --all still gives each token's indicators
    code, out, err = run(["glitch", "-m", ref.path, "--unused", "0:3", "-f", "tsv"], capsys)
    assert code == 0 and out == "rank\tid\ttoken\tindicator\tcategory\tnorm\tin_other_tokens\n"
    assert "note: no token is of the normal category (each is special, a single byte, partial UTF-8 or" \
           " unreachable), so none is a candidate\n" in err
    assert "known unused: 3 rows given with --unused; threshold cosine <= nan" in err
    code, out, err = run(["glitch", "-m", ref.path, "--unused", "0:3", "--all", "-f", "tsv"], capsys)
    assert code == 0 and len(tsv(out)) == 65 and {r["category"] for r in tsv(out)} == {"byte-ascii"}


def test_no_tokenizer_is_refused(hf_models, capsys):
    code, out, err = run(["glitch", "-m", hf_models["llama"].path], capsys)
    assert (code, out) == (1, "")
    assert err.endswith(f"embscope: error: {hf_models['llama'].path}: this model has no tokenizer, and glitch needs"
                        " one to tell unused and unusable tokens from normal ones\n")


def test_table_and_picture(tmp_path, capsys, monkeypatch):
    from matplotlib.image import imread

    monkeypatch.delenv("COLUMNS", raising=False)  # a table into a pipe: never narrowed

    png = tmp_path / "indicators.png"
    code, out, err = run(["glitch", "--top", "3", "-f", "table", "-o", str(png)], capsys)
    assert code == 0, err
    g = embscope.load(matrix="output").glitch()
    lines = out.splitlines()
    facts = [("field", "value"), ("matrix", "transformer.wte.weight (tied), 3072 x 256"),
             ("known unused", "13 rows: 13 single-byte tokens for bytes never in UTF-8 (0xC0, 0xC1, 0xF5-0xFF)"),
             ("first principal component", f"{g.explained:.1%} of the variance"),
             ("threshold", f"cosine <= {g.threshold:.6g} (percentile 2 of the normal tokens): {len(g.candidates)}"
                           " candidates")]
    assert lines[:6] == ["bundled Tiny Shakespeare model: under-trained token candidates"] + [
        f"{k:<25}  {v}" for k, v in facts]
    assert lines[-3].split()[:3] == ["1", "1173", "OKE"]
    assert err.endswith(f"wrote {png}\n")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and imread(str(png)).shape[2] == 4
