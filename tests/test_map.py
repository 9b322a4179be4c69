"""`embscope map` against scikit-learn's PCA and TSNE on the saved model's own matrices, the
`neighbors` command's answers, tiktoken's ids and numpy's seeded sampling."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from sklearn.decomposition import PCA

from tests import untrusted as u
from tests.builders import save_gpt2, save_hf
from tests.helpers import jsonl, run, tsv

KING = 5822  # " king" in GPT-2


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    d = tmp_path_factory.mktemp("gpt2-map")
    model = save_gpt2(d, n_embd=32, n_positions=64, seed=4)
    wte = model.transformer.wte.weight.detach().numpy().astype(np.float64)  # (V, 32)
    wpe = model.transformer.wpe.weight.detach().numpy().astype(np.float64)  # (64, 32)
    return str(d), wte, wpe


def map_json(argv, capsys, **kw) -> tuple[dict, str]:
    code, out, err = run(["map", *argv, "-f", "json"], capsys, **kw)
    assert code == 0, err
    return json.loads(out), err


def assert_pca_of(doc: dict, rows: np.ndarray, id_name: str = "id") -> None:
    """The document's coordinates and variances are sklearn's PCA of `rows`, up to each axis' sign."""
    ref = PCA(n_components=2, svd_solver="full").fit(rows)
    coords = np.array([[p["pc1"], p["pc2"]] for p in doc["points"]])  # (n, 2)
    expected = ref.transform(rows)
    signs = np.sign(np.sum(coords * expected, axis=0))
    np.testing.assert_allclose(coords * signs, expected, atol=1e-9)
    np.testing.assert_allclose([c["ratio"] for c in doc["components"]], ref.explained_variance_ratio_, rtol=1e-9)
    np.testing.assert_allclose([c["variance"] for c in doc["components"]], ref.explained_variance_, rtol=1e-9)
    np.testing.assert_allclose([c["singular_value"] for c in doc["components"]], ref.singular_values_, rtol=1e-9)
    assert doc["solver"] == "exact" and doc["error_bound"] is None


# --- which rows --------------------------------------------------------------------------------

@pytest.mark.parametrize("query, own", [("king", [KING]), ("king - man + woman", [KING, 582, 2415])])
def test_near_is_the_neighbors_answer(gpt2, capsys, query, own):
    d, wte, _ = gpt2
    code, out, err = run(["neighbors", query, "-k", "25", "-m", d, "-f", "tsv"], capsys)
    assert code == 0, err
    neighbors = [int(r["id"]) for r in tsv(out)]
    doc, _ = map_json(["--near", query, "-k", "25", "-m", d], capsys)
    ids = [p["id"] for p in doc["points"]]
    assert ids == own + neighbors
    assert doc["rows"] == f"{query} and its 25 nearest tokens (cosine)"
    assert_pca_of(doc, wte[ids])


def test_positions(gpt2, capsys):
    d, _, wpe = gpt2
    doc, err = map_json(["--positions", "-m", d], capsys)
    assert [p["position"] for p in doc["points"]] == list(range(64))
    assert "token" not in doc["points"][0]
    assert_pca_of(doc, wpe)
    ratios = PCA(2).fit(wpe).explained_variance_ratio_
    assert err == f"pc1 {ratios[0]:.2%}, pc2 {ratios[1]:.2%} of the variance (exact SVD of 64 centred rows)\n"


def test_ids_range(gpt2, capsys):
    d, wte, _ = gpt2
    doc, _ = map_json(["--ids", "100:160", "-m", d], capsys)
    assert [p["id"] for p in doc["points"]] == list(range(100, 160))
    assert_pca_of(doc, wte[100:160])


def test_sample_is_numpy_seeded(gpt2, capsys):
    d, wte, _ = gpt2
    doc, _ = map_json(["--sample", "50", "--seed", "3", "-m", d], capsys)
    expected = np.sort(np.random.default_rng(3).choice(50257, 50, replace=False))
    assert [p["id"] for p in doc["points"]] == expected.tolist()
    assert_pca_of(doc, wte[expected])
    again, _ = map_json(["--sample", "50", "--seed", "3", "-m", d], capsys)
    other, _ = map_json(["--sample", "50", "--seed", "4", "-m", d], capsys)
    assert again == doc and [p["id"] for p in other["points"]] != expected.tolist()


