"""The checkpoint formats people have, each against its reference.

llm.c, nanochat and modded-nanogpt files come from embscope's own writers (tests/format_writers.py)
applied to real torch models; Lightning checkpoints from a real pytorch_lightning Trainer;
sentence-transformers folders from sentence-transformers' own save(); tokenizer pickles from
pickle.dump of a real tiktoken.Encoding. Matrices are compared exactly with the models' own
tensors, token ids with tiktoken or the model's own tokenizer, command output with numpy.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from embscope.formats import Format
from embscope.model import load
from tests import format_writers as fw
from tests.helpers import run, tsv

TEXTS = ["The king's crown, 42 times\n\tand café ☕ again", "  leading   spaces\n\nnaïve 東京 12345!!",
         "I'm you'LL they've <|endoftext|> done", "\u00a0nbsp\u3000wide\u2028line 🤗🤗 x" + " " * 7 + "y"]
N_EMBD, N_POS = 16, 64


def f32(t) -> np.ndarray:
    return t.detach().float().numpy().copy()


def gpt2_model(seed: int):
    import transformers as T

    T.logging.set_verbosity_error()
    torch.manual_seed(seed)
    return T.GPT2LMHeadModel(T.GPT2Config(vocab_size=50257, n_positions=N_POS, n_embd=N_EMBD, n_layer=1, n_head=2))


@dataclass
class Case:
    """A checkpoint on disk and what embscope must read from it."""

    spec: str
    format: Format
    family: str
    wte: np.ndarray  # (V, d) every row of the saved matrix, padding included
    wpe: np.ndarray | None
    n_tokens: int
    ids: object  # text -> the reference token ids
    tied: bool | None
    dtype: str = "float32"
    wte_key: str = "transformer.wte.weight"


# --- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def llmc(tmp_path_factory, tiktoken_gpt2) -> dict[str, Path]:
    """llm.c's files: gpt2_124M.bin (fp32), gpt2_124M_bf16.bin and gpt2_tokenizer.bin in the
    checkout, snapshots of steps 100 and 200 in a log folder inside it, and a lone model file."""
    root = tmp_path_factory.mktemp("llm.c")
    a, b = gpt2_model(21), gpt2_model(22)
    fw.write_llmc_model(a, root / "gpt2_124M.bin")
    fw.write_llmc_model(a, root / "gpt2_124M_bf16.bin", dtype="bfloat16")
    fw.write_llmc_tokenizer(tiktoken_gpt2, root / "gpt2_tokenizer.bin")
    (root / "log124M").mkdir()
    fw.write_llmc_model(a, root / "log124M" / "model_00000100.bin")
    fw.write_llmc_model(b, root / "log124M" / "model_00000200.bin")
    alone = tmp_path_factory.mktemp("llm.c-alone") / "out"
    alone.mkdir()
    fw.write_llmc_model(b, alone / "gpt2_124M.bin")
    return {"root": root, "a": a, "b": b, "alone": alone / "gpt2_124M.bin"}


@pytest.fixture(scope="module")
def nanochat(tmp_path_factory, tiktoken_gpt2) -> dict:
    """A nanochat base dir: base_checkpoints/d2 with steps 100 and 200, tokenizer/tokenizer.pkl."""
    base = tmp_path_factory.mktemp("nanochat")
    enc = fw.nanochat_encoding(tiktoken_gpt2, 4000)  # 4000 ranks + 9 specials = 4009 ids, 4032 rows
    config = {"sequence_len": 64, "vocab_size": enc.n_vocab, "n_layer": 2, "n_head": 2, "n_kv_head": 2,
              "n_embd": N_EMBD, "window_pattern": "SL"}
    models = {}
    for step, seed in ((100, 31), (200, 32)):
        torch.manual_seed(seed)
        models[step] = fw.NanochatLike(enc.n_vocab, n_layer=2, n_head=2, n_embd=N_EMBD)
        fw.save_nanochat_step(base / "base_checkpoints" / "d2", step, models[step], config, val_bpb=1.25 - step / 1000)
    fw.save_nanochat_tokenizer(base, enc)
    return {"base": base, "folder": base / "base_checkpoints" / "d2", "enc": enc, "models": models}


@pytest.fixture
def clean_home(tmp_path, monkeypatch):
    """No ~/.cache/nanochat and no NANOCHAT_BASE_DIR from the caller's machine."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("NANOCHAT_BASE_DIR", raising=False)
    return tmp_path / "home"


@pytest.fixture(scope="module")
def lightning(tmp_path_factory):
    """A PyTorch Lightning checkpoint from Trainer.save_checkpoint after one training step of a
    LightningModule that holds a transformers GPT-2 as `self.model`."""
    pl = pytest.importorskip("pytorch_lightning")
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning").setLevel(logging.ERROR)

    class LM(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.save_hyperparameters({"n_embd": N_EMBD, "lr": 1e-3})
            self.model = gpt2_model(51)

        def training_step(self, batch, _):
            return self.model(input_ids=batch[0], labels=batch[0]).loss

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1e-3)

    d = tmp_path_factory.mktemp("lightning")
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randint(0, 50257, (4, 16))), batch_size=2)
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", default_root_dir=str(d))
    module = LM()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(module, data)
    trainer.save_checkpoint(str(d / "epoch=0-step=1.ckpt"))
    return d / "epoch=0-step=1.ckpt", module.model


