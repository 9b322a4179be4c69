#!/usr/bin/env python
"""PNG output against the same command writing .npy: ratios from one run.

    python bench/png.py                                   # 9 repetitions, ~1 min
    python bench/png.py --embscope /tmp/ev/bin/embscope --reps 15

Targets (issue 11, item 8), on the bundled model:
  1. `embscope positions -o heatmap.png` <= 1.2 s
  2. the same <= 4 x `embscope positions -o heatmap.npy`

Also measured, for the record: `positions --by-offset -o curve.png` and `norms -o norms.png`
against their .npy / TSV counterparts, and `import matplotlib.figure` + the Agg canvas alone, in
the CLI's own Python (what a picture costs before anything is drawn).

Every measured command is a fresh process. One untimed warm-up of each command (it builds
matplotlib's font cache in a MPLCONFIGDIR made for the run, and fills the page cache), then the
pair alternates A B A B ... and the median wall time of each side is reported, with the median
CPU time (user + system), which a busy machine inflates less. Output files go
to a temporary folder. Results: Markdown on stdout, bench/results/png.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS_DIR  # noqa: E402

IMPORT_ONLY = "import matplotlib.figure, matplotlib.backends.backend_agg"


def interpreter(cli: list[str]) -> str:
    """The Python that runs the CLI: the entry point script's shebang, else this one."""
    try:
        first = Path(cli[0]).read_text(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return sys.executable
    return first[2:].strip() if first.startswith("#!") and "python" in first else sys.executable


def timed(argv: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system) of one run of `argv`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    r = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, timeout=300)
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {shlex.join(argv)}\n{r.stderr.decode()[-2000:]}")
    return took, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def pair(a: list[str], b: list[str], reps: int, env: dict) -> dict:
    """Median wall and CPU seconds of `a` and `b`, run alternately after one warm-up of each."""
    timed(a, env), timed(b, env)
    runs_a, runs_b = [], []
    for _ in range(reps):
        runs_a.append(timed(a, env))
        runs_b.append(timed(b, env))
    median = statistics.median
    return {"a": median(w for w, _ in runs_a), "b": median(w for w, _ in runs_b),
            "a_cpu": median(c for _, c in runs_a), "b_cpu": median(c for _, c in runs_b)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embscope", default=f"{shlex.quote(sys.executable)} -m embscope",
                        help="how to run the CLI (default: this Python's -m embscope)")
    parser.add_argument("--reps", type=int, default=9)
    args = parser.parse_args()
    cli = shlex.split(args.embscope)
    with tempfile.TemporaryDirectory(prefix="embscope-png-bench-") as tmp:
        out = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("EMBSCOPE_")}
        env.update(MPLCONFIGDIR=str(out / "mplconfig"), XDG_CACHE_HOME=str(out / "cache"))
        rows = [
            ("positions -o heatmap.png vs -o heatmap.npy",
             [*cli, "positions", "-o", str(out / "h.png")], [*cli, "positions", "-o", str(out / "h.npy")]),
            ("positions --by-offset -o curve.png vs -o curve.npy",
             [*cli, "positions", "--by-offset", "-o", str(out / "c.png")],
             [*cli, "positions", "--by-offset", "-o", str(out / "c.npy")]),
            ("norms -o norms.png vs norms -f tsv",
             [*cli, "norms", "-f", "tsv", "-o", str(out / "n.png")], [*cli, "norms", "-f", "tsv"]),
            ("import matplotlib.figure + Agg vs python -c pass",
             [interpreter(cli), "-c", IMPORT_ONLY], [interpreter(cli), "-c", "pass"]),
        ]
        results = []
        for what, a, b in rows:
            r = pair(a, b, args.reps, env)
            results.append({"what": what, **r, "ratio": r["a"] / r["b"]})
    first = results[0]
    targets = [("`positions -o heatmap.png`", "<= 1.2 s", f"{first['a']:.3f} s", first["a"] <= 1.2),
               ("the same / `-o heatmap.npy`", "<= 4x", f"{first['ratio']:.2f}x", first["ratio"] <= 4)]
    load = os.getloadavg()[0]
    print(f"{args.reps} repetitions, median wall; {os.cpu_count()} CPUs, load average {load:.1f};"
          f" {platform.python_version()}\n")
    print("| what | A wall | B wall | A/B | A CPU | B CPU |\n| --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['what']} | {r['a']:.3f} s | {r['b']:.3f} s | {r['ratio']:.2f} | {r['a_cpu']:.3f} s"
              f" | {r['b_cpu']:.3f} s |")
    print("\n| target | asked | measured | |\n| --- | --- | --- | --- |")
    for name, asked, measured, met in targets:
        print(f"| {name} | {asked} | {measured} | {'met' if met else 'NOT met'} |")
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "png.json").write_text(json.dumps({"reps": args.reps, "load_average": load, "results": results},
                                                     indent=1) + "\n")
    return 0 if all(met for *_, met in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
