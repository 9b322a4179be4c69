"""`embscope export` read back by the tools it writes for: gensim's KeyedVectors (word2vec text
and binary), TensorBoard's projector plugin (served through its own WSGI routes) and its
ProjectorConfig protobuf, numpy. Token bytes are checked against tiktoken's."""

from __future__ import annotations

import csv
import io
import unicodedata

import numpy as np
import pytest

from embscope.export.keys import key_bytes, token_key
from embscope.export.writers import unique_keys
from tests import untrusted as u
from tests.builders import save_gpt2
from tests.helpers import run

KING = 5822
GPT2_VOCAB = 50257

# Tokens that test every rule of embscope.export.keys, and the keys they get (spaces=True, as in
# word2vec files; in TSV files a space stays a space).
CRAFTED = {
    "plain": "plain",
    " space": "\\x20space",
    "two words": "two\\x20words",
    "tab\there": "tab\\there",
    "new\nline": "new\\nline",
    "cr\r": "cr\\r",
    "nul\x00": "nul\\x00",
    "esc\x1b[0m": "esc\\x1b[0m",
    "del\x7f": "del\\x7f",
    "c1\x85next": "c1\\u0085next",
    "nbsp\xa0x": "nbsp\\u00a0x",
    "ideographic\u3000space": "ideographic\\u3000space",
    "line\u2028sep": "line\\u2028sep",
    "rtl\u202e": "rtl\\u202e",
    "back\\slash": "back\\\\slash",
    "\\x41": "\\\\x41",
    "\\#7": "\\\\#7",
    "emoji😀": "emoji😀",
    "ünïcödé": "ünïcödé",
}


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    d = tmp_path_factory.mktemp("gpt2-export")
    model = save_gpt2(d, n_embd=32, n_positions=64, seed=6)
    return str(d), model.transformer.wte.weight.detach().numpy(), model.transformer.wpe.weight.detach().numpy()


@pytest.fixture(scope="module")
def crafted(tmp_path_factory):
    """A word-level tokenizer.json over CRAFTED (and a token that is not UTF-8 on its own would
    need a byte-level vocabulary: GPT-2's covers that), beside a model with one row per token."""
    d = tmp_path_factory.mktemp("crafted-export")
    tokens = ["[UNK]", *CRAFTED]
    wte = u.save_word_level_model(d, tokens)
    return str(d), tokens, wte


def export(argv, capsys) -> str:
    code, out, err = run(["export", *argv], capsys)
    assert (code, out) == (0, ""), err
    return err


# --- keys ----------------------------------------------------------------------------------------

def test_key_rules():
    for token, key in CRAFTED.items():
        assert token_key(token.encode(), spaces=True) == key
        assert key_bytes(key) == token.encode()
        # TSV files: whitespace as it is
        assert token_key(token.encode()) == key.replace("\\x20", " ").replace("\\u00a0", "\xa0").replace(
            "\\u3000", "\u3000")
    assert token_key(b"\xe2\x80") == "\\xe2\\x80" and key_bytes("\\xe2\\x80") == b"\xe2\x80"
    assert token_key(b"\xc2\x85") == "\\u0085" != token_key(b"\x85") == "\\x85"  # a C1 character, a raw byte


