#!/usr/bin/env python
"""`embscope glitch` against `embscope neighbors king` on the GPT-2-small-shaped fixture, and the
tokenizer's part (every token encoded again: the unreachable check) on 50k and 128k vocabularies.

    python bench/make_fixtures.py --only gpt2-small    # once
    python bench/glitch.py                             # ~1 min; builds the 128k tokenizer once
    python bench/glitch.py --embscope /tmp/ev/bin/embscope --reps 7

Targets (issue 14):
  1. `glitch` on a GPT-2-small-shaped model: <= 3 x `neighbors king` on the same model, whole
     processes alternating A B A B (bench/run.py's runner: warm-up, median wall, peak RSS)
  2. the tokenizer categories (token bytes, every token's text encoded in one batch) on a 50k and
     a 128k+ vocabulary: reported, in-process, median of --reps

The 128k vocabulary is GPT-2's byte-level BPE (its 50,256 tokens and merges, the same
pre-tokenizer) grown to 128,256 tokens with seeded merges of a word-start token and a short
word piece (" government" + "ally"), the end-of-text token last: a real tokenizer.json, written
once to bench/.fixtures/tokenizer-128k/ by the `tokenizers` library. Results: Markdown on
stdout, bench/results/glitch.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import FIXTURES_DIR, REPO_DIR, RESULTS_DIR  # noqa: E402
from run import Cmd, Runner, TIME_BIN, resolve_embscope  # noqa: E402

sys.path.insert(0, str(REPO_DIR))

VOCAB_128K = 128_256
TARGET = 3.0


def build_tokenizer_128k(directory: Path) -> Path:
    """GPT-2's byte-level BPE grown to 128,256 tokens (see the docstring)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    path = directory / "tokenizer.json"
    if path.exists():
        return path
    gpt2 = REPO_DIR / "embscope" / "data" / "gpt2"
    vocab = json.loads((gpt2 / "vocab.json").read_text(encoding="utf-8"))
    merges = [tuple(line.split(" ")) for line in (gpt2 / "merges.txt").read_text(encoding="utf-8").splitlines()[1:]
              if line]
    del vocab["<|endoftext|>"]  # it goes last, as a special token
    rng = random.Random(14)
    words = sorted(t for t in vocab if t.startswith("Ġ") and t[1:].isalpha() and t[1:].isascii())
    rests = sorted(t for t in vocab if t.isalpha() and t.isascii() and len(t) <= 6)
    while len(vocab) < VOCAB_128K - 1:
        a, b = rng.choice(words), rng.choice(rests)
        if a + b not in vocab and len(a + b) <= 24:
            vocab[a + b] = len(vocab)
            merges.append((a, b))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
    directory.mkdir(parents=True, exist_ok=True)
    partial = directory / "tokenizer.json.partial"
    tok.save(str(partial))
    os.replace(partial, path)
    return path


def time_categories(tokenizer_path: str | None, reps: int) -> dict:
    """In-process seconds of embscope.token_categories.categorize: median of `reps`, and of its
    one encode_batch call alone."""
    from embscope import token_categories as tc
    from embscope.tokenizer import bundled_gpt2, from_tokenizer_json

    tok = bundled_gpt2() if tokenizer_path is None else from_tokenizer_json(tokenizer_path)
    whole, encode = [], []
    batch = tok.encode_batch

    def timed_batch(texts):  # the encode_batch calls of one categorize(), added up
        t = time.perf_counter()
        out = batch(texts)
        encode[-1] += time.perf_counter() - t
        return out

    tok.encode_batch = timed_batch
    for _ in range(reps):
        encode.append(0.0)
        t = time.perf_counter()
        cats = tc.categorize(tok, tok.vocab_size)
        whole.append(time.perf_counter() - t)
    return {"vocab": tok.vocab_size, "categorize_s": statistics.median(whole),
            "encode_batch_s": statistics.median(encode), "counts": cats.counts()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--fixtures", type=Path, default=FIXTURES_DIR)
    ap.add_argument("--embscope", help="command that runs the CLI (default: `embscope` beside this python)")
    ap.add_argument("--json", type=Path, default=RESULTS_DIR / "glitch.json")
    args = ap.parse_args(argv)
    fx = args.fixtures.resolve()
    small = fx / "gpt2-small"
    if not small.exists():
        subprocess.run([sys.executable, str(Path(__file__).parent / "make_fixtures.py"), "--only", "gpt2-small"],
                       check=True)
    E = resolve_embscope(args.embscope)
    cache = tempfile.mkdtemp(prefix="embscope-bench-xdg-")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               HF_HUB_DISABLE_PROGRESS_BARS="1", XDG_CACHE_HOME=cache)  # as bench/run.py's children
    runner = Runner(env, "time" if os.access(TIME_BIN, os.X_OK) else "wait4", 600.0, verbose=False)
    load_before = [round(x, 2) for x in os.getloadavg()]
    glitch = Cmd(E + ["glitch", "-m", str(small), "-f", "tsv"])
    king = Cmd(E + ["neighbors", "king", "-m", str(small), "-f", "tsv", "-k", "10"])
    try:
        A, B = runner.compare(_comparison(glitch, king), args.reps)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    if not (A.ok and B.ok):
        print(f"error: glitch: {A.error}; neighbors: {B.error}", file=sys.stderr)
        return 1
    ratio = A.wall / B.wall
    tok128 = build_tokenizer_128k(fx / "tokenizer-128k")
    cats = {}
    for threads in ("false", "true"):  # tokenizers reads TOKENIZERS_PARALLELISM at every batch
        os.environ["TOKENIZERS_PARALLELISM"] = threads
        cats[f"gpt2 (50,257), parallelism {threads}"] = time_categories(None, args.reps)
        cats[f"GPT-2 grown to 128,256, parallelism {threads}"] = time_categories(str(tok128), args.reps)
    load_after = [round(x, 2) for x in os.getloadavg()]
    print(f"embscope glitch benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {args.reps} reps, {os.cpu_count()} CPUs,"
          f" load average {load_before[0]} before, {load_after[0]} after\n")
    print("| command | median wall | peak RSS |\n| --- | --- | --- |")
    print(f"| `glitch -m gpt2-small -f tsv` | {A.wall:.3f} s | {A.rss_mib:.0f} MiB |")
    print(f"| `neighbors king -m gpt2-small -f tsv` | {B.wall:.3f} s | {B.rss_mib:.0f} MiB |")
    verdict = "met" if ratio <= TARGET else "NOT met"
    print(f"\nglitch / neighbors king = **{ratio:.2f}x** (target <= {TARGET:g}x): {verdict}\n")
    print("| vocabulary, TOKENIZERS_PARALLELISM | categories (in-process) | of which encode_batch | unreachable |")
    print("| --- | --- | --- | --- |")
    for name, c in cats.items():
        print(f"| {name} | {c['categorize_s']:.3f} s | {c['encode_batch_s']:.3f} s | {c['counts']['unreachable']} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "loadavg": [load_before, load_after], "reps": args.reps, "ratio": ratio, "target": TARGET,
        "glitch": {"cmd": glitch.shell(), **A.to_json()}, "neighbors_king": {"cmd": king.shell(), **B.to_json()},
        "categories": cats}, indent=2) + "\n")
    return 0


def _comparison(a: Cmd, b: Cmd):
    from run import Comparison

    return Comparison("glitch", "glitch vs neighbors king", a, b, f"A.wall <= {TARGET} * B.wall")


if __name__ == "__main__":
    sys.exit(main())
