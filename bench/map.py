#!/usr/bin/env python
"""`embscope map` on GPT-2 small against `neighbors king` on the same model: ratios from one run.

    python bench/make_fixtures.py --only gpt2-small      # once
    python bench/map.py                                  # 5 reps, Markdown on stdout
    python bench/map.py --embscope /tmp/ev/bin/embscope --reps 7

Target (issue 12): `map --positions` and `map --near king -k 200` each <= 1.5 x `neighbors king`.
The other rows (the terminal picture, -o map.png, -o map.html, export) are for information.

Every command is a fresh process, run by bench/run.py's Runner (same environment, GNU time for
peak RSS); after one untimed warm-up of each, the commands alternate, rep after rep, and the
median wall time is reported. Results: Markdown on stdout, bench/results/map.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import FIXTURES_DIR, RESULTS_DIR, setup_tiktoken_cache  # noqa: E402
from run import TIME_BIN, Cmd, Runner, Stats, resolve_embscope  # noqa: E402

LIMIT = 1.5


def commands(E: list[str], model: Path, out: Path) -> dict[str, Cmd]:
    m = ["-m", str(model)]
    return {
        "neighbors king": Cmd(E + ["neighbors", "king", *m, "-f", "tsv"]),
        "map --positions": Cmd(E + ["map", "--positions", *m, "-f", "tsv"]),
        "map --near king -k 200": Cmd(E + ["map", "--near", "king", "-k", "200", *m, "-f", "tsv"]),
        "map --near king -k 200 -f table (picture)": Cmd(E + ["map", "--near", "king", "-k", "200", *m, "-f", "table"]),
        "map --positions -o map.png": Cmd(E + ["map", "--positions", *m, "-o", str(out / "map.png")]),
        "map --near king -k 200 -o map.html": Cmd(E + ["map", "--near", "king", "-k", "200", *m, "-o",
                                                       str(out / "map.html")]),
        "map --sample 5000 (randomized SVD)": Cmd(E + ["map", "--sample", "5000", *m, "-f", "tsv"]),
    }


def run_all(runner: Runner, cmds: dict[str, Cmd], reps: int) -> dict[str, Stats]:
    stats = {name: Stats() for name in cmds}
    for cmd in cmds.values():
        runner.run_once(cmd, None)
    for _ in range(reps):
        for name, cmd in cmds.items():
            if stats[name].error is None:
                runner.run_once(cmd, stats[name])
    return stats


def table(stats: dict[str, Stats], meta: dict) -> str:
    base = stats["neighbors king"]
    lines = [f"Run of {meta['date']}, {meta['cpus']} CPUs, {meta['reps']} reps (load average "
             f"{meta['loadavg_before'][0]} before, {meta['loadavg_after'][0]} after):", "",
             "| command | wall (median) | peak RSS | / `neighbors king` | target |", "|---|---|---|---|---|"]
    for name, st in stats.items():
        if not st.ok:
            lines.append(f"| `{name}` | error: {st.error} | | | |")
            continue
        ratio = st.wall / base.wall if base.ok else float("nan")
        target = ""
        if name in ("map --positions", "map --near king -k 200"):
            target = f"≤ {LIMIT}: {'met' if ratio <= LIMIT else 'NOT met'}"
        lines.append(f"| `{name}` | {st.wall:.3f} s | {st.rss_mib:.0f} MiB | {ratio:.2f} | {target} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--fixtures", type=Path, default=FIXTURES_DIR)
    ap.add_argument("--embscope", help="command that runs the CLI (default: embscope beside this python)")
    ap.add_argument("--json", type=Path, default=RESULTS_DIR / "map.json")
    args = ap.parse_args(argv)
    model = args.fixtures.resolve() / "gpt2-small"
    if not model.is_dir():
        raise SystemExit(f"missing fixture {model}: run python bench/make_fixtures.py --only gpt2-small")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               COLUMNS="100", LINES="40")
    env["TIKTOKEN_CACHE_DIR"] = str(setup_tiktoken_cache(args.fixtures.resolve()))
    out = Path(tempfile.mkdtemp(prefix="embscope-bench-map-"))
    env["XDG_CACHE_HOME"] = str(out)
    runner = Runner(env, "time" if os.access(TIME_BIN, os.X_OK) else "wait4", 600.0, False)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(), "reps": args.reps,
            "loadavg_before": [round(x, 2) for x in os.getloadavg()]}
    try:
        stats = run_all(runner, commands(resolve_embscope(args.embscope), model, out), args.reps)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    meta["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    print(table(stats, meta))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "results": {k: v.to_json() for k, v in stats.items()}},
                                    indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
