"""Every path of `neighbors` prints the brute-force answer: the float64 score rounded to float32,
ids ranked by it (equal scores to the smaller id), the same bits whichever path computed them:
one query, a batch on stdin, `--all`, `--all --rows`, the API, any memory budget."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from embscope.output import text_value
from tests.builders import save_gpt2
from tests.helpers import jsonl, run, tsv

K = 7
N_QUERIES = 600  # more than one chunk of 512: two buffers of block maxima, the workers, the prepared copy
METRICS = ["cosine", "dot", "euclidean"]


@pytest.fixture(scope="module", params=["float32", "bfloat16", "float16"])
def model(request, tmp_path_factory):
    """(directory, float32 wte as transformers reads it) of a GPT-2 (50257 x 48) in each dtype."""
    from transformers import GPT2LMHeadModel

    d = tmp_path_factory.mktemp(f"exact-{request.param}")
    save_gpt2(d, dtype=getattr(torch, request.param), n_embd=48, seed=3)
    wte = GPT2LMHeadModel.from_pretrained(d, dtype=getattr(torch, request.param)).get_input_embeddings().weight
    return d, wte.detach().float().numpy()


def reference(wte: np.ndarray, queries: np.ndarray, metric: str, k: int, exclude) -> tuple[np.ndarray, np.ndarray]:
    """Brute force in float64 with numpy: (ids (q, k), float64 scores (q, k)), nearest first by
    the score rounded to float32, equal ones to the smaller id; euclidean as distances, ascending."""
    w, q = wte.astype(np.float64), queries.astype(np.float64)  # (V, d), (q, d)
    dots = q @ w.T  # (q, V)
    if metric == "cosine":
        key = dots / np.outer(np.linalg.norm(q, axis=1), np.linalg.norm(w, axis=1))
    elif metric == "dot":
        key = dots
    else:  # the expansion, exact enough for distances far above its cancellation (checked below)
        d2 = (q * q).sum(1)[:, None] + (w * w).sum(1)[None, :] - 2 * dots
        key = -np.sqrt(np.maximum(d2, 0))
    for i, ids in enumerate(exclude):
        key[i, ids] = -np.inf
    ids = np.lexsort((np.broadcast_to(np.arange(len(w)), key.shape), -key.astype(np.float32)), axis=1)[:, :k]
    scores = np.take_along_axis(key, ids, axis=1)
    if metric == "euclidean":
        assert (-scores > 1e-4 * np.sqrt((q * q).sum(1))[:, None]).all()
    return ids, -scores if metric == "euclidean" else scores


def by_query(rows: list[dict], key: str) -> dict:
    out: dict = {}
    for r in rows:
        out.setdefault(r[key], []).append(r)
    return out


def assert_equals_reference(found: dict, ref_ids, ref_scores, keys) -> None:
    """found[key] = [(id, printed score, JSON score)] for each query key, in rank order."""
    for key, ids, scores in zip(keys, ref_ids, ref_scores):
        got = found[key]
        assert [i for i, _, _ in got] == ids.tolist(), key
        want32 = scores.astype(np.float32)
        assert [s for _, _, s in got] == [float(v) for v in want32], key  # float32 bits of the float64 answer
        assert [p for _, p, _ in got] == [text_value(float(v)) for v in want32], key  # digits printed


@pytest.mark.parametrize("metric", METRICS)
def test_batch_all_rows_and_single_print_the_brute_force_answer(model, metric, capsys, monkeypatch):
    d, wte = model
    ids = np.random.default_rng(7).choice(50257, N_QUERIES, replace=False)
    ref_ids, ref_scores = reference(wte, wte[ids], metric, K, [[int(i)] for i in ids])

    # a batch on stdin, JSON (all the float32 digits) and TSV (what is printed)
    lines = "".join(f"#{i}\n" for i in ids)
    code, out_json, err = run(["neighbors", "-", "-m", str(d), "-k", str(K), "--metric", metric, "-f", "jsonl"],
                              capsys, stdin=lines, monkeypatch=monkeypatch)
    assert code == 0, err
    code, out_tsv, err = run(["neighbors", "-", "-m", str(d), "-k", str(K), "--metric", metric, "-f", "tsv"],
                             capsys, stdin=lines, monkeypatch=monkeypatch)
    assert code == 0, err
    as_json, printed = by_query(jsonl(out_json), "query"), by_query(tsv(out_tsv), "query")
    found = {q: [(r["id"], p["score"], r["score"]) for r, p in zip(as_json[q], printed[q])] for q in as_json}
    assert_equals_reference(found, ref_ids, ref_scores, [f"#{i}" for i in ids])

    # the k-NN graph of rows 0:600, and a range inside it, must print the same lines
    first = np.arange(N_QUERIES)
    g_ids, g_scores = reference(wte, wte[first], metric, K, [[int(i)] for i in first])
    code, graph, err = run(["neighbors", "--all", "--rows", f"0:{N_QUERIES}", "-m", str(d), "-k", str(K),
                            "--metric", metric, "-f", "jsonl"], capsys)
    assert code == 0, err
    rows = by_query(jsonl(graph), "id")
    code, graph_tsv, _ = run(["neighbors", "--all", "--rows", f"0:{N_QUERIES}", "-m", str(d), "-k", str(K),
                              "--metric", metric, "-f", "tsv"], capsys)
    printed = by_query(tsv(graph_tsv), "id")
    found = {i: [(r["neighbor_id"], p["score"], r["score"]) for r, p in zip(rs, printed[str(i)])]
             for i, rs in rows.items()}
    assert_equals_reference(found, g_ids, g_scores, first.tolist())
    code, part, _ = run(["neighbors", "--all", "--rows", "131:517", "-m", str(d), "-k", str(K),
                         "--metric", metric, "-f", "tsv"], capsys)
    lines_all = graph_tsv.splitlines()
    assert part.splitlines()[1:] == lines_all[1 + 131 * K:1 + 517 * K]

    # single queries, one process each, print the lines of the batch
    batch = by_query(tsv(out_tsv), "query")
    for i in ids[:6]:
        code, out, _ = run(["neighbors", f"#{i}", "-m", str(d), "-k", str(K), "--metric", metric, "-f", "tsv"], capsys)
        assert [(r["id"], r["score"]) for r in tsv(out)] == [(r["id"], r["score"]) for r in batch[f"#{i}"]]


@pytest.mark.parametrize("budget", ["1K", "40M"])
def test_memory_budget_changes_the_plan_not_the_output(model, budget, capsys, monkeypatch):
    """A budget too small for the prepared copy (and for 512 queries a chunk) streams the rows
    in chunks of 16 queries; a larger one keeps the copy. The output is the same bytes."""
    d, _ = model
    words = ["king", "queen", "king - man + woman", "New York", "#100", "river"] * 100
    argv = ["neighbors", "-", "-m", str(d), "-k", "5", "-f", "jsonl"]
    code, expected, err = run(["--debug", *argv], capsys, stdin="\n".join(words), monkeypatch=monkeypatch)
    assert code == 0 and "prepared copy" in err  # the default budget (a quarter of the available memory)
    code, out, err = run(["--debug", *argv, "--memory-budget", budget], capsys, stdin="\n".join(words),
                         monkeypatch=monkeypatch)
    assert code == 0
    assert out == expected
    assert ("prepared copy" in err) == (budget == "40M")
    code, graph, _ = run(["neighbors", "--all", "--rows", "40:700", "-m", str(d), "-k", "3", "-f", "tsv"], capsys)
    code, small, _ = run(["neighbors", "--all", "--rows", "40:700", "-m", str(d), "-k", "3", "-f", "tsv",
                          "--memory-budget", budget], capsys)
    assert small == graph


def test_euclidean_self_distance_is_zero_and_scores_are_symmetric(model, capsys, monkeypatch):
    """Issue 11: a token's distance to itself printed 2.1e-08; king -> queen and queen -> king
    printed different last digits."""
    d, wte = model
    code, out, _ = run(["neighbors", "#5822", "--metric", "euclidean", "--include-query", "-m", str(d), "-k", "3",
                        "-f", "tsv"], capsys)
    rows = tsv(out)
    assert (rows[0]["id"], rows[0]["score"]) == ("5822", "0")
    code, out, _ = run(["neighbors", "-", "-m", str(d), "-k", "50000", "-f", "jsonl"], capsys,
                       stdin="#5822\n#7\n", monkeypatch=monkeypatch)
    found = by_query(jsonl(out), "query")
    to_7 = [r["score"] for r in found["#5822"] if r["id"] == 7]
    to_king = [r["score"] for r in found["#7"] if r["id"] == 5822]
    assert to_7 == to_king and len(to_7) == 1
    ref = np.float32(wte[5822].astype(np.float64) @ wte[7] / np.linalg.norm(wte[5822].astype(np.float64))
                     / np.linalg.norm(wte[7].astype(np.float64)))
    assert to_7[0] == float(ref)


def test_analogies_and_several_token_words_agree_between_one_and_many(model, capsys, monkeypatch):
    d, _ = model
    words = ["king - man + woman", "Solidarność", "New York", "#3 + #4 - #5"]
    code, batch, _ = run(["neighbors", "-", "-m", str(d), "-k", "6", "-f", "tsv"], capsys,
                         stdin="\n".join(words * 150), monkeypatch=monkeypatch)  # 600 lines: two chunks
    rows = by_query(tsv(batch), "query")
    for w in words:
        _, single, _ = run(["neighbors", w, "-m", str(d), "-k", "6", "-f", "tsv"], capsys)
        assert [(r["id"], r["score"]) for r in tsv(single)] == [(r["id"], r["score"]) for r in rows[w][:6]]


# --- ties, near-ties, tiny rows: a small matrix saved by safetensors -------------------------------

def _save(tmp_path, wte: np.ndarray, dtype=torch.float32):
    from safetensors.torch import save_file

    path = tmp_path / "m.safetensors"
    save_file({"transformer.wte.weight": torch.from_numpy(wte).to(dtype),
               "transformer.wpe.weight": torch.zeros(8, wte.shape[1], dtype=dtype)}, str(path))
    return path


def exact_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine with correctly rounded sums (math.fsum of exact float64 products of float32s)."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    dot = math.fsum((a * b).tolist())
    return dot / (math.sqrt(math.fsum((a * a).tolist())) * math.sqrt(math.fsum((b * b).tolist())))


def test_near_ties_below_float32_noise_are_ranked_exactly(tmp_path, capsys, monkeypatch):
    """Rows that differ from the query in one component by 1..300 ulps: their cosines differ by
    less than a float32 product's rounding, so only exact rescoring orders them (and most round
    to the same float32: those go by id)."""
    rng = np.random.default_rng(5)
    d = 64
    v = rng.standard_normal(d).astype(np.float32)
    wte = rng.standard_normal((3000, d)).astype(np.float32)
    near = rng.permutation(300) + 1  # ulps
    for row, steps in zip(range(1000, 1300), near):
        x = v.copy()
        x[3] = x[3] + np.float32(steps) * np.spacing(x[3])
        wte[row] = x
    wte[7] = v
    path = _save(tmp_path, wte)
    want = sorted(range(len(wte)), key=lambda j: (-np.float32(exact_cosine(wte[7], wte[j])), j))
    want = [j for j in want if j != 7][:40]
    scores = [float(np.float32(exact_cosine(wte[7], wte[j]))) for j in want]
    single = run(["neighbors", "#7", "-m", str(path), "-k", "40", "-f", "jsonl"], capsys)[1]
    batch = run(["neighbors", "-", "-m", str(path), "-k", "40", "-f", "jsonl"], capsys, stdin="#1\n" * 600 + "#7\n",
                monkeypatch=monkeypatch)[1]
    graph = run(["neighbors", "--all", "--rows", "0:600", "-m", str(path), "-k", "40", "-f", "jsonl"], capsys)[1]
    for ids, got in [([r["id"] for r in jsonl(single)], [r["score"] for r in jsonl(single)]),
                     ([r["id"] for r in jsonl(batch) if r["query"] == "#7"],
                      [r["score"] for r in jsonl(batch) if r["query"] == "#7"]),
                     ([r["neighbor_id"] for r in jsonl(graph) if r["id"] == 7],
                      [r["score"] for r in jsonl(graph) if r["id"] == 7])]:
        assert ids == want
        assert got == scores


def test_ties_go_to_the_smaller_id_on_every_path(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(6)
    wte = rng.standard_normal((2000, 16)).astype(np.float32)
    wte[[50, 900, 1500, 1999]] = wte[3]  # four copies of row 3
    wte[[10, 11]] = 0  # zero rows: cosine 0 with everything
    path = _save(tmp_path, wte)
    code, single, _ = run(["neighbors", "#3", "-m", str(path), "-k", "4", "-f", "tsv"], capsys)
    assert [r["id"] for r in tsv(single)] == ["50", "900", "1500", "1999"]
    assert {r["score"] for r in tsv(single)} == {"1"}
    code, graph, _ = run(["neighbors", "--all", "-m", str(path), "-k", "4", "-f", "tsv"], capsys)
    rows = by_query(tsv(graph), "id")
    assert [r["neighbor_id"] for r in rows["1500"]] == ["3", "50", "900", "1999"]
    assert [r["neighbor_id"] for r in rows["10"]] == ["0", "1", "2", "3"]  # all scores 0: smallest ids
    assert {r["score"] for r in rows["10"]} == {"0"}
    code, batch, _ = run(["neighbors", "-", "-m", str(path), "-k", "4", "-f", "tsv"], capsys,
                         stdin="#1500\n" * 520, monkeypatch=monkeypatch)
    assert [r["id"] for r in tsv(batch)][:4] == ["3", "50", "900", "1999"]


def test_a_row_too_short_for_float32_norms_is_still_found(tmp_path, capsys):
    """A row of norm ~1e-30 (its float32 squares underflow to 0) pointing the query's way has
    cosine 1: it must come first although its float32 score is 0."""
    rng = np.random.default_rng(8)
    wte = rng.standard_normal((1000, 32)).astype(np.float32)
    wte[600] = wte[4] * np.float32(1e-30)
    path = _save(tmp_path, wte)
    code, out, err = run(["neighbors", "#4", "-m", str(path), "-k", "2", "-f", "jsonl"], capsys)
    assert code == 0, err
    rows = jsonl(out)
    assert rows[0]["id"] == 600
    assert rows[0]["score"] == float(np.float32(exact_cosine(wte[4], wte[600])))


@pytest.mark.parametrize("metric", METRICS)
def test_small_tiles_keep_every_neighbour_for_any_k(tmp_path, monkeypatch, metric):
    """Each worker keeps a tile's candidates by the tile's own threshold: the k-th largest of its
    coarse block maxima, of its fine ones when it has fewer than k coarse blocks, of its entries
    when fewer than k fine blocks (tiles hold at least k fine blocks, but the last may be short).
    Sub-tiles of 512 rows in tiles of 1024 rows, and k = 3, 12, 100, 1500 take each branch;
    neighbours crowd into few blocks (clusters of 20 rows), a row is too short for float32
    norms, another holds NaN; two chunks run on the workers."""
    import embscope
    import embscope.analysis.similarity as similarity

    monkeypatch.setattr(similarity, "TILE", 1024)
    monkeypatch.setattr(similarity, "SCORE_TILE", 512 * 64 * 4)  # two sub-tiles of 512 rows a tile
    monkeypatch.setattr(similarity, "QUERY_CHUNK", 64)
    rng = np.random.default_rng(11)
    centers = rng.standard_normal((150, 16)).astype(np.float32)
    wte = (np.repeat(centers, 20, axis=0) + 0.05 * rng.standard_normal((3000, 16))).astype(np.float32)
    wte[2500] = wte[40] * np.float32(1e-30)
    wte[2700, 3] = np.nan
    m = embscope.load(str(_save(tmp_path, wte)))
    ids = rng.choice(2500, 100, replace=False)
    ids[0] = 40
    for k in (3, 12, 100, 1500):
        found = m.neighbors_many([f"#{i}" for i in ids], k, metric=metric)
        w = wte.copy()
        w[2700] = 0  # the NaN row ranks nowhere: scored as a far-away row, then left out below
        with np.errstate(invalid="ignore"):  # the zero row's cosine 0/0, left out
            ref_ids, ref_scores = reference(w, wte[ids], metric, k + 1, [[int(i), 2700] for i in ids])
        for n, f in enumerate(found):
            assert f.ids.tolist() == ref_ids[n][:k].tolist(), (k, n)
            assert f.scores.tolist() == ref_scores[n][:k].astype(np.float32).tolist(), (k, n)
    assert found[0].ids[0] == 2500 or metric != "cosine"  # the short row along row 40: cosine 1


def test_a_short_row_whose_float32_norm_is_too_small_does_not_hide_neighbours(tmp_path, capsys, monkeypatch):
    """A row of norm ~2^-72 whose float32 norm is 5.7 times too small (the squares of 63 of its
    components underflow to 0): its float32 cosine with a query along it is 5.7 times the true
    one, above every real neighbour's, so it must not set the thresholds that choose them."""
    a = np.float32(2.0 ** -74.5)
    short = np.full(64, 0.7 * a, dtype=np.float32)
    short[0] = a
    rng = np.random.default_rng(12)
    wte = rng.standard_normal((2000, 64)).astype(np.float32)
    unit = (short / np.linalg.norm(short.astype(np.float64))).astype(np.float32)
    query = unit + 1.2 * wte[5] / np.linalg.norm(wte[5])  # cosine with `short` ~0.64, in float32 ~3.6
    wte[9], wte[1500], wte[1501] = query, query + 0.01 * wte[6], short
    path = _save(tmp_path, wte)
    want = sorted((j for j in range(len(wte)) if j != 9), key=lambda j: (-np.float32(exact_cosine(wte[9], wte[j])), j))
    assert want[0] == 1500 and exact_cosine(wte[9], wte[1501]) < 0.9
    for k in (1, 3):
        single = jsonl(run(["neighbors", "#9", "-m", str(path), "-k", str(k), "-f", "jsonl"], capsys)[1])
        batch = jsonl(run(["neighbors", "-", "-m", str(path), "-k", str(k), "-f", "jsonl"], capsys,
                          stdin="#9\n" * 600, monkeypatch=monkeypatch)[1])
        assert [r["id"] for r in single] == want[:k]
        assert [r["id"] for r in batch[:k]] == want[:k]
        assert [r["score"] for r in single] == [float(np.float32(exact_cosine(wte[9], wte[j]))) for j in want[:k]]


