"""embscope.model.load against checkpoints written by the real serializers (see conftest.py).

Every matrix is compared exactly (np.array_equal) with the tensor the model itself holds.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from embscope.cli.main import cli_message
from embscope.errors import EmbscopeError
from embscope.model import load

from tests.conftest import GPT2_VOCAB, N_EMBD, N_POS, REV_MAIN, REV_OLD, REV_PLAIN

HF_NAMES = ["gpt2-lm", "gpt2-lm-fp16", "gpt2-lm-bf16", "gpt2-base", "gpt2-sharded", "gpt2-bin",
            "gpt2-bin-sharded", "gpt2-bin-fp16", "gpt2-bin-bf16", "opt-lm", "opt-base", "bert",
            "roberta", "distilbert", "gpt-neo", "llama", "pythia", "bloom"]
NANO_NAMES = ["bpe", "bpe-compiled", "char", "char-beside"]
NO_POSITIONS = ["llama", "pythia", "bloom"]
HEADLESS = ["gpt2-base", "opt-base", "bert", "roberta", "distilbert"]  # XModel: no LM head


@pytest.fixture
def ref(request, hf_models, nanogpt_ckpts):
    name = request.param
    return {**hf_models, **nanogpt_ckpts}[name]


@pytest.fixture(scope="session")
def loaded(tmp_path_factory):
    """load(path), once per session, from an empty working directory. For tests that only read
    the result: loading a GPT-2 tokenizer costs a few tenths of a second each time."""
    cache = {}
    cwd = tmp_path_factory.mktemp("cwd")

    def get(path: str):
        if path not in cache:
            with pytest.MonkeyPatch.context() as mp:
                mp.chdir(cwd)
                mp.delenv("EMBSCOPE_MODEL", raising=False)
                cache[path] = load(path)
        return cache[path]

    return get


def all_refs(names=HF_NAMES + NANO_NAMES):
    return pytest.mark.parametrize("ref", names, indirect=True)


# --- the matrices ----------------------------------------------------------------------------

@all_refs()
def test_matrices_equal_the_models_own(ref, loaded):
    emb = loaded(ref.path)
    assert emb.wte.shape == ref.wte.shape
    assert np.array_equal(emb.wte.to_float32(), ref.wte)
    if ref.wpe is None:
        assert emb.wpe is None
    else:
        assert emb.wpe.shape == ref.wpe.shape
        assert np.array_equal(emb.wpe.to_float32(), ref.wpe)


@all_refs()
def test_layout(ref, loaded):
    emb = loaded(ref.path)
    assert emb.layout.family == ref.family
    assert emb.layout.wte_key == ref.wte_key
    assert emb.layout.wpe_key == ref.wpe_key
    assert emb.layout.position_offset == ref.position_offset
    assert emb.format == ref.format
    assert emb.dim == N_EMBD
    assert emb.wte.dtype_name == ref.dtype


@all_refs()
def test_tokens_and_padding(ref, loaded):
    emb = loaded(ref.path)
    assert emb.vocab_rows == ref.wte.shape[0]
    assert emb.n_tokens == (ref.n_tokens or ref.wte.shape[0])


@all_refs([n for n in HF_NAMES + NANO_NAMES if n not in HEADLESS])
def test_tied(ref, loaded):
    assert loaded(ref.path).tied is ref.tied


@all_refs(HEADLESS)
def test_tied_is_unknown_without_an_lm_head(ref, loaded):
    """GPT2Model, BertModel, ...: tie_word_embeddings is a config default, there is no head."""
    assert loaded(ref.path).tied is None


@all_refs(["gpt2-lm", "gpt2-lm-bf16", "opt-lm", "opt-base", "roberta", "bert", "bpe"])
def test_position_rows_start_at_the_offset(ref, loaded):
    emb = loaded(ref.path)
    off = ref.position_offset
    assert emb.n_positions == ref.wpe.shape[0] - off
    assert emb.n_positions == N_POS
    assert np.array_equal(emb.position_rows(0, 5), ref.wpe[off:off + 5])
    assert np.array_equal(emb.position_rows(N_POS - 1, N_POS), ref.wpe[-1:])


def test_position_offsets_by_family(hf_models, loaded):
    assert loaded(hf_models["opt-lm"].path).layout.position_offset == 2  # OPTLearnedPositionalEmbedding
    assert loaded(hf_models["roberta"].path).layout.position_offset == 2  # pad_token_id 1 + 1
    assert loaded(hf_models["bert"].path).layout.position_offset == 0
    assert loaded(hf_models["distilbert"].path).layout.position_offset == 0


@all_refs(NO_POSITIONS)
def test_no_learned_positions(ref, loaded):
    emb = loaded(ref.path)
    assert emb.wpe is None and emb.n_positions == 0
    message = (f"{ref.path}: this model has no learned position embeddings"
               f" ({ref.family} family: positions are rotary, ALiBi or absent)")
    with pytest.raises(EmbscopeError) as e:
        emb.require_positions()
    assert str(e.value) == message
    with pytest.raises(EmbscopeError, match="no learned position embeddings"):
        emb.position_rows(0, 1)


@all_refs(["bert", "roberta", "distilbert", "bloom"])
def test_embedding_layernorm_and_token_type(ref, loaded):
    emb = loaded(ref.path)
    w, b, eps = emb.norm
    assert np.array_equal(w, ref.norm[0]) and np.array_equal(b, ref.norm[1])
    assert eps == ref.norm[2]
    if ref.token_type0 is None:
        assert emb.token_type0 is None
    else:
        assert np.array_equal(emb.token_type0, ref.token_type0)


@all_refs(["gpt2-lm", "bpe", "llama"])
def test_gpt_and_llama_have_no_embedding_norm(ref, loaded):
    emb = loaded(ref.path)
    assert emb.norm is None and emb.token_type0 is None


# --- how the checkpoint is named -------------------------------------------------------------

@pytest.mark.parametrize("name,file", [("gpt2-lm", "model.safetensors"), ("gpt2-bin", "pytorch_model.bin"),
                                       ("gpt2-sharded", "model.safetensors.index.json"),
                                       ("gpt2-bin-sharded", "pytorch_model.bin.index.json")])
def test_file_or_directory(hf_models, name, file):
    ref = hf_models[name]
    emb = load(os.path.join(ref.path, file))
    assert np.array_equal(emb.wte.to_float32(), ref.wte)
    assert np.array_equal(emb.wpe.to_float32(), ref.wpe)
    assert emb.tokenizer is not None and emb.tokenizer.source == os.path.join(ref.path, "tokenizer.json")


@pytest.mark.parametrize("name,index", [("gpt2-sharded", "model.safetensors.index.json"),
                                        ("gpt2-bin-sharded", "pytorch_model.bin.index.json")])
def test_sharded_opens_only_the_embedding_shards(hf_models, name, index):
    ref = hf_models[name]
    weight_map = json.loads(Path(ref.path, index).read_text())["weight_map"]
    needed = {weight_map["transformer.wte.weight"], weight_map["transformer.wpe.weight"]}
    assert len(set(weight_map.values())) > len(needed)  # the fixture has shards to leave alone
    emb = load(ref.path)
    assert sorted(os.path.basename(f) for f in emb.files) == sorted(needed)
    assert emb.file_bytes == sum(os.path.getsize(os.path.join(ref.path, n)) for n in needed)


def test_env_model(hf_models, monkeypatch):
    monkeypatch.setenv("EMBSCOPE_MODEL", hf_models["opt-lm"].path)
    assert load().layout.family == "opt"


# --- what is read ----------------------------------------------------------------------------

def test_safetensors_reads_header_and_two_tensors(hf_models):
    ref = hf_models["gpt2-lm"]
    path = os.path.join(ref.path, "model.safetensors")
    with open(path, "rb") as f:
        (header,) = struct.unpack("<Q", f.read(8))
    emb = load(ref.path)
    assert emb.files == [path]
    assert emb.file_bytes == os.path.getsize(path)
    assert emb.read_bytes == 8 + header + ref.wte.nbytes + ref.wpe.nbytes


def test_nanogpt_never_reads_the_optimizer_state(nanogpt_ckpts, monkeypatch):
    """Spy on every memory map: only wte, wpe and the 0-d best_val_loss are ever mapped."""
    ref = nanogpt_ckpts["bpe"]
    mapped = []
    real = np.memmap

    def spy(*args, **kw):
        m = real(*args, **kw)
        mapped.append(m.nbytes)
        return m

    monkeypatch.setattr(np, "memmap", spy)
    emb = load(ref.path)
    wte_bytes, wpe_bytes = ref.wte.nbytes, ref.wpe.nbytes  # float32, as saved
    assert sorted(mapped) == sorted([wte_bytes, wpe_bytes, 4])
    assert emb.file_bytes == os.path.getsize(ref.path)
    # model + AdamW exp_avg + exp_avg_sq: the file is three times the weights
    assert emb.file_bytes > 2.9 * wte_bytes
    assert wte_bytes + wpe_bytes < emb.read_bytes < wte_bytes + wpe_bytes + 64_000
    assert emb.read_bytes < 0.4 * emb.file_bytes


# --- nanoGPT ---------------------------------------------------------------------------------

@all_refs(NANO_NAMES)
def test_nanogpt_facts(ref, loaded):
    emb = loaded(ref.path)
    for key in ("iter_num", "best_val_loss", "dataset", "model_args"):
        assert emb.facts[key] == ref.facts[key], key
    assert isinstance(emb.facts["best_val_loss"], float)
    assert emb.facts["model_args"]["vocab_size"] == ref.wte.shape[0]
    assert emb.facts["config"]["dataset"] == ref.facts["dataset"]


def test_nanogpt_matrices_are_the_modules(nanogpt_ckpts):
    ref = nanogpt_ckpts["bpe-compiled"]
    emb = load(ref.path)
    model = ref.model
    assert np.array_equal(emb.wte.to_float32(), model.transformer.wte.weight.detach().numpy())
    assert np.array_equal(emb.wte.to_float32(), model.lm_head.weight.detach().numpy())  # tied
    assert np.array_equal(emb.wpe.to_float32(), model.transformer.wpe.weight.detach().numpy())


@pytest.mark.parametrize("name", ["bpe", "bpe-compiled"])
def test_nanogpt_bpe_uses_gpt2_and_pads(nanogpt_ckpts, name):
    emb = load(nanogpt_ckpts[name].path)
    assert emb.vocab_rows == 50304 and emb.n_tokens == GPT2_VOCAB
    assert emb.tokenizer.kind == "GPT-2 BPE (bundled with embscope)"
    assert emb.token_text(GPT2_VOCAB) is None  # a padding row has no text
    assert emb.token_text(5822) == b" king"


def test_char_meta_from_the_working_directory(nanogpt_ckpts, nanogpt_checkout, monkeypatch):
    """nanoGPT's sample.py: data/<config['dataset']>/meta.pkl, relative to where you run it."""
    ref = nanogpt_ckpts["char"]
    monkeypatch.chdir(nanogpt_checkout)
    emb = load(ref.path)
    assert emb.tokenizer.source == os.path.join("data", "shakespeare_char", "meta.pkl")
    assert emb.tokenizer.vocab_size == 65 and emb.n_tokens == 65 and emb.vocab_rows == 65


