"""Issue 17, "Hardening": the hostile inputs a sweep found that hung embscope, blew up its memory
or ended in a traceback. Each case is built here (by torch.save, safetensors, pickle, or from
opcodes where the attack needs it) and must end with one `embscope: error:` line and nothing on
stdout, or with a complete, correct answer, well within the time a hang guard allows.

Cases that hung are run under `hang_guard` (SIGALRM): a regression fails the test instead of
stalling the suite. Cases that allocated gigabytes, or whose proof is what reaches file
descriptor 2, run the real entry point in a subprocess with an address-space cap.
"""

from __future__ import annotations

import collections
import json
import os
import pickle
import resource
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from embscope.model import load
from tests import untrusted as u
from tests.helpers import run, time_limit, tsv

E = "embscope: error: "
GUARD = 20  # seconds: far above what any case takes once fixed (each is well under 1 s)


def hang_guard():
    """Raise TimeoutError in the test if the body takes longer than GUARD seconds."""
    return time_limit(GUARD)


def guarded(argv, capsys, **kw):
    with hang_guard():
        return run(argv, capsys, **kw)


def run_capped(argv, memory: int = 3 << 30, timeout: int = 60, env: dict | None = None):
    """The real `embscope` in a subprocess, its address space capped at `memory` bytes."""
    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    env = {**os.environ, "EMBSCOPE_MODEL": "", "OPENBLAS_NUM_THREADS": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "embscope", *argv], capture_output=True, text=True,
                          timeout=timeout, env=env, preexec_fn=cap)


def one_error(result, message: str) -> None:
    """A subprocess result that is exactly the error line `message`, exit 1, nothing on stdout."""
    assert (result.returncode, result.stdout, result.stderr) == (1, "", E + message + "\n")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A real nanoGPT-shaped torch.save checkpoint: storages data/0 (wte, 65 x 8) and data/1
    (wpe, 32 x 8), as the hand-made data.pkl files below reference them."""
    path = tmp_path_factory.mktemp("ckpt") / "ckpt.pt"
    u.save_nanogpt_ckpt(path)
    return path


def with_pickle(ckpt: Path, tmp_path: Path, data: bytes) -> Path:
    return u.replace_entry(ckpt, tmp_path / "ckpt.pt", "/data.pkl", data)


WTE = ("0", 65 * 8, (65, 8), (8, 1))
WPE = ("1", 32 * 8, (32, 8), (8, 1))


def save_safetensors(path: Path, tensors: dict, metadata=None, config=None) -> Path:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    if config is not None:
        u.write_json(path.parent / "config.json", config)
    return path


def small_tensors(vocab: int = 100, n_pos: int = 64, dim: int = 16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"transformer.wte.weight": rng.standard_normal((vocab, dim)).astype(np.float32),  # (V, d)
            "transformer.wpe.weight": rng.standard_normal((n_pos, dim)).astype(np.float32)}  # (P, d)


# --- 2. dict keys that all share one hash ----------------------------------------------------------

def test_02_colliding_int_keys_in_meta_pkl(tmp_path, capsys, ckpt):
    """100k int keys 1 + i*(2**61 - 1): one hash for all, so each insert compares with every key
    before it. Ints are keys only within 64 bits, where at most 8 share a hash."""
    meta = tmp_path / "meta.pkl"
    meta.write_bytes(u.colliding_dict(100_000))
    assert meta.stat().st_size < 2_000_000
    code, out, err = guarded(["info", "-m", str(ckpt), "--meta", str(meta)], capsys)
    assert (code, out, err) == (1, "", f"{E}{meta}: not a readable pickle (a dict key or set member that is an"
                                       " int beyond 64 bits)\n")


def test_02_colliding_int_keys_in_data_pkl(tmp_path, capsys, ckpt):
    path = with_pickle(ckpt, tmp_path, u.colliding_dict(100_000))
    code, out, err = guarded(["info", "-m", str(path)], capsys)
    assert (code, out, err) == (1, "", f"{E}{path}: not a readable pickle (a dict key or set member that is an"
                                       " int beyond 64 bits)\n")


def test_02_colliding_memo_indices(tmp_path, capsys, ckpt):
    """The same trick through protocol 0's text PUT: the memo is a dict keyed by those numbers."""
    p = u.Pickle(protocol=0).op(pickle.EMPTY_DICT)
    for i in range(100_000):
        p.op(pickle.PUT, f"{1 + i * (2**61 - 1)}\n".encode())
    path = with_pickle(ckpt, tmp_path, p.bytes())
    code, out, err = guarded(["info", "-m", str(path)], capsys)
    assert (code, out, err) == (1, "", f"{E}{path}: not a readable pickle (a memo index that is not a small"
                                       " number)\n")


def test_02_keys_within_64_bits_still_load(tmp_path):
    """The control: the largest and smallest 64-bit int keys are accepted (and the nine keys
    in that range that share hash 1 cost nothing)."""
    from embscope.io.restricted_pickle import PlainDataUnpickler, safe_loads

    keys = [1 + i * (2**61 - 1) for i in range(-4, 5)] + [2**63 - 1, -(2**63)]
    data = u.colliding_dict(len(keys), key=lambda i: keys[i])
    assert safe_loads(data, PlainDataUnpickler, "x") == pickle.loads(data) == dict.fromkeys(keys, "a")


