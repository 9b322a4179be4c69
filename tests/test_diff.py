"""`embscope diff` and `embscope.diff` / `embscope.drift`, against references computed here from
the saved tensors (torch.load, transformers' own modules): the rotation against
scipy.linalg.orthogonal_procrustes, cosines and norm ratios with numpy, neighbour overlap against a
brute-force search over the full cosine matrix, rows matched by token against the tokenizers'
own vocabularies. Checkpoints come from the real serializers: nanoGPT's ckpt.pt (torch.save of
train.py's dict), save_pretrained, and embscope's own llm.c and nanochat writers
(tests/format_writers.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.linalg import orthogonal_procrustes
from scipy.stats import ortho_group

import embscope
from tests import format_writers as fw
from tests import nanogpt
from tests.builders import gpt2_tokenizer
from tests.helpers import jsonl, run, tsv

D = 16
GPT2_VOCAB = 50257
PLANTED = [464, 2068, 7586, 21831, 50000]  # 'The', ' quick', ' brown', ' fox', and a late id
SHAKESPEARE_TOKENIZER = Path(embscope.__file__).parent / "data" / "shakespeare" / "tokenizer.json"


# --- references --------------------------------------------------------------------------------

def ref_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """R with b @ R ≈ a, by scipy."""
    return orthogonal_procrustes(np.asarray(b, np.float64), np.asarray(a, np.float64))[0]


def ref_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def ref_neighbours(x: np.ndarray, k: int) -> list[set[int]]:
    """Each row's k nearest other rows by cosine, by brute force over the full cosine matrix
    (ties by the smaller id); rows holding NaN have no neighbours and are no one's."""
    x = np.asarray(x, np.float64)
    bad = ~np.isfinite(x).all(axis=1)
    u = np.where(bad[:, None], 0, x) / np.where(bad, 1, np.linalg.norm(np.where(bad[:, None], 0, x), axis=1))[:, None]
    out = []
    for start in range(0, len(x), 1000):
        s = u[start:start + 1000] @ u.T  # (b, n)
        s[:, bad] = -np.inf
        for j, row in enumerate(s):
            i = start + j
            row[i] = -np.inf
            if bad[i]:
                out.append(set())
                continue
            order = np.lexsort((np.arange(len(row)), -row))
            out.append({int(c) for c in order[:k] if np.isfinite(row[c])})
    return out


def ref_jaccard(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    na, nb = ref_neighbours(a, k), ref_neighbours(b, k)
    return np.array([len(x & y) / len(x | y) if x | y else np.nan for x, y in zip(na, nb)])


def f32(t) -> np.ndarray:
    return t.detach().float().numpy().copy()


# --- checkpoints -------------------------------------------------------------------------------

def save_gpt2(folder: Path, wte: np.ndarray, wpe: np.ndarray, tokenizer=None):
    """A GPT2LMHeadModel holding `wte` (V, D) and `wpe` (P, D), written by save_pretrained
    (its tokenizer beside it). Returns its wte and wpe as transformers holds them."""
    import transformers as T

    T.logging.set_verbosity_error()
    torch.manual_seed(0)
    model = T.GPT2LMHeadModel(T.GPT2Config(vocab_size=wte.shape[0], n_positions=wpe.shape[0], n_embd=D,
                                           n_layer=1, n_head=2))
    with torch.no_grad():
        model.transformer.wte.weight.copy_(torch.from_numpy(np.asarray(wte, np.float32)))
        model.transformer.wpe.weight.copy_(torch.from_numpy(np.asarray(wpe, np.float32)))
    model.save_pretrained(str(folder))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(folder))
    return f32(model.get_input_embeddings().weight), f32(model.transformer.wpe.weight)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A: nanoGPT trained one step on GPT-2 BPE (wte padded to 50304 rows). B: a transformers
    GPT-2 (50257 rows) holding A's real rows turned by a random orthogonal matrix, plus noise,
    with the PLANTED tokens given new random vectors of their old length; positions turned too."""
    base = tmp_path_factory.mktemp("diff-planted")
    (base / "a").mkdir()
    data = torch.randint(GPT2_VOCAB, (4096,), generator=torch.Generator().manual_seed(0))
    nanogpt.train_checkpoint(base / "a" / "ckpt.pt", vocab_size=50304, data=data, dataset="openwebtext",
                             n_embd=D, block_size=64)
    saved = torch.load(base / "a" / "ckpt.pt", weights_only=True)["model"]
    a, pa = f32(saved["transformer.wte.weight"]), f32(saved["transformer.wpe.weight"])  # (50304, D), (64, D)
    rng = np.random.default_rng(7)
    q = ortho_group.rvs(D, random_state=7)  # (D, D)
    b = a[:GPT2_VOCAB] @ q + rng.normal(0, 5e-4, (GPT2_VOCAB, D))
    for i in PLANTED:
        v = rng.standard_normal(D)
        b[i] = v / np.linalg.norm(v) * np.linalg.norm(a[i])
    b, pb = save_gpt2(base / "b", b, pa @ q + rng.normal(0, 5e-4, pa.shape), gpt2_tokenizer())
    return {"a": str(base / "a" / "ckpt.pt"), "b": str(base / "b"), "A": a[:GPT2_VOCAB], "B": b,
            "PA": pa, "PB": pb, "Q": q, "base": base}


@pytest.fixture(scope="module")
def planted_diff(planted):
    return embscope.diff(planted["a"], planted["b"], k=0)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Three GPT-2s of 700 tokens without a tokenizer: each the previous one turned and noised;
    the last has a NaN row (#5)."""
    base = tmp_path_factory.mktemp("diff-small")
    rng = np.random.default_rng(3)
    wte, wpe = rng.normal(0, 0.02, (700, D)), rng.normal(0, 0.02, (32, D))
    out = {"paths": [], "wte": [], "wpe": []}
    for n in range(3):
        if n:
            q = ortho_group.rvs(D, random_state=n)
            wte, wpe = wte @ q + rng.normal(0, 0.006, wte.shape), wpe @ q + rng.normal(0, 0.006, wpe.shape)
        if n == 2:
            wte[5] = np.nan
        w, p = save_gpt2(base / f"m{n}", wte, wpe)
        out["paths"].append(str(base / f"m{n}"))
        out["wte"].append(w)
        out["wpe"].append(p)
    return out