@pytest.fixture(scope="module")
def state_dicts(tmp_path_factory):
    """torch.save(model.state_dict()) of wrapped models: DataParallel ('module.' prefix) and a
    distillation pair (student and teacher in one state dict)."""
    d = tmp_path_factory.mktemp("statedicts")
    single = gpt2_model(61)
    torch.save(torch.nn.DataParallel(single).state_dict(), d / "dp.pt")
    pair = torch.nn.Module()
    pair.student, pair.teacher = gpt2_model(62), gpt2_model(63)
    torch.save(pair.state_dict(), d / "distill.pt")
    return d, single, pair


@pytest.fixture(scope="module")
def modded(tmp_path_factory):
    d = tmp_path_factory.mktemp("modded") / "logs" / "0f3c"
    d.mkdir(parents=True)
    torch.manual_seed(41)
    model = fw.ModdedLike()
    fw.save_modded(d / "state_step001750.pt", model, 1750)
    return d / "state_step001750.pt", model


@pytest.fixture(scope="module")
def cases(llmc, nanochat, lightning, state_dicts, modded, st_folders, tiktoken_gpt2) -> dict[str, Case]:
    gpt2_ids = lambda text: tiktoken_gpt2.encode(text, allowed_special="all")  # noqa: E731
    nc_ids = lambda text: nanochat["enc"].encode(text, allowed_special="all")  # noqa: E731
    a = llmc["a"]
    wte_a = np.zeros((50304, N_EMBD), dtype=np.float32)
    wte_a[:50257] = f32(a.transformer.wte.weight)
    bf16 = lambda x: f32(torch.from_numpy(x).to(torch.bfloat16))  # noqa: E731
    nc = nanochat["models"][200]
    sd, single, pair = state_dicts
    ckpt, lmodel = lightning
    mpath, mmodel = modded
    st_base, bert, st_model = st_folders
    st_ids = lambda text: st_model.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    return {
        "llmc": Case(str(llmc["root"] / "gpt2_124M.bin"), Format.LLMC, "gpt2", wte_a, f32(a.transformer.wpe.weight),
                     50257, gpt2_ids, True),
        "llmc-bf16": Case(str(llmc["root"] / "gpt2_124M_bf16.bin"), Format.LLMC, "gpt2", bf16(wte_a),
                          bf16(f32(a.transformer.wpe.weight)), 50257, gpt2_ids, True, dtype="bfloat16"),
        "llmc-log": Case(str(llmc["root"] / "log124M"), Format.LLMC, "gpt2",
                         np.concatenate([f32(llmc["b"].transformer.wte.weight), np.zeros((47, N_EMBD), np.float32)]),
                         f32(llmc["b"].transformer.wpe.weight), 50257, gpt2_ids, True),
        "nanochat": Case(str(nanochat["folder"]), Format.NANOCHAT, "nanochat", f32(nc.transformer.wte.weight), None,
                         4009, nc_ids, False, wte_key="_orig_mod.transformer.wte.weight"),
        "lightning": Case(str(ckpt), Format.LIGHTNING, "gpt2", f32(lmodel.transformer.wte.weight),
                          f32(lmodel.transformer.wpe.weight), 50257, gpt2_ids, True,
                          wte_key="model.transformer.wte.weight"),
        "dataparallel": Case(str(sd / "dp.pt"), Format.TORCH_STATE_DICT, "gpt2", f32(single.transformer.wte.weight),
                             f32(single.transformer.wpe.weight), 50257, gpt2_ids, True,
                             wte_key="module.transformer.wte.weight"),
        "distill": Case(str(sd / "distill.pt"), Format.TORCH_STATE_DICT, "gpt2", f32(pair.student.transformer.wte.weight),
                        f32(pair.student.transformer.wpe.weight), 50257, gpt2_ids, True,
                        wte_key="student.transformer.wte.weight"),
        "modded": Case(str(mpath), Format.MODDED_NANOGPT, "modded_nanogpt", f32(mmodel.embed.weight), None, 50257,
                       gpt2_ids, False, wte_key="_orig_mod.embed.weight"),
        "sentence-transformers": Case(str(st_base / "old"), Format.TORCH_STATE_DICT, "bert",
                                      f32(bert.embeddings.word_embeddings.weight),
                                      f32(bert.embeddings.position_embeddings.weight), len(st_model.tokenizer), st_ids,
                                      None, wte_key="embeddings.word_embeddings.weight"),
    }


NAMES = ["llmc", "llmc-bf16", "llmc-log", "nanochat", "lightning", "dataparallel", "distill", "modded",
         "sentence-transformers"]
SUM_OF_ROWS = [n for n in NAMES if n != "sentence-transformers"]  # BERT's embed adds more: tested below


@pytest.fixture
def case(request, cases, clean_home, tmp_path, monkeypatch) -> Case:
    monkeypatch.chdir(tmp_path)
    return cases[request.param]


def every(names=NAMES):
    return pytest.mark.parametrize("case", names, indirect=True)


# --- what is read ---------------------------------------------------------------------------

@every()
def test_matrices_equal_the_models_own(case):
    emb = load(case.spec)
    assert emb.format is case.format
    assert emb.layout.family == case.family and emb.layout.wte_key == case.wte_key
    assert np.array_equal(emb.wte.to_float32(), case.wte)
    assert emb.n_tokens == case.n_tokens and emb.vocab_rows == case.wte.shape[0]
    assert emb.wte.dtype_name == case.dtype
    if case.wpe is None:
        assert emb.wpe is None
    else:
        assert np.array_equal(emb.wpe.to_float32(), case.wpe)
    assert emb.tied is case.tied


