"""embscope's one GPT: it trains the bundled default model and writes real nanoGPT checkpoints.

Users: scripts/train_default_model.py (the default model), the tests (tests/nanogpt.py) and
bench/make_fixtures.py. Import it as `scripts.gpt` with the repository root on sys.path.

What it shares with nanoGPT is the checkpoint format, because that is what embscope reads: the
parameter names (transformer.wte, transformer.wpe, transformer.h.<i>.{ln_1, attn.c_attn,
attn.c_proj, ln_2, mlp.c_fc, mlp.c_proj}, transformer.ln_f, lm_head), the `model_args` dict, and
the dict train.py saves as ckpt.pt. The network is a GPT-2-style decoder: pre-norm blocks of causal
self-attention and a 4x GELU MLP, a final LayerNorm, and an output layer that is the token
embedding itself (so the state dict holds wte twice over one storage, as nanoGPT's does).
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttention(nn.Module):
    """Causal multi-head attention; c_attn holds the query, key and value maps side by side."""

    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.n_head, self.dropout = n_head, dropout

    def forward(self, x):  # x: (B, T, d)
        B, T, d = x.shape
        q, k, v = self.c_attn(x).view(B, T, 3, self.n_head, d // self.n_head).permute(2, 0, 3, 1, 4)  # 3 x (B, H, T, d/H)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=p, is_causal=True)  # (B, H, T, d/H)
        return F.dropout(self.c_proj(y.transpose(1, 2).reshape(B, T, d)), p)


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float, bias: bool):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = SelfAttention(n_embd, n_head, dropout, bias)
        self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = nn.Sequential(OrderedDict(
            c_fc=nn.Linear(n_embd, 4 * n_embd, bias=bias),
            gelu=nn.GELU(),
            c_proj=nn.Linear(4 * n_embd, n_embd, bias=bias),
            dropout=nn.Dropout(dropout),
        ))

    def forward(self, x):  # (B, T, d) -> (B, T, d)
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """GPT(**model_args); `model_args` is the dict a checkpoint stores to rebuild the model."""

    def __init__(self, vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int,
                 dropout: float = 0.0, bias: bool = True):
        super().__init__()
        assert n_embd % n_head == 0, "n_embd must split evenly over the heads"
        self.model_args = dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size,
                               bias=bias, vocab_size=vocab_size, dropout=dropout)
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, n_embd),  # (V, d)
            wpe=nn.Embedding(block_size, n_embd),  # (block_size, d)
            drop=nn.Dropout(dropout),
            h=nn.ModuleList(Block(n_embd, n_head, dropout, bias) for _ in range(n_layer)),
            ln_f=nn.LayerNorm(n_embd, bias=bias),
        ))
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight  # one (V, d) Parameter, two names
        self._initialise(n_layer)

    def _initialise(self, n_layer: int) -> None:
        """GPT-2's scheme: matrices N(0, 0.02), the two projections that write into the residual
        stream (c_proj) scaled down by sqrt(2 * n_layer), biases 0, LayerNorm gains 1."""
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() == 2:
                std = 0.02 / math.sqrt(2 * n_layer) if name.endswith("c_proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)

    def forward(self, idx):  # idx: (B, T) token ids -> logits (B, T, V)
        t = self.transformer
        x = t.drop(t.wte(idx) + t.wpe(torch.arange(idx.shape[1])))  # (B, T, d)
        for block in t.h:
            x = block(x)
        return self.lm_head(t.ln_f(x))

    def loss(self, idx, targets, reduction: str = "mean"):
        """Cross-entropy of next-token prediction, in nats ('mean' per token, or 'sum')."""
        logits = self(idx)  # (B, T, V)
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction=reduction)

    def adamw(self, lr: float, weight_decay: float, betas: tuple[float, float],
              decay_embeddings: bool = True) -> torch.optim.AdamW:
        """AdamW with two groups, decayed matrices first, then the rest (gains and biases); with
        decay_embeddings=False wte and wpe move to the undecayed group."""
        embeddings = {id(self.transformer.wte.weight), id(self.transformer.wpe.weight)}
        params = list(self.parameters())  # the tied matrix once
        decay = [p.dim() == 2 and (decay_embeddings or id(p) not in embeddings) for p in params]
        decayed = [p for p, d in zip(params, decay) if d]
        rest = [p for p, d in zip(params, decay) if not d]
        return torch.optim.AdamW([{"params": decayed, "weight_decay": weight_decay},
                                  {"params": rest, "weight_decay": 0.0}], lr=lr, betas=betas)


def train_step(model: GPT, optimizer, x, y, grad_clip: float = 0.0) -> float:
    """One optimisation step on the batch x -> y, both (B, T); returns the loss before it."""
    model.train()
    loss = model.loss(x, y)
    loss.backward()
    if grad_clip:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)  # the gradients are not needed past the step
    return loss.item()


def save_checkpoint(path, model: GPT, optimizer, *, iter_num: int, best_val_loss, config: dict,
                    compiled: bool = False) -> None:
    """torch.save the dict nanoGPT's train.py writes to ckpt.pt. compiled: the run used
    torch.compile, so the weights are the wrapper's state dict and every key starts with
    `_orig_mod.` (wrapping compiles nothing until the first call, so this is cheap)."""
    module = model
    if compiled:
        with warnings.catch_warnings():  # importing torch._dynamo may warn about torch.jit
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.compile(model)
    torch.save({
        "model": module.state_dict(),
        "optimizer": optimizer.state_dict(),
        "model_args": dict(model.model_args),
        "iter_num": iter_num,
        "best_val_loss": best_val_loss,
        "config": config,
    }, path)
