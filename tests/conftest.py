"""Checkpoints made by the real serializers, once per session, in pytest's tmp dirs.

Nothing here imitates a file format by hand: Hugging Face models are written by
transformers' `save_pretrained` (and `huggingface_hub.save_torch_state_dict` for the
`pytorch_model.bin` files transformers 5 no longer writes), nanoGPT checkpoints by `torch.save`
of the dict nanoGPT's train.py builds (tests/nanogpt.py, over embscope's own GPT in scripts/gpt.py),
meta.pkl by the pickle of its prepare.py.

Each fixture model is tiny (n_embd 16, one layer); the vocabulary is GPT-2's 50257 rows
where a test needs the real tokenizer.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tests.builders import save_model, shakespeare_text

ROOT = Path(__file__).resolve().parent.parent
GPT2_FILES = ROOT / "embscope" / "data" / "gpt2"  # vocab.json + merges.txt, bundled
GPT2_VOCAB = 50257
N_EMBD = 16
N_POS = 64

# tiktoken finds its files in TIKTOKEN_CACHE_DIR under the SHA-1 of their URL.
TIKTOKEN_URLS = {
    "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe": "merges.txt",
    "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json": "vocab.json",
}

# Two commits of one hub repo (main and an older one) and one of another.
REV_MAIN = "1f0c4f5b3a4c2d8e9f00112233445566778899aa"
REV_OLD = "0badc0de0badc0de0badc0de0badc0de0badc0d"
REV_PLAIN = "abcdefabcdefabcdefabcdefabcdefabcdefabcd"
REV_SHARDED = "5a4d0000000000000000000000000000000000a5"


def to_f32(t) -> np.ndarray:
    """A torch tensor as float32 numpy; exact for fp16 and bf16 (both widen losslessly)."""
    return t.detach().float().numpy().copy()


@dataclass
class Ref:
    """A checkpoint on disk and what embscope must read from it."""

    path: str  # what to hand to embscope.model.load
    family: str
    wte: np.ndarray  # (V, d) float32
    wpe: np.ndarray | None  # (P, d) float32, None when the family has no learned positions
    position_offset: int = 0
    tied: bool | None = None
    n_tokens: int | None = None  # None: every row is a token
    dtype: str = "float32"
    wte_key: str | None = None
    wpe_key: str | None = None
    format: str = "safetensors"
    token_type0: np.ndarray | None = None
    norm: tuple | None = None  # (weight, bias, eps)
    facts: dict = field(default_factory=dict)
    model: object = None  # the torch model whose weights were saved (nanoGPT: the GPT)

    @property
    def dir(self) -> str:
        return self.path if os.path.isdir(self.path) else os.path.dirname(self.path)


@pytest.fixture(scope="session")
def shakespeare() -> str:
    return shakespeare_text()


@pytest.fixture(autouse=True)
def _no_default_model(monkeypatch):
    """Tests never pick up a model from the caller's environment."""
    monkeypatch.delenv("EMBSCOPE_MODEL", raising=False)


# --- tokenizers ------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def gpt2_hf_tokenizer():
    from transformers import GPT2TokenizerFast

    return GPT2TokenizerFast.from_pretrained(str(GPT2_FILES))


@pytest.fixture(scope="session")
def tiktoken_gpt2(tmp_path_factory):
    """tiktoken's "gpt2" encoding, loaded offline from the bundled files."""
    tiktoken = pytest.importorskip("tiktoken")
    cache = tmp_path_factory.mktemp("tiktoken-cache")
    for url, name in TIKTOKEN_URLS.items():
        shutil.copyfile(GPT2_FILES / name, cache / hashlib.sha1(url.encode()).hexdigest())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIKTOKEN_CACHE_DIR", str(cache))
        import tiktoken.registry

        mp.delitem(tiktoken.registry.ENCODINGS, "gpt2", raising=False)
        enc = tiktoken.get_encoding("gpt2")
    return enc


