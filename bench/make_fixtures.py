#!/usr/bin/env python
"""Generate the benchmark fixtures: seeded random weights written by the real serializers.

    python bench/make_fixtures.py                 # everything missing, into bench/.fixtures
    python bench/make_fixtures.py --only gpt2-small
    python bench/make_fixtures.py --list

Fixtures (never committed; bench/.fixtures is gitignored):

  queries/            words-10k.txt, words-200.txt: seeded GPT-2 words that are one token
                      with a leading space (" king" -> 5822), one per line, no leading space
  tiktoken-cache/     tiktoken's file cache for get_encoding("gpt2"), offline
  gpt2-small/         HF dir, GPT2LMHeadModel(768 wide, 12 layers).save_pretrained, fp32
  gpt2-small-bf16/    the same model (same seed) converted to bfloat16 before saving
  gpt2-small-fp16/    ... and to float16
  gpt2-medium/        HF dir, 1024 wide, 24 layers, fp32
  gpt2-small-tuned/   gpt2-small "fine-tuned": wte and wpe turned by a seeded random rotation,
                      plus noise, 100 tokens moved; save_pretrained (for bench/diff.py)
  nanogpt-124m/       ckpt.pt exactly as nanoGPT's train.py writes it (model+AdamW state)
  llama-bf16-sharded/ bf16 3-shard safetensors + index.json, 128256 x 4096 embed_tokens
  gpt2-xl/            HF dir, 1600 wide, 48 layers; model.safetensors is a SPARSE file

Every HF directory also gets config.json, the tokenizer as written by
GPT2TokenizerFast.save_pretrained (tokenizer.json, tokenizer_config.json) and, like the
hub's gpt2 repos, vocab.json + merges.txt.

A fixture is built in NAME.partial/ and renamed to NAME/ when complete, so an
interrupted run never leaves something that looks finished; existing fixtures are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import FIXTURES_DIR, GPT2_TOKENIZER_DIR, disk_usage, human, setup_tiktoken_cache  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SEED = 1234


# ----------------------------------------------------------------------------- helpers


def _quiet_transformers():
    import transformers

    transformers.logging.set_verbosity_error()
    try:
        transformers.utils.logging.disable_progress_bar()
    except Exception:
        pass


def write_tokenizer(dst: Path) -> None:
    """GPT-2 tokenizer as save_pretrained writes it, plus the raw vocab.json/merges.txt."""
    from transformers import GPT2TokenizerFast

    tok = GPT2TokenizerFast.from_pretrained(str(GPT2_TOKENIZER_DIR))
    tok.save_pretrained(str(dst))
    for name in ("vocab.json", "merges.txt"):
        if not (dst / name).exists():
            shutil.copyfile(GPT2_TOKENIZER_DIR / name, dst / name)


def gpt2_config(n_embd: int, n_layer: int, n_head: int):
    from transformers import GPT2Config

    return GPT2Config(vocab_size=50257, n_positions=1024, n_embd=n_embd, n_layer=n_layer, n_head=n_head)


def verify_hf_dir(d: Path) -> None:
    """AutoModel + AutoTokenizer must load offline, with no missing/unexpected weights."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(d))
    ids = tok(" king")["input_ids"]
    assert ids == [5822], ids
    model, info = AutoModel.from_pretrained(str(d), output_loading_info=True)
    bad = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    assert not bad, f"{d}: loading info {bad}"
    w = model.get_input_embeddings().weight
    print(f"  verified: AutoModel -> {type(model).__name__}, wte {tuple(w.shape)} {w.dtype}; "
          f"AutoTokenizer(' king') -> {ids}", flush=True)
    del model


# ----------------------------------------------------------------------------- builders


def build_queries(d: Path) -> None:
    """Seeded sample of GPT-2 vocabulary words that are a single token with a leading space."""
    import tiktoken

    setup_tiktoken_cache(d.parent)
    enc = tiktoken.get_encoding("gpt2")
    vocab = json.loads((GPT2_TOKENIZER_DIR / "vocab.json").read_text(encoding="utf-8"))
    # byte-level BPE: "\u0120" (Ġ) is the space byte; ASCII letters map to themselves
    words = sorted(
        t[1:] for t in vocab
        if t.startswith("\u0120") and len(t) >= 3 and t[1:].isascii() and t[1:].isalpha()
    )
    words = [w for w in words if enc.encode(" " + w) == [vocab["\u0120" + w]]]
    rng = random.Random(SEED)
    sample = rng.sample(words, 10_000)
    d.mkdir(parents=True)
    (d / "words-10k.txt").write_text("\n".join(sample) + "\n", encoding="utf-8")
    (d / "words-200.txt").write_text("\n".join(sample[:200]) + "\n", encoding="utf-8")
    print(f"  {len(words)} candidate words, sampled 10000 (seed {SEED})")


