#!/usr/bin/env python3
"""Train embscope's bundled default model: a tiny nanoGPT on Tiny Shakespeare.

What this produces (in ``--out``, default ``embscope/data/shakespeare/``):

* ``tokenizer.json`` - a byte-level BPE (GPT-2 style: ByteLevel pre-tokenizer
  with ``add_prefix_space=False`` and ByteLevel decoder, so `` king`` with its
  leading space is a token) trained on the training split of the corpus.
* ``model.safetensors`` - only the two input-embedding matrices of the trained
  model, ``transformer.wte.weight`` (vocab_size, n_embd) and
  ``transformer.wpe.weight`` (block_size, n_embd), float32, with the training
  facts in the safetensors ``__metadata__`` header.

The model is embscope's own GPT (``scripts/gpt.py``, shared with the tests and
the benchmarks), in nanoGPT's architecture and with its parameter names:
learned token (wte) and position (wpe) embeddings, pre-LayerNorm transformer
blocks with causal self-attention and a GELU MLP, final LayerNorm, and an
output layer tied to wte.

Data split follows nanoGPT's ``data/shakespeare_char/prepare.py``: the first
90% of the characters are train, the last 10% are val. The tokenizer is
trained on the train split only, so the validation text is never seen.

Everything is seeded (``--seed``); the defaults below are the shipped model's
settings. (The shipped files were trained before the model moved to
scripts/gpt.py: the same network and data, but initial weights drawn in another
order, so a retrain matches them in quality, not bit for bit; see
docs/default-model.md.) Retrain with::

    python scripts/train_default_model.py            # 2 CPU threads

Only torch, numpy, tokenizers and safetensors are needed; no GPU.
Differences in thread count / CPU / torch version can change float rounding
and hence the last digits of the result, not its character.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # `python scripts/train_default_model.py` puts only scripts/ there
from scripts.gpt import GPT, train_step  # noqa: E402
DEFAULT_DATA = REPO / "data" / "tinyshakespeare" / "input.txt"  # the tests read it there too
DEFAULT_OUT = REPO / "embscope" / "data" / "shakespeare"

# Words whose leading-space forms we want as single tokens (checked, reported).
ROYAL_WORDS = (
    "king queen prince duke lord kings crown throne majesty sovereign emperor "
    "earl bishop richard edward henry father brother son uncle"
).split()


# --------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------
def train_tokenizer(text: str, vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes
        special_tokens=[],
        show_progress=False,
    )
    tok.train_from_iterator([text], trainer=trainer)
    return tok


# --------------------------------------------------------------------------
# evaluation helpers
# --------------------------------------------------------------------------
@torch.no_grad()
def full_val_nats(model, val_ids: torch.Tensor, block_size: int, batch: int = 32):
    """Total nats and token count over the whole val split, in consecutive
    non-overlapping windows of block_size (every val token but the first is
    predicted exactly once). Deterministic."""
    model.eval()
    n = (len(val_ids) - 1) // block_size
    xs = val_ids[: n * block_size].view(n, block_size)
    ys = val_ids[1: n * block_size + 1].view(n, block_size)
    total, count = 0.0, 0
    for i in range(0, n, batch):
        total += model.loss(xs[i:i + batch], ys[i:i + batch], reduction="sum").item()
        count += ys[i:i + batch].numel()
    # the ragged tail
    rem = len(val_ids) - 1 - n * block_size
    if rem > 0:
        x = val_ids[n * block_size: n * block_size + rem].view(1, -1)
        y = val_ids[n * block_size + 1:].view(1, -1)
        total += model.loss(x, y, reduction="sum").item()
        count += y.numel()
    model.train()
    return total, count


def cosine_neighbours(W: np.ndarray, q: int, k: int = 10):
    Wn = W / np.linalg.norm(W, axis=1, keepdims=True)
    sims = Wn @ Wn[q]
    sims[q] = -np.inf
    top = np.argsort(-sims)[:k]
    return [(int(i), float(sims[i])) for i in top]


def wpe_offset_cosine(P: np.ndarray, offsets=(1, 8, 32)):
    Pn = P / np.linalg.norm(P, axis=1, keepdims=True)
    S = Pn @ Pn.T
    return {d: float(np.mean(np.diagonal(S, offset=d))) for d in offsets}


# --------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="Tiny Shakespeare input.txt")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--vocab-size", type=int, default=3072)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--n-embd", type=int, default=256)
    ap.add_argument("--block-size", type=int, default=128)
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-iters", type=int, default=1200)
    ap.add_argument("--warmup-iters", type=int, default=100)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr", type=float, default=1e-4)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--decay-embeddings", action="store_true",
                    help="also weight-decay wte/wpe (nanoGPT does; default: no)")
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--eval-interval", type=int, default=100)
    ap.add_argument("--log-interval", type=int, default=25)
    ap.add_argument("--dtype", choices=["float32", "float16"], default="float32",
                    help="dtype of the saved matrices")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    t_start = time.time()

    # ---- data + tokenizer -------------------------------------------------
    text = Path(args.data).read_text(encoding="utf-8")
    n = len(text)
    train_text, val_text = text[: int(n * 0.9)], text[int(n * 0.9):]
    tok = train_tokenizer(train_text, args.vocab_size)
    V = tok.get_vocab_size()
    train_ids = torch.tensor(tok.encode(train_text).ids, dtype=torch.long)
    val_ids = torch.tensor(tok.encode(val_text).ids, dtype=torch.long)
    assert tok.decode(val_ids.tolist()) == val_text, "byte-level BPE must round-trip"
    # characters covered by the predicted val tokens (all but the first one)
    val_chars = len(val_text) - len(tok.decode(val_ids[:1].tolist()))
    singles = [w for w in ROYAL_WORDS if len(tok.encode(" " + w).ids) == 1]
    print(f"corpus {n:,} chars; vocab {V}; train {len(train_ids):,} tok, "
          f"val {len(val_ids):,} tok ({len(val_text) / len(val_ids):.2f} chars/tok)")
    print(f"single-token ' word's ({len(singles)}/{len(ROYAL_WORDS)}): {' '.join(singles)}")
    if len(tok.encode(" king").ids) != 1:
        raise SystemExit("' king' is not a single token; raise --vocab-size")

    king = tok.encode(" king").ids[0]

    # ---- model -------------------------------------------------------------
    model = GPT(V, args.block_size, args.n_layer, args.n_head, args.n_embd, args.dropout)
    n_params = sum(p.numel() for p in model.parameters())
    n_emb = model.transformer.wte.weight.numel() + model.transformer.wpe.weight.numel()
    print(f"params {n_params / 1e6:.2f}M ({(n_params - n_emb) / 1e6:.2f}M non-embedding)")
    opt = model.adamw(args.lr, args.weight_decay, (0.9, 0.99), args.decay_embeddings)

    gen = torch.Generator().manual_seed(args.seed)

    def get_batch():  # batch_size windows at random offsets of the train split, targets shifted by one
        starts = torch.randint(len(train_ids) - args.block_size - 1, (args.batch_size,), generator=gen)
        windows = torch.stack([train_ids[s: s + args.block_size + 1] for s in starts])  # (B, T + 1)
        return windows[:, :-1], windows[:, 1:]

    def get_lr(it):  # rises linearly over the warm-up steps, then half a cosine down to min_lr
        if it < args.warmup_iters:
            return args.lr * (it + 1) / (args.warmup_iters + 1)
        done = min(1.0, (it - args.warmup_iters) / max(1, args.max_iters - args.warmup_iters))
        return args.min_lr + (args.lr - args.min_lr) * (1 + math.cos(math.pi * done)) / 2

    best = {"val": float("inf"), "iter": -1, "state": None}
    t_train = time.time()
    model.train()
    for it in range(args.max_iters + 1):
        if it % args.eval_interval == 0 or it == args.max_iters:
            tot, cnt = full_val_nats(model, val_ids, args.block_size)
            vl = tot / cnt
            bpc = tot / val_chars / math.log(2)
            flag = ""
            if vl < best["val"]:
                best.update(val=vl, iter=it, bpc=bpc, nats=tot, count=cnt,
                            state={k: v.detach().clone() for k, v in model.state_dict().items()})
                flag = " *"
            print(f"iter {it:5d} | val {vl:.4f} nats/tok {bpc:.4f} bits/char "
                  f"| {time.time() - t_train:7.1f}s{flag}", flush=True)
            nb = cosine_neighbours(model.transformer.wte.weight.detach().numpy(), king, 10)
            print("           ' king' ~ " + " ".join(repr(tok.decode([i])) for i, _ in nb), flush=True)
        if it == args.max_iters:
            break
        lr = get_lr(it)
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = get_batch()
        loss = train_step(model, opt, x, y, args.grad_clip)
        if it % args.log_interval == 0:
            print(f"iter {it:5d} | train {loss:.4f} | lr {lr:.2e} "
                  f"| {time.time() - t_train:7.1f}s", flush=True)
    train_secs = time.time() - t_train

    # ---- export the best checkpoint's embeddings ----------------------------
    model.load_state_dict(best["state"])
    wte = model.transformer.wte.weight.detach().float().cpu().contiguous()
    wpe = model.transformer.wpe.weight.detach().float().cpu().contiguous()
    dt = torch.float16 if args.dtype == "float16" else torch.float32
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": "nanogpt",
        "dataset": "tinyshakespeare",
        "iter_num": str(best["iter"]),
        "best_val_loss": f"{best['val']:.6f}",
        "val_bits_per_char": f"{best['bpc']:.6f}",
        "n_layer": str(args.n_layer),
        "n_head": str(args.n_head),
        "n_embd": str(args.n_embd),
        "block_size": str(args.block_size),
        "vocab_size": str(V),
        "tokenizer": "byte-level BPE trained on the corpus",
        "trained_with": "scripts/train_default_model.py",
        "seed": str(args.seed),
    }
    from safetensors.torch import save_file

    save_file(
        {"transformer.wte.weight": wte.to(dt).contiguous(),
         "transformer.wpe.weight": wpe.to(dt).contiguous()},
        str(out / "model.safetensors"),
        metadata=meta,
    )
    tok.save(str(out / "tokenizer.json"))
    for f in ("model.safetensors", "tokenizer.json"):  # safetensors writes 0600
        os.chmod(out / f, 0o644)

    # ---- report -------------------------------------------------------------
    W, P = wte.numpy(), wpe.numpy()
    print(f"\ntrain wall time {train_secs:.0f}s, total {time.time() - t_start:.0f}s "
          f"({args.threads} threads)")
    print(f"best iter {best['iter']}: val {best['val']:.4f} nats/tok, {best['bpc']:.4f} bits/char "
          f"({best['count']} val tokens, {val_chars} val chars)")
    print("top-10 cosine neighbours of ' king':")
    for i, s in cosine_neighbours(W, king):
        print(f"  {s:.4f}  {tok.decode([i])!r}")
    print("wpe mean cosine at |i-j| = 1/8/32:",
          " / ".join(f"{v:.4f}" for v in wpe_offset_cosine(P).values()))
    for f in sorted(out.iterdir()):
        print(f"  {f.name}: {f.stat().st_size:,} bytes")
    print(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