# --- 3. work per opcode and per pickle ---------------------------------------------------------------

def size_calls(n: int, arg, pop: bool) -> bytes:
    """data.pkl calling torch.Size(arg) n times, arg a memoized object (1 MB of bytes...)."""
    p = u.Pickle(protocol=2)
    arg(p)
    p.op(pickle.BINPUT, b"\x00").op(pickle.POP).global_("torch", "Size").op(pickle.BINPUT, b"\x01").op(pickle.POP)
    if not pop:
        p.op(pickle.MARK)
    for _ in range(n):
        p.get(1).get(0).op(pickle.TUPLE1).op(pickle.REDUCE)
        if pop:
            p.op(pickle.POP)
    if not pop:
        p.op(pickle.LIST)
    return p.op(pickle.EMPTY_DICT).bytes()


@pytest.mark.parametrize("pop", [False, True])
def test_03_torch_size_of_a_megabyte(tmp_path, ckpt, pop):
    """torch.Size(1 MB bytes) 600 times kept on the stack: 4.8 GB; with POP 100k times: minutes.
    The stand-in takes only a tuple of at most 64 sizes (run with a 3 GB address-space cap)."""
    megabyte = lambda p: p.op(pickle.BINBYTES, (1 << 20).to_bytes(4, "little") + b"\x07" * (1 << 20))  # noqa: E731
    path = with_pickle(ckpt, tmp_path, size_calls(100_000 if pop else 600, megabyte, pop))
    assert path.stat().st_size < 2_000_000
    one_error(run_capped(["info", "-m", str(path)]),
              f"{path}: not a readable pickle (torch.Size of something other than at most 64 sizes)")


def test_03_calls_per_pickle_are_bounded(tmp_path, capsys, ckpt, monkeypatch):
    """However cheap each call, a pickle makes at most MAX_CALLS of them (set low here, so that
    the test is fast: the bound itself is 2**20)."""
    from embscope.io import restricted_pickle

    monkeypatch.setattr(restricted_pickle, "MAX_CALLS", 1000)
    sizes = lambda p: p.ints(range(64))  # noqa: E731 - the largest torch.Size accepted
    path = with_pickle(ckpt, tmp_path, size_calls(1001, sizes, pop=True))
    code, out, err = guarded(["info", "-m", str(path)], capsys)
    assert (code, out, err) == (1, "", f"{E}{path}: not a readable pickle (more than 1000 calls in one pickle)\n")
    (tmp_path / "ok").mkdir()
    ok = with_pickle(ckpt, tmp_path / "ok", size_calls(1000, sizes, pop=True))
    code, out, err = guarded(["info", "-m", str(ok)], capsys)  # 1000 calls: allowed (and then no model)
    assert (code, out) == (1, "")
    assert err == f"{E}{ok}: a torch checkpoint, but neither a state dict nor a checkpoint of nanoGPT, modded-nanogpt or PyTorch Lightning (no 'model' or 'state_dict' entry)\n"


def test_03_pickle_size_is_bounded(tmp_path, capsys, monkeypatch):
    from embscope.io import restricted_pickle

    monkeypatch.setattr(restricted_pickle, "MAX_PICKLE_BYTES", 1000)
    meta = tmp_path / "meta.pkl"
    meta.write_bytes(pickle.dumps({"stoi": {}, "itos": {}, "pad": "x" * 1000}))
    from embscope.errors import EmbscopeError
    from embscope.tokenizer import from_meta_pkl

    with pytest.raises(EmbscopeError) as e:
        from_meta_pkl(str(meta))
    assert str(e.value) == f"{meta}: a pickle of {meta.stat().st_size} bytes; embscope reads pickles of at most 0 MiB"


# --- 4. and 9. strides that do not walk the storage once ---------------------------------------------

def save_expanded_wte(path, rows: int, cols: int) -> None:
    """A checkpoint whose wte is torch.zeros(1).expand(rows, cols): one stored float, strides (0, 0)."""
    state = u.small_state()
    state["transformer.wte.weight"] = torch.zeros(1).expand(rows, cols)
    u.save_nanogpt_ckpt(path, state)


def test_04_expanded_tensor(tmp_path, capsys):
    """torch.zeros(1).expand(10**7, 10**4) saved as wte: one stored float that `info` reported
    as 400 GB read and `norms` ground through for minutes."""
    path = tmp_path / "ckpt.pt"
    save_expanded_wte(path, 10**7, 10**4)
    message = (f"{E}{path}: tensor 'transformer.wte.weight' of shape (10000000, 10000) and strides (0, 0) has more"
               " elements (100000000000) than its storage (1)\n")
    for command in (["info"], ["norms", "-f", "tsv"], ["neighbors", "#1"]):
        assert guarded([*command, "-m", str(path)], capsys) == (1, "", message)


@pytest.mark.parametrize("case", ["expand 2**31", "size 10**30", "stride 2**64", "offset 2**63", "size 2**62",
                                  "stride past the storage"])