def build_tiktoken_cache(d: Path) -> None:
    setup_tiktoken_cache(d.parent)  # writes straight into <out>/tiktoken-cache
    import tiktoken

    assert tiktoken.get_encoding("gpt2").encode(" king") == [5822]


def _build_gpt2(d: Path, n_embd: int, n_layer: int, n_head: int, dtype: str = "float32") -> None:
    import torch
    from transformers import GPT2LMHeadModel

    _quiet_transformers()
    torch.manual_seed(SEED)
    # The default GPT-2 init (normal(0, 0.02) per matrix) costs a few seconds for
    # small/medium, which is cheaper than anything clever.
    model = GPT2LMHeadModel(gpt2_config(n_embd, n_layer, n_head)).to(getattr(torch, dtype))
    model.save_pretrained(str(d))  # config.json, generation_config.json, model.safetensors (in `dtype`)
    del model
    write_tokenizer(d)
    verify_hf_dir(d)


def build_gpt2_small(d: Path) -> None:
    _build_gpt2(d, 768, 12, 12)


def build_gpt2_small_bf16(d: Path) -> None:
    _build_gpt2(d, 768, 12, 12, "bfloat16")


def build_gpt2_small_fp16(d: Path) -> None:
    _build_gpt2(d, 768, 12, 12, "float16")


def build_gpt2_medium(d: Path) -> None:
    _build_gpt2(d, 1024, 24, 16)


def build_gpt2_small_tuned(d: Path) -> None:
    """gpt2-small (built first when missing) with its embeddings changed as a fine-tune might,
    turned besides (a space that drifted or was trained anew): the work `embscope diff` does."""
    import numpy as np
    import torch
    from transformers import GPT2LMHeadModel

    small = d.parent / "gpt2-small"
    if not small.exists():
        build_gpt2_small(d.parent / "gpt2-small.partial")
        os.replace(d.parent / "gpt2-small.partial", small)
    _quiet_transformers()
    model = GPT2LMHeadModel.from_pretrained(str(small))
    rng = np.random.default_rng(SEED)
    q, _ = np.linalg.qr(rng.standard_normal((768, 768)))  # (768, 768) orthogonal
    with torch.no_grad():
        for emb in (model.transformer.wte.weight, model.transformer.wpe.weight):
            w = emb.numpy().astype(np.float64)
            w = w @ q + rng.normal(0, 0.005, w.shape)
            emb.copy_(torch.from_numpy(w.astype(np.float32)))
        moved = rng.choice(50257, 100, replace=False)
        model.transformer.wte.weight[moved] = torch.from_numpy(rng.normal(0, 0.02, (100, 768)).astype(np.float32))
    model.save_pretrained(str(d))
    del model
    write_tokenizer(d)
    verify_hf_dir(d)