@pytest.fixture(scope="session")
def wordpiece_dir(tmp_path_factory):
    """A BERT vocab.txt from the `tokenizers` WordPiece trainer, trained on the words of GPT-2's
    bundled vocabulary (so the model fixtures need no corpus)."""
    import json

    from tokenizers import BertWordPieceTokenizer

    words = [w.replace("\u0120", " ") for w in json.loads((GPT2_FILES / "vocab.json").read_text("utf-8"))]
    d = tmp_path_factory.mktemp("wordpiece")
    bw = BertWordPieceTokenizer(lowercase=True)
    bw.train_from_iterator(words, vocab_size=1500, show_progress=False)
    bw.save_model(str(d))
    return d


# --- Hugging Face models ---------------------------------------------------------------------

@pytest.fixture(scope="session")
def hf_models(tmp_path_factory, gpt2_hf_tokenizer, wordpiece_dir) -> dict[str, Ref]:
    import torch
    import transformers as T
    from transformers import BertTokenizerFast

    T.logging.set_verbosity_error()
    base = tmp_path_factory.mktemp("hf")
    refs: dict[str, Ref] = {}
    tok = gpt2_hf_tokenizer

    def gpt2_cfg(n_layer: int = 1):
        return T.GPT2Config(vocab_size=GPT2_VOCAB, n_positions=N_POS, n_embd=N_EMBD, n_layer=n_layer, n_head=2)

    # GPT-2 with LM head, fp32 / fp16 / bf16, each with the GPT-2 tokenizer beside it.
    for name, dtype in [("gpt2-lm", None), ("gpt2-lm-fp16", torch.float16), ("gpt2-lm-bf16", torch.bfloat16)]:
        m = save_model(base / name, T.GPT2LMHeadModel, gpt2_cfg(), seed=1, dtype=dtype, tokenizer=tok)
        refs[name] = Ref(str(base / name), "gpt2", to_f32(m.get_input_embeddings().weight),
                         to_f32(m.transformer.wpe.weight), tied=True, n_tokens=GPT2_VOCAB,
                         dtype={None: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}[dtype],
                         wte_key="transformer.wte.weight", wpe_key="transformer.wpe.weight")

    # GPT2Model: no LM head, keys without the "transformer." prefix.
    m = save_model(base / "gpt2-base", T.GPT2Model, gpt2_cfg(), seed=2, tokenizer=tok)
    refs["gpt2-base"] = Ref(str(base / "gpt2-base"), "gpt2", to_f32(m.get_input_embeddings().weight),
                            to_f32(m.wpe.weight), n_tokens=GPT2_VOCAB, wte_key="wte.weight",
                            wpe_key="wpe.weight")

    # Sharded safetensors: wte alone in one shard, the rest spread over others.
    m = save_model(base / "gpt2-sharded", T.GPT2LMHeadModel, gpt2_cfg(n_layer=2), seed=3, tokenizer=tok,
                   max_shard_size="8KB")
    refs["gpt2-sharded"] = Ref(str(base / "gpt2-sharded"), "gpt2", to_f32(m.get_input_embeddings().weight),
                               to_f32(m.transformer.wpe.weight), tied=True, n_tokens=GPT2_VOCAB,
                               format="safetensors (sharded)", wte_key="transformer.wte.weight",
                               wpe_key="transformer.wpe.weight")

    # pytorch_model.bin: transformers 5 ignores safe_serialization=False and always writes
    # safetensors, so the .bin files come from huggingface_hub's torch serializer (torch.save of
    # the state dict, shared wte/lm_head storage kept, as transformers 4 wrote them).
    for name, shard, dtype in [("gpt2-bin", "5GB", torch.float32), ("gpt2-bin-sharded", "8KB", torch.float32),
                               ("gpt2-bin-fp16", "5GB", torch.float16), ("gpt2-bin-bf16", "5GB", torch.bfloat16)]:
        d = base / name
        m = save_model(d, T.GPT2LMHeadModel, gpt2_cfg(n_layer=2), seed=4, dtype=dtype, tokenizer=tok,
                       bin_shard_size=shard)
        refs[name] = Ref(str(d), "gpt2", to_f32(m.get_input_embeddings().weight),
                         to_f32(m.transformer.wpe.weight), tied=True, n_tokens=GPT2_VOCAB,
                         format="torch state dict (zip)" if shard == "5GB" else "torch state dict (sharded)",
                         dtype=str(dtype).removeprefix("torch."),
                         wte_key="transformer.wte.weight", wpe_key="transformer.wpe.weight")

    # OPT: GPT-2 BPE, 50272 rows (OPT pads its vocabulary), positions shifted by 2.
    opt_cfg = dict(vocab_size=50272, hidden_size=N_EMBD, num_hidden_layers=1, ffn_dim=32,
                   num_attention_heads=2, max_position_embeddings=N_POS, word_embed_proj_dim=N_EMBD)
    m = save_model(base / "opt-lm", T.OPTForCausalLM, T.OPTConfig(**opt_cfg), seed=5, tokenizer=tok)
    refs["opt-lm"] = Ref(str(base / "opt-lm"), "opt", to_f32(m.get_input_embeddings().weight),
                         to_f32(m.model.decoder.embed_positions.weight), position_offset=2, tied=True,
                         n_tokens=GPT2_VOCAB, wte_key="model.decoder.embed_tokens.weight",
                         wpe_key="model.decoder.embed_positions.weight")
    m = save_model(base / "opt-base", T.OPTModel, T.OPTConfig(**{**opt_cfg, "vocab_size": 512}), seed=6)
    refs["opt-base"] = Ref(str(base / "opt-base"), "opt", to_f32(m.get_input_embeddings().weight),
                           to_f32(m.decoder.embed_positions.weight), position_offset=2,
                           wte_key="decoder.embed_tokens.weight", wpe_key="decoder.embed_positions.weight")

    # BERT with a WordPiece tokenizer saved by transformers (tokenizer.json).
    btok = BertTokenizerFast.from_pretrained(str(wordpiece_dir))
    m = save_model(base / "bert", T.BertModel,
                   T.BertConfig(vocab_size=len(btok), hidden_size=N_EMBD, num_hidden_layers=1, num_attention_heads=2,
                                intermediate_size=32, max_position_embeddings=N_POS), seed=7, tokenizer=btok)
    e = m.embeddings
    refs["bert"] = Ref(str(base / "bert"), "bert", to_f32(e.word_embeddings.weight),
                       to_f32(e.position_embeddings.weight), n_tokens=len(btok),
                       wte_key="embeddings.word_embeddings.weight",
                       wpe_key="embeddings.position_embeddings.weight",
                       token_type0=to_f32(e.token_type_embeddings.weight[0]),
                       norm=(to_f32(e.LayerNorm.weight), to_f32(e.LayerNorm.bias), e.LayerNorm.eps))

    # RoBERTa: position rows start at pad_token_id + 1 = 2.
    m = save_model(base / "roberta", T.RobertaModel,
                   T.RobertaConfig(vocab_size=512, hidden_size=N_EMBD, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=32, max_position_embeddings=N_POS + 2, pad_token_id=1), seed=8)
    e = m.embeddings
    refs["roberta"] = Ref(str(base / "roberta"), "bert", to_f32(e.word_embeddings.weight),
                          to_f32(e.position_embeddings.weight), position_offset=2,
                          wte_key="embeddings.word_embeddings.weight",
                          wpe_key="embeddings.position_embeddings.weight",
                          token_type0=to_f32(e.token_type_embeddings.weight[0]),
                          norm=(to_f32(e.LayerNorm.weight), to_f32(e.LayerNorm.bias), e.LayerNorm.eps))

    m = save_model(base / "distilbert", T.DistilBertModel,
                   T.DistilBertConfig(vocab_size=512, dim=N_EMBD, n_layers=1, n_heads=2, hidden_dim=32,
                                      max_position_embeddings=N_POS), seed=9)
    e = m.embeddings
    refs["distilbert"] = Ref(str(base / "distilbert"), "bert", to_f32(e.word_embeddings.weight),
                             to_f32(e.position_embeddings.weight),
                             wte_key="embeddings.word_embeddings.weight",
                             wpe_key="embeddings.position_embeddings.weight",
                             norm=(to_f32(e.LayerNorm.weight), to_f32(e.LayerNorm.bias), e.LayerNorm.eps))

    # GPT-Neo keeps GPT-2's tensor names (transformer.wte / transformer.wpe).
    m = save_model(base / "gpt-neo", T.GPTNeoForCausalLM,
                   T.GPTNeoConfig(vocab_size=GPT2_VOCAB, hidden_size=N_EMBD, num_layers=1, num_heads=2,
                                  attention_types=[[["global"], 1]], max_position_embeddings=N_POS),
                   seed=10, tokenizer=tok)
    refs["gpt-neo"] = Ref(str(base / "gpt-neo"), "gpt2", to_f32(m.get_input_embeddings().weight),
                          to_f32(m.transformer.wpe.weight), tied=True, n_tokens=GPT2_VOCAB,
                          wte_key="transformer.wte.weight", wpe_key="transformer.wpe.weight")

    # No learned positions: Llama (rotary, untied head), Pythia (rotary, embed_out), BLOOM (ALiBi).
    m = save_model(base / "llama", T.LlamaForCausalLM,
                   T.LlamaConfig(vocab_size=512, hidden_size=N_EMBD, intermediate_size=32, num_hidden_layers=1,
                                 num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=N_POS),
                   seed=11)
    refs["llama"] = Ref(str(base / "llama"), "llama", to_f32(m.get_input_embeddings().weight), None,
                        tied=False, wte_key="model.embed_tokens.weight",
                        facts={"lm_head": to_f32(m.lm_head.weight)})
    m = save_model(base / "pythia", T.GPTNeoXForCausalLM,
                   T.GPTNeoXConfig(vocab_size=512, hidden_size=N_EMBD, intermediate_size=32, num_hidden_layers=1,
                                   num_attention_heads=2, max_position_embeddings=N_POS), seed=12)
    refs["pythia"] = Ref(str(base / "pythia"), "gpt_neox", to_f32(m.get_input_embeddings().weight), None,
                         tied=False, wte_key="gpt_neox.embed_in.weight")
    m = save_model(base / "bloom", T.BloomForCausalLM,
                   T.BloomConfig(vocab_size=512, hidden_size=N_EMBD, n_layer=1, n_head=2), seed=13)
    ln = m.transformer.word_embeddings_layernorm
    refs["bloom"] = Ref(str(base / "bloom"), "bloom", to_f32(m.get_input_embeddings().weight), None,
                        tied=True, wte_key="transformer.word_embeddings.weight",
                        norm=(to_f32(ln.weight), to_f32(ln.bias), ln.eps))
    return refs