def expected(a: np.ndarray, b: np.ndarray):
    """(aligned cosine, raw cosine, norm ratio) of rows that belong together, by numpy/scipy
    (the rotation fitted on the rows finite in both)."""
    ok = np.isfinite(a).all(1) & np.isfinite(b).all(1)
    r = ref_rotation(a[ok], b[ok])
    with np.errstate(invalid="ignore"):
        return (ref_cosines(a, np.asarray(b, np.float64) @ r), ref_cosines(a, b),
                np.linalg.norm(np.asarray(b, np.float64), axis=1) / np.linalg.norm(np.asarray(a, np.float64), axis=1))


# --- the rotation and the per-token measures ----------------------------------------------------

def test_rotation_equals_scipy_orthogonal_procrustes(planted, planted_diff):
    np.testing.assert_allclose(planted_diff.rotation, ref_rotation(planted["A"], planted["B"]), atol=1e-9)
    np.testing.assert_allclose(planted_diff.rotation, planted["Q"].T, atol=0.01)  # B Q^T = A, but for noise


def test_rotation_of_the_analysis_core_equals_scipy():
    from embscope.analysis.procrustes import cross_covariance, rotation

    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((300, 9)), rng.standard_normal((300, 9))
    blocks = [(a[:100], b[:100]), (a[100:], b[100:])]
    np.testing.assert_allclose(rotation(cross_covariance(blocks, 9)), orthogonal_procrustes(b, a)[0], atol=1e-12)


def test_aligned_cosines_near_one_and_the_planted_movers_on_top(planted, planted_diff):
    d = planted_diff
    cos, raw, ratio = expected(planted["A"], planted["B"])
    assert len(d) == GPT2_VOCAB and d.n_tokens == (GPT2_VOCAB, GPT2_VOCAB)  # A's 47 padding rows left out
    assert np.array_equal(d.ids, np.arange(GPT2_VOCAB)) and np.array_equal(d.ids_b, d.ids)
    np.testing.assert_allclose(d.cosine, cos, rtol=0, atol=1e-9)
    np.testing.assert_allclose(d.cosine_raw, raw, rtol=0, atol=1e-9)
    np.testing.assert_allclose(d.norm_ratio, ratio, rtol=1e-9)
    others = np.setdiff1d(np.arange(GPT2_VOCAB), PLANTED)
    assert d.cosine[others].min() > 0.99
    assert np.abs(d.cosine_raw[others]).mean() < 0.5  # before alignment the rotation hides it all
    assert sorted(d.movers(5).tolist()) == sorted(PLANTED)
    assert d.movers(5).tolist() == np.argsort(cos, kind="stable")[:5].tolist()
    assert d.movers(3, most=False).tolist() == np.argsort(-cos, kind="stable")[:3].tolist()
    assert d.tokens[464] == "The" and d.jaccard is None and d.notes == ()