def test_09_size_and_stride_overflow(tmp_path, capsys, ckpt, case):
    """Sizes, strides and offsets that overflowed numpy's as_strided (ValueError, OverflowError)."""
    if case == "expand 2**31":
        path = tmp_path / "ckpt.pt"
        save_expanded_wte(path, 2**31, 2**31)
        message = (f"{path}: tensor 'transformer.wte.weight' of shape (2147483648, 2147483648) and strides (0, 0)"
                   " has more elements (4611686018427387904) than its storage (1)")
    else:
        wte = {"size 10**30": ("0", 520, (10**30, 8), (8, 1)),
               "stride 2**64": ("0", 520, (65, 8), (2**64, 1)),
               "offset 2**63": ("0", 520, (65, 8), (8, 1), 2**63),
               "size 2**62": ("0", 520, (2**62, 8), (8, 1)),
               "stride past the storage": ("0", 520, (65, 8), (2**62, 1))}[case]
        path = with_pickle(ckpt, tmp_path, u.state_pickle({"transformer.wte.weight": wte, "transformer.wpe.weight": WPE}))
        message = {"size 2**62": f"{path}: tensor 'transformer.wte.weight' of shape (4611686018427387904, 8) and"
                                 " strides (8, 1) has more elements (36893488147419103232) than its storage (520)",
                   "stride past the storage": f"{path}: tensor 'transformer.wte.weight' reaches outside its storage",
                   }.get(case, f"{path}: not a readable pickle (tensor with a bad size, stride or offset)")
    assert guarded(["info", "-m", str(path)], capsys) == (1, "", E + message + "\n")


def test_09_views_within_the_storage_still_read(tmp_path):
    """The control: views torch.save really writes (transposed, a strided slice of rows) read
    exactly as torch reads them."""
    wte = torch.randn(8, 65).t()  # (65, 8), strides (1, 65)
    wpe = torch.randn(90, 8)[10:70:2]  # (30, 8), offset 80, row stride 16
    path = tmp_path / "ckpt.pt"
    u.save_nanogpt_ckpt(path, {"transformer.wte.weight": wte, "transformer.wpe.weight": wpe})
    emb = load(str(path))
    np.testing.assert_array_equal(emb.wte.to_float32(), wte.numpy())
    np.testing.assert_array_equal(emb.wpe.to_float32(), wpe.numpy())


def test_09_size_one_dimensions_keep_any_stride(tmp_path, capsys, ckpt):
    """torch leaves the stride of a size-1 dimension arbitrary (a (1, d) slice): read as torch reads it."""
    path = with_pickle(ckpt, tmp_path, u.state_pickle({"transformer.wte.weight": ("0", 520, (1, 8), (12345, 1), 8),
                                                       "transformer.wpe.weight": WPE}))
    emb = load(str(path))
    reference = torch.load(ckpt, weights_only=True)["model"]["transformer.wte.weight"]
    np.testing.assert_array_equal(emb.wte.to_float32(), reference[1:2].numpy())


def test_09_contiguous_offset_view_reads_the_right_rows(tmp_path, ckpt):
    """The control: a contiguous view at an offset (wte rows 5..64 of the stored 65) reads exactly
    the rows torch would."""
    path = with_pickle(ckpt, tmp_path, u.state_pickle({"transformer.wte.weight": ("0", 520, (60, 8), (8, 1), 40),
                                                       "transformer.wpe.weight": WPE}))
    reference = torch.load(ckpt, weights_only=True)["model"]
    emb = load(str(path))
    np.testing.assert_array_equal(emb.wte.to_float32(), reference["transformer.wte.weight"][5:].numpy())
    np.testing.assert_array_equal(emb.wpe.to_float32(), reference["transformer.wpe.weight"].numpy())
    assert emb.read_bytes < 10_000  # what is really read: the two matrices and data.pkl


# --- 5. a tensor name of 300,000 `_orig_mod.` prefixes ----------------------------------------------------

def test_05_compile_prefix_repeated(tmp_path, capsys):
    """A 3 MB tensor name: found (its prefixes stripped in one pass) and shown shortened."""
    name = "_orig_mod." * 300_000 + "transformer.wte.weight"
    tensors = small_tensors()
    path = save_safetensors(tmp_path / "model.safetensors", {name: tensors["transformer.wte.weight"],
                                                             "transformer.wpe.weight": tensors["transformer.wpe.weight"]})
    code, out, err = guarded(["info", "-m", str(path), "-f", "tsv"], capsys)
    assert (code, err) == (0, "")
    fields = {r["field"]: r["value"] for r in tsv(out)}
    assert fields["token_tensor"] == name[:1000] + f"… ({len(name)} characters)"
    assert fields["position_tensor"] == "transformer.wpe.weight"
    code, out, err = guarded(["norms", "-m", str(path), "-f", "tsv"], capsys)
    token = tsv(out)[0]
    reference = np.linalg.norm(tensors["transformer.wte.weight"].astype(np.float64), axis=1)
    assert (code, err, token["rows"], int(token["count"])) == (0, "", "token", 100)
    assert float(token["max"]) == pytest.approx(reference.max(), rel=1e-5)


# --- 6. small files that are not regular files -----------------------------------------------------------

