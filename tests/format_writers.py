"""embscope's own writers for formats whose writer is another project's code (llm.c, nanochat,
modded-nanogpt), written from the format facts those projects publish, plus the small torch
modules whose state dicts they save. What these files hold is what embscope must read.

- llm.c (train_gpt2.py write_model / write_tokenizer, train_gpt2.cu gpt2_write_to_checkpoint):
  256 int32 header [20240326, 3 (fp32) or 5 (bf16), max_seq_len, vocab_size, num_layers,
  num_heads, channels, padded_vocab_size], then the parameters in this order, each (out, in) as
  torch.nn.Linear stores them: wte (Vp, C) with zero padding rows, wpe (maxT, C), then per kind
  over all layers: ln_1 w, ln_1 b, qkv w (3C, C), qkv b, attn proj w (C, C), attn proj b,
  ln_2 w, ln_2 b, fc w (4C, C), fc b, fc proj w (C, 4C), fc proj b; then ln_f w, ln_f b.
  Tokenizer: 256 int32 [20240328, 2, n tokens, eot id], then per id a length byte and the bytes.
- nanochat (checkpoint_manager.save_checkpoint): model_{step:06d}.pt = torch.save(state dict),
  meta_{step:06d}.json = json.dump(meta) with "model_config"; optim_{step:06d}_rank{r}.pt.
  Tokenizer: pickle.dump(tiktoken.Encoding) as <base>/tokenizer/tokenizer.pkl.
- modded-nanogpt (train_gpt.py): torch.save(dict(step=, code=, model=state dict, optimizers=[...])).
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

LLMC_MODEL_MAGIC, LLMC_TOKENIZER_MAGIC = 20240326, 20240328
NANOCHAT_SPECIALS = ["<|bos|>", "<|user_start|>", "<|user_end|>", "<|assistant_start|>", "<|assistant_end|>",
                     "<|python_start|>", "<|python_end|>", "<|output_start|>", "<|output_end|>"]
# nanochat's split pattern (tokenizer.py SPLIT_PATTERN): GPT-4's, with numbers of 1-2 digits.
NANOCHAT_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}+|\p{N}{1,2}| ?[^\s\p{L}\p{N}]++[\r\n]*"""
                    r"""|\s*[\r\n]|\s+(?!\S)|\s+""")


def round_up(n: int, multiple: int) -> int:
    return (n + multiple - 1) // multiple * multiple


# --- llm.c -----------------------------------------------------------------------------------

def llmc_tensors(model) -> list[torch.Tensor]:
    """A transformers GPT2LMHeadModel's parameters in llm.c's order and layout. GPT-2's Conv1D
    weights are stored (in, out): transposed to the (out, in) of an nn.Linear."""
    sd = model.state_dict()
    L, V, C = model.config.n_layer, model.config.vocab_size, model.config.n_embd
    wte = torch.zeros(round_up(V, 128), C)
    wte[:V] = sd["transformer.wte.weight"]
    out = [wte, sd["transformer.wpe.weight"]]
    per_layer = [("ln_1.weight", False), ("ln_1.bias", False), ("attn.c_attn.weight", True),
                 ("attn.c_attn.bias", False), ("attn.c_proj.weight", True), ("attn.c_proj.bias", False),
                 ("ln_2.weight", False), ("ln_2.bias", False), ("mlp.c_fc.weight", True),
                 ("mlp.c_fc.bias", False), ("mlp.c_proj.weight", True), ("mlp.c_proj.bias", False)]
    for name, transpose in per_layer:
        for i in range(L):
            t = sd[f"transformer.h.{i}.{name}"]
            out.append(t.t() if transpose else t)
    return out + [sd["transformer.ln_f.weight"], sd["transformer.ln_f.bias"]]


def write_llmc_model(model, path, dtype: str = "float32") -> None:
    cfg = model.config
    header = np.zeros(256, dtype="<i4")
    header[:8] = [LLMC_MODEL_MAGIC, 3 if dtype == "float32" else 5, cfg.n_positions, cfg.vocab_size,
                  cfg.n_layer, cfg.n_head, cfg.n_embd, round_up(cfg.vocab_size, 128)]
    with open(path, "wb") as f:
        f.write(header.tobytes())
        for t in llmc_tensors(model):
            t = t.detach().contiguous()
            if dtype == "float32":
                f.write(t.float().numpy().astype("<f4").tobytes())
            else:
                f.write(t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes())


def write_llmc_tokenizer(enc, path) -> None:
    """gpt2_tokenizer.bin from a tiktoken Encoding: every id's bytes, the end-of-text id."""
    n = enc.max_token_value + 1
    header = np.zeros(256, dtype="<i4")
    header[:4] = [LLMC_TOKENIZER_MAGIC, 2, n, enc.eot_token]
    with open(path, "wb") as f:
        f.write(header.tobytes())
        for i in range(n):
            b = enc.decode_single_token_bytes(i)
            f.write(struct.pack("<B", len(b)) + b)