@pytest.mark.parametrize("how", ["stdin", "arguments"])
def test_named_tokens(gpt2, capsys, monkeypatch, tiktoken_gpt2, how):
    d, wte, _ = gpt2
    words = ["king", "queen", "#42", "Paris", "king", "the"]
    if how == "stdin":
        code, out, err = run(["map", "-", "-m", d, "-f", "tsv"], capsys, stdin="\n".join(words) + "\n\n",
                             monkeypatch=monkeypatch)
    else:
        code, out, err = run(["map", *words, "-m", d, "-f", "tsv"], capsys)
    assert code == 0, err
    expected = [tiktoken_gpt2.encode(" king")[0], tiktoken_gpt2.encode(" queen")[0], 42,
                tiktoken_gpt2.encode(" Paris")[0], tiktoken_gpt2.encode(" the")[0]]
    rows = tsv(out)
    assert [int(r["id"]) for r in rows] == expected
    assert [r["token"] for r in rows] == [" king", " queen", "K", " Paris", " the"]
    assert list(rows[0]) == ["id", "token", "pc1", "pc2"]
    assert err.splitlines()[0] == "1 repeated token left out: each token is taken once"
    coords = np.array([[float(r["pc1"]), float(r["pc2"])] for r in rows])
    ref = PCA(2).fit_transform(wte[expected])
    np.testing.assert_allclose(np.abs(coords), np.abs(ref), rtol=1e-5, atol=1e-6)  # TSV: 6 digits


def test_exact_words(gpt2, capsys, tiktoken_gpt2):
    d, _, _ = gpt2
    code, out, err = run(["map", "king", "and", "the", "--exact", "-m", d, "-f", "tsv"], capsys)
    assert code == 0, err
    assert [int(r["id"]) for r in tsv(out)] == [tiktoken_gpt2.encode(w)[0] for w in ("king", "and", "the")]


def test_a_word_of_several_tokens(gpt2, capsys, tiktoken_gpt2):
    d, _, _ = gpt2
    ids = tiktoken_gpt2.encode("Kingsbridgeshire")  # ' Kingsbridgeshire' is no single token either: as typed
    parts = ", ".join(f"'{tiktoken_gpt2.decode([i])}' #{i}" for i in ids)
    code, out, err = run(["map", "king", "Kingsbridgeshire", "queen", "-m", d], capsys)
    assert (code, out) == (1, "")
    assert err == (f"embscope: error: 'Kingsbridgeshire' is {len(ids)} tokens ({parts}): name single tokens,"
                   " one by one or as '#id'\n")


# --- what is printed and written ----------------------------------------------------------------

def test_variance_table(gpt2, capsys):
    d, _, wpe = gpt2
    code, out, err = run(["map", "--positions", "--variance", "-n", "4", "-m", d, "-f", "tsv"], capsys)
    assert code == 0, err
    rows = tsv(out)
    assert list(rows[0]) == ["component", "singular_value", "singular_max", "variance", "ratio", "ratio_max",
                             "cumulative"]
    ref = PCA(4).fit(wpe)
    assert [r["component"] for r in rows] == ["pc1", "pc2", "pc3", "pc4"]
    np.testing.assert_allclose([float(r["ratio"]) for r in rows], ref.explained_variance_ratio_, rtol=1e-5)
    np.testing.assert_allclose([float(r["variance"]) for r in rows], ref.explained_variance_, rtol=1e-5)
    np.testing.assert_allclose([float(r["cumulative"]) for r in rows],
                               np.cumsum(ref.explained_variance_ratio_), rtol=1e-5)
    np.testing.assert_allclose([float(r["singular_value"]) for r in rows], ref.singular_values_, rtol=1e-5)
    assert [r["singular_max"] for r in rows] == [r["singular_value"] for r in rows]  # exact: no slack
    assert [r["ratio_max"] for r in rows] == [r["ratio"] for r in rows]


def test_more_components(gpt2, capsys):
    d, wte, _ = gpt2
    code, out, _ = run(["map", "--ids", "0:40", "-n", "3", "-m", d, "-f", "jsonl"], capsys)
    rows = jsonl(out)
    assert list(rows[0]) == ["id", "token", "pc1", "pc2", "pc3"]
    coords = np.array([[r["pc1"], r["pc2"], r["pc3"]] for r in rows])
    ref = PCA(3).fit_transform(wte[:40])
    np.testing.assert_allclose(np.abs(coords), np.abs(ref), atol=1e-9)


def test_csv(gpt2, capsys):
    d, _, _ = gpt2
    code, out, _ = run(["map", "--positions", "-m", d, "-f", "csv"], capsys)
    assert out.splitlines()[0] == "position,pc1,pc2" and len(out.splitlines()) == 65