def test_a_bf16_row_range_converts_each_block_once_per_chunk(tmp_path, monkeypatch):
    """Without room for the float32 copy, half-precision rows are converted block by block for
    each chunk of queries; the chunk then holds as many queries as the budget's buffers hold
    (here all 1000 of the range, not 512), so every block is converted once."""
    import embscope
    import embscope.analysis.similarity
    from embscope.io.matrix import Matrix

    monkeypatch.setattr(embscope.analysis.similarity, "worker_count", lambda: 2)  # the plan's arithmetic
    rng = np.random.default_rng(9)
    wte = rng.standard_normal((3000, 4608)).astype(np.float32)
    path = _save(tmp_path, wte, torch.bfloat16)
    m = embscope.load(str(path), memory_budget="30M")  # the float32 copy: 52.7 MiB
    plan = m.index.plan(1000, "cosine")
    assert (plan.chunk, plan.prepared) == (1000, False)
    m.index.norms  # (their own pass, once)
    converted = []
    real_rows = Matrix.rows

    def rows(self, start, stop):
        converted.append((start, stop))
        return real_rows(self, start, stop)

    monkeypatch.setattr(Matrix, "rows", rows)
    blocks = list(m.knn_graph(5, rows=slice(0, 1000)))
    step = m.emb.wte.block_rows() // 128 * 128  # 1792 rows of 4608: 32 MiB of float32
    assert sorted(converted) == [(0, 1000), (0, step), (step, 3000)]  # the queries, then each block once
    w = torch.from_numpy(wte).to(torch.bfloat16).float().numpy()
    ids, scores = reference(w, w[:1000], "cosine", 5, [[i] for i in range(1000)])
    assert np.array_equal(np.concatenate([b.neighbor_ids for b in blocks]), ids)
    assert np.array_equal(np.concatenate([b.scores for b in blocks]), scores.astype(np.float32))