# --- nanochat --------------------------------------------------------------------------------

class NanochatLike(nn.Module):
    """A module with nanochat's GPT parameter names and shapes: wte padded to a multiple of 64
    rows, no position matrix, separate q/k/v/proj, an untied lm_head, per-layer scalars and
    value embeddings on alternating layers."""

    def __init__(self, vocab_size: int, n_layer: int = 2, n_head: int = 2, n_embd: int = 16):
        super().__init__()
        rows = round_up(vocab_size, 64)
        blocks = []
        for _ in range(n_layer):
            block = nn.Module()
            block.attn = nn.Module()
            for name in ("c_q", "c_k", "c_v", "c_proj"):
                setattr(block.attn, name, nn.Linear(n_embd, n_embd, bias=False))
            block.mlp = nn.Module()
            block.mlp.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=False)
            block.mlp.c_proj = nn.Linear(4 * n_embd, n_embd, bias=False)
            blocks.append(block)
        self.transformer = nn.ModuleDict({"wte": nn.Embedding(rows, n_embd), "h": nn.ModuleList(blocks)})
        self.lm_head = nn.Linear(n_embd, rows, bias=False)
        self.resid_lambdas = nn.Parameter(torch.ones(n_layer))
        self.x0_lambdas = nn.Parameter(torch.zeros(n_layer))
        self.value_embeds = nn.ModuleDict({str(i): nn.Embedding(rows, n_embd)
                                           for i in range(n_layer) if i % 2 == (n_layer - 1) % 2})


def compiled(model):
    """torch.compile's wrapper: its state dict keys carry `_orig_mod.` (nothing compiles until
    the first call)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.compile(model)


def save_nanochat_step(folder: Path, step: int, model, model_config: dict, val_bpb: float) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(compiled(model).state_dict(), folder / f"model_{step:06d}.pt")
    meta = {"step": step, "val_bpb": val_bpb, "model_config": model_config,
            "user_config": {"depth": model_config["n_layer"]}, "device_batch_size": 4,
            "max_seq_len": model_config["sequence_len"]}
    with open(folder / f"meta_{step:06d}.json", "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
    opt = torch.optim.AdamW(model.parameters())
    torch.save(opt.state_dict(), folder / f"optim_{step:06d}_rank0.pt")


def nanochat_encoding(gpt2_enc, n_ranks: int):
    """A tiktoken Encoding as nanochat builds one: mergeable ranks (here GPT-2's first n_ranks,
    which are closed under their merges), nanochat's split pattern and special tokens after them."""
    import tiktoken

    ranks = {b: r for b, r in gpt2_enc._mergeable_ranks.items() if r < n_ranks}
    special = {name: n_ranks + i for i, name in enumerate(NANOCHAT_SPECIALS)}
    return tiktoken.Encoding(name="rustbpe", pat_str=NANOCHAT_PATTERN, mergeable_ranks=ranks, special_tokens=special)


def save_nanochat_tokenizer(base: Path, enc) -> Path:
    """RustBPETokenizer.save: pickle.dump of the Encoding into <base>/tokenizer/tokenizer.pkl."""
    (base / "tokenizer").mkdir(parents=True, exist_ok=True)
    path = base / "tokenizer" / "tokenizer.pkl"
    with open(path, "wb") as f:
        pickle.dump(enc, f)
    return path


# --- modded-nanogpt --------------------------------------------------------------------------

class ModdedLike(nn.Module):
    """modded-nanogpt's GPT parameter names: embed (vocab padded to a multiple of 128), value
    embeddings as one parameter, an lm_head of its own, scalars; no position matrix."""

    def __init__(self, vocab_size: int = 50257, dim: int = 16):
        super().__init__()
        rows = round_up(vocab_size, 128)
        self.embed = nn.Embedding(rows, dim)
        self.value_embeds = nn.Parameter(0.01 * torch.randn(3 * rows, dim))
        self.lm_head = nn.Linear(dim, rows, bias=False)
        self.scalars = nn.Parameter(torch.ones(4))


def save_modded(path: Path, model, step: int) -> None:
    opt = torch.optim.Adam(model.parameters())
    code = "# train_gpt.py, logged with the checkpoint\nprint('hello')\n"
    torch.save(dict(step=step, code=code, model=compiled(model).state_dict(), optimizers=[opt.state_dict()]), path)


def canary_module_source(marker: Path) -> str:
    """A module that leaves `marker` when imported or when one of its objects is unpickled."""
    return (
        "import torch\n"
        f"open({str(marker)!r}, 'a').write('imported\\n')\n"
        "class TinyNet(torch.nn.Module):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.wte = torch.nn.Embedding(10, 4)\n"
        "    def __setstate__(self, state):\n"
        f"        open({str(marker)!r}, 'a').write('unpickled\\n')\n"
        "        super().__setstate__(state)\n"
    )


def environ_with(path: str) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = path + os.pathsep + env.get("PYTHONPATH", "")
    return env