def test_positions_turned_by_the_tokens_rotation(planted, planted_diff):
    p = planted_diff.positions
    r = ref_rotation(planted["A"], planted["B"])
    assert p.positions.tolist() == list(range(64))
    np.testing.assert_allclose(p.cosine, ref_cosines(planted["PA"], planted["PB"] @ r), atol=1e-9)
    np.testing.assert_allclose(p.cosine_raw, ref_cosines(planted["PA"], planted["PB"]), atol=1e-9)
    assert p.cosine.min() > 0.99


def test_no_alignment(planted):
    d = embscope.diff(planted["a"], planted["b"], align="none", k=0)
    assert d.rotation is None and np.array_equal(d.cosine, d.cosine_raw)
    np.testing.assert_allclose(d.cosine, ref_cosines(planted["A"], planted["B"]), atol=1e-9)
    assert list(d.measures()) == ["cosine", "norm_ratio"]


# --- the neighbour overlap --------------------------------------------------------------------

def test_jaccard_equals_brute_force(small, capsys):
    a, b = small["wte"][0], small["wte"][2]  # b has a NaN row: no neighbours, no one's neighbour
    d = embscope.diff(small["paths"][0], small["paths"][2], k=10)
    ref = ref_jaccard(a, b, 10)
    ref[5] = np.nan
    np.testing.assert_array_equal(d.jaccard, ref)
    assert 0.2 < np.nanmean(ref) < 0.9  # the noise changed some neighbours, not all
    cos, raw, ratio = expected(a, b)
    np.testing.assert_allclose(d.cosine, cos, atol=1e-9)
    assert d.left_out().tolist() == [5] and np.isnan(d.cosine[5])
    code, out, err = run(["diff", small["paths"][0], small["paths"][2], "-k", "3", "--all", "-f", "tsv"], capsys)
    assert code == 0
    assert err == (f"warning: 1 tokens are zero or not finite in {small['paths'][0]} or"
                   f" {small['paths'][2]} and are left out: #5\n")
    rows = tsv(out)
    assert list(rows[0]) == ["id", "token", "cosine", "cosine_raw", "norm_ratio", "jaccard"]
    assert [r["token"] for r in rows[:2]] == ["#0", "#1"]
    got = np.array([float(r["jaccard"]) for r in rows])
    ref3 = ref_jaccard(a, b, 3)
    ref3[5] = np.nan
    np.testing.assert_allclose(got, ref3, rtol=1e-5)  # 6 significant digits in text


def test_drift_over_three_checkpoints(small, capsys):
    t = embscope.drift(small["paths"], k=5)
    ms = small["wte"]

    def means(i, j):
        cos = expected(ms[i], ms[j])[0]
        jac = ref_jaccard(ms[i], ms[j], 5)
        ok = np.isfinite(cos)
        return cos[ok].mean(), np.nanmean(jac[ok])

    (c01, j01), (c02, j02), (c12, j12) = means(0, 1), means(0, 2), means(1, 2)
    np.testing.assert_allclose(t.cosine_prev, [np.nan, c01, c12], atol=1e-9)
    np.testing.assert_allclose(t.cosine_last, [c02, c12, np.nan], atol=1e-9)
    np.testing.assert_allclose(t.jaccard_prev, [np.nan, j01, j12], atol=1e-12)
    np.testing.assert_allclose(t.jaccard_last, [j02, j12, np.nan], atol=1e-12)
    assert t.steps == (None, None, None) and t.n_compared == 700
    assert t.to_records()[0] == {"checkpoint": small["paths"][0], "step": None, "cosine_prev": None,
                                 "jaccard_prev": None, "cosine_last": pytest.approx(c02), "jaccard_last": pytest.approx(j02)}
    code, out, err = run(["diff", *small["paths"], "-k", "5", "-f", "tsv"], capsys)
    assert code == 0 and err == ""
    rows = tsv(out)
    assert [r["checkpoint"] for r in rows] == small["paths"]
    assert rows[0]["cosine_prev"] == "" and rows[2]["cosine_last"] == ""
    assert float(rows[1]["cosine_prev"]) == pytest.approx(c01, rel=1e-5)
    assert float(rows[1]["jaccard_last"]) == pytest.approx(j12, rel=1e-5)


def test_steps_from_trainer_folder_names(small, tmp_path, capsys):
    """transformers' Trainer saves <output_dir>/checkpoint-<step>: the step is the folder's."""
    import shutil

    paths = []
    for n, step in enumerate((500, 1000, 1500)):
        paths.append(str(tmp_path / "out" / f"checkpoint-{step}"))
        shutil.copytree(small["paths"][n], paths[-1])
    assert embscope.drift(paths, k=0).steps == (500, 1000, 1500)
    code, out, err = run(["diff", *paths, "-k", "0", "-f", "tsv"], capsys)
    assert [(r["checkpoint"], r["step"]) for r in tsv(out)] == [(p, s) for p, s in zip(paths, ("500", "1000", "1500"))]
    odd = str(tmp_path / "red\x1b[31m")  # a path is data: its control characters are escaped
    shutil.copytree(small["paths"][0], odd)
    code, out, err = run(["diff", odd, *paths[1:], "-k", "0", "-f", "tsv"], capsys)
    assert tsv(out)[0]["checkpoint"] == str(tmp_path / "red\\x1b[31m") and "\x1b" not in out


