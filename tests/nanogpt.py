"""nanoGPT's files for the tests and the benchmarks, written with embscope's own GPT (scripts/gpt.py).

- `train_checkpoint`: ckpt.pt as nanoGPT's train.py saves it, after one real AdamW step: the
  weights (keys starting `_orig_mod.` when the run used torch.compile), the optimizer state,
  `model_args`, `iter_num`, `best_val_loss` (a 0-d tensor: the mean of the evaluation losses) and
  `config` (every train.py setting, after the config file and command line).
- `char_meta` / `write_meta`: meta.pkl as data/shakespeare_char/prepare.py pickles it.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from scripts.gpt import GPT, save_checkpoint, train_step

# The settings train.py records in `config`, at its defaults (a GPT-2 124M run on OpenWebText).
TRAIN_PY_DEFAULTS = dict(
    out_dir="out", eval_interval=2000, log_interval=1, eval_iters=200, eval_only=False,
    always_save_checkpoint=True, init_from="scratch", wandb_log=False, wandb_project="owt",
    wandb_run_name="gpt2", dataset="openwebtext", gradient_accumulation_steps=40, batch_size=12,
    block_size=1024, n_layer=12, n_head=12, n_embd=768, dropout=0.0, bias=False, learning_rate=6e-4,
    max_iters=600000, weight_decay=0.1, beta1=0.9, beta2=0.95, grad_clip=1.0, decay_lr=True,
    warmup_iters=2000, lr_decay_iters=600000, min_lr=6e-5, backend="nccl", device="cuda",
    dtype="bfloat16", compile=True,
)
# What config/train_shakespeare_char.py changes, run on a CPU (the model's sizes come on top).
CHAR_RUN = dict(
    out_dir="out-shakespeare-char", eval_interval=250, log_interval=10, always_save_checkpoint=False,
    wandb_project="shakespeare-char", wandb_run_name="mini-gpt", gradient_accumulation_steps=1,
    batch_size=64, learning_rate=1e-3, max_iters=5000, lr_decay_iters=5000, min_lr=1e-4, beta2=0.99,
    warmup_iters=100, device="cpu", dtype="float32",
)


def train_checkpoint(path, *, vocab_size: int, data: torch.Tensor, dataset: str, n_layer: int = 1,
                     n_head: int = 2, n_embd: int = 16, block_size: int = 32, bias: bool = False,
                     dropout: float = 0.0, iter_num: int = 250, compile: bool = False, seed: int = 1337,
                     run: dict = CHAR_RUN, rows: int = 4, tokens: int | None = None) -> GPT:
    """Train a GPT one step on `rows` random windows of `tokens` (default block_size) ids of
    `data` (N,), then write ckpt.pt. `run`: the settings changed from train.py's defaults. Returns
    the (uncompiled) model, whose parameters are the saved ones."""
    torch.manual_seed(seed)
    model = GPT(vocab_size, block_size, n_layer, n_head, n_embd, dropout, bias)
    config = {**TRAIN_PY_DEFAULTS, **run, **model.model_args, "dataset": dataset, "compile": compile}
    del config["vocab_size"]  # not a train.py setting: it comes from meta.pkl or is 50304
    optimizer = model.adamw(config["learning_rate"], config["weight_decay"], (config["beta1"], config["beta2"]))
    width = tokens or block_size
    starts = torch.randint(len(data) - width, (rows,))
    windows = torch.stack([data[s:s + width + 1] for s in starts])  # (rows, width + 1)
    x, y = windows[:, :-1], windows[:, 1:]
    train_step(model, optimizer, x, y, config["grad_clip"])
    model.eval()
    with torch.no_grad():
        best_val_loss = model.loss(x, y)  # 0-d, like train.py's estimate_loss() means
    save_checkpoint(path, model, optimizer, iter_num=iter_num, best_val_loss=best_val_loss,
                    config=config, compiled=compile)
    return model


def char_meta(text: str) -> dict:
    """prepare.py's meta.pkl: one id per distinct character, in sorted order."""
    chars = sorted(set(text))
    return {"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": {c: i for i, c in enumerate(chars)}}


def write_meta(meta: dict, path) -> None:
    Path(path).write_bytes(pickle.dumps(meta))