@every()
def test_token_ids_equal_the_reference_tokenizer(case):
    emb = load(case.spec)
    for text in TEXTS:
        assert emb.tokenizer.encode(text) == case.ids(text), text


@every()
def test_neighbors_equal_brute_force(case, capsys):
    query = case.ids(" king")[0]
    code, out, err = run(["neighbors", f"#{query}", "-m", case.spec, "-k", "8", "-f", "tsv"], capsys)
    assert code == 0, err
    w = case.wte[:case.n_tokens].astype(np.float64)  # padding rows are never neighbours
    with np.errstate(invalid="ignore"):  # BERT's [PAD] row is zeros: no direction, sorted last
        scores = w @ w[query] / (np.linalg.norm(w, axis=1) * np.linalg.norm(w[query]))
    scores[query] = -np.inf
    order = np.argsort(-scores, kind="stable")[:8]
    rows = tsv(out)
    assert [int(r["id"]) for r in rows] == order.tolist()
    np.testing.assert_allclose([float(r["score"]) for r in rows], scores[order], rtol=1e-4, atol=1e-5)


@every()
def test_norms_equal_numpy(case, capsys):
    code, out, err = run(["norms", "-m", case.spec, "--top", "5", "-f", "tsv"], capsys)
    assert code == 0, err
    norms = np.linalg.norm(case.wte[:case.n_tokens].astype(np.float64), axis=1)
    rows = [r for r in tsv(out) if r["end"] == "largest"]
    assert [int(r["id"]) for r in rows] == np.argsort(-norms, kind="stable")[:5].tolist()
    np.testing.assert_allclose([float(r["norm"]) for r in rows], np.sort(norms)[::-1][:5], rtol=1e-5)


@every(SUM_OF_ROWS)
def test_embed_equals_rows_of_the_model(case, capsys):
    text = TEXTS[0]
    code, out, err = run(["embed", text, "-m", case.spec, "-f", "json"], capsys)
    assert code == 0, err
    ids = case.ids(text)
    expected = case.wte[ids] + (case.wpe[:len(ids)] if case.wpe is not None else 0)  # (T, d)
    got = json.loads(out)
    assert got["ids"] == ids
    np.testing.assert_allclose(np.array(got["vectors"], dtype=np.float32), expected, rtol=1e-6, atol=1e-6)


@every()
def test_positions_equal_numpy_or_say_there_are_none(case, capsys, tmp_path):
    out_file = tmp_path / "p.npy"
    code, out, err = run(["positions", "-m", case.spec, "-o", str(out_file)], capsys)
    if case.wpe is None:
        assert (code, out) == (1, "")
        assert err == (f"embscope: error: {case.spec}: this model has no learned position embeddings"
                       f" ({case.family} family: positions are rotary, ALiBi or absent)\n")
        return
    assert code == 0, err
    p = case.wpe.astype(np.float64)
    u = p / np.linalg.norm(p, axis=1, keepdims=True)
    np.testing.assert_allclose(np.load(out_file), u @ u.T, rtol=1e-5, atol=1e-6)


@every()
def test_info_describes_it(case, capsys):
    code, out, err = run(["info", "-m", case.spec, "-f", "json"], capsys)
    assert code == 0, err
    info = json.loads(out)
    assert info["format"] == case.format.value
    assert info["family"] == case.family and info["token_tensor"] == case.wte_key
    assert info["tokens"] == case.n_tokens and info["padding_rows"] == case.wte.shape[0] - case.n_tokens
    assert info["tied_lm_head"] == {True: "yes", False: "no", None: "unknown"}[case.tied]


# --- llm.c ------------------------------------------------------------------------------------

def test_llmc_is_memory_mapped_and_reads_only_the_embeddings(llmc):
    path = llmc["root"] / "gpt2_124M_bf16.bin"
    emb = load(str(path))
    assert isinstance(emb.wte.raw, np.memmap) and isinstance(emb.wpe.raw, np.memmap)
    assert emb.read_bytes == 1024 + 50304 * N_EMBD * 2 + N_POS * N_EMBD * 2
    assert emb.file_bytes == os.path.getsize(path) > emb.read_bytes


def test_llmc_facts_and_tokenizer(llmc, tiktoken_gpt2, clean_home):
    emb = load(str(llmc["root"] / "gpt2_124M.bin"))
    assert emb.facts["llmc_version"] == 3
    assert emb.facts["model_args"] == {"max_seq_len": N_POS, "vocab_size": 50257, "num_layers": 1, "num_heads": 2,
                                       "channels": N_EMBD, "padded_vocab_size": 50304}
    assert emb.tokenizer.kind == "GPT-2 BPE (llm.c gpt2_tokenizer.bin)"
    assert emb.tokenizer.source == str(llmc["root"] / "gpt2_tokenizer.bin")
    for i in (0, 255, 256, 5822, 50255, 50256):
        assert emb.tokenizer.token_bytes(i) == tiktoken_gpt2.decode_single_token_bytes(i)
    assert load(str(llmc["root"] / "gpt2_124M_bf16.bin")).facts["llmc_version"] == 5


