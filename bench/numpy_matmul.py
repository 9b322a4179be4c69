#!/usr/bin/env python
"""Reference throughput: numpy's own blocked W @ W.T, the core of `neighbors --all`.

    python bench/numpy_matmul.py [--V 50257] [--d 768] [--block 1024] [--rows N]

W is a random float32 (V, d) matrix (rows L2-normalised, as for cosine similarity).
For row blocks of `--block` rows out of the first `--rows` rows it computes
S = W[i:i+block] @ W.T into a preallocated buffer; only that loop is timed (one warm-up
block excluded, no top-k, no I/O). Prints one line on stdout:

    gflops=<2*rows*V*d / seconds / 1e9> seconds=<s> V=<V> d=<d> rows=<rows> block=<block>
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--V", type=int, default=50257)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--block", type=int, default=1024, help="rows per matmul block")
    ap.add_argument("--rows", type=int, default=None, help="only the first N rows (default: all V)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    V, d, block = args.V, args.d, args.block
    rows = min(args.rows or V, V)

    rng = np.random.default_rng(args.seed)
    W = rng.standard_normal((V, d), dtype=np.float32)
    W /= np.linalg.norm(W, axis=1, keepdims=True)
    WT = W.T  # a transposed view: BLAS handles it without a copy
    buf = np.empty((block, V), dtype=np.float32)

    np.matmul(W[:block], WT, out=buf[: min(block, V)])  # warm-up (thread pool, page faults)
    t0 = time.perf_counter()
    for i in range(0, rows, block):
        j = min(i + block, rows)
        np.matmul(W[i:j], WT, out=buf[: j - i])
    secs = time.perf_counter() - t0
    gflops = 2.0 * rows * V * d / secs / 1e9
    print(f"gflops={gflops:.2f} seconds={secs:.4f} V={V} d={d} rows={rows} block={block}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
