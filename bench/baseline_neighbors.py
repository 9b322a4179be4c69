#!/usr/bin/env python
"""Baseline: nearest neighbours of a token the way users do it today (transformers / torch).

    python bench/baseline_neighbors.py MODEL_DIR [--query king] [-k 10]
    python bench/baseline_neighbors.py --nanogpt CKPT.pt [--query king]
    python bench/baseline_neighbors.py MODEL_DIR --batch WORDS.txt      # one query per line
    python bench/baseline_neighbors.py --nanogpt CKPT.pt --batch WORDS.txt

Prints `rank<TAB>id<TAB>token<TAB>score` (batch mode: `query<TAB>rank<TAB>id<TAB>token<TAB>score`),
the top-k cosine neighbours of the token of " QUERY", the query itself excluded.
On stderr it prints one line `bench: load_s=... loop_s=... n=...` that bench/run.py
uses to extrapolate the batch loop. Deliberately the obvious code, not optimised.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

T_START = time.perf_counter()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def _escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def load_hf(model_dir: str):
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir)
    W = model.get_input_embeddings().weight.detach()
    encode = lambda text: tok(text)["input_ids"]  # noqa: E731
    decode = lambda i: tok.decode([i])  # noqa: E731
    return W, encode, decode


def load_nanogpt(ckpt_path: str, weights_only: bool):
    import tiktoken

    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=weights_only)
    # a torch.compile'd run saves its weights under "_orig_mod."-prefixed names
    state_dict = {k.removeprefix("_orig_mod."): v for k, v in checkpoint["model"].items()}
    W = state_dict["transformer.wte.weight"]  # (V, d)
    enc = tiktoken.get_encoding("gpt2")

    def decode(i: int) -> str:
        try:
            return enc.decode([i])
        except Exception:  # nanoGPT pads the vocabulary 50257 -> 50304: rows with no token
            return f"<pad:{i}>"

    return W, enc.encode, decode


def neighbours(W: torch.Tensor, idx: int, k: int, Wn: torch.Tensor | None = None):
    if Wn is not None:  # --normalize-once: rows pre-normalised, one mat-vec per query
        sims = Wn @ Wn[idx]
    else:  # the idiom found in most tutorials
        sims = F.cosine_similarity(W[idx].unsqueeze(0), W, dim=-1)
    sims[idx] = -float("inf")  # exclude the query itself
    top = torch.topk(sims, k)
    return list(zip(top.indices.tolist(), top.values.tolist()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir", nargs="?", help="Hugging Face model directory")
    ap.add_argument("--nanogpt", metavar="CKPT", help="nanoGPT ckpt.pt instead of an HF directory")
    ap.add_argument("--weights-only", action="store_true",
                    help="torch.load(weights_only=True) (default: False, as older scripts do)")
    ap.add_argument("--query", default="king")
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--batch", metavar="FILE", help="answer one query per line of FILE")
    ap.add_argument("--normalize-once", action="store_true",
                    help="F.normalize(W) once, then Wn @ Wn[i] (default: F.cosine_similarity per query)")
    args = ap.parse_args(argv)
    if bool(args.model_dir) == bool(args.nanogpt):
        ap.error("give exactly one of MODEL_DIR or --nanogpt CKPT")

    if args.nanogpt:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from _common import setup_tiktoken_cache

        setup_tiktoken_cache()  # tiktoken's gpt2 files, offline
        W, encode, decode = load_nanogpt(args.nanogpt, args.weights_only)
    else:
        W, encode, decode = load_hf(args.model_dir)
    t_loaded = time.perf_counter()

    out = sys.stdout
    n = 0
    with torch.no_grad():
        Wn = F.normalize(W, dim=-1) if args.normalize_once else None
        if args.batch:
            with open(args.batch, encoding="utf-8") as f:
                for line in f:
                    word = line.rstrip("\n")
                    if not word:
                        continue
                    ids = encode(" " + word)
                    for rank, (i, s) in enumerate(neighbours(W, ids[0], args.k, Wn), 1):
                        out.write(f"{_escape(word)}\t{rank}\t{i}\t{_escape(decode(i))}\t{s:.6f}\n")
                    n += 1
        else:
            ids = encode(" " + args.query)
            if len(ids) != 1:
                print(f"warning: ' {args.query}' is {len(ids)} tokens {ids}; using the first",
                      file=sys.stderr)
            for rank, (i, s) in enumerate(neighbours(W, ids[0], args.k, Wn), 1):
                out.write(f"{rank}\t{i}\t{_escape(decode(i))}\t{s:.6f}\n")
            n = 1
    out.flush()
    t_end = time.perf_counter()
    print(f"bench: load_s={t_loaded - T_START:.4f} loop_s={t_end - t_loaded:.4f} n={n}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