def build_gpt2_xl(d: Path) -> None:
    """GPT-2 XL shape (1600 wide, 48 layers, 1.56e9 params, ~6.2 GiB fp32) as a sparse file.

    How: a safetensors file is <u64 little-endian header length N><N bytes of JSON header,
    space-padded to a multiple of 8><data>, where the header maps every tensor name to
    {"dtype", "shape", "data_offsets": [begin, end]} relative to the start of the data and
    the offsets must tile the data region exactly. We
      1. let the real serializer tell us which tensors GPT2LMHeadModel.save_pretrained
         writes and in which order: save a tiny model with the same n_layer (48) and read
         its header (names/order; lm_head.weight is tied to wte, so it is not stored);
      2. take the XL shapes from GPT2LMHeadModel(config) built on the meta device (no memory);
      3. write the header, then only wte (50257 x 1600, seeded normal(0, 0.02)), wpe
         (1024 x 1600) and the LayerNorm weights (ones) as real bytes, seek over every other
         tensor, and ftruncate the file to its full length. The skipped ranges are holes that
         read back as zeros: the file's apparent size is the real 6.2 GiB but it uses only
         ~0.33 GB of disk. All-zero attention/MLP weights are a valid (useless) model.
    Verified below with safetensors.safe_open and AutoModel.from_pretrained (which reads
    all 6.2 GiB, mostly holes, so it needs ~6.5 GB of RAM for a moment).
    """
    import numpy as np
    import torch
    from safetensors import safe_open
    from transformers import GPT2LMHeadModel

    _quiet_transformers()
    n_embd, n_layer, n_head = 1600, 48, 25
    cfg = gpt2_config(n_embd, n_layer, n_head)

    with tempfile.TemporaryDirectory() as tmp:  # step 1: names/order from the real serializer
        tiny = GPT2LMHeadModel(
            __import__("transformers").GPT2Config(vocab_size=64, n_positions=8, n_embd=n_head * 2,
                                                  n_layer=n_layer, n_head=n_head))
        tiny.save_pretrained(tmp)
        with open(Path(tmp) / "model.safetensors", "rb") as f:
            (hlen,) = struct.unpack("<Q", f.read(8))
            tiny_header = json.loads(f.read(hlen))
    metadata = tiny_header.pop("__metadata__", {"format": "pt"})
    names = sorted(tiny_header, key=lambda k: tiny_header[k]["data_offsets"][0])

    with torch.device("meta"):  # step 2: shapes, without allocating anything
        meta_sd = GPT2LMHeadModel(cfg).state_dict()
    header: dict = {"__metadata__": metadata}
    offset = 0
    for name in names:
        assert tiny_header[name]["dtype"] == "F32", name
        shape = list(meta_sd[name].shape)
        nbytes = 4 * int(np.prod(shape, dtype=np.int64)) if shape else 4
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    data_len = offset

    hbytes = json.dumps(header, separators=(",", ":")).encode()
    hbytes += b" " * (-len(hbytes) % 8)
    rng = np.random.default_rng(SEED)
    d.mkdir(parents=True)
    path = d / "model.safetensors"
    data_start = 8 + len(hbytes)
    written = {}
    with open(path, "wb") as f:  # step 3
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for name in names:
            begin, end = header[name]["data_offsets"]
            shape = header[name]["shape"]
            if name in ("transformer.wte.weight", "transformer.wpe.weight"):
                arr = (rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02))
            elif name.endswith("ln_1.weight") or name.endswith("ln_2.weight") or name.endswith("ln_f.weight"):
                arr = np.ones(shape, dtype=np.float32)
            else:
                continue  # hole
            assert arr.nbytes == end - begin
            f.seek(data_start + begin)
            f.write(arr.astype("<f4", copy=False).tobytes())
            if name.endswith(("wte.weight", "wpe.weight")):
                written[name] = arr[:3, :5].copy()
            del arr
        f.truncate(data_start + data_len)

    with safe_open(str(path), framework="pt") as f:  # header/layout accepted by safetensors
        assert set(f.keys()) == set(names)
        assert f.metadata() == metadata
        for name, head in written.items():
            t = f.get_slice(name)[:3, :5]
            assert np.array_equal(t.numpy(), head), name
    print(f"  sparse model.safetensors: {len(names)} tensors, {human(data_start + data_len)} apparent")

    cfg.architectures = ["GPT2LMHeadModel"]
    cfg.save_pretrained(str(d))
    write_tokenizer(d)
    verify_hf_dir(d)


# What config/train_gpt2.py changes from train.py's defaults (which are already GPT-2 124M's).
GPT2_RUN = dict(wandb_log=True, wandb_run_name="gpt2-124M", eval_interval=1000, log_interval=10)