def test_llmc_snapshots_last_step_by_default_and_step_to_choose(llmc, clean_home, capsys):
    log = llmc["root"] / "log124M"
    emb = load(str(log))
    assert emb.facts["step"] == 200 and emb.files == [str(log / "model_00000200.bin")]
    assert emb.tokenizer.source == str(llmc["root"] / "gpt2_tokenizer.bin")  # the folder above the log
    first = load(str(log), step=100)
    assert np.array_equal(first.wte.rows(0, 50257), f32(llmc["a"].transformer.wte.weight))
    code, out, err = run(["info", "-m", str(log), "--step", "300"], capsys)
    assert (code, out) == (2, "")
    assert err == f"embscope: error: checkpoint step 300: {log} has no llm.c snapshot of step 300 (steps: 100, 200)\n"
    code, out, err = run(["positions", "-m", str(log), "--checkpoint-step", "100", "--step", "8", "-f", "tsv"], capsys)
    assert code == 0, err


def test_llmc_without_its_tokenizer_uses_the_bundled_gpt2(llmc, clean_home):
    emb = load(str(llmc["alone"]))
    assert emb.tokenizer.kind == "GPT-2 BPE (bundled with embscope)" and emb.n_tokens == 50257


def test_llmc_tokenizer_by_flag(llmc, tiktoken_gpt2, clean_home):
    emb = load(str(llmc["alone"]), tokenizer=str(llmc["root"] / "gpt2_tokenizer.bin"))
    assert emb.tokenizer.kind == "GPT-2 BPE (llm.c gpt2_tokenizer.bin)"
    assert emb.tokenizer.encode(TEXTS[2]) == tiktoken_gpt2.encode(TEXTS[2], allowed_special="all")


def _spoil(src: Path, dst: Path, edit) -> str:
    data = bytearray(src.read_bytes())
    edit(data)
    dst.write_bytes(bytes(data))
    return str(dst)


def test_llmc_bad_files(llmc, tmp_path, capsys):
    src = llmc["root"] / "gpt2_124M.bin"
    size = src.stat().st_size
    cases = {
        _spoil(src, tmp_path / "cut.bin", lambda d: d.__delitem__(slice(size - 4, size))):
            f"its llm.c header describes a {size}-byte file (",
        _spoil(src, tmp_path / "v2.bin", lambda d: d.__setitem__(slice(4, 8), (2).to_bytes(4, "little"))):
            "llm.c model version 2; embscope reads versions 3 (fp32) and 5 (bf16) with a padded vocabulary,",
        _spoil(src, tmp_path / "neg.bin", lambda d: d.__setitem__(slice(24, 28), (-16).to_bytes(4, "little", signed=True))):
            "a broken llm.c header ('channels' is -16)",
        str(llmc["root"] / "gpt2_tokenizer.bin"): "an llm.c tokenizer file, not a model (pass it with --tokenizer)",
        _spoil(src, tmp_path / "llama3.bin", lambda d: d.__setitem__(slice(0, 4), (20240803).to_bytes(4, "little"))):
            "an llm.c Llama 3 checkpoint (magic 20240803); embscope reads llm.c's GPT-2 checkpoints (magic 20240326)",
    }
    for path, message in cases.items():
        code, out, err = run(["info", "-m", path], capsys)
        assert (code, out) == (1, "") and err.startswith(f"embscope: error: {path}: {message}"), err
        assert err.count("\n") == 1
    code, out, err = run(["info", "-m", str(src), "--step", "5"], capsys)
    assert (code, out, err) == (2, "", f"embscope: error: checkpoint step 5: {src} is not a folder of training steps"
                                       " (nanochat model_NNNNNN.pt or llm.c model_NNNNNNNN.bin files)\n")


# --- nanochat ---------------------------------------------------------------------------------

def test_nanochat_steps_and_facts(nanochat, clean_home):
    folder = nanochat["folder"]
    emb = load(str(folder))
    assert emb.facts["step"] == 200 and emb.facts["steps"] == "100, 200" and emb.facts["val_bpb"] == 1.05
    assert emb.facts["model_args"]["vocab_size"] == 4009 and emb.files == [str(folder / "model_000200.pt")]
    for spec, step in ((str(folder), 100), (str(folder / "model_000200.pt"), 100), (str(folder / "model_000100.pt"), None)):
        emb = load(spec, step=step)
        assert emb.facts["step"] == 100
        assert np.array_equal(emb.wte.to_float32(), f32(nanochat["models"][100].transformer.wte.weight))


def test_nanochat_tokenizer_where_nanochat_puts_it(nanochat, clean_home, tmp_path, monkeypatch):
    import shutil

    pkl = nanochat["base"] / "tokenizer" / "tokenizer.pkl"
    assert load(str(nanochat["folder"])).tokenizer.source == str(pkl)  # <base>/tokenizer beside the checkpoints
    moved = tmp_path / "elsewhere" / "d2"
    shutil.copytree(nanochat["folder"], moved)
    assert load(str(moved)).tokenizer is None  # nowhere to be found: query by id
    home_pkl = clean_home / ".cache" / "nanochat" / "tokenizer" / "tokenizer.pkl"
    home_pkl.parent.mkdir(parents=True)
    shutil.copyfile(pkl, home_pkl)
    assert load(str(moved)).tokenizer.source == str(home_pkl)  # nanochat's default base dir
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(nanochat["base"]))
    assert load(str(moved)).tokenizer.source == str(pkl)  # $NANOCHAT_BASE_DIR first
    emb = load(str(moved), tokenizer=str(pkl))
    assert emb.tokenizer.kind == "tiktoken BPE (nanochat tokenizer.pkl)" and emb.n_tokens == 4009