@pytest.mark.parametrize("as_dir", [False, True], ids=["ckpt.pt", "out_dir"])
def test_char_meta_beside_the_checkpoint(nanogpt_ckpts, tmp_path, monkeypatch, as_dir):
    ref = nanogpt_ckpts["char-beside"]
    monkeypatch.chdir(tmp_path)
    emb = load(os.path.dirname(ref.path) if as_dir else ref.path)
    assert emb.files == [ref.path]
    assert emb.tokenizer.source == os.path.join(os.path.dirname(ref.path), "meta.pkl")
    assert emb.token_text(emb.tokenizer.stoi["K"]) == b"K"


def test_char_without_meta(nanogpt_ckpts, nanogpt_checkout, tmp_path, monkeypatch):
    ref = nanogpt_ckpts["char"]
    monkeypatch.chdir(tmp_path)
    emb = load(ref.path)
    assert emb.tokenizer is None and emb.n_tokens == 65
    emb = load(ref.path, meta=str(nanogpt_checkout / "data" / "shakespeare_char" / "meta.pkl"))
    assert emb.tokenizer.vocab_size == 65


def test_tokenizer_larger_than_the_model_is_refused(nanogpt_ckpts, hf_models, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = nanogpt_ckpts["char"].path
    tok = os.path.join(hf_models["gpt2-lm"].path, "tokenizer.json")
    with pytest.raises(EmbscopeError, match="has 50257 ids but the model only 65 token embeddings"):
        load(path, tokenizer=tok)


# --- --wte-key / --wpe-key -------------------------------------------------------------------

def test_wte_key_override_any_2d_tensor(hf_models):
    ref = hf_models["llama"]
    emb = load(ref.path, wte_key="lm_head.weight")
    assert emb.layout.family == "custom" and emb.wpe is None
    assert np.array_equal(emb.wte.to_float32(), ref.facts["lm_head"])


def test_wte_key_override_keeps_family_and_finds_positions(nanogpt_ckpts):
    ref = nanogpt_ckpts["bpe-compiled"]
    emb = load(ref.path, wte_key="_orig_mod.transformer.wte.weight")
    assert emb.layout.family == "gpt2"
    assert emb.layout.wpe_key == "_orig_mod.transformer.wpe.weight"
    assert np.array_equal(emb.wpe.to_float32(), ref.wpe)


def test_wpe_key_override(hf_models):
    from safetensors import safe_open

    ref = hf_models["gpt2-lm"]
    key = "transformer.h.0.attn.c_proj.weight"  # any (n, 16) matrix will do
    emb = load(ref.path, wpe_key=key)
    assert emb.layout.family == "gpt2" and emb.layout.wpe_key == key
    with safe_open(os.path.join(ref.path, "model.safetensors"), framework="numpy") as f:
        assert np.array_equal(emb.wpe.to_float32(), f.get_tensor(key))
    assert np.array_equal(emb.wte.to_float32(), ref.wte)


def test_wte_key_override_smaller_than_the_tokenizer(hf_models):
    ref = hf_models["gpt2-lm"]
    with pytest.raises(EmbscopeError, match="has 50257 ids but the model only 64 token embeddings"):
        load(ref.path, wte_key="transformer.wpe.weight")


@pytest.mark.parametrize("name", ["gpt2-lm", "gpt2-sharded", "gpt2-bin-sharded", "bpe"])
@pytest.mark.parametrize("option", ["wte_key", "wpe_key"])
def test_unknown_override_names(hf_models, nanogpt_ckpts, name, option):
    path = {**hf_models, **nanogpt_ckpts}[name].path
    flag = "--" + option.replace("_", "-")
    with pytest.raises(EmbscopeError) as e:
        load(path, **{option: "transformer.nope.weight"})
    assert str(e.value) == f"{option}: no tensor named 'transformer.nope.weight' in the checkpoint"
    assert cli_message(e.value) == f"{flag}: no tensor named 'transformer.nope.weight' in the checkpoint"


def test_override_that_is_not_a_matrix(hf_models):
    ref = hf_models["gpt2-lm"]
    file = os.path.join(ref.path, "model.safetensors")
    with pytest.raises(EmbscopeError) as e:
        load(ref.path, wte_key="transformer.ln_f.weight")
    assert str(e.value) == (f"{file}: tensor 'transformer.ln_f.weight' has shape (16,);"
                            " an embedding matrix is 2-D")


def test_override_of_the_wrong_width(hf_models):
    ref = hf_models["gpt2-lm"]
    with pytest.raises(EmbscopeError) as e:
        load(ref.path, wpe_key="transformer.h.0.attn.c_attn.weight")  # Conv1D (16, 48)
    assert str(e.value) == (f"{ref.path}: token embeddings are 16 wide but position embeddings 48:"
                            " 'transformer.wte.weight' and 'transformer.h.0.attn.c_attn.weight'"
                            " do not belong together")


# --- the Hugging Face cache ------------------------------------------------------------------

@pytest.mark.parametrize("spec,name,rev", [
    ("org/name", "gpt2-lm", REV_MAIN),
    ("org/name@main", "gpt2-lm", REV_MAIN),
    (f"org/name@{REV_MAIN}", "gpt2-lm", REV_MAIN),
    (f"org/name@{REV_OLD}", "gpt2-lm-fp16", REV_OLD),
    ("tinygpt2", "gpt2-base", REV_PLAIN),
])
def test_hub_ids_from_the_cache(hub_cache, hf_models, spec, name, rev):
    ref = hf_models[name]
    emb = load(spec)
    assert emb.source == spec
    assert np.array_equal(emb.wte.to_float32(), ref.wte)
    assert np.array_equal(emb.wpe.to_float32(), ref.wpe)
    assert emb.wte.dtype_name == ref.dtype
    snapshot = os.path.join(str(hub_cache), "models--" + spec.split("@")[0].replace("/", "--"), "snapshots", rev)
    assert emb.files == [os.path.join(snapshot, "model.safetensors")]
    assert emb.tokenizer.source == os.path.join(snapshot, "tokenizer.json")
    assert emb.n_tokens == GPT2_VOCAB


def test_hub_sharded_fetches_only_the_embedding_shards(hub_cache, hf_models):
    emb = load("org/sharded")
    index = Path(hf_models["gpt2-sharded"].path, "model.safetensors.index.json")
    weight_map = json.loads(index.read_text())["weight_map"]
    needed = {weight_map["transformer.wte.weight"], weight_map["transformer.wpe.weight"]}
    assert sorted(os.path.basename(f) for f in emb.files) == sorted(needed)
    assert np.array_equal(emb.wte.to_float32(), hf_models["gpt2-sharded"].wte)


@pytest.mark.parametrize("spec", ["nobody/nothing", "nothing", f"org/name@{'e' * 40}"])
def test_hub_id_not_in_the_cache(hub_cache, spec):
    with pytest.raises(EmbscopeError) as e:
        load(spec)
    assert str(e.value) == (f"{spec}: not a local path, and not in the Hugging Face cache"
                            " (the hub is offline or unreachable)")


# --- files embscope must refuse, with a message ----------------------------------------------

def test_missing_path():
    with pytest.raises(EmbscopeError) as e:
        load("/nonexistent/ckpt.pt")
    assert str(e.value) == "/nonexistent/ckpt.pt: no such file or directory"


def test_directory_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(EmbscopeError, match="no model weights in this directory"):
        load(str(tmp_path))


def test_empty_file(tmp_path):
    (tmp_path / "ckpt.pt").write_bytes(b"")
    with pytest.raises(EmbscopeError) as e:
        load(str(tmp_path / "ckpt.pt"))
    assert str(e.value) == f"{tmp_path / 'ckpt.pt'}: empty file"


def test_legacy_torch_pickle(tmp_path):
    import torch

    path = tmp_path / "old.pt"
    torch.save({"transformer.wte.weight": torch.zeros(4, 2)}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(EmbscopeError, match="a legacy \\(pre-zip\\) torch pickle"):
        load(str(path))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo embscope-test-pwned > /dev/null",))


def test_pickle_that_runs_code_is_refused(tmp_path):
    import torch

    path = tmp_path / "evil.pt"
    torch.save({"model": {"transformer.wte.weight": torch.zeros(4, 2)}, "x": _Evil()}, path)
    with pytest.raises(EmbscopeError) as e:
        load(str(path))
    assert str(e.value) == (f"{path}: refused to load: the pickle asks to run"
                            f" '{os.system.__module__}.system', which embscope never runs")


def test_meta_pkl_that_runs_code_is_refused(nanogpt_ckpts, tmp_path):
    meta = tmp_path / "meta.pkl"
    meta.write_bytes(pickle.dumps({"stoi": _Evil()}))
    with pytest.raises(EmbscopeError, match="refused to load"):
        load(nanogpt_ckpts["char"].path, meta=str(meta))


def test_nanogpt_cropped_block_size(tmp_path):
    """train.py with init_from='gpt2' and a smaller block_size crops the model: wpe becomes a
    Parameter over its first rows, and torch.save writes the whole, larger storage."""
    import torch

    from scripts.gpt import GPT

    torch.manual_seed(0)
    model = GPT(vocab_size=65, block_size=64, n_layer=1, n_head=2, n_embd=16)
    model.transformer.wpe.weight = torch.nn.Parameter(model.transformer.wpe.weight[:24])  # (24, 16) view
    state = model.state_dict()
    assert state["transformer.wpe.weight"].untyped_storage().nbytes() == 64 * 16 * 4
    path = tmp_path / "ckpt.pt"
    torch.save({"model": state, "model_args": dict(block_size=24, vocab_size=65), "iter_num": 0,
                "best_val_loss": 1e9, "config": {"dataset": "shakespeare_char"}}, path)
    emb = load(str(path))
    assert emb.wpe.shape == (24, 16) and emb.n_positions == 24
    assert np.array_equal(emb.wpe.to_float32(), model.transformer.wpe.weight.detach().numpy())
    assert np.array_equal(emb.wte.to_float32(), model.transformer.wte.weight.detach().numpy())
    assert emb.facts["best_val_loss"] == 1e9  # before the first evaluation it is a float


def test_strided_tensor_in_a_torch_archive(tmp_path):
    """A state dict may hold views (a transposed matrix, a slice of rows of a bigger storage)."""
    import torch

    wte = torch.randn(8, 100).t()  # (100, 8), strides (1, 100)
    wpe = torch.randn(60, 8)[10:30:2]  # (10, 8), storage offset 80, row stride 16
    path = tmp_path / "pytorch_model.bin"
    torch.save({"transformer.wte.weight": wte, "transformer.wpe.weight": wpe}, path)
    emb = load(str(path))
    assert emb.wte.shape == (100, 8) and emb.wpe.shape == (10, 8)
    assert np.array_equal(emb.wte.to_float32(), wte.numpy())
    assert np.array_equal(emb.wpe.to_float32(), wpe.numpy())
    assert np.array_equal(emb.wte.take([3, 99, 0]), wte.numpy()[[3, 99, 0]])


@pytest.mark.parametrize("revision", ["../../../../../../../../../dev/zero", "../refs/main", "main/../../x"])
def test_a_hub_revision_never_leaves_the_repo_folder(hub_cache, capsys, revision):
    """`org/name@<path>` is a revision name, never a path: /dev/zero is not read (that would
    never end), and the answer is the usual one line."""
    from tests.helpers import run

    code, out, err = run(["info", "-m", f"org/name@{revision}"], capsys)
    assert (code, out) == (1, "")
    assert err == (f"embscope: error: org/name@{revision}: not a local path, and not in the Hugging Face"
                   " cache (the hub is offline or unreachable)\n")


def test_a_hub_ref_with_a_slash_still_resolves(hub_cache):
    """refs/pr/1 style revisions are files below refs/ in the HF cache: still found."""
    from tests.conftest import REV_MAIN

    ref = hub_cache / "models--org--name" / "refs" / "refs" / "pr" / "1"
    ref.parent.mkdir(parents=True, exist_ok=True)
    ref.write_text(REV_MAIN)
    assert load("org/name@refs/pr/1").files[0].endswith(f"snapshots/{REV_MAIN}/model.safetensors")