def test_randomized(gpt2, capsys):
    d, wte, _ = gpt2
    doc, err = map_json(["--ids", "0:300", "--svd", "randomized", "--seed", "5", "-m", d], capsys)
    assert doc["solver"] == "randomized" and doc["error_bound"] > 0
    exact = PCA(2).fit(wte[:300])
    for c, s, r in zip(doc["components"], exact.singular_values_, exact.explained_variance_ratio_):
        assert c["singular_value"] <= s * (1 + 1e-9) <= c["singular_max"] * (1 + 1e-9)
        assert c["ratio"] <= r * (1 + 1e-9) <= c["ratio_max"] * (1 + 1e-9)
    shares = ", ".join(f"{c['component']} {c['ratio']:.2%} (at most {c['ratio_max']:.2%})"
                       for c in doc["components"])
    assert err == (f"{shares} of the variance\nrandomized SVD of 300 centred rows, seed 5: the part of them it misses"
                   f" has a norm of at most {doc['error_bound']:.4g} (with probability at least 1 - 1e-10)\n")


def test_npy(gpt2, capsys, tmp_path):
    d, wte, _ = gpt2
    path = tmp_path / "near.npy"
    code, out, err = run(["map", "--near", "king", "-k", "9", "-m", d, "-o", str(path)], capsys)
    assert (code, out) == (0, "")
    a = np.load(path)
    width = max(len(t) for t in a["token"])
    assert err.endswith(f"wrote {path}: array of shape (10,), [('id', '<i8'), ('token', '<U{width}'), ('pc1', '<f8'),"
                        " ('pc2', '<f8')]\n")
    assert a["id"][0] == KING and a["token"][0] == " king"
    ref = PCA(2).fit_transform(wte[a["id"]])
    np.testing.assert_allclose(np.abs(np.column_stack([a["pc1"], a["pc2"]])), np.abs(ref), atol=1e-9)


def test_png(gpt2, capsys, tmp_path):
    from matplotlib.image import imread

    d, _, _ = gpt2
    path = tmp_path / "near.png"
    code, out, err = run(["map", "--near", "king", "-k", "9", "-m", d, "-o", str(path)], capsys)
    assert (code, out) == (0, "") and err.endswith(f"wrote {path}\n")
    pixels = (imread(str(path))[:, :, :3] * 255).round().astype(int)  # (720, 864, 3)
    assert pixels.shape == (720, 864, 3)
    red = np.all(np.abs(pixels - [228, 26, 28]) <= 2, axis=-1)  # the query's point and label
    teal = np.all(np.abs(pixels - [33, 145, 140]) <= 2, axis=-1)  # the others
    assert red.sum() > 50 and teal.sum() > 200


def test_terminal_picture(gpt2, capsys):
    d, wte, _ = gpt2
    code, out, err = run(["map", "--near", "king", "-k", "25", "-m", d, "-f", "table"], capsys)
    assert (code, err) == (0, "")
    lines = out.splitlines()
    ids = [KING] + [int(r["id"]) for r in tsv(run(["neighbors", "king", "-k", "25", "-m", d, "-f", "tsv"],
                                                   capsys)[1])]
    ratios = PCA(2).fit(wte[ids]).explained_variance_ratio_
    title = f"{d}: king and its 25 nearest tokens (cosine)"
    assert lines[0] == title or (lines[0].endswith("…") and title.startswith(lines[0][:-1]))
    assert lines[1] == f"pc2 ({ratios[1]:.1%} of the variance)"
    assert lines[-3].strip() == f"pc1 ({ratios[0]:.1%} of the variance)"
    assert lines[-2] == f"pc1 {ratios[0]:.2%}, pc2 {ratios[1]:.2%} of the variance (exact SVD of 26 centred rows)"
    assert lines[-1].startswith("26 points, ") and lines[-1].endswith(" labelled")
    assert "\u2423king" in out  # the query is labelled first
    assert max(len(line) for line in lines) <= 80