def test_nanochat_token_bytes_and_specials(nanochat, clean_home):
    enc = nanochat["enc"]
    tok = load(str(nanochat["folder"])).tokenizer
    for i in list(range(0, 4009, 97)) + [3999, 4000, 4008]:
        assert tok.token_bytes(i) == enc.decode_single_token_bytes(i)
    text = "<|bos|><|user_start|>hello 1234567<|user_end|><|assistant_start|>"
    assert tok.encode(text) == enc.encode(text, allowed_special="all")


def test_nanochat_tokenizer_of_another_vocabulary(nanochat, tiktoken_gpt2, clean_home, tmp_path, capsys):
    other = fw.save_nanochat_tokenizer(tmp_path, fw.nanochat_encoding(tiktoken_gpt2, 3000))
    code, out, err = run(["info", "-m", str(nanochat["folder"]), "--tokenizer", str(other)], capsys)
    assert (code, out) == (1, "")
    assert err == (f"embscope: error: {nanochat['folder']}: the tokenizer ({other}) has 3009 ids but the checkpoint"
                   " records a vocabulary of 4009: they do not belong together\n")


def test_nanochat_tokenizer_pickles_that_are_refused(tmp_path, tiktoken_gpt2, capsys):
    from tests import untrusted as u

    marker = tmp_path / "ran"
    hostile = tmp_path / "tokenizer.pkl"
    hostile.write_bytes(pickle.dumps(u.Reduce(os.system, (f"touch {marker}",))))
    by_name = tmp_path / "named" / "tokenizer.pkl"
    by_name.parent.mkdir()
    by_name.write_bytes(pickle.dumps(tiktoken_gpt2))  # registered encodings pickle by name
    for path, message in ((hostile, f"{hostile}: refused to load: the pickle asks to run 'posix.system', which"
                           " embscope never runs"),
                          (by_name, f"{by_name}: a pickle of tiktoken's registered encoding 'gpt2' by name only;"
                           " it holds no vocabulary to read")):
        code, out, err = run(["info", "--tokenizer", str(path)], capsys)
        assert (code, out, err) == (1, "", f"embscope: error: {message}\n")
    assert not marker.exists()


def test_nanochat_needs_no_tiktoken_at_run_time(nanochat, tmp_path):
    script = ("import sys; from embscope.model import load; "
              f"emb = load({str(nanochat['folder'])!r}); assert emb.tokenizer.encode('hello') ; "
              "print('tiktoken' in sys.modules, 'torch' in sys.modules)")
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("NANOCHAT_BASE_DIR", None)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    assert result.stdout == "False False\n"


# --- other training loops -------------------------------------------------------------------

def test_lightning_facts(lightning):
    emb = load(str(lightning[0]))
    import pytorch_lightning

    assert emb.facts["epoch"] == 1 and emb.facts["global_step"] == 1
    assert emb.facts["lightning_version"] == pytorch_lightning.__version__
    assert emb.facts["model_args"] == {"n_embd": N_EMBD, "lr": 1e-3}


def test_guessed_tensor_names_are_said_on_stderr(cases, capsys):
    for name, also in (("lightning", ""), ("dataparallel", ""),
                       ("distill", "; also found 'teacher.transformer.wte.weight'")):
        case = cases[name]
        prefix = case.wte_key[: -len("transformer.wte.weight")]
        code, out, err = run(["info", "-m", case.spec, "-f", "tsv"], capsys)
        assert code == 0
        assert err == (f"note: token embeddings from '{case.wte_key}', position embeddings from"
                       f" '{prefix}transformer.wpe.weight' (found by name{also}; --wte-key/--wpe-key name others)\n")
    code, out, err = run(["info", "-m", cases["distill"].spec, "--wte-key", "teacher.transformer.wte.weight"], capsys)
    assert code == 0 and err == ""


def test_distillation_teacher_by_name(state_dicts):
    d, _, pair = state_dicts
    emb = load(str(d / "distill.pt"), wte_key="teacher.transformer.wte.weight")
    assert np.array_equal(emb.wte.to_float32(), f32(pair.teacher.transformer.wte.weight))
    assert emb.layout.wpe_key == "teacher.transformer.wpe.weight"  # the positions of the same model
    assert np.array_equal(emb.wpe.to_float32(), f32(pair.teacher.transformer.wpe.weight))


def test_modded_nanogpt_facts(modded):
    emb = load(str(modded[0]))
    assert emb.facts["step"] == 1750 and "code" not in emb.facts
    assert emb.tokenizer.kind == "GPT-2 BPE (bundled with embscope)"


# --- whole-module pickles -------------------------------------------------------------------

def test_whole_module_pickle_is_refused_and_runs_nothing(tmp_path):
    """torch.save(model) of a model whose class lives in a module that leaves a marker when it
    is imported or when an instance is unpickled: embscope refuses it and the marker stays absent."""
    marker = tmp_path / "canary.log"
    (tmp_path / "canary_net.py").write_text(fw.canary_module_source(marker))
    path = tmp_path / "whole.pt"
    env = fw.environ_with(str(tmp_path))
    subprocess.run([sys.executable, "-c", f"import torch, canary_net; torch.save(canary_net.TinyNet(), {str(path)!r})"],
                   env=env, check=True, cwd=tmp_path)
    marker.unlink()  # the save itself imported the module
    result = subprocess.run([sys.executable, "-m", "embscope", "info", "-m", str(path)], capture_output=True,
                            text=True, env=env, cwd=tmp_path)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (f"embscope: error: {path}: a whole pickled model (torch.save(model)), which only its"
                             " own code can load; embscope never runs it. Re-save the weights:"
                             " torch.save(model.state_dict(), path)\n")
    assert not marker.exists()


