"""What a model's embedding layer computes for a sequence of token ids (eval mode)."""

from __future__ import annotations

import numpy as np

from embscope.errors import EmbscopeError, UsageError
from embscope.model import Embeddings

COMPONENTS = ("token", "position", "sum")
POOLS = ("none", "mean", "last")


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    x64 = x.astype(np.float64)
    mu = x64.mean(axis=-1, keepdims=True)
    var = x64.var(axis=-1, keepdims=True)
    return ((x64 - mu) / np.sqrt(var + eps) * weight + bias).astype(np.float32)


def embed_ids(emb: Embeddings, ids: list[int]) -> dict[str, np.ndarray]:
    """{'token', 'position', 'sum'} (T, d) arrays for `ids` at positions 0..T-1 ('position' only
    for models with learned positions).

    'sum' is the embedding layer's output: GPT-2 / nanoGPT / GPT-Neo `wte[ids] + wpe[0..T-1]`;
    OPT the same with its offset of 2 rows; BERT family word + position + token type 0, then the
    embedding LayerNorm; BLOOM word embeddings then its LayerNorm; rotary models (Llama...) the
    token embeddings alone."""
    T = len(ids)
    if emb.wpe is not None and T > emb.n_positions:
        raise EmbscopeError(
            f"the text is {T} tokens but the model has only {emb.n_positions} positions"
            " (truncate=True keeps the first ones)"
        )
    if T and max(ids) >= emb.n_tokens:
        raise EmbscopeError(f"token id {max(ids)} is beyond the model's {emb.n_tokens} tokens")
    if T and min(ids) < 0:  # a negative id (config.json's bos_token_id, say) would read from the end
        raise EmbscopeError(f"token id {min(ids)} is negative")
    tok = emb.wte.take(ids)  # (T, d)
    out = {"token": tok}
    if emb.wpe is not None:
        out["position"] = emb.position_rows(0, T)  # (T, d)
        total = tok + out["position"]
    else:
        total = tok.copy()
    if emb.token_type0 is not None:
        total = total + emb.token_type0
    if emb.norm is not None:
        total = layer_norm(total, *emb.norm)
    out["sum"] = total.astype(np.float32)
    return out


def pool(vectors: np.ndarray, how: str) -> np.ndarray:
    if how == "none":
        return vectors
    if how == "mean":
        return vectors.mean(axis=0)
    if how == "last":
        return vectors[-1]
    raise UsageError(f"unknown pooling '{how}' (choose from {', '.join(POOLS)})")


BOS_NAMES = ("<|endoftext|>", "<s>", "[CLS]", "<|begin_of_text|>")  # GPT-2, Llama/OPT, BERT, Llama 3


def bos_id(emb: Embeddings) -> int:
    """The id a BOS token has in this model: config.json's bos_token_id, else the first of the
    usual BOS tokens that the tokenizer has as one token."""
    if type(emb.config.get("bos_token_id")) is int:  # not a bool
        return emb.config["bos_token_id"]
    for name in BOS_NAMES:
        token_id = emb.tokenizer.single_token(name)
        if token_id is not None and emb.tokenizer.token_bytes(token_id) == name.encode():
            return token_id
    raise EmbscopeError(f"{emb.name}: no BOS token known for this model")
