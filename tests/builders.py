"""Small real checkpoints, written by the real serializers, for the command tests."""

from __future__ import annotations

from pathlib import Path

import torch

from tests import nanogpt

GPT2_FILES = Path(__file__).resolve().parent.parent / "embscope" / "data" / "gpt2"
# Tiny Shakespeare is kept in the repository (public domain; see data/tinyshakespeare/README.md),
# at the one path scripts/train_default_model.py also reads.
SHAKESPEARE = Path(__file__).resolve().parent.parent / "data" / "tinyshakespeare" / "input.txt"


def gpt2_tokenizer():
    """transformers' own GPT-2 tokenizer over the same vocab/merges files: the id reference."""
    from transformers import GPT2TokenizerFast

    return GPT2TokenizerFast.from_pretrained(str(GPT2_FILES))


def save_model(directory, model_class, config, *, seed: int, dtype=None, tokenizer=None,
               bin_shard_size: str | None = None, **save_kw):
    """The one factory of the tests' Hugging Face models: `model_class(config)` made after
    torch.manual_seed(seed), cast to `dtype`, written by transformers' save_pretrained (`save_kw`:
    its options), or with `bin_shard_size` as pytorch_model.bin files by huggingface_hub's torch
    serializer (transformers 5 writes only safetensors) beside its config.json; `tokenizer`'s
    save_pretrained beside it. Returns the model (eval mode) as the reference."""
    torch.manual_seed(seed)
    model = model_class(config)
    if dtype is not None:
        model = model.to(dtype)
    model = model.eval()
    if bin_shard_size is None:
        model.save_pretrained(str(directory), **save_kw)
    else:
        from huggingface_hub import save_torch_state_dict

        Path(directory).mkdir(parents=True, exist_ok=True)
        save_torch_state_dict(model.state_dict(), str(directory), safe_serialization=False,
                              max_shard_size=bin_shard_size)
        model.config.save_pretrained(str(directory))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(directory))
    return model


def save_gpt2(directory, dtype=torch.float32, n_embd: int = 32, n_positions: int = 64, seed: int = 0):
    """A tiny GPT2LMHeadModel with GPT-2's real vocabulary, saved with save_pretrained."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=50257, n_positions=n_positions, n_embd=n_embd, n_layer=1, n_head=2)
    return save_model(directory, GPT2LMHeadModel, config, seed=seed, dtype=dtype, tokenizer=gpt2_tokenizer())


def shakespeare_text() -> str:
    return SHAKESPEARE.read_text(encoding="utf-8")


def save_char_nanogpt(directory, n_embd: int = 16, block_size: int = 32):
    """nanoGPT's shakespeare_char: meta.pkl beside a one-step ckpt.pt. Returns (path, state)."""
    text = shakespeare_text()
    meta = nanogpt.char_meta(text)
    nanogpt.write_meta(meta, Path(directory) / "meta.pkl")
    data = torch.tensor([meta["stoi"][c] for c in text[:20000]], dtype=torch.long)
    path = Path(directory) / "ckpt.pt"
    model = nanogpt.train_checkpoint(path, vocab_size=meta["vocab_size"], data=data,
                                     dataset="shakespeare_char", n_embd=n_embd, block_size=block_size)
    return path, model.state_dict()


def save_nanogpt_bpe(directory, pad_like: int | None = None, nan_rows=(), compile: bool = True):
    """nanoGPT trained from scratch on GPT-2 BPE: vocab padded to 50304, `_orig_mod.` keys.

    pad_like: make every padding row a copy of that token's row (so a search that forgot the
    padding would return them first). nan_rows: rows set to NaN. Returns (path, state) with
    state keys as in the model (no prefix)."""
    path = Path(directory) / "ckpt.pt"
    data = torch.randint(0, 50257, (5000,), generator=torch.Generator().manual_seed(0))
    model = nanogpt.train_checkpoint(path, vocab_size=50304, data=data, dataset="openwebtext",
                                     n_embd=16, block_size=64, compile=compile)
    if pad_like is not None or nan_rows:
        ckpt = torch.load(path, weights_only=True)
        prefix = "_orig_mod." if compile else ""
        wte = ckpt["model"][prefix + "transformer.wte.weight"]
        with torch.no_grad():
            if pad_like is not None:
                wte[50257:] = wte[pad_like] * 1.01
            for r in nan_rows:
                wte[r] = float("nan")
        torch.save(ckpt, path)
        state = {k.removeprefix(prefix): v for k, v in ckpt["model"].items()}
        return path, state
    return path, model.state_dict()


def save_hf(directory, family: str, dtype=torch.float32, seed: int = 0):
    """A tiny model of another family, saved with save_pretrained, with a tokenizer beside it.

    Returns the model (eval mode) as the reference."""
    import transformers as tf

    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    if family == "opt":
        config = tf.OPTConfig(vocab_size=50272, hidden_size=32, num_hidden_layers=1, ffn_dim=64,
                              num_attention_heads=2, max_position_embeddings=64, word_embed_proj_dim=32,
                              pad_token_id=1, bos_token_id=2, eos_token_id=2)
        model_class = tf.OPTForCausalLM
    elif family == "bert":
        config = tf.BertConfig(vocab_size=30522, max_position_embeddings=64, **small)
        model_class = tf.BertModel
    elif family == "roberta":
        config = tf.RobertaConfig(vocab_size=50265, max_position_embeddings=66, pad_token_id=1, **small)
        model_class = tf.RobertaModel
    elif family == "llama":
        config = tf.LlamaConfig(vocab_size=50257, num_key_value_heads=2, max_position_embeddings=64, **small)
        model_class = tf.LlamaForCausalLM
    elif family == "bloom":
        config = tf.BloomConfig(vocab_size=50257, hidden_size=32, n_layer=1, n_head=2)
        model_class = tf.BloomModel
    elif family == "gpt_neo":
        config = tf.GPTNeoConfig(vocab_size=50257, hidden_size=32, num_layers=1, num_heads=2,
                                 attention_types=[[["global"], 1]], max_position_embeddings=64)
        model_class = tf.GPTNeoForCausalLM
    else:
        raise ValueError(family)
    model = save_model(directory, model_class, config, seed=seed, dtype=dtype,
                       tokenizer=None if family == "bert" else gpt2_tokenizer())
    if family == "bert":
        bert_tokenizer(directory)
    return model


def bert_tokenizer(directory):
    """A WordPiece vocabulary of 30522 entries (specials, characters, words from Tiny
    Shakespeare), saved by BertTokenizerFast.save_pretrained."""
    import re

    from transformers import BertTokenizerFast

    words = sorted(set(re.findall(r"[a-z]+", shakespeare_text().lower())))
    chars = sorted(set("abcdefghijklmnopqrstuvwxyz0123456789.,;:!?'-"))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + ["##" + c for c in chars] + words
    vocab = list(dict.fromkeys(vocab))
    vocab += [f"[unused{i}]" for i in range(30522 - len(vocab))]
    path = Path(directory) / "vocab.txt"
    path.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tok = BertTokenizerFast.from_pretrained(str(directory), do_lower_case=True)
    tok.save_pretrained(directory)
    return tok