def build_nanogpt(d: Path) -> None:
    """ckpt.pt as nanoGPT's train.py writes it (GPT-2 124M, vocab padded to 50304, bias=False),
    by the tests' writer (tests/nanogpt.py over scripts/gpt.py): the weights of the torch.compile
    wrapper (`_orig_mod.` keys; wte and lm_head one storage, written once), the AdamW state after
    one real step on two 64-token windows, model_args, iter_num, a 0-d best_val_loss, config."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root
    from tests.nanogpt import train_checkpoint

    d.mkdir(parents=True)
    data = torch.randint(0, 50257, (4096,), generator=torch.Generator().manual_seed(SEED))
    model = train_checkpoint(d / "ckpt.pt", vocab_size=50304, data=data, dataset="openwebtext",
                             n_layer=12, n_head=12, n_embd=768, block_size=1024, iter_num=2000,
                             compile=True, seed=SEED, run=GPT2_RUN, rows=2, tokens=64)
    n_params = sum(p.numel() for p in model.parameters())
    del model
    ck = torch.load(d / "ckpt.pt", map_location="cpu", weights_only=True)  # readable w/o pickle code
    print(f"  {len(ck['model'])} state_dict keys, {len(ck['optimizer']['state'])} AdamW states, "
          f"{n_params / 1e6:.2f}M params")
    assert all(k.startswith("_orig_mod.") for k in ck["model"])
    assert ck["model"]["_orig_mod.transformer.wte.weight"].shape == (50304, 768)
    assert set(ck["optimizer"]["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}


def build_llama(d: Path) -> None:
    """bf16, 3 shards + model.safetensors.index.json, shaped like a Llama-3-8B-style model.

    Only some tensors exist (embed_tokens in shard 1 with layer 0's attention, part of
    layer 1 in shard 2, model.norm + untied lm_head in shard 3), so transformers cannot
    load it -- it is not meant to. No tokenizer is written: a tokenizer smaller than the
    matrix would make embscope treat the rows past it as padding and search only those it
    covers. Without one, queries are token ids (`#5822`) and all 128256 rows are searched.
    """
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    V, H, KV, I = 128256, 4096, 1024, 14336
    g = torch.Generator().manual_seed(SEED)

    def rand(*shape, chunk_rows=8192):
        out = torch.empty(shape, dtype=torch.bfloat16)
        flat = out.view(shape[0], -1)
        for i in range(0, shape[0], chunk_rows):  # fp32 temporaries stay small
            flat[i:i + chunk_rows] = (torch.randn(flat[i:i + chunk_rows].shape, generator=g) * 0.02)
        return out

    shards = {
        "model-00001-of-00003.safetensors": lambda: {
            "model.embed_tokens.weight": rand(V, H),
            "model.layers.0.self_attn.q_proj.weight": rand(H, H),
            "model.layers.0.self_attn.k_proj.weight": rand(KV, H),
            "model.layers.0.self_attn.v_proj.weight": rand(KV, H),
            "model.layers.0.self_attn.o_proj.weight": rand(H, H),
            "model.layers.0.input_layernorm.weight": torch.ones(H, dtype=torch.bfloat16),
        },
        "model-00002-of-00003.safetensors": lambda: {
            "model.layers.1.self_attn.q_proj.weight": rand(H, H),
            "model.layers.1.self_attn.k_proj.weight": rand(KV, H),
            "model.layers.1.input_layernorm.weight": torch.ones(H, dtype=torch.bfloat16),
        },
        "model-00003-of-00003.safetensors": lambda: {
            "model.norm.weight": torch.ones(H, dtype=torch.bfloat16),
            "lm_head.weight": rand(V, H),
        },
    }
    d.mkdir(parents=True)
    weight_map, total_size, total_params = {}, 0, 0
    for shard, make in shards.items():
        tensors = make()
        save_file(tensors, str(d / shard), metadata={"format": "pt"})
        for name, t in tensors.items():
            weight_map[name] = shard
            total_size += t.numel() * t.element_size()
            total_params += t.numel()
        del tensors
    index = {"metadata": {"total_parameters": total_params, "total_size": total_size},
             "weight_map": dict(sorted(weight_map.items()))}
    (d / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    LlamaConfig(
        vocab_size=V, hidden_size=H, intermediate_size=I, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
        rms_norm_eps=1e-5, rope_theta=500000.0, tie_word_embeddings=False,
        bos_token_id=128000, eos_token_id=128001, architectures=["LlamaForCausalLM"],
        dtype="bfloat16",
    ).save_pretrained(str(d))
    from safetensors import safe_open

    with safe_open(str(d / "model-00001-of-00003.safetensors"), framework="pt") as f:
        sl = f.get_slice("model.embed_tokens.weight")
        assert sl.get_shape() == [V, H] and sl.get_dtype() == "BF16"


BUILDERS = {
    "queries": build_queries,
    "tiktoken-cache": build_tiktoken_cache,
    "gpt2-small": build_gpt2_small,
    "gpt2-small-bf16": build_gpt2_small_bf16,
    "gpt2-small-fp16": build_gpt2_small_fp16,
    "gpt2-medium": build_gpt2_medium,
    "gpt2-small-tuned": build_gpt2_small_tuned,
    "nanogpt-124m": build_nanogpt,
    "llama-bf16-sharded": build_llama,
    "gpt2-xl": build_gpt2_xl,
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=FIXTURES_DIR, help="default: %(default)s")
    ap.add_argument("--only", action="append", choices=list(BUILDERS), metavar="NAME",
                    help="build only NAME (repeatable); one of: " + ", ".join(BUILDERS))
    ap.add_argument("--list", action="store_true", help="list fixtures and whether they exist")
    args = ap.parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)

    if args.list:
        for name in BUILDERS:
            p = out / name
            if p.exists():
                used, app = disk_usage(p)
                print(f"{name:20s} {human(used):>11s} on disk  {human(app):>11s} apparent")
            else:
                print(f"{name:20s} (missing)")
        return 0

    t_all = time.perf_counter()
    for name in args.only or BUILDERS:
        final = out / name
        if final.exists():
            used, app = disk_usage(final)
            print(f"{name}: exists, skipped ({human(used)} on disk, {human(app)} apparent)")
            continue
        partial = out / (name + ".partial")
        if partial.exists():
            shutil.rmtree(partial)
        print(f"{name}: building ...", flush=True)
        t0 = time.perf_counter()
        if name == "tiktoken-cache":
            BUILDERS[name](final)  # writes in place; nothing large
        else:
            BUILDERS[name](partial)
            os.replace(partial, final)
        used, app = disk_usage(final)
        print(f"{name}: made in {time.perf_counter() - t0:.1f} s -> {final} "
              f"({human(used)} on disk, {human(app)} apparent)", flush=True)
    print(f"done in {time.perf_counter() - t_all:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