def test_nan_rows_are_left_out(tmp_path, capsys):
    tensors = u.save_gpt2_safetensors(tmp_path / "m", nan_rows=(5,), inf_rows=(7,))
    code, out, err = run(["map", "--ids", "0:20", "-m", str(tmp_path / "m"), "-f", "tsv"], capsys)
    assert code == 0
    assert err.splitlines()[0] == "warning: 2 token rows hold NaN or Inf and are left out of the map: #5, #7"
    ids = [int(r["id"]) for r in tsv(out)]
    assert ids == [i for i in range(20) if i not in (5, 7)]
    ref = PCA(2).fit_transform(tensors["transformer.wte.weight"][ids].astype(np.float64))
    np.testing.assert_allclose(np.abs([[float(r["pc1"]), float(r["pc2"])] for r in tsv(out)]), np.abs(ref),
                               rtol=1e-5, atol=1e-6)


def test_tsne_equals_sklearn(gpt2, capsys):
    from sklearn.manifold import TSNE

    d, wte, _ = gpt2
    code, out, err = run(["map", "--ids", "0:60", "--method", "tsne", "--seed", "2", "-m", d, "-f", "jsonl"], capsys)
    assert code == 0, err
    rows = jsonl(out)
    assert list(rows[0]) == ["id", "token", "tsne1", "tsne2"]
    ref = TSNE(2, perplexity=59 / 3, metric="cosine", init="pca", random_state=2).fit_transform(
        wte[:60].astype(np.float32))
    np.testing.assert_allclose([[r["tsne1"], r["tsne2"]] for r in rows], ref, rtol=1e-4, atol=1e-3)
    assert err == "t-SNE of 60 rows (cosine, perplexity 19.7, seed 2): it keeps neighbourhoods, not distances\n"


def test_install_hints(gpt2, capsys, monkeypatch):
    d, _, _ = gpt2
    for module in ("sklearn", "sklearn.manifold", "umap"):
        monkeypatch.setitem(sys.modules, module, None)  # import fails as when not installed
    for method, package, extra, name in (("tsne", "scikit-learn", "tsne", "t-SNE"), ("umap", "umap-learn", "umap", "UMAP")):
        code, out, err = run(["map", "--positions", "--method", method, "-m", d], capsys)
        assert (code, out) == (1, "")
        assert err == (f"embscope: error: The {name} map (--method {method}) needs {package}, which is not"
                       f" installed: pip install 'embscope[{extra}]'\n")


@pytest.mark.parametrize("argv, message", [
    ([], "choose what to map: WORD..., '-' (stdin), --near QUERY, --ids A:B, --sample N or --positions"),
    (["--near", "king", "--ids", "0:5"], "--near and --ids cannot be used together"),
    (["king", "--positions"], "WORD and --positions cannot be used together"),
    (["--positions", "-o", "x.svg"], "-o x.svg: unknown file type (use .tsv, .csv, .json, .jsonl, .npy, .png or .html)"),
    (["--positions", "--method", "mds"], "unknown method 'mds' (choose from pca, tsne, umap)"),
    (["--positions", "--svd", "fast"], "unknown svd 'fast' (choose from auto, exact, randomized)"),
    (["--positions", "-n", "0"], "--components must be at least 1 (got 0)"),
    (["--sample", "0"], "--sample must be at least 1 (got 0)"),
    (["--near", "king", "-k", "0"], "--top must be at least 1 (got 0)"),
    (["--ids", "5:3"], "--ids '5:3': need 0 <= A < B <= 50257 (the model has 50257 tokens)"),
    (["--positions", "--method", "tsne", "--variance"],
     "--variance: a tsne map has no explained variance (only pca has)"),
])
def test_usage_errors(gpt2, capsys, argv, message):
    d, _, _ = gpt2
    code, out, err = run(["map", *argv, "-m", d], capsys)
    assert (code, out) == (2, "")
    assert err.startswith(f"embscope: error: {message}")


@pytest.mark.parametrize("argv, message", [
    (["king", "queen"], "a map in 2 dimensions needs at least 3 points with finite values (got 2)"),
    (["--ids", "0:3", "-n", "3"], "a map in 3 dimensions needs at least 4 points with finite values (got 3)"),
    (["--sample", "60000"], "a sample of 60000 is more than the model's 50257 tokens"),
    (["#60000", "king", "queen"], "token id #60000 is out of range (the model has 50257 tokens)"),
])
def test_errors(gpt2, capsys, argv, message):
    d, _, _ = gpt2
    code, out, err = run(["map", *argv, "-m", d], capsys)
    assert (code, out, err) == (1, "", f"embscope: error: {message}\n")


def test_no_learned_positions(tmp_path, capsys):
    save_hf(tmp_path / "llama", "llama")
    code, out, err = run(["map", "--positions", "-m", str(tmp_path / "llama")], capsys)
    assert (code, out) == (1, "")
    assert err == (f"embscope: error: {tmp_path / 'llama'}: this model has no learned position embeddings"
                   " (llama family: positions are rotary, ALiBi or absent)\n")