# --- the command ---------------------------------------------------------------------------------

def sections(out: str) -> list[list[dict]]:
    return [tsv(part + "\n") for part in out.rstrip("\n").split("\n\n")]


def test_summary_and_movers(planted, capsys):
    cos, raw, ratio = expected(planted["A"], planted["B"])
    code, out, err = run(["diff", planted["a"], planted["b"], "-k", "0", "--top", "3", "-f", "tsv"], capsys)
    assert code == 0 and err == ""
    summary, movers = sections(out)
    assert [r["measure"] for r in summary] == ["cosine", "cosine_raw", "norm_ratio", "position_cosine"]
    for row, values in zip(summary, (cos, raw, ratio)):
        assert int(row["count"]) == GPT2_VOCAB
        assert float(row["mean"]) == pytest.approx(values.mean(), rel=1e-5, abs=1e-9)
        assert float(row["p50"]) == pytest.approx(np.percentile(values, 50), rel=1e-5)
        assert float(row["min"]) == pytest.approx(values.min(), rel=1e-5)
    order = np.argsort(cos, kind="stable")
    assert [(r["end"], int(r["rank"]), int(r["id"])) for r in movers] == (
        [("most", n + 1, int(i)) for n, i in enumerate(order[:3])]
        + [("least", n + 1, int(i)) for n, i in enumerate(np.argsort(-cos, kind="stable")[:3])])
    tok = gpt2_tokenizer()
    assert [r["token"] for r in movers[:3]] == [tok.convert_tokens_to_string([tok.convert_ids_to_tokens(int(i))])
                                                for i in order[:3]]
    assert float(movers[0]["cosine"]) == pytest.approx(cos[order[0]], rel=1e-5)


def test_json_and_jsonl(planted, capsys):
    code, out, _ = run(["diff", planted["a"], planted["b"], "-k", "0", "--top", "2", "-f", "json"], capsys)
    import json

    doc = json.loads(out)
    assert (doc["a"], doc["b"], doc["align"], doc["k"], doc["compared"]) == (planted["a"], planted["b"], "procrustes", 0, GPT2_VOCAB)
    assert [m["id"] for m in doc["movers"][:2]] == np.argsort(expected(planted["A"], planted["B"])[0])[:2].tolist()
    assert [s["measure"] for s in doc["summary"]] == ["cosine", "cosine_raw", "norm_ratio", "position_cosine"]
    code, out, _ = run(["diff", planted["a"], planted["b"], "-k", "0", "--top", "1", "-f", "jsonl"], capsys)
    lines = jsonl(out)
    assert [(x["table"], x.get("measure", x.get("end"))) for x in lines] == [
        ("summary", "cosine"), ("summary", "cosine_raw"), ("summary", "norm_ratio"), ("summary", "position_cosine"),
        ("movers", "most"), ("movers", "least")]