@pytest.fixture
def vocab_txt_model(tmp_path) -> Path:
    """A BERT-style folder: WordPiece vocab.txt beside model.safetensors (tokenizer_config.json,
    when there is one, says whether the vocabulary lowercases)."""
    d = tmp_path / "bert"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "king"]
    rng = np.random.default_rng(0)
    save_safetensors(d / "model.safetensors",
                     {"embeddings.word_embeddings.weight": rng.standard_normal((len(vocab), 8)).astype(np.float32),
                      "embeddings.position_embeddings.weight": rng.standard_normal((16, 8)).astype(np.float32)},
                     config={"model_type": "bert"})
    (d / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return d


def test_06_tokenizer_config_is_a_fifo(vocab_txt_model, capsys):
    path = vocab_txt_model / "tokenizer_config.json"
    os.mkfifo(path)
    code, out, err = guarded(["info", "-m", str(vocab_txt_model)], capsys)
    assert (code, out, err) == (1, "", f"{E}{path}: not a regular file (a FIFO)\n")


def test_06_tokenizer_config_is_dev_zero(vocab_txt_model):
    """A symlink to /dev/zero read until memory ran out (here: a 3 GB cap)."""
    path = vocab_txt_model / "tokenizer_config.json"
    path.symlink_to("/dev/zero")
    one_error(run_capped(["info", "-m", str(vocab_txt_model)]), f"{path}: not a regular file (a character device)")


# vocab.txt (read by `tokenizers`) and model.safetensors (memory-mapped) have no size cap: the
# work they cost is bounded by what is in them.
SMALL_FILE_CASES = [(name, kind) for name in ("config.json", "vocab.txt", "model.safetensors", "tokenizer_config.json")
                    for kind in ("fifo", "dev-null", "too big")
                    if kind != "too big" or name in ("config.json", "tokenizer_config.json")]


@pytest.mark.parametrize("name,kind", SMALL_FILE_CASES)
def test_06_every_small_file_is_checked(vocab_txt_model, capsys, name, kind):
    path = vocab_txt_model / name
    path.unlink(missing_ok=True)
    if kind == "fifo":
        os.mkfifo(path)
        message = f"{path}: not a regular file (a FIFO)"
    elif kind == "dev-null":
        path.symlink_to("/dev/null")
        message = f"{path}: not a regular file (a character device)"
    else:
        with open(path, "wb") as f:  # sparse: 64 MiB and a byte, that take no disk
            f.truncate((64 << 20) + 1)
        message = f"{path}: {(64 << 20) + 1} bytes is more than embscope reads from such a file (64 MiB)"
    assert guarded(["info", "-m", str(vocab_txt_model)], capsys) == (1, "", E + message + "\n")


@pytest.mark.parametrize("option,name", [("--meta", "meta.pkl"), ("--tokenizer", "tokenizer.json"),
                                         ("--tokenizer", "meta.pkl"), ("-m", "ckpt.pt")])
def test_06_named_files_that_are_fifos(tmp_path, ckpt, option, name):
    """In a subprocess: a FIFO handed to the Rust tokenizer blocks in Rust, where no signal
    reaches it."""
    path = tmp_path / name
    os.mkfifo(path)
    argv = ["info", option, str(path)] + (["-m", str(ckpt)] if option != "-m" else [])
    one_error(run_capped(argv), f"{path}: not a regular file (a FIFO)")


def test_06_sentencepiece_folder_with_a_fifo(tmp_path, capsys):
    """transformers opens whatever it finds in a SentencePiece folder: a FIFO there is refused first."""
    d = tmp_path / "sp"
    save_safetensors(d / "model.safetensors", small_tensors(), config={"n_positions": 64})
    (d / "tokenizer.model").write_bytes(b"not a sentencepiece model")
    os.mkfifo(d / "special_tokens_map.json")
    code, out, err = guarded(["info", "-m", str(d)], capsys)
    assert (code, out, err) == (1, "", f"{E}{d}/special_tokens_map.json: not a regular file (a FIFO)\n")


# --- 7. a position matrix too big to compare with itself -------------------------------------------------

@pytest.fixture(scope="module")
def long_positions(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """320 KB of safetensors: 20,000 positions, 4 wide."""
    rng = np.random.default_rng(1)
    wpe = rng.standard_normal((20_000, 4)).astype(np.float32)  # (P, d)
    path = save_safetensors(tmp_path_factory.mktemp("long") / "model.safetensors",
                            {"transformer.wte.weight": rng.standard_normal((50, 4)).astype(np.float32),
                             "transformer.wpe.weight": wpe})
    assert path.stat().st_size < 330_000
    return path, wpe


NOTE_7 = ("positions 0..19999 are more than one matrix holds (2048): showing one in 10 (--step 10);"
          " choose with --range and --step\n")


def cosine(v: np.ndarray) -> np.ndarray:
    v = v.astype(np.float64)
    u_ = v / np.linalg.norm(v, axis=1, keepdims=True)
    return u_ @ u_.T


def test_07_positions_default_step_fits(long_positions, tmp_path):
    """The 20000² float64 matrix (3.2 GB) was built and the process killed; now the step
    defaults to what fits, and stderr says so (run with a 3 GB address-space cap)."""
    path, wpe = long_positions
    out = tmp_path / "m.npy"
    r = run_capped(["positions", "-m", str(path), "-o", str(out)])
    assert (r.returncode, r.stdout) == (0, "")
    assert r.stderr == NOTE_7 + f"wrote {out}: array of shape (2000, 2000), float32\n"
    np.testing.assert_allclose(np.load(out), cosine(wpe[::10]), atol=1e-6)


def test_07_positions_tsv_and_by_offset(long_positions, capsys):
    path, wpe = long_positions
    code, out, err = guarded(["positions", "-m", str(path), "--by-offset", "-f", "tsv"], capsys)
    assert (code, err) == (0, NOTE_7)
    rows = tsv(out)
    matrix = cosine(wpe[::10])
    expected = [np.diagonal(matrix, offset=o).mean() for o in range(2000)]
    assert [int(r["offset"]) for r in rows] == list(range(0, 20_000, 10))
    np.testing.assert_allclose([float(r["mean"]) for r in rows], expected, rtol=1e-5, atol=1e-6)
    code, out, err = guarded(["positions", "-m", str(path), "--range", "100:2148", "--by-offset", "-f", "tsv"],
                             capsys)
    assert (code, err) == (0, "")  # 2048 positions fit: no note, every one of them
    assert [int(r["offset"]) for r in tsv(out)] == list(range(2048))


def test_07_explicit_step_that_does_not_fit(long_positions, capsys):
    path, _ = long_positions
    code, out, err = guarded(["positions", "-m", str(path), "--step", "2"], capsys)
    assert (code, out, err) == (2, "", f"{E}--step 2: positions 0..19999 give 10000 rows, more than one matrix holds"
                                       " (2048); use --step 10 or a narrower --range\n")


# --- 8. a 60 MB metadata value ---------------------------------------------------------------------------

def test_08_huge_metadata_value(tmp_path, capsys):
    """`info` escaped 60 MB one character at a time (33 s). Now it escapes in bulk and shows the
    first 1000 characters and the length."""
    value = ("plain text \x1b[31m " * 4_000_000)[:60_000_000]
    path = save_safetensors(tmp_path / "model.safetensors", small_tensors(), metadata={"note": value, "format": "pt"})
    code, out, err = guarded(["info", "-m", str(path), "-f", "tsv"], capsys)
    assert (code, err) == (0, "")
    fields = {r["field"]: r["value"] for r in tsv(out)}
    from embscope.display import sanitize

    assert fields["meta.note"] == sanitize(value[:1000]) + "… (60000000 characters)"
    assert "\x1b" not in out and fields["meta.format"] == "pt"


# --- 10. a dimension of 2**70 beside a 0 ------------------------------------------------------------------

def test_10_empty_tensor_with_a_huge_dimension_safetensors(tmp_path, capsys):
    tensors = small_tensors()
    path = save_safetensors(tmp_path / "model.safetensors", tensors)
    hdr, data = u.header(path)
    hdr["z"] = {"dtype": "F32", "shape": [2**70, 0], "data_offsets": [len(data), len(data)]}
    path.write_bytes(u.with_header(hdr, data))
    code, out, err = guarded(["info", "-m", str(path), "--wte-key", "z"], capsys)
    # beyond u64: refused with the header, as the safetensors package refuses it
    assert (code, out, err) == (1, "", f"{E}{path}: not a valid safetensors file: bad shape for tensor 'z'\n")
    hdr["z"]["shape"] = [2**63, 0]  # a u64 the reference accepts, but past numpy's largest dimension
    path.write_bytes(u.with_header(hdr, data))
    code, out, err = guarded(["info", "-m", str(path), "--wte-key", "z"], capsys)
    assert (code, out, err) == (1, "", f"{E}{path}: tensor 'z' of shape (9223372036854775808, 0) is empty\n")


@pytest.mark.parametrize("shape,message", [
    ((2**70, 0), "not a readable pickle (tensor with a bad size, stride or offset)"),
    ((2**62, 0), "tensor 'transformer.wte.weight' of shape (4611686018427387904, 0) is empty"),
])
def test_10_empty_tensor_with_a_huge_dimension_torch(tmp_path, capsys, ckpt, shape, message):
    path = with_pickle(ckpt, tmp_path, u.state_pickle({"transformer.wte.weight": ("0", 520, shape, (0, 1)),
                                                       "transformer.wpe.weight": WPE}))
    assert guarded(["info", "-m", str(path)], capsys) == (1, "", f"{E}{path}: {message}\n")


# --- 11. ints Python will not print --------------------------------------------------------------------

@pytest.mark.parametrize("where", ["iter_num", "model_args.n_layer", "config.seed"])
def test_11_ints_of_5000_digits(tmp_path, capsys, where):
    """iter_num = 10**5000 made `info` fail in str() after TSV rows were printed."""
    path = tmp_path / "ckpt.pt"
    huge = 10**5000
    if where == "iter_num":
        u.save_nanogpt_ckpt(path, iter_num=huge)
    elif where == "model_args.n_layer":
        u.save_nanogpt_ckpt(path, model_args={"n_layer": huge, "n_embd": 8})
    else:
        u.save_nanogpt_ckpt(path, config={"dataset": "shakespeare_char", "seed": huge})
    for command in (["info", "-f", "tsv"], ["neighbors", "#1", "-f", "tsv"]):
        code, out, err = guarded([*command, "-m", str(path)], capsys)
        assert (code, out, err) == (1, "", f"{E}{path}: '{where}' is an integer of {huge.bit_length()} bits,"
                                           " not a number embscope can use\n")


def test_11_64_bit_ints_are_shown(tmp_path, capsys):
    path = tmp_path / "ckpt.pt"
    u.save_nanogpt_ckpt(path, iter_num=2**63 - 1)
    code, out, err = guarded(["info", "-m", str(path), "-f", "tsv"], capsys)
    assert (code, err) == (0, "")
    assert {r["field"]: r["value"] for r in tsv(out)}["iter_num"] == str(2**63 - 1)


# --- 12. BUILD state that shadows dict methods -------------------------------------------------------------

def test_12_state_dict_attributes_shadow_dict_methods(tmp_path, capsys):
    """torch.save of an OrderedDict whose instance attributes `values`, `get` and `keys` shadow
    its methods (BUILD restores them under pickle). embscope builds plain dicts from the items."""
    state = collections.OrderedDict(u.small_state())
    state.values, state.get, state.keys = "shadow", "shadow", "shadow"
    path = tmp_path / "ckpt.pt"
    u.save_nanogpt_ckpt(path, state)
    control = torch.load(path, weights_only=False)["model"]
    assert control.values == control.get == "shadow"  # what a real unpickler makes of the file
    emb = load(str(path))
    np.testing.assert_array_equal(emb.wte.to_float32(), u.small_state()["transformer.wte.weight"].numpy())
    code, out, err = guarded(["info", "-m", str(path), "-f", "tsv"], capsys)
    assert (code, err) == (0, "")
    assert {r["field"]: r["value"] for r in tsv(out)}["vocab_rows"] == "65"


def test_12_build_shadowing_items(tmp_path, capsys, ckpt):
    """`items` too (torch.save itself cannot write that one: it calls items() to save the dict)."""
    shadow = {"items": "x", "values": "x", "get": "x", "keys": "x", "_metadata": "x"}
    data = u.state_pickle({"transformer.wte.weight": WTE, "transformer.wpe.weight": WPE}, build=shadow)
    path = with_pickle(ckpt, tmp_path, data)
    assert torch.load(path, weights_only=False)["model"].items == "x"  # what a real unpickler makes of it
    reference = torch.load(ckpt, weights_only=True)["model"]
    emb = load(str(path))
    np.testing.assert_array_equal(emb.wte.to_float32(), reference["transformer.wte.weight"].numpy())
    np.testing.assert_array_equal(emb.wpe.to_float32(), reference["transformer.wpe.weight"].numpy())
    code, out, err = guarded(["neighbors", "#3", "-k", "2", "-m", str(path), "-f", "tsv"], capsys)
    assert (code, err) == (0, "")


# --- 13. a central directory whose offsets are shifted ------------------------------------------------------

def test_13_shifted_central_directory(tmp_path, capsys, ckpt):
    """Every local-header offset shifted down by 2000 bytes (data.pkl and the small entries put
    back), so the first storage's header lies before the start of the file."""
    plain = with_pickle(ckpt, tmp_path, u.state_pickle({"transformer.wte.weight": WTE, "transformer.wpe.weight": WPE}))
    assert load(str(plain)).wte.shape == (65, 8)  # the control: readable before the shift
    path = u.shift_central_directory(plain, tmp_path / "shifted.pt", 2000,
                                     keep=("data.pkl", "byteorder", "version", "alignment", "serialization_id"))
    import zipfile

    with zipfile.ZipFile(path) as z:
        first = next(i for i in z.infolist() if i.filename.endswith("/data/0"))
        assert first.header_offset < 0
    prefix = first.filename[: -len("data/0")]
    assert guarded(["info", "-m", str(path)], capsys) == (1, "", f"{E}{path}: corrupt zip entry '{prefix}data/0'\n")


# --- 14. config.json values of the wrong type -------------------------------------------------------------

@pytest.mark.parametrize("config,message", [
    ({"model_type": []}, "config.json: 'model_type' is [], not a string embscope can use"),
    ({"model_type": {}}, "config.json: 'model_type' is {}, not a string embscope can use"),
    ({"model_type": 7}, "config.json: 'model_type' is 7, not a string embscope can use"),
    ({"model_type": "gpt2", "tie_word_embeddings": "false"},
     "config.json: 'tie_word_embeddings' is 'false', not true or false"),
])
def test_14_config_types(tmp_path, capsys, config, message):
    d = tmp_path / "m"
    save_safetensors(d / "model.safetensors", small_tensors(), config=config)
    assert guarded(["info", "-m", str(d)], capsys) == (1, "", E + message + "\n")


def test_14_do_lower_case_type(vocab_txt_model, capsys):
    path = u.write_json(vocab_txt_model / "tokenizer_config.json", {"do_lower_case": "no"})
    code, out, err = guarded(["info", "-m", str(vocab_txt_model)], capsys)
    assert (code, out, err) == (1, "", f"{E}{path}: 'do_lower_case' is 'no', not true or false\n")


# --- 15. a token id of more than 4300 digits ----------------------------------------------------------

@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("gpt2")
    u.save_gpt2_safetensors(d)
    return d


def test_15_long_token_id(gpt2_dir, capsys, monkeypatch):
    query = "#" + "1" * 5000
    message = "token id #111111111111... (5000 digits) is out of range (the model has 50257 tokens)"
    assert guarded(["neighbors", query, "-m", str(gpt2_dir)], capsys) == (1, "", E + message + "\n")
    code, out, err = guarded(["neighbors", "-", "-m", str(gpt2_dir)], capsys, stdin=f"#1\n{query}\n",
                             monkeypatch=monkeypatch)
    assert (code, out, err) == (1, "", f"{E}stdin line 2: {message}\n")


def test_15_leading_zeros(gpt2_dir, capsys):
    """'#' and 5000 zeros then 7 is id 7: the same answer as '#7'."""
    code, padded, err = guarded(["neighbors", "#" + "0" * 5000 + "7", "-k", "3", "-m", str(gpt2_dir), "-f", "tsv"],
                                capsys)
    assert (code, err) == (0, "")
    assert guarded(["neighbors", "#7", "-k", "3", "-m", str(gpt2_dir), "-f", "tsv"], capsys)[1] == padded


# --- 16. -o checked before any output ----------------------------------------------------------------------

def _sysfs_error() -> str:
    """What the OS says when a file is made in /sys (sysfs refuses even root)."""
    try:
        fd, name = tempfile.mkstemp(dir="/sys")
    except OSError as e:
        return e.strerror
    os.close(fd)
    os.unlink(name)
    pytest.skip("/sys is writable here")


@pytest.mark.parametrize("argv", [
    ["norms", "-o", "/sys/x.png", "-f", "tsv"],
    ["norms", "-o", "/sys/x.png", "--top", "3", "-f", "tsv"],
    ["norms", "-o", "/sys/x.png", "--all", "-f", "tsv"],
    ["norms", "-o", "/sys/x.png", "--centroid", "-f", "tsv"],
    ["positions", "-o", "/sys/x.npy"],
    ["positions", "--by-offset", "-o", "/sys/x.png"],
    ["embed", "king", "-o", "/sys/x.npy"],
])
def test_16_unwritable_output(gpt2_dir, capsys, argv):
    """The statistics were printed, then "Cannot write": now nothing is computed or printed."""
    target = argv[argv.index("-o") + 1]
    code, out, err = guarded([*argv, "-m", str(gpt2_dir)], capsys)
    assert (code, out, err) == (1, "", f"{E}Cannot write {target}: {_sysfs_error()}\n")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_16_read_only_directory(gpt2_dir, capsys, tmp_path):
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        code, out, err = guarded(["norms", "-o", str(d / "x.png"), "-f", "tsv", "-m", str(gpt2_dir)], capsys)
    finally:
        d.chmod(stat.S_IRWXU)
    assert (code, out, err) == (1, "", f"{E}Cannot write {d / 'x.png'}: Permission denied\n")
    assert os.listdir(d) == []


def test_16_check_leaves_nothing_behind(gpt2_dir, capsys, tmp_path):
    """The writability check makes a nameless file: an error after it leaves the folder empty."""
    d = tmp_path / "out"
    d.mkdir()
    code, out, err = guarded(["embed", "", "-o", str(d / "x.npy"), "-m", str(gpt2_dir)], capsys)
    assert (code, out, err) == (2, "", f"{E}empty text\n")
    assert os.listdir(d) == []


# --- 17. mathtext in PNG titles, and Rust panics -------------------------------------------------------------

def test_17_dollar_signs_in_a_png_title(tmp_path, capsys, monkeypatch):
    """A model path `$\\frac{x$` is the title of the PNG: text, never mathtext (matplotlib's
    parser raised ValueError on it)."""
    from embscope.render import png

    d = tmp_path / "m$\\frac{x$"
    save_safetensors(d / "model.safetensors", small_tensors())
    titles = []
    save = png._save_atomic

    def record(fig, path):
        ax = fig.axes[0]
        titles.append((ax.get_title(), ax.title.get_parse_math()))
        return save(fig, path)

    monkeypatch.setattr(png, "_save_atomic", record)
    for argv, title in [(["norms", "-f", "tsv"], f"{d}: token L2 norm"),  # -o of positions takes no -f
                        (["positions"], f"{d}: positions 0..63"),
                        (["positions", "--by-offset"], f"{d}: positions 0..63")]:
        out = tmp_path / "x.png"
        code, stdout, err = guarded([*argv, "-m", str(d), "-o", str(out)], capsys)
        assert (code, err) == (0, f"wrote {out}\n")  # norms also prints its statistics
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert titles.pop() == (title, False)


def panicking_tokenizer(directory: Path, charsmap: bytes) -> Path:
    """A folder whose tokenizer.json (written by `tokenizers`) has a Precompiled normalizer with
    the charsmap given: the Rust library panics reading or using it."""
    import base64

    from tokenizers import Tokenizer, models

    tok = Tokenizer(models.WordLevel(vocab={"a": 0, "b": 1, "[UNK]": 2}, unk_token="[UNK]"))
    spec = json.loads(tok.to_str())
    spec["normalizer"] = {"type": "Precompiled", "precompiled_charsmap": base64.b64encode(charsmap).decode()}
    directory.mkdir()
    (directory / "tokenizer.json").write_text(json.dumps(spec))
    save_safetensors(directory / "model.safetensors", {"transformer.wte.weight": np.eye(3, 4, dtype=np.float32)})
    return directory


def test_17_rust_panic_reading_the_tokenizer(tmp_path):
    """3 bytes of charsmap cannot even hold its length: a panic (a BaseException) in from_file.
    One line, and none of Rust's own report (RUST_BACKTRACE=1 asks for a whole backtrace)."""
    d = panicking_tokenizer(tmp_path / "m", b"\0\0\0")
    r = run_capped(["info", "-m", str(d)], env={"RUST_BACKTRACE": "1"})
    one_error(r, f"{d}/tokenizer.json: not a readable tokenizer.json (the library panicked: Precompiled:"
                 ' Error("Cannot parse precompiled_charsmap", line: 0, column: 0))')


@pytest.mark.parametrize("argv", [["neighbors", "a", "-k", "1"], ["embed", "a"], ["neighbors", "-", "-k", "1"]])
def test_17_rust_panic_while_encoding(tmp_path, argv):
    """A one-unit trie: it loads, and panics on the first character it looks up."""
    import struct

    d = panicking_tokenizer(tmp_path / "m", struct.pack("<I", 4) + b"\0\0\0\0")
    env = {"RUST_BACKTRACE": "1"}
    r = subprocess.run([sys.executable, "-m", "embscope", *argv, "-m", str(d)], input="a\n", capture_output=True,
                       text=True, timeout=60, env={**os.environ, "EMBSCOPE_MODEL": "", **env})
    where = "stdin line 1: " if "-" in argv else ""
    one_error(r, f"{where}{d}/tokenizer.json: the tokenizer cannot encode 'a' (the library panicked: index out of"
                 " bounds: the len is 1 but the index is 97)")


def test_17_library_output_that_is_not_a_panic_still_reaches_stderr(capfd):
    """native_call() holds back what the library writes to descriptor 2 only to drop a panic
    report: anything else is passed on."""
    from embscope.native import native_call

    with native_call():
        os.write(2, b"a message from native code\n")
    assert capfd.readouterr().err == "a message from native code\n"
    with pytest.raises(RuntimeError, match="boom"), native_call():
        raise RuntimeError("boom")  # ordinary exceptions pass through unchanged


# --- also: one line for a NaN query, no matplotlib warning, -o onto a symlink ---------------------------------

@pytest.fixture(scope="module")
def nan_model(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("nan")
    tensors = small_tensors()
    tensors["transformer.wte.weight"][:] = np.nan
    save_safetensors(d / "model.safetensors", tensors)
    return d


def test_also_nan_query_is_one_line(nan_model, capsys, monkeypatch):
    message = f"{E}the query vector holds NaN or Inf (its token rows are not finite)\n"
    assert guarded(["neighbors", "#5", "-m", str(nan_model)], capsys) == (1, "", message)
    code, out, err = guarded(["neighbors", "-", "-m", str(nan_model)], capsys, stdin="#5\n", monkeypatch=monkeypatch)
    assert (code, out, err) == (1, "", f"{E}stdin line 1: the query vector holds NaN or Inf (its token rows are"
                                       " not finite)\n")


def test_also_all_nan_histogram_has_no_matplotlib_warning(nan_model, capsys, tmp_path):
    """Every token row NaN: the PNG says "no finite values"; matplotlib's UserWarning about a
    legend with nothing in it (two raw lines on stderr) is gone."""
    import warnings

    out = tmp_path / "h.png"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, stdout, err = guarded(["norms", "-m", str(nan_model), "-o", str(out), "-f", "tsv"], capsys)
    assert [str(w.message) for w in caught] == []
    shown = ", ".join(f"#{i}" for i in range(10))
    assert (code, err) == (0, f"warning: 100 token rows hold NaN or Inf and are left out of the statistics:"
                              f" {shown} ...\nwrote {out}\n")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_also_output_onto_a_symlink_replaces_the_link(gpt2_dir, capsys, tmp_path):
    """Documented in docs/security.md: -o writes a new file and renames it onto the name, so a
    symlink there is replaced by the file, and what it pointed to is left as it was."""
    target = tmp_path / "target.npy"
    target.write_bytes(b"untouched")
    link = tmp_path / "link.npy"
    link.symlink_to(target)
    code, out, err = guarded(["positions", "--range", "0:4", "-m", str(gpt2_dir), "-o", str(link)], capsys)
    assert (code, out, err) == (0, "", f"wrote {link}: array of shape (4, 4), float32\n")
    assert not link.is_symlink() and np.load(link).shape == (4, 4)
    assert target.read_bytes() == b"untouched"