# --- Hugging Face repos as they are ---------------------------------------------------------

@pytest.fixture(scope="module")
def st_folders(tmp_path_factory, wordpiece_dir):
    """sentence-transformers folders: saved by SentenceTransformer.save (Transformer in the root),
    and laid out as older versions saved them (0_Transformer/ with pytorch_model.bin)."""
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import SentenceTransformer

    try:  # sentence-transformers >= 6
        from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    except ImportError:
        from sentence_transformers.models import Normalize, Pooling, Transformer
    import transformers as T
    from huggingface_hub import save_torch_state_dict

    T.logging.set_verbosity_error()
    base = tmp_path_factory.mktemp("st")
    torch.manual_seed(71)
    bert = T.BertModel(T.BertConfig(vocab_size=1500, hidden_size=N_EMBD, num_hidden_layers=1, num_attention_heads=2,
                                    intermediate_size=32, max_position_embeddings=N_POS))
    src = base / "src"
    bert.save_pretrained(src)
    T.BertTokenizerFast.from_pretrained(str(wordpiece_dir)).save_pretrained(src)
    transformer = Transformer(str(src))
    pooling = Pooling(N_EMBD)
    model = SentenceTransformer(modules=[transformer, pooling, Normalize()], device="cpu")
    model.save(str(base / "root"))
    old = base / "old"
    (old / "0_Transformer").mkdir(parents=True)
    save_torch_state_dict(bert.state_dict(), str(old / "0_Transformer"), safe_serialization=False)
    bert.config.save_pretrained(old / "0_Transformer")
    transformer.tokenizer.save_pretrained(old / "0_Transformer")
    (old / "1_Pooling").mkdir()
    pooling.save(str(old / "1_Pooling"))
    (old / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "0_Transformer", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    return base, bert, model


@pytest.mark.parametrize("layout,weights,pipeline", [
    ("root", "model.safetensors", "Transformer (./) > Pooling (1_Pooling/) > Normalize (2_Normalize/)"),
    ("old", "0_Transformer/pytorch_model.bin", "Transformer (0_Transformer/) > Pooling (1_Pooling/)"),
])
def test_sentence_transformers_folders(st_folders, layout, weights, pipeline, capsys):
    base, bert, model = st_folders
    emb = load(str(base / layout))
    e = bert.embeddings
    assert np.array_equal(emb.wte.to_float32(), f32(e.word_embeddings.weight))
    assert np.array_equal(emb.wpe.to_float32(), f32(e.position_embeddings.weight))
    assert np.array_equal(emb.token_type0, f32(e.token_type_embeddings.weight[0]))
    assert emb.files == [str(base / layout / weights)]
    assert emb.facts["sentence_transformers"] == pipeline
    for text in ("the king's crown", "To be, or not to be"):
        assert emb.tokenizer.encode(text) == model.tokenizer(text, add_special_tokens=False)["input_ids"]
    code, out, err = run(["info", "-m", str(base / layout), "-f", "tsv"], capsys)
    assert code == 0 and {r["field"]: r["value"] for r in tsv(out)}["sentence_transformers"] == pipeline
    text = "the king"
    code, out, err = run(["embed", text, "-m", str(base / layout), "-f", "json"], capsys)
    ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        ref = bert.eval().embeddings(input_ids=torch.tensor([ids]))[0].numpy()  # (T, d) after LayerNorm
    np.testing.assert_allclose(np.array(json.loads(out)["vectors"], dtype=np.float32), ref, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    h5py = pytest.importorskip("h5py")
    msgpack = pytest.importorskip("msgpack")
    base = tmp_path_factory.mktemp("foreign")
    for name in ("tf", "flax", "both"):
        (base / name).mkdir()
        (base / name / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    w = np.zeros((8, 4), dtype=np.float32)
    for d in ("tf", "both"):
        with h5py.File(base / d / "tf_model.h5", "w") as f:  # how Keras keeps weights: HDF5
            f.create_dataset("transformer/tfgp_t2main_layer/wte/weight:0", data=w)
    (base / "flax" / "flax_model.msgpack").write_bytes(
        msgpack.packb({"transformer": {"wte": {"embedding": w.tobytes()}}}))
    gpt2_model(81).save_pretrained(base / "both")
    return base


def test_tensorflow_and_flax_only_repos(foreign, capsys):
    tf, flax = foreign / "tf", foreign / "flax"
    hint = "embscope reads PyTorch and safetensors weights (convert with transformers 4:"
    for spec, where, name, flag in ((tf, tf, "tf_model.h5", "from_tf"), (flax, flax, "flax_model.msgpack", "from_flax"),
                                    (tf / "tf_model.h5", tf / "tf_model.h5", "tf_model.h5", "from_tf"),
                                    (flax / "flax_model.msgpack", flax / "flax_model.msgpack", "flax_model.msgpack",
                                     "from_flax")):
        framework = "TensorFlow" if flag == "from_tf" else "Flax"
        code, out, err = run(["info", "-m", str(spec)], capsys)
        assert (code, out, err) == (1, "", f"embscope: error: {where}: only {framework} weights ({name}); {hint}"
                                           f" AutoModel.from_pretrained(path, {flag}=True).save_pretrained(path))\n")
    assert load(str(foreign / "both")).format is Format.SAFETENSORS  # PyTorch weights beside them: read those


def test_nanochat_bad_folders(nanochat, tmp_path, capsys, clean_home):
    import shutil

    folder = tmp_path / "d2"
    shutil.copytree(nanochat["folder"], folder)
    code, out, err = run(["info", "-m", str(folder), "--step", "150"], capsys)
    assert (code, out, err) == (2, "", f"embscope: error: checkpoint step 150: {folder} has no nanochat model of"
                                       " step 150 (steps: 100, 200)\n")
    meta = json.loads((folder / "meta_000200.json").read_text())
    meta["model_config"]["vocab_size"] = 99999
    (folder / "meta_000200.json").write_text(json.dumps(meta))
    code, out, err = run(["info", "-m", str(folder)], capsys)
    assert (code, out, err) == (1, "", f"embscope: error: {folder}: the checkpoint records a vocabulary of 99999"
                                       " tokens, but its token embeddings have 4032 rows\n")
    (folder / "meta_000200.json").write_text(json.dumps({"step": 200}))
    code, out, err = run(["info", "-m", str(folder)], capsys)
    assert (code, out, err) == (1, "", f"embscope: error: {folder / 'meta_000200.json'}: not a nanochat meta file"
                                       " (no 'model_config')\n")
    (folder / "meta_000200.json").write_text("{")
    code, out, err = run(["info", "-m", str(folder)], capsys)
    assert (code, out, err) == (1, "", f"embscope: error: {folder / 'meta_000200.json'}: not readable JSON"
                                       " (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))\n")
    (folder / "meta_000200.json").unlink()  # a model file without its meta file is not a step
    assert load(str(folder)).facts["step"] == 100


def test_llmc_tokenizer_cut_short(llmc, tmp_path, capsys):
    src = llmc["root"] / "gpt2_tokenizer.bin"
    cut = tmp_path / "gpt2_tokenizer.bin"
    cut.write_bytes(src.read_bytes()[:-3])
    code, out, err = run(["info", "-m", str(llmc["alone"]), "--tokenizer", str(cut)], capsys)
    assert (code, out, err) == (1, "", f"embscope: error: {cut}: the tokenizer file ends before its 50257 tokens do\n")
    longer = tmp_path / "long" / "gpt2_tokenizer.bin"
    longer.parent.mkdir()
    longer.write_bytes(src.read_bytes() + b"\x00")
    code, out, err = run(["info", "-m", str(llmc["alone"]), "--tokenizer", str(longer)], capsys)
    assert (code, out, err) == (1, "", f"embscope: error: {longer}: 1 bytes after the last of its 50257 tokens\n")


class _Whole(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = torch.nn.Embedding(10, 4)


def test_docs_quote_the_real_messages(llmc, nanochat, foreign, tiktoken_gpt2, tmp_path, capsys, clean_home):
    """Every refusal in docs/formats.md is the message embscope prints (paths shown as PATH,
    SPEC or FOLDER)."""
    doc = (Path(__file__).resolve().parent.parent / "docs" / "formats.md").read_text(encoding="utf-8")
    whole = tmp_path / "whole.pt"
    torch.save(_Whole(), whole)
    src = llmc["root"] / "gpt2_124M.bin"
    data = src.read_bytes()
    (tmp_path / "v2.bin").write_bytes(data[:4] + (2).to_bytes(4, "little") + data[8:])
    (tmp_path / "cut.bin").write_bytes(data[:-4])
    (tmp_path / "llama3.bin").write_bytes((20240803).to_bytes(4, "little") + data[4:])
    named = tmp_path / "named.pkl"
    named.write_bytes(pickle.dumps(tiktoken_gpt2))
    other = fw.save_nanochat_tokenizer(tmp_path, fw.nanochat_encoding(tiktoken_gpt2, 3000))
    folder = str(nanochat["folder"])
    runs = [(["-m", str(whole)], str(whole), "PATH"),
            (["-m", str(foreign / "tf")], str(foreign / "tf"), "PATH"),
            (["-m", str(foreign / "flax" / "flax_model.msgpack")], str(foreign / "flax" / "flax_model.msgpack"), "PATH"),
            (["-m", str(tmp_path / "v2.bin")], str(tmp_path / "v2.bin"), "PATH"),
            (["-m", str(tmp_path / "cut.bin")], str(tmp_path / "cut.bin"), "PATH"),
            (["-m", str(tmp_path / "llama3.bin")], str(tmp_path / "llama3.bin"), "PATH"),
            (["-m", str(llmc["root"] / "gpt2_tokenizer.bin")], str(llmc["root"] / "gpt2_tokenizer.bin"), "PATH"),
            (["--tokenizer", str(named)], str(named), "PATH"),
            (["-m", folder, "--tokenizer", str(other)], f"{folder}: the tokenizer ({other})", "SPEC: the tokenizer (PATH)"),
            (["-m", folder, "--step", "150"], folder, "FOLDER"),
            (["-m", str(src), "--step", "5"], str(src), "SPEC")]
    for argv, path, shown in runs:
        code, out, err = run(["info", *argv], capsys)
        assert code in (1, 2) and out == "" and err.startswith("embscope: error: "), err
        message = err.removeprefix("embscope: error: ").rstrip("\n").replace(path, shown)
        assert f"`{message}`" in doc, message


def test_nanochat_tokenizer_pickle_protocols_and_bad_contents(nanochat, tmp_path, monkeypatch, capsys):
    """Any pickle protocol from 2 up reads the same (protocol 2 writes bytes through
    _codecs.encode); an Encoding state of the wrong shape is one clear error."""
    import tiktoken

    from embscope.io.nanochat import read_tokenizer

    enc = nanochat["enc"]
    for protocol in (2, 3, 4, 5):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(enc, protocol=protocol))
        assert read_tokenizer(str(path)).encode(TEXTS[1]) == enc.encode(TEXTS[1], allowed_special="all")
    monkeypatch.setattr(tiktoken.Encoding, "__getstate__", lambda self: {"name": "x", "pat_str": 5,
                                                                          "mergeable_ranks": {}, "special_tokens": {}})
    bad = tmp_path / "tokenizer.pkl"
    bad.write_bytes(pickle.dumps(enc))
    code, out, err = run(["info", "--tokenizer", str(bad)], capsys)
    assert (code, out, err) == (1, "", f"embscope: error: {bad}: a tiktoken Encoding without the mergeable_ranks"
                                       " (bytes -> id), pat_str and special_tokens (str -> id) it should hold\n")


def test_nanochat_optimizer_files_are_never_opened(nanochat, tmp_path, clean_home):
    import shutil

    folder = tmp_path / "d2"
    shutil.copytree(nanochat["folder"], folder)
    for optim in folder.glob("optim_*.pt"):
        optim.write_bytes(b"not a torch file at all")
    emb = load(str(folder))
    assert emb.files == [str(folder / "model_000200.pt")]
    assert np.array_equal(emb.wte.to_float32(), f32(nanochat["models"][200].transformer.wte.weight))


# --- the API's words for its arguments, the CLI's for its options ---------------------------------

def test_api_errors_name_the_arguments_the_cli_its_options(llmc, nanochat, state_dicts, tmp_path, clean_home):
    import embscope
    from embscope.cli.main import cli_message
    from embscope.errors import EmbscopeError

    log, src, tok = llmc["root"] / "log124M", llmc["root"] / "gpt2_124M.bin", llmc["root"] / "gpt2_tokenizer.bin"
    folder, dp = nanochat["folder"], state_dicts[0] / "dp.pt"
    not_steps = " is not a folder of training steps (nanochat model_NNNNNN.pt or llm.c model_NNNNNNNN.bin files)"
    cases = [  # (arguments of embscope.load, the API's message, the CLI's message)
        ((str(log),), {"step": 300}, f"step=300: {log} has no llm.c snapshot of step 300 (steps: 100, 200)",
         f"checkpoint step 300: {log} has no llm.c snapshot of step 300 (steps: 100, 200)"),
        ((str(folder),), {"step": 150}, f"step=150: {folder} has no nanochat model of step 150 (steps: 100, 200)",
         f"checkpoint step 150: {folder} has no nanochat model of step 150 (steps: 100, 200)"),
        ((str(src),), {"step": 5}, f"step=5: {src}{not_steps}", f"checkpoint step 5: {src}{not_steps}"),
        ((str(tok),), {}, f"{tok}: an llm.c tokenizer file, not a model (pass it with tokenizer=)",
         f"{tok}: an llm.c tokenizer file, not a model (pass it with --tokenizer)"),
        ((str(dp),), {"wte_key": "nope"}, "wte_key: no tensor named 'nope' in the checkpoint",
         "--wte-key: no tensor named 'nope' in the checkpoint"),
        ((str(dp),), {"wpe_key": "nope"}, "wpe_key: no tensor named 'nope' in the checkpoint",
         "--wpe-key: no tensor named 'nope' in the checkpoint"),
    ]
    for args, kwargs, api, cli in cases:
        with pytest.raises(EmbscopeError) as e:
            embscope.load(*args, **kwargs)
        assert (str(e.value), cli_message(e.value)) == (api, cli)


def test_no_token_embeddings_name_the_argument_or_the_option(tmp_path, capsys):
    import embscope
    from embscope.errors import EmbscopeError
    from safetensors.numpy import save_file

    path = tmp_path / "model.safetensors"
    save_file({"encoder.proj.weight": np.ones((4, 3), dtype=np.float32)}, str(path))
    looked = ("wte.weight, embeddings.word_embeddings.weight, decoder.embed_tokens.weight, embed_tokens.weight,"
              " embed_in.weight, word_embeddings.weight, tok_embeddings.weight, embed.weight")
    with pytest.raises(EmbscopeError) as e:
        embscope.load(str(path))
    assert str(e.value) == f"no token embedding tensor found (looked for {looked}); name it with wte_key="
    code, out, err = run(["info", "-m", str(path)], capsys)
    assert (code, out, err) == (1, "", f"embscope: error: no token embedding tensor found (looked for {looked});"
                                       " name it with --wte-key\n")


def test_guessed_tensor_names_in_the_api_notes(cases):
    import embscope

    case = cases["distill"]
    prefix = case.wte_key[: -len("transformer.wte.weight")]
    assert embscope.load(case.spec).emb.notes == [
        f"note: token embeddings from '{case.wte_key}', position embeddings from '{prefix}transformer.wpe.weight'"
        " (found by name; also found 'teacher.transformer.wte.weight'; wte_key=/wpe_key= name others)"]
    assert embscope.load(case.spec, wte_key=case.wte_key).emb.notes == []