# --- nanoGPT -------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def char_meta(shakespeare) -> dict:
    from tests import nanogpt

    return nanogpt.char_meta(shakespeare)


@pytest.fixture(scope="session")
def nanogpt_checkout(tmp_path_factory, char_meta) -> Path:
    """A nanoGPT working copy after shakespeare_char/prepare.py: data/shakespeare_char/meta.pkl."""
    from tests import nanogpt

    checkout = tmp_path_factory.mktemp("nanoGPT")
    (checkout / "data" / "shakespeare_char").mkdir(parents=True)
    nanogpt.write_meta(char_meta, checkout / "data" / "shakespeare_char" / "meta.pkl")
    return checkout


@pytest.fixture(scope="session")
def nanogpt_ckpts(tmp_path_factory, shakespeare, char_meta) -> dict[str, Ref]:
    """nanoGPT train.py checkpoints: model + AdamW state after one step, best_val_loss a 0-d
    tensor. Each sits two folders deep (<name>/a/b/ckpt.pt) so that walking up from it never
    reaches another fixture's meta.pkl."""
    import torch

    from tests import nanogpt

    base = tmp_path_factory.mktemp("nanogpt")
    refs: dict[str, Ref] = {}
    stoi = char_meta["stoi"]
    char_data = torch.tensor([stoi[c] for c in shakespeare[:20_000]], dtype=torch.long)
    bpe_data = torch.randint(GPT2_VOCAB, (4096,), generator=torch.Generator().manual_seed(0))

    def ckpt(name: str, *, vocab: int, data, dataset: str, compile: bool = False, bias: bool = False,
             meta_beside: bool = False, iter_num: int = 250) -> Ref:
        d = base / name / "a" / "b"
        d.mkdir(parents=True)
        path = d / "ckpt.pt"
        model = nanogpt.train_checkpoint(path, vocab_size=vocab, data=data, dataset=dataset,
                                         compile=compile, bias=bias, iter_num=iter_num, n_embd=N_EMBD,
                                         block_size=N_POS)
        if meta_beside:
            nanogpt.write_meta(char_meta, d / "meta.pkl")
        saved = torch.load(path, map_location="cpu", weights_only=True)
        prefix = "_orig_mod." if compile else ""
        return Ref(
            str(path), "gpt2", to_f32(model.transformer.wte.weight), to_f32(model.transformer.wpe.weight),
            tied=True, format="nanoGPT checkpoint (torch zip)",
            wte_key=prefix + "transformer.wte.weight", wpe_key=prefix + "transformer.wpe.weight",
            facts={"iter_num": iter_num, "best_val_loss": round(float(saved["best_val_loss"]), 6),
                   "dataset": dataset, "model_args": saved["model_args"], "config": saved["config"]},
            model=model,
        )

    refs["bpe"] = ckpt("bpe", vocab=50304, data=bpe_data, dataset="openwebtext", iter_num=600)
    refs["bpe"].n_tokens = GPT2_VOCAB
    refs["bpe-compiled"] = ckpt("bpe-compiled", vocab=50304, data=bpe_data, dataset="shakespeare",
                                compile=True, bias=True)
    refs["bpe-compiled"].n_tokens = GPT2_VOCAB
    # Char-level: the meta.pkl only in the checkout (found from the cwd), beside the checkpoint,
    # or nowhere.
    refs["char"] = ckpt("char", vocab=65, data=char_data, dataset="shakespeare_char", compile=True)
    refs["char-beside"] = ckpt("char-beside", vocab=65, data=char_data, dataset="shakespeare_char",
                               meta_beside=True)
    return refs