def test_positions_self_distance_is_zero(model, capsys):
    """Issue 11 item 9: `positions --metric euclidean` printed 2.1e-08 on its diagonal; every cell
    is now |a - b| in float64 rounded to float32, near pairs measured directly."""
    from transformers import GPT2LMHeadModel

    d, _ = model
    wpe = GPT2LMHeadModel.from_pretrained(d).transformer.wpe.weight.detach().float().numpy()  # (64, 48)
    code, out, err = run(["positions", "--metric", "euclidean", "-m", str(d), "-f", "jsonl"], capsys)
    assert code == 0, err
    got = np.array([r["values"] for r in jsonl(out)])
    v = wpe.astype(np.float64)
    want = np.linalg.norm(v[:, None, :] - v[None, :, :], axis=2).astype(np.float32)
    assert (np.diag(got) == 0).all()
    np.testing.assert_array_equal(got.astype(np.float32), want)


def test_sim_is_the_number_neighbors_prints(model):
    import embscope

    d, _ = model
    m = embscope.load(str(d))
    for metric in METRICS:
        found = m.neighbors("king", 5, metric=metric)
        for i, s in zip(found.ids.tolist(), found.scores.tolist()):
            assert m.sim("king", f"#{i}", metric=metric).score == s
            assert m.sim(f"#{i}", "king", metric=metric).score == s
    assert m.sim("king", "king", metric="euclidean").score == 0.0