def test_all_rows_and_positions(planted, capsys):
    cos, raw, ratio = expected(planted["A"], planted["B"])
    code, out, _ = run(["diff", planted["a"], planted["b"], "-k", "0", "--all", "-f", "tsv"], capsys)
    rows = tsv(out)
    assert len(rows) == GPT2_VOCAB and list(rows[0]) == ["id", "token", "cosine", "cosine_raw", "norm_ratio"]
    np.testing.assert_allclose([float(r["cosine"]) for r in rows], cos, rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose([float(r["norm_ratio"]) for r in rows], ratio, rtol=1e-5)
    code, out, _ = run(["diff", planted["a"], planted["b"], "--positions", "-f", "tsv"], capsys)
    rows = tsv(out)
    r = ref_rotation(planted["A"], planted["B"])
    assert list(rows[0]) == ["position", "cosine", "cosine_raw", "norm_ratio"] and len(rows) == 64
    np.testing.assert_allclose([float(x["cosine"]) for x in rows], ref_cosines(planted["PA"], planted["PB"] @ r), rtol=1e-5)


def test_pictures(planted, small, tmp_path, capsys):
    """-o FILE.png: the picture, and the rows still go to stdout (as -f would print them)."""
    import matplotlib.image

    for argv, name in (([planted["a"], planted["b"], "-k", "0"], "hist.png"),
                       ([planted["a"], planted["b"], "--positions"], "positions.png"),
                       ([*small["paths"], "-k", "2"], "training.png")):
        path = tmp_path / name
        code, out, err = run(["diff", *argv, "-f", "tsv", "-o", str(path)], capsys)
        assert code == 0 and err.endswith(f"wrote {path}\n"), err
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and matplotlib.image.imread(str(path)).shape[2] == 4
        assert out == run(["diff", *argv, "-f", "tsv"], capsys)[1]


def test_on_a_terminal_the_bar_goes_and_the_tables_stay(small, capsys, monkeypatch):
    """The neighbour searches draw a bar on stderr, erased before the tables print: the screen
    holds what -f table prints, histogram included."""
    from tests.terminal import run_on_terminal, screen

    monkeypatch.setenv("COLUMNS", "100")
    argv = ["diff", *small["paths"][:2], "-k", "3", "--top", "2"]
    _, want, _ = run([*argv, "-f", "table"], capsys)
    code, raw, _ = run_on_terminal(argv, columns=100)
    assert code == 0 and "neighbours" in raw
    assert screen(raw) == [line.rstrip() for line in want.splitlines()]
    assert "token cosine after Procrustes alignment" in want and "tokens that moved most and least" in want


@pytest.mark.parametrize("suffix", ["tsv", "csv", "json", "jsonl"])
def test_data_files(small, tmp_path, capsys, suffix):
    """-o FILE.tsv (.csv .json .jsonl) holds exactly what -f would print; nothing on stdout."""
    for argv in ([*small["paths"][:2], "-k", "3", "--top", "2"], [*small["paths"][:2], "--positions"],
                 [*small["paths"][:2], "-k", "0", "--all"], [*small["paths"], "-k", "2"]):
        path = tmp_path / f"out.{suffix}"
        code, out, err = run(["diff", *argv, "-o", str(path)], capsys)
        assert (code, out) == (0, "") and err.endswith(f"wrote {path}\n")
        assert path.read_text("utf-8") == run(["diff", *argv, "-f", suffix], capsys)[1]


def test_a_failure_writes_no_data_file(small, planted, tmp_path, capsys):
    target = tmp_path / "d.tsv"
    target.write_text("the previous version")
    code, out, err = run(["diff", small["paths"][0], planted["b"], "-o", str(target)], capsys)
    assert (code, out) == (1, "") and "rows are compared by id" in err
    assert target.read_text() == "the previous version" and [p.name for p in tmp_path.iterdir()] == ["d.tsv"]


# --- vocabularies -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shakespeare_vocab(tmp_path_factory, planted):
    """A GPT-2-shaped model with the bundled Tiny Shakespeare tokenizer (3072 byte-level BPE ids,
    another vocabulary than GPT-2's), its rows B's rows of the same tokens, turned and noised."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_file=str(SHAKESPEARE_TOKENIZER))
    gpt2 = gpt2_tokenizer().get_vocab()
    shake = tok.get_vocab()
    pairs = sorted((gpt2[s], i) for s, i in shake.items() if s in gpt2)  # (GPT-2 id, Shakespeare id)
    rng = np.random.default_rng(11)
    wte = rng.normal(0, 0.02, (len(shake), D))
    q = ortho_group.rvs(D, random_state=11)
    for g, i in pairs:
        wte[i] = planted["B"][g] @ q + rng.normal(0, 0.002, D)
    folder = tmp_path_factory.mktemp("diff-shakespeare")
    w, _ = save_gpt2(folder, wte, rng.normal(0, 0.02, (64, D)), tok)
    return {"path": str(folder), "wte": w, "pairs": np.array(pairs)}


def test_by_token_matches_the_tokenizers_vocabularies(planted, shakespeare_vocab, capsys):
    pairs = shakespeare_vocab["pairs"]
    d = embscope.diff(planted["b"], shakespeare_vocab["path"], by_token=True, k=5)
    assert 2000 < len(pairs) < 3072
    assert np.array_equal(d.ids, pairs[:, 0]) and np.array_equal(d.ids_b, pairs[:, 1])
    assert d.notes == (f"matched {len(pairs)} tokens by their bytes (of 50257, 3072)",)
    a, b = planted["B"][pairs[:, 0]], shakespeare_vocab["wte"][pairs[:, 1]]
    np.testing.assert_allclose(d.cosine, expected(a, b)[0], atol=1e-9)
    assert d.cosine.min() > 0.95  # the same vectors, turned: found again through the tokens
    np.testing.assert_array_equal(d.jaccard, ref_jaccard(a, b, 5))
    code, out, err = run(["diff", planted["b"], shakespeare_vocab["path"], "--by-token", "-k", "0", "--all",
                          "-f", "tsv"], capsys)
    assert err == f"matched {len(pairs)} tokens by their bytes (of 50257, 3072)\n"
    rows = tsv(out)
    assert list(rows[0])[:3] == ["id", "id_b", "token"]
    assert [(int(r["id"]), int(r["id_b"])) for r in rows] == [tuple(p) for p in pairs.tolist()]


def test_vocabularies_of_different_sizes_need_by_token(planted, shakespeare_vocab, capsys):
    code, out, err = run(["diff", planted["b"], shakespeare_vocab["path"]], capsys)
    assert (code, out) == (1, "")
    assert err == (f"embscope: error: {planted['b']} has 50257 tokens but {shakespeare_vocab['path']} 3072:"
                   " rows are compared by id, so the vocabularies must match (--by-token matches rows by token bytes)\n")
    with pytest.raises(embscope.EmbscopeError, match=r"\(by_token=True matches rows by token bytes\)$"):
        embscope.diff(planted["b"], shakespeare_vocab["path"])


def test_tokenizers_that_differ_at_some_ids_are_warned_about(planted, tmp_path, capsys):
    import json

    from transformers import GPT2TokenizerFast

    from tests.builders import GPT2_FILES

    vocab = json.loads((GPT2_FILES / "vocab.json").read_text("utf-8"))
    swapped = {**vocab, "hello": vocab["world"], "world": vocab["hello"]}
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "vocab.json").write_text(json.dumps(swapped), "utf-8")
    (tmp_path / "tok" / "merges.txt").write_bytes((GPT2_FILES / "merges.txt").read_bytes())
    tok = GPT2TokenizerFast.from_pretrained(str(tmp_path / "tok"))
    save_gpt2(tmp_path / "m", planted["B"], planted["PB"], tok)
    code, out, err = run(["diff", planted["b"], str(tmp_path / "m"), "-k", "0", "-f", "tsv"], capsys)
    first = min(vocab["hello"], vocab["world"])
    was, now = ("hello", "world") if first == vocab["hello"] else ("world", "hello")
    assert code == 0, err
    assert err == (f"warning: the tokenizers differ at 2 of 50257 ids (#{first} is '{was}' in {planted['b']},"
                   f" '{now}' in {tmp_path / 'm'}); rows are compared by id\n")


def test_widths_must_match(planted, capsys):
    code, out, err = run(["diff", planted["b"], "-k", "0", str(Path(embscope.__file__).parent / "data" / "shakespeare")], capsys)
    assert (code, out) == (1, "")
    assert err == (f"embscope: error: {planted['b']} holds vectors 16 wide but bundled Tiny Shakespeare model 256"
                   " wide: cosines and the Procrustes rotation need equal widths\n")


# --- runs with several steps ------------------------------------------------------------------

@pytest.fixture
def clean_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NANOCHAT_BASE_DIR", raising=False)


@pytest.fixture(scope="module")
def nanochat_run(tmp_path_factory, tiktoken_gpt2):
    """A nanochat base dir: base_checkpoints/d2 with steps 100, 200, 300 of one drifting model
    (each step the last one plus noise), its tokenizer in tokenizer/tokenizer.pkl."""
    base = tmp_path_factory.mktemp("diff-nanochat")
    enc = fw.nanochat_encoding(tiktoken_gpt2, 4000)  # 4009 ids, 4032 rows
    config = {"sequence_len": 64, "vocab_size": enc.n_vocab, "n_layer": 2, "n_head": 2, "n_kv_head": 2,
              "n_embd": D, "window_pattern": "SL"}
    torch.manual_seed(5)
    model = fw.NanochatLike(enc.n_vocab, n_layer=2, n_head=2, n_embd=D)
    wte, heads = {}, {}
    for step in (100, 200, 300):
        with torch.no_grad():
            model.transformer.wte.weight.add_(0.3 * torch.randn_like(model.transformer.wte.weight))
            model.lm_head.weight.add_(0.1 * torch.randn_like(model.lm_head.weight))
        fw.save_nanochat_step(base / "base_checkpoints" / "d2", step, model, config, val_bpb=1.0)
        wte[step], heads[step] = f32(model.transformer.wte.weight)[:enc.n_vocab], f32(model.lm_head.weight)[:enc.n_vocab]
    fw.save_nanochat_tokenizer(base, enc)
    return {"folder": base / "base_checkpoints" / "d2", "wte": wte, "head": heads}


def test_steps_of_a_nanochat_run(nanochat_run, clean_home, capsys):
    folder, w = str(nanochat_run["folder"]), nanochat_run["wte"]
    assert embscope.run_steps(folder) == [100, 200, 300]
    code, out, err = run(["diff", folder, "--steps", "all", "-k", "4", "-f", "tsv"], capsys)
    assert code == 0 and err == ""
    rows = tsv(out)
    assert [(r["checkpoint"], r["step"]) for r in rows] == [
        ("model_000100.pt", "100"), ("model_000200.pt", "200"), ("model_000300.pt", "300")]
    for row, (i, j) in ((rows[1], (100, 200)), (rows[2], (200, 300))):
        assert float(row["cosine_prev"]) == pytest.approx(expected(w[i], w[j])[0].mean(), rel=1e-5)
        assert float(row["jaccard_prev"]) == pytest.approx(ref_jaccard(w[i], w[j], 4).mean(), rel=1e-5)
    assert float(rows[0]["cosine_last"]) == pytest.approx(expected(w[100], w[300])[0].mean(), rel=1e-5)
    code, out, err = run(["diff", folder, "--steps", "150:", "-k", "0", "--all", "-f", "tsv"], capsys)
    assert code == 0
    np.testing.assert_allclose([float(r["cosine"]) for r in tsv(out)], expected(w[200], w[300])[0], rtol=1e-5)
    code, out, err = run(["diff", folder, "--steps", ":100", "-f", "tsv"], capsys)
    assert (code, out) == (2, "")
    assert err == (f"embscope: error: --steps :100 selects 1 of the steps saved in {folder} (100, 200, 300);"
                   " diff needs two or more\n")
    code, out, err = run(["diff", folder, "--steps", "1-5"], capsys)
    assert (code, out, err) == (2, "", "embscope: error: --steps '1-5': expected all or A:B, e.g. 1000:5000\n")


def test_output_matrix_of_a_nanochat_run(nanochat_run, clean_home, capsys):
    """nanochat's lm_head is a matrix of its own: --matrix output compares it."""
    folder, h = str(nanochat_run["folder"]), nanochat_run["head"]
    code, out, err = run(["diff", folder, "--steps", "200:300", "--matrix", "output", "-k", "0", "--all",
                          "-f", "tsv"], capsys)
    assert code == 0, err
    np.testing.assert_allclose([float(r["cosine"]) for r in tsv(out)], expected(h[200], h[300])[0], rtol=1e-5)
    code, out, err = run(["diff", folder, "--steps", "all", "--positions"], capsys)
    assert (code, out) == (2, "")
    assert err == "embscope: error: --positions compares two checkpoints (got 3); name two, or --steps A:B with two steps\n"
    code, out, err = run(["diff", folder, "--steps", "200:", "--positions"], capsys)
    assert (code, out) == (1, "")
    assert err.startswith(f"embscope: error: {folder}: this model has no learned position embeddings")


def test_steps_of_an_llmc_run(tmp_path, tiktoken_gpt2, clean_home, capsys):
    import transformers as T

    T.logging.set_verbosity_error()
    log = tmp_path / "log"
    log.mkdir()
    fw.write_llmc_tokenizer(tiktoken_gpt2, tmp_path / "gpt2_tokenizer.bin")
    torch.manual_seed(9)
    model = T.GPT2LMHeadModel(T.GPT2Config(vocab_size=GPT2_VOCAB, n_positions=32, n_embd=D, n_layer=1, n_head=2))
    wte, wpe = {}, {}
    for step in (1000, 2000, 3000):
        with torch.no_grad():
            model.transformer.wte.weight.add_(0.01 * torch.randn_like(model.transformer.wte.weight))
            model.transformer.wpe.weight.add_(0.01 * torch.randn_like(model.transformer.wpe.weight))
        fw.write_llmc_model(model, log / f"model_{step:08d}.bin")
        wte[step], wpe[step] = f32(model.transformer.wte.weight), f32(model.transformer.wpe.weight)
    code, out, err = run(["diff", str(log), "--steps", "all", "-k", "0", "-f", "tsv"], capsys)
    assert code == 0 and err == ""
    rows = tsv(out)
    assert [(r["checkpoint"], r["step"]) for r in rows] == [
        ("model_00001000.bin", "1000"), ("model_00002000.bin", "2000"), ("model_00003000.bin", "3000")]
    assert list(rows[0]) == ["checkpoint", "step", "cosine_prev", "cosine_last"]
    assert float(rows[2]["cosine_prev"]) == pytest.approx(expected(wte[2000], wte[3000])[0].mean(), rel=1e-5)
    assert float(rows[0]["cosine_last"]) == pytest.approx(expected(wte[1000], wte[3000])[0].mean(), rel=1e-5)
    d = embscope.diff(embscope.load(str(log), step=1000), embscope.load(str(log), step=3000), k=0)
    r = ref_rotation(wte[1000], wte[3000])
    np.testing.assert_allclose(d.positions.cosine, ref_cosines(wpe[1000], wpe[3000] @ r), atol=1e-9)


# --- refused -------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, status, message", [
    (["a"], 2, "name two or more checkpoints (or one run folder with --steps)"),
    (["a", "b", "--steps", "all"], 2, "--steps takes one run folder (got 2 checkpoints)"),
    (["a", "b", "--align", "affine"], 2, "unknown alignment 'affine' (choose from procrustes, none)"),
    (["a", "b", "-k", "-1"], 2, "-k must be at least 0 (got -1; 0 leaves out the neighbour overlap)"),
    (["a", "b", "--top", "0"], 2, "--top must be at least 1 (got 0)"),
    (["a", "b", "-f", "xml"], 2, "unknown format 'xml' (choose from table, tsv, csv, json, jsonl)"),
    (["a", "b", "-o", "x.npy"], 2, "-o x.npy: unknown file type (use .tsv, .csv, .json, .jsonl or .png)"),
    (["a", "b", "c", "--all"], 2, "--all compares two checkpoints (got 3); name two, or --steps A:B with two steps"),
    (["./a", "b"], 1, "./a: no such file or directory"),
    (["a", "b", "--all", "--positions"], 2, "--all and --positions cannot be used together"),
    (["a", "b", "--all", "--top", "3"], 2, "--all and --top cannot be used together"),
    (["a", "b", "--positions", "--top", "3"], 2, "--positions and --top cannot be used together"),
    (["a", "b", "--positions", "-k", "0"], 2, "--positions and -k cannot be used together"),
    (["a", "b", "c", "--top", "3"], 2, "--top compares two checkpoints (got 3); name two, or --steps A:B with two steps"),
    (["a", "b", "--tokenizer", "t.json", "--meta", "m.pkl"], 2, "--tokenizer and --meta cannot be used together"),
    (["a", "b", "-o", "x.tsv", "-f", "json"], 2, "-f json and -o x.tsv disagree: a file's format is its suffix"),
    (["a", "b", "--positions", "--matrix", "output"], 2, "--positions compares the input side (positions are added"
     " to the input embedding): leave out --matrix output"),
])
def test_refused_before_any_model_is_read(argv, status, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["diff", *argv], capsys)
    assert (code, out, err) == (status, "", f"embscope: error: {message}\n")
    assert list(tmp_path.iterdir()) == []


