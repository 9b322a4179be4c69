#!/usr/bin/env python
"""`embscope diff` of two GPT-2-small-shaped checkpoints against one `neighbors --all -k 10` on
the same model: the ratio from one run (issue 12's target: <= 3x).

    python bench/make_fixtures.py --only gpt2-small --only gpt2-small-tuned   # once, ~15 s
    python bench/diff.py                                   # 3 reps each, alternating: ~10 min idle
    python bench/diff.py --embscope /tmp/ev/bin/embscope --reps 5

A: `embscope diff gpt2-small gpt2-small-tuned -f tsv` (Procrustes alignment, Jaccard@10: two
k-NN graphs of 50,257 tokens, the rotation, the cosines). B: `embscope neighbors --all -k 10
-m gpt2-small -f tsv > /dev/null` (one graph, written out). Every run is a fresh process;
after one untimed warm-up of each, A and B alternate (A B A B ...), as bench/run.py does (its
Runner measures: median wall, peak RSS from /usr/bin/time). Results: Markdown on stdout,
bench/results/diff.json.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import FIXTURES_DIR, RESULTS_DIR  # noqa: E402
from run import TIME_BIN, Cmd, Comparison, Result, Runner, _git_rev, evaluate, markdown, resolve_embscope  # noqa: E402

TARGET = "A.wall <= 3 * B.wall"


def comparison(fx: Path, E: list[str]) -> Comparison:
    small, tuned = fx / "gpt2-small", fx / "gpt2-small-tuned"
    return Comparison(
        "12", "diff of two GPT-2-small-shaped checkpoints (Procrustes + Jaccard@10) vs neighbors --all -k 10",
        Cmd(E + ["diff", str(small), str(tuned), "-f", "tsv"]),
        Cmd(E + ["neighbors", "--all", "-k", "10", "-m", str(small), "-f", "tsv"], stdout="devnull"),
        TARGET, b_label="neighbors --all -k 10 -m gpt2-small", needs=("gpt2-small", "gpt2-small-tuned"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--fixtures", type=Path, default=FIXTURES_DIR)
    ap.add_argument("--embscope", help="command that runs the CLI (default: `embscope` next to this python)")
    ap.add_argument("--json", type=Path, default=RESULTS_DIR / "diff.json")
    ap.add_argument("--timeout", type=float, default=1800.0, help="per process, seconds")
    args = ap.parse_args(argv)
    fx = args.fixtures.resolve()
    comp = comparison(fx, resolve_embscope(args.embscope))
    missing = [n for n in comp.needs if not (fx / n).exists()]
    if missing:
        print(f"missing fixtures {missing}: python bench/make_fixtures.py --only gpt2-small --only gpt2-small-tuned",
              file=sys.stderr)
        return 1
    cache = tempfile.mkdtemp(prefix="embscope-bench-xdg-")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "XDG_CACHE_HOME": cache}
    runner = Runner(env, "time" if os.access(TIME_BIN, os.X_OK) else "wait4", args.timeout, verbose=True)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "reps": args.reps, "git": _git_rev(),
            "host": {"cpus": os.cpu_count()}, "loadavg_before": [round(x, 2) for x in os.getloadavg()]}
    a, b = runner.compare(comp, args.reps)
    res = Result(comp, a, b)
    evaluate(res, {})
    meta["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(markdown([res], meta))
    if a.ok and b.ok:
        print(f"\nA/B = {a.wall / b.wall:.2f} (runs: A {', '.join(f'{w:.1f}' for w in a.walls)} s;"
              f" B {', '.join(f'{w:.1f}' for w in b.walls)} s)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "status": res.status, "A": a.to_json(), "B": b.to_json()},
                                    indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