def test_identical_rows(tmp_path, capsys):
    from safetensors.numpy import save_file

    t = u.gpt2_tensors()
    t["transformer.wte.weight"][:10] = 1.0
    (tmp_path / "m").mkdir()
    save_file({k: t[k] for k in ("transformer.wte.weight", "transformer.wpe.weight")},
              str(tmp_path / "m" / "model.safetensors"))
    code, out, err = run(["map", "--ids", "0:10", "-m", str(tmp_path / "m")], capsys)
    assert (code, out, err) == (1, "", "embscope: error: cannot map tokens 0..9: the rows are all the same:"
                                       " they have no variance to project\n")


# --- the API -------------------------------------------------------------------------------------

def test_api(gpt2):
    import embscope

    d, wte, wpe = gpt2
    m = embscope.load(d)
    rows = m.select(near="king", k=5)
    assert rows.kind == "tokens" and rows.highlight == (KING,) and rows.labels[0] == " king"
    found = m.map(rows)
    assert found.axes == ("pc1", "pc2") and found.coords.shape == (6, 2) and len(found.left_out) == 0
    assert found.to_records()[0]["id"] == KING
    np.testing.assert_allclose(found.pca.explained_variance_ratio,
                               PCA(2).fit(wte[rows.ids]).explained_variance_ratio_, rtol=1e-9)
    p = m.map(m.select(positions=True), components=3)
    np.testing.assert_allclose(np.abs(p.coords), np.abs(PCA(3).fit_transform(wpe)), atol=1e-9)
    assert p.rows.to_records()[:2] == [{"position": 0}, {"position": 1}]
    with pytest.raises(embscope.EmbscopeError, match="near and positions cannot be used together"):
        m.select(near="king", positions=True)
    with pytest.raises(embscope.EmbscopeError, match="unknown method 'mds'"):
        m.map(rows, method="mds")


def test_pages_show_real_runs():
    from pathlib import Path

    docs = Path(__file__).resolve().parent.parent / "docs"
    for command in ("map", "export"):
        assert f"<!-- example: embscope {command}" in (docs / f"{command}.md").read_text() or \
            f"embscope {command} --to" in (docs / f"{command}.md").read_text()
    for picture in ("map-positions.png", "map-king.png", "map-king.html"):
        assert (docs / "img" / picture).stat().st_size < 64_000


def test_empty_stdin(gpt2, capsys, monkeypatch):
    d, _, _ = gpt2
    code, out, err = run(["map", "-", "-m", d], capsys, stdin="\n  \n", monkeypatch=monkeypatch)
    assert (code, out, err) == (2, "", "embscope: error: no tokens on stdin\n")


def test_umap_equals_umap_learn(gpt2, capsys):
    """Only where umap-learn is installed (it is no test dependency: numba is large)."""
    umap = pytest.importorskip("umap")
    d, wte, _ = gpt2
    code, out, err = run(["map", "--ids", "0:60", "--method", "umap", "--seed", "2", "-m", d, "-f", "jsonl"], capsys)
    assert code == 0, err
    rows = jsonl(out)
    assert list(rows[0]) == ["id", "token", "umap1", "umap2"]
    ref = umap.UMAP(n_components=2, n_neighbors=15, metric="cosine", random_state=2).fit_transform(
        wte[:60].astype(np.float32))
    np.testing.assert_allclose([[r["umap1"], r["umap2"]] for r in rows], ref, rtol=1e-4, atol=1e-3)


def test_near_a_text_of_several_tokens(gpt2, capsys, tiktoken_gpt2):
    d, _, _ = gpt2
    own = tiktoken_gpt2.encode("Kingsbridgeshire")
    code, out, err = run(["neighbors", "Kingsbridgeshire", "-k", "5", "-m", d, "-f", "tsv"], capsys)
    neighbors = [int(r["id"]) for r in tsv(out)]
    code, out, err = run(["map", "--near", "Kingsbridgeshire", "-k", "5", "-m", d, "-f", "tsv"], capsys)
    assert code == 0
    assert [int(r["id"]) for r in tsv(out)] == own + neighbors
    parts = ", ".join(f"'{tiktoken_gpt2.decode([i])}' #{i}" for i in own)
    assert err.splitlines()[0] == f"'Kingsbridgeshire' is {len(own)} tokens ({parts}): using the mean of their vectors"