# --- a Hugging Face cache, offline -----------------------------------------------------------

def _snapshot(cache: Path, repo_id: str, revision: str, source: Path, *, main: bool, symlinks: bool) -> None:
    """Lay out `source`'s files as the cache does: models--org--name/{refs,snapshots,blobs}."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / revision
    snap.mkdir(parents=True)
    (repo / "blobs").mkdir(exist_ok=True)
    for f in sorted(source.iterdir()):
        if symlinks:
            blob = repo / "blobs" / hashlib.sha256(f.read_bytes()).hexdigest()
            shutil.copyfile(f, blob)
            (snap / f.name).symlink_to(os.path.relpath(blob, snap))
        else:
            shutil.copyfile(f, snap / f.name)
    if main:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / "main").write_text(revision)


@pytest.fixture(scope="session")
def hub_cache_dir(tmp_path_factory, hf_models) -> Path:
    cache = tmp_path_factory.mktemp("hf-cache")
    _snapshot(cache, "org/name", REV_OLD, Path(hf_models["gpt2-lm-fp16"].path), main=False, symlinks=True)
    _snapshot(cache, "org/name", REV_MAIN, Path(hf_models["gpt2-lm"].path), main=True, symlinks=True)
    _snapshot(cache, "tinygpt2", REV_PLAIN, Path(hf_models["gpt2-base"].path), main=True, symlinks=False)
    _snapshot(cache, "org/sharded", REV_SHARDED, Path(hf_models["gpt2-sharded"].path), main=True, symlinks=True)
    return cache


@pytest.fixture
def hub_cache(monkeypatch, tmp_path, hub_cache_dir) -> Path:
    """HF_HUB_CACHE points at the fixture cache and the hub is offline. huggingface_hub reads
    its environment once, at import, so the in-process constants are patched too."""
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache_dir))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub_cache_dir))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)  # so "org/name" is never a local folder
    return hub_cache_dir