def test_keys_are_lossless_for_every_gpt2_token_and_random_bytes(tiktoken_gpt2):
    rng = np.random.default_rng(0)
    samples = [tiktoken_gpt2.decode_single_token_bytes(i) for i in range(GPT2_VOCAB)]
    samples += [bytes(rng.integers(0, 256, rng.integers(0, 9)).tolist()) for _ in range(20000)]
    for spaces in (False, True):
        keys = [token_key(b, spaces=spaces) for b in samples[:GPT2_VOCAB]]
        assert len(set(keys)) == GPT2_VOCAB
        for b in samples:
            k = token_key(b, spaces=spaces)
            assert key_bytes(k) == b
            assert not any(unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp") for ch in k)
            if spaces:
                assert k.isprintable() and not any(ch.isspace() for ch in k)


def test_unique_keys():
    keys, renamed = unique_keys(["a", "b", "a", "a"], np.array([3, 4, 9, 12]))
    assert keys == ["a", "b", "a\\#9", "a\\#12"] and renamed == 2
    assert [key_bytes(k) for k in keys] == [b"a", b"b", b"a", b"a"]


# --- word2vec ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["vectors.txt", "vectors.bin"])
def test_word2vec_round_trip_through_gensim(gpt2, capsys, tmp_path, tiktoken_gpt2, name):
    from gensim.models import KeyedVectors

    d, wte, _ = gpt2
    path = tmp_path / name
    err = export(["--to", "word2vec", str(path), "-m", d], capsys)
    assert err == f"wrote 1 file: {path} ({GPT2_VOCAB} rows of 32)\n"
    kv = KeyedVectors.load_word2vec_format(str(path), binary=name.endswith(".bin"))
    assert len(kv.index_to_key) == GPT2_VOCAB
    assert [key_bytes(k) for k in kv.index_to_key] == [tiktoken_gpt2.decode_single_token_bytes(i)
                                                       for i in range(GPT2_VOCAB)]
    assert kv.vectors.dtype == np.float32 and np.array_equal(kv.vectors, wte)
    assert kv.index_to_key[KING] == "\\x20king"


@pytest.mark.parametrize("name", ["crafted.txt", "crafted.bin"])
def test_word2vec_crafted_tokens(crafted, capsys, tmp_path, name):
    from gensim.models import KeyedVectors

    d, tokens, wte = crafted
    path = tmp_path / name
    export(["--to", "word2vec", str(path), "-m", d], capsys)
    kv = KeyedVectors.load_word2vec_format(str(path), binary=name.endswith(".bin"))
    assert kv.index_to_key == ["[UNK]", *CRAFTED.values()]
    assert [key_bytes(k).decode() for k in kv.index_to_key] == tokens
    assert np.array_equal(kv.vectors, wte)


def test_word2vec_subset_and_nan_rows(tmp_path, capsys):
    from gensim.models import KeyedVectors

    t = u.save_gpt2_safetensors(tmp_path / "m", nan_rows=(5,), inf_rows=(7,))
    path = tmp_path / "v.txt"
    err = export(["--to", "word2vec", str(path), "--ids", "0:10", "-m", str(tmp_path / "m")], capsys)
    assert err.splitlines()[0] == "warning: 2 token rows hold NaN or Inf and are written as they are: #5, #7"
    kv = KeyedVectors.load_word2vec_format(str(path))
    np.testing.assert_array_equal(kv.vectors, t["transformer.wte.weight"][:10])  # NaN == NaN here


# --- TensorBoard's projector ----------------------------------------------------------------------

def projector_routes(logdir):
    """GET through the projector plugin's own WSGI apps, as TensorBoard serves them."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing import plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.projector.projector_plugin import ProjectorPlugin
    from werkzeug.test import Client

    events = plugin_event_multiplexer.EventMultiplexer()
    events.AddRunsFromDirectory(str(logdir))
    events.Reload()
    apps = ProjectorPlugin(base_plugin.TBContext(logdir=str(logdir), multiplexer=events)).get_plugin_apps()

    def get(route: str, query: str = "") -> bytes:
        response = Client(apps[route]).get(route + query)
        assert response.status_code == 200, response.get_data()
        return response.get_data()

    return get


def test_projector_loads_in_tensorboard(gpt2, capsys, tmp_path, tiktoken_gpt2):
    import json

    d, wte, _ = gpt2
    logdir = tmp_path / "projector"
    err = export(["--to", "projector", str(logdir), "--near", "king", "-k", "30", "-m", d], capsys)
    files = ", ".join(str(logdir / f) for f in ("tensors.tsv", "metadata.tsv", "projector_config.pbtxt"))
    assert err == f"wrote 3 files: {files} (31 rows of 32)\n"
    _, out, _ = run(["neighbors", "king", "-k", "30", "-m", d, "-f", "tsv"], capsys)
    ids = [KING] + [int(line.split("\t")[1]) for line in out.splitlines()[1:]]

    get = projector_routes(logdir)
    assert json.loads(get("/runs")) == ["."]
    info = json.loads(get("/info", "?run=."))["embeddings"]
    assert info == [{"tensorName": "transformer.wte.weight", "tensorShape": [31, 32], "tensorPath": "tensors.tsv",
                     "metadataPath": "metadata.tsv"}]
    tensor = np.frombuffer(get("/tensor", "?run=.&name=transformer.wte.weight"), dtype=np.float32).reshape(31, 32)
    assert np.array_equal(tensor, wte[ids])
    metadata = get("/metadata", "?run=.&name=transformer.wte.weight").decode("utf-8")
    rows = list(csv.reader(io.StringIO(metadata), delimiter="\t", quoting=csv.QUOTE_NONE))
    assert rows[0] == ["token", "id", "norm"]
    assert [int(r[1]) for r in rows[1:]] == ids
    assert [key_bytes(r[0]) for r in rows[1:]] == [tiktoken_gpt2.decode_single_token_bytes(i) for i in ids]
    np.testing.assert_allclose([float(r[2]) for r in rows[1:]], np.linalg.norm(wte[ids].astype(np.float64), axis=1),
                               rtol=1e-8)  # 9 significant digits


def test_projector_config_is_a_projector_config(gpt2, capsys, tmp_path):
    pytest.importorskip("tensorboard")
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    d, _, wpe = gpt2
    logdir = tmp_path / "positions"
    export(["--to", "projector", str(logdir), "--positions", "-m", d], capsys)
    config = text_format.Parse((logdir / "projector_config.pbtxt").read_text(), ProjectorConfig())
    (e,) = config.embeddings
    assert (e.tensor_name, list(e.tensor_shape), e.tensor_path, e.metadata_path) == (
        "transformer.wpe.weight", [64, 32], "tensors.tsv", "metadata.tsv")
    assert np.array_equal(np.loadtxt(logdir / "tensors.tsv", delimiter="\t", dtype=np.float32), wpe)
    lines = (logdir / "metadata.tsv").read_text().splitlines()
    assert lines[0] == "position\tnorm" and [int(r.split("\t")[0]) for r in lines[1:]] == list(range(64))


def test_pb_string_escapes():
    pytest.importorskip("tensorboard")
    from google.protobuf import text_format
    from tensorboard.plugins.projector.projector_config_pb2 import ProjectorConfig

    from embscope.export.writers import projector_config

    name = 'we"ird\\name\nwith ünïcode\x00'
    config = text_format.Parse(projector_config(name, (3, 4), "t.tsv", "m.tsv"), ProjectorConfig())
    assert config.embeddings[0].tensor_name == name


# --- npy -----------------------------------------------------------------------------------------

def test_npy(gpt2, capsys, tmp_path, tiktoken_gpt2):
    d, wte, _ = gpt2
    out = tmp_path / "npy"
    err = export(["--to", "npy", str(out), "--sample", "500", "--seed", "9", "-m", d], capsys)
    assert err == f"wrote 2 files: {out / 'embeddings.npy'}, {out / 'vocab.tsv'} (500 rows of 32)\n"
    ids = np.sort(np.random.default_rng(9).choice(GPT2_VOCAB, 500, replace=False))
    matrix = np.load(out / "embeddings.npy")
    assert matrix.dtype == np.float32 and np.array_equal(matrix, wte[ids])
    rows = list(csv.reader(io.StringIO((out / "vocab.tsv").read_text(encoding="utf-8")), delimiter="\t",
                           quoting=csv.QUOTE_NONE))
    assert rows[0] == ["id", "token"]
    assert [int(r[0]) for r in rows[1:]] == ids.tolist()
    assert [key_bytes(r[1]) for r in rows[1:]] == [tiktoken_gpt2.decode_single_token_bytes(i) for i in ids]


def test_npy_every_token_and_positions(gpt2, capsys, tmp_path):
    d, wte, wpe = gpt2
    export(["--to", "npy", str(tmp_path / "all"), "-m", d], capsys)
    assert np.array_equal(np.load(tmp_path / "all" / "embeddings.npy"), wte)
    assert len((tmp_path / "all" / "vocab.tsv").read_text(encoding="utf-8").splitlines()) == GPT2_VOCAB + 1
    export(["--to", "npy", str(tmp_path / "pos"), "--positions", "-m", d], capsys)
    assert np.array_equal(np.load(tmp_path / "pos" / "embeddings.npy"), wpe)
    assert (tmp_path / "pos" / "vocab.tsv").read_text() == "position\n" + "".join(f"{i}\n" for i in range(64))


# --- refusals ------------------------------------------------------------------------------------

def test_refusals(gpt2, capsys, tmp_path):
    d, _, _ = gpt2
    (tmp_path / "file").write_text("x")
    cases = [
        (["--to", "projector", str(tmp_path / "file")], 1, f"Cannot write {tmp_path / 'file'}: it is a file, not a folder"),
        (["--to", "word2vec", str(tmp_path / "no" / "v.txt")], 1,
         f"Cannot write {tmp_path / 'no' / 'v.txt'}: directory {tmp_path / 'no'} does not exist"),
        (["--to", "npy", str(tmp_path / "no" / "out")], 1,
         f"Cannot write {tmp_path / 'no' / 'out'}: directory {tmp_path / 'no'} does not exist"),
        (["--to", "word2vec", str(tmp_path)], 1, f"Cannot write {tmp_path}: it is a directory"),
        (["--to", "parquet", str(tmp_path / "x")], 2, "unknown export format 'parquet' (choose from projector, word2vec, npy)"),
        (["--to", "npy", str(tmp_path / "x"), "--near", "king", "--sample", "3"], 2,
         "--near and --sample cannot be used together"),
    ]
    for argv, status, message in cases:
        code, out, err = run(["export", *argv, "-m", d], capsys)
        assert (code, out, err) == (status, "", f"embscope: error: {message}\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_api(gpt2, tmp_path):
    import embscope

    d, wte, _ = gpt2
    m = embscope.load(d)
    done = m.export("npy", str(tmp_path / "api"), m.select(["king", "queen"]))
    assert (done.to, done.rows, done.dim, done.renamed) == ("npy", 2, 32, 0)
    assert done.files == (str(tmp_path / "api" / "embeddings.npy"), str(tmp_path / "api" / "vocab.tsv"))
    assert np.array_equal(np.load(done.files[0]), wte[[KING, 16599]])
    assert m.keys(m.select(["king"]), spaces=True) == ["\\x20king"]