def test_bad_steps(small, tmp_path, capsys):
    code, out, err = run(["diff", small["paths"][0], "--steps", "all"], capsys)
    assert (code, out, err) == (1, "", f"embscope: error: {small['paths'][0]}: not a folder of training steps"
                                       " (nanochat model_NNNNNN.pt or llm.c model_NNNNNNNN.bin files)\n")


def test_more_neighbours_than_tokens(small, capsys):
    code, out, err = run(["diff", *small["paths"][:2], "-k", "700"], capsys)
    assert (code, out, err) == (2, "", "embscope: error: 700 neighbours per token: each of the 700 tokens"
                                       " compared has only 699 others\n")
    with pytest.raises(embscope.EmbscopeError, match=r"^unknown alignment 'x'"):  # before any file is read
        embscope.diff("./no-such-checkpoint", "./nor-this", align="x")


def test_by_token_needs_tokenizers(small, capsys):
    code, out, err = run(["diff", *small["paths"][:2], "--by-token"], capsys)
    assert (code, out) == (1, "")
    assert err == f"embscope: error: {small['paths'][0]} has no tokenizer, so its rows cannot be matched by token\n"


def test_api_records_and_pandas(small):
    d = embscope.diff(small["paths"][0], small["paths"][1], k=3)
    records = d.to_records()
    assert len(records) == 700 and list(records[0]) == ["id", "token", "cosine", "cosine_raw", "norm_ratio", "jaccard"]
    assert records[3]["cosine"] == d.cosine[3] and records[3]["token"] == "#3"
    frame = d.to_pandas()
    assert frame.shape == (700, 6) and frame["jaccard"].tolist() == d.jaccard.tolist()
    assert [r["measure"] for r in d.summary_records()] == ["cosine", "cosine_raw", "norm_ratio", "jaccard", "position_cosine"]
    assert d.summary_records()[0]["mean"] == pytest.approx(d.cosine.mean())
    assert [(r["end"], r["rank"]) for r in d.mover_records(2)] == [("most", 1), ("most", 2), ("least", 1), ("least", 2)]
    with pytest.raises(embscope.EmbscopeError, match=r"^unknown alignment 'x' \(choose from procrustes, none\)$"):
        embscope.diff(small["paths"][0], small["paths"][1], align="x")
