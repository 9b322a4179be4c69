#!/usr/bin/env python
"""embscope benchmark runner: whole-process timings of embscope vs the baselines.

    python bench/make_fixtures.py            # once
    python bench/run.py                      # all targets, 5 reps, Markdown on stdout
    python bench/run.py --only 1,6 --reps 3
    python bench/run.py --quick              # fewer reps, target 7 on a row subset
    python bench/run.py --list
    python bench/run.py --embscope "python -m embscope"   # how to invoke the CLI

Every measured command is a fresh process. For each comparison the runner does one
untimed warm-up of A and of B (page cache, embscope's cache), then alternates
A B A B ... for --reps repetitions. It reports the median wall time and the highest
peak RSS (ru_maxrss of the child, via `/usr/bin/time -f %M`, or os.wait4 if that is
missing; the wait4 figure is never below the runner's own ~20 MiB, because Linux counts
the forked pre-exec copy of the parent, so prefer GNU time: Debian package `time`). A command that fails is reported as "error" with its last stderr line.
Results go to stdout (Markdown) and bench/results/latest.json.

Environment of every child: HF_HUB_OFFLINE=1, TRANSFORMERS_OFFLINE=1,
TIKTOKEN_CACHE_DIR=<fixtures>/tiktoken-cache, and XDG_CACHE_HOME set to a temporary
directory shared by the whole run (so ~/.cache never influences results), or to a fresh
empty directory for every run of a command marked `fresh_cache` ("first run").

To add a target, append a Comparison to `comparisons()` (b_reps caps the repetitions
of a slow B; Cmd(warmup=False) skips its warm-up; Cmd(fresh_cache=True) = first run). `target` is a Python expression
evaluated with: A, B (Stats: .wall median seconds, .rss_mib max peak RSS in MiB,
.walls, .bench = numbers parsed from `bench: k=v` stderr lines and `k=v` stdout lines),
R (dict id -> finished Comparison result with .A/.B, for targets relative to another
target), M (the comparison's derived metrics), MiB/GiB constants.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH_DIR, FIXTURES_DIR, REPO_DIR, RESULTS_DIR, setup_tiktoken_cache  # noqa: E402

PY = sys.executable
TIME_BIN = "/usr/bin/time"  # GNU time (Debian package `time`); present on this machine
V_GPT2, D_GPT2 = 50257, 768

# `embscope neighbors --all --rows 0:N` restricts the graph to the first N query rows, so that
# --quick can run target 7 on a subset (each side's GFLOP/s uses its own row count).
ALL_ROWS_FLAG = "--rows"
QUICK_ROWS = 4096
MATMUL_BLOCK = 512  # embscope.analysis.similarity.QUERY_CHUNK: the queries --all scores at once

MiB = 1.0
GiB = 1024.0


# ----------------------------------------------------------------------------- model


@dataclass
class Cmd:
    argv: list[str]
    stdin: Path | None = None
    stdout: str = "capture"  # "capture" (kept for --show/metrics) or "devnull"
    fresh_cache: bool = False  # new empty XDG_CACHE_HOME for every run ("first run")
    warmup: bool = True

    def shell(self) -> str:
        s = " ".join(shlex.quote(str(a)) for a in self.argv)
        if self.stdin:
            s += f" < {shlex.quote(str(self.stdin))}"
        if self.stdout == "devnull":
            s += " > /dev/null"
        return s


@dataclass
class Stats:
    walls: list[float] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    bench: dict = field(default_factory=dict)
    error: str | None = None
    stdout_head: str = ""
    bench_reps: list[dict] = field(default_factory=list)  # `bench` of every repetition
    stages: list[dict] = field(default_factory=list)  # `debug: stages:` seconds of every repetition

    def median(self, key: str) -> float:
        """Median over the repetitions of a number the command reported (`bench` key)."""
        return statistics.median(r[key] for r in self.bench_reps if key in r)

    def stage_medians(self) -> dict:
        names = list(dict.fromkeys(n for r in self.stages for n in r))
        return {n: statistics.median(r.get(n, 0.0) for r in self.stages) for n in names}

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def rss_mib(self) -> float:
        return max(self.rss_kib) / 1024.0

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.walls)

    def to_json(self) -> dict:
        d = {"walls_s": self.walls, "rss_kib": self.rss_kib, "bench": self.bench,
             "bench_reps": self.bench_reps, "stages": self.stages,
             "error": self.error, "stdout_head": self.stdout_head}
        if self.ok:
            d.update(wall_median_s=self.wall, rss_max_mib=self.rss_mib)
        return d


@dataclass
class Comparison:
    id: str
    description: str
    a: Cmd
    b: Cmd | None
    target: str  # Python expression, see module docstring
    b_label: str = ""
    # derived numbers from (A, B, R) -> {name: value}; shown in the table, available as M
    metrics: Callable[[Stats, Stats | None, dict], dict] | None = None
    needs: tuple[str, ...] = ()  # fixture names that must exist
    note: str = ""
    show_ratio: bool = True  # False when A and B do different amounts of work
    b_reps: int | None = None  # cap on B's repetitions (slow baselines); default: --reps


@dataclass
class Result:
    comp: Comparison
    A: Stats
    B: Stats | None
    M: dict = field(default_factory=dict)
    status: str = "n/a"
    detail: str = ""


# ----------------------------------------------------------------------------- targets


def comparisons(fx: Path, E: list[str], quick: bool) -> list[Comparison]:
    """The benchmark targets. E = argv prefix that runs the embscope CLI."""
    small = fx / "gpt2-small"
    nano = fx / "nanogpt-124m" / "ckpt.pt"
    xl = fx / "gpt2-xl"
    llama = fx / "llama-bf16-sharded"
    words10k = fx / "queries" / "words-10k.txt"
    words200 = fx / "queries" / "words-200.txt"
    base = [PY, str(BENCH_DIR / "baseline_neighbors.py")]
    n_batch = sum(1 for _ in open(words10k)) if words10k.exists() else 10_000
    n_base = sum(1 for _ in open(words200)) if words200.exists() else 200

    def batch_metrics(A, B, R):
        m = {}
        if A.ok:
            m["A_qps"] = n_batch / A.wall
        if B is not None and B.ok and "loop_s" in B.bench:
            # the baseline answers n_base queries; extrapolate its loop to n_batch queries:
            # process time outside the loop stays, the loop scales linearly
            est = B.wall + B.bench["loop_s"] * (n_batch / n_base - 1)
            m["B_est_s_%d" % n_batch] = est
            m["B_qps_extrapolated"] = n_batch / est
        return m

    graph_rows = QUICK_ROWS if quick else V_GPT2

    def all_argv(model: Path, *extra: str) -> list[str]:
        argv = E + ["--debug", "neighbors", "--all", "-k", "10", "-m", str(model), "-f", "tsv", *extra]
        return argv + ([ALL_ROWS_FLAG, f"0:{QUICK_ROWS}"] if quick else [])

    def mm_argv(rows: int, V: int = V_GPT2, d: int = D_GPT2) -> list[str]:
        return [PY, str(BENCH_DIR / "numpy_matmul.py"), "--V", str(V), "--d", str(d),
                "--block", str(MATMUL_BLOCK), "--rows", str(rows)]

    def graph(cid: str, what: str, model: str, *extra: str, floor: float = 0.85) -> Comparison:
        return Comparison(
            cid, f"neighbors --all -k 10, {what}: throughput vs numpy sgemm on the same shapes",
            Cmd(all_argv(fx / model, *extra), stdout="devnull"), Cmd(mm_argv(graph_rows)),
            f"M['ratio_bracketed'] >= {floor}", metrics=sgemm_metrics(graph_rows, V_GPT2, D_GPT2),
            b_label=f"numpy_matmul.py: W[i:i+{MATMUL_BLOCK}] @ W.T, {graph_rows} rows, fp32",
            needs=(model,), show_ratio=False,
            note=f"ratio = numpy's sgemm loop seconds / embscope's whole-process wall (start-up, load, "
                 f"selection and output included), medians of interleaved runs; floor {floor}")

    big_rows, big_v, big_d = (1024 if quick else 4096), 128256, 4096

    return [
        Comparison(
            "1", "neighbors king, gpt2-small (HF dir) vs transformers baseline",
            Cmd(E + ["neighbors", "king", "-m", str(small), "-f", "tsv", "-k", "10"]),
            Cmd(base + [str(small), "--query", "king", "-k", "10"]),
            "A.wall <= B.wall / 15 and A.rss_mib <= 260",
            b_label="baseline_neighbors.py (AutoModel+AutoTokenizer)", needs=("gpt2-small",)),
        Comparison(
            "2a", "embscope --help vs python -c 'import numpy'",
            Cmd(E + ["--help"]), Cmd([PY, "-c", "import numpy"]),
            "A.wall <= 2 * B.wall", b_label="import numpy"),
        Comparison(
            "2b", "embscope --version vs python -c 'import numpy'",
            Cmd(E + ["--version"]), Cmd([PY, "-c", "import numpy"]),
            "A.wall <= 2 * B.wall", b_label="import numpy"),
        Comparison(
            "3a", "neighbors king, nanoGPT ckpt.pt, repeated (warm embscope cache)",
            Cmd(E + ["neighbors", "king", "-m", str(nano), "-f", "tsv", "-k", "10"]),
            Cmd(base + ["--nanogpt", str(nano), "--query", "king", "-k", "10"]),
            "A.rss_mib <= 300 and A.wall <= 2 * R['1'].A.wall",
            b_label="baseline_neighbors.py --nanogpt (torch.load + tiktoken)",
            needs=("nanogpt-124m", "tiktoken-cache"),
            note="RSS <= 300 MiB; repeated runs <= 2x target 1's embscope time; B is informative"),
        Comparison(
            "3b", "neighbors king, nanoGPT ckpt.pt, first run (fresh XDG_CACHE_HOME each run)",
            Cmd(E + ["neighbors", "king", "-m", str(nano), "-f", "tsv", "-k", "10"], fresh_cache=True),
            Cmd([PY, "-c", "import torch; torch.load(%r, map_location='cpu', weights_only=True)" % str(nano)]),
            "A.wall <= 0.6 * B.wall",
            b_label="torch.load(weights_only=True)", needs=("nanogpt-124m",),
            note="page cache is warm for both (not dropped: shared machine)"),
        Comparison(
            "4a", "info, gpt2-xl (sparse 6.2 GB safetensors)",
            Cmd(E + ["info", "-m", str(xl)]), None,
            "A.wall <= 3 * R['1'].A.wall", needs=("gpt2-xl",)),
        Comparison(
            "4b", "neighbors king, gpt2-xl",
            Cmd(E + ["neighbors", "king", "-m", str(xl), "-f", "tsv", "-k", "10"]), None,
            "A.wall <= 3 * R['1'].A.wall", needs=("gpt2-xl",)),
        Comparison(
            "5", "neighbors #5822, llama-shaped bf16 3-shard checkpoint (128256 x 4096)",
            Cmd(E + ["neighbors", "#5822", "-m", str(llama), "-f", "tsv", "-k", "10"]), None,
            "A.rss_mib <= 1.6 * GiB", needs=("llama-bf16-sharded",),
            note="no tokenizer in the fixture: all 128256 rows are searched"),
        Comparison(
            "6", f"batch: {n_batch} queries on stdin, gpt2-small",
            Cmd(E + ["neighbors", "-", "-m", str(small), "-f", "tsv", "-k", "10"], stdin=words10k),
            # the baseline loop costs ~0.5 s/query on this machine: no warm-up, 2 reps at most
            Cmd(base + [str(small), "--batch", str(words200), "-k", "10"], warmup=False),
            "M['A_qps'] >= 1500", metrics=batch_metrics, b_reps=2,
            b_label=f"baseline --batch on {n_base} queries, EXTRAPOLATED to {n_batch}",
            needs=("gpt2-small", "queries"), show_ratio=False),
        Comparison(
            "6s", f"batch: {n_batch} queries on stdin, gpt2-small: throughput vs numpy sgemm on the same shapes",
            Cmd(E + ["--debug", "neighbors", "-", "-m", str(small), "-f", "tsv", "-k", "10"], stdin=words10k,
                stdout="devnull"),
            Cmd(mm_argv(n_batch)),
            "M['ratio_bracketed'] >= 0.85", metrics=sgemm_metrics(n_batch, V_GPT2, D_GPT2),
            b_label=f"numpy_matmul.py: W[i:i+{MATMUL_BLOCK}] @ W.T, {n_batch} rows, fp32",
            needs=("gpt2-small", "queries"), show_ratio=False,
            note="ratio = numpy's sgemm loop seconds / embscope's whole-process wall (start-up, "
                 "tokenisation, top-k and output included), medians of interleaved runs"),
        graph("7", "gpt2-small fp32", "gpt2-small"),
        graph("8a", "gpt2-small bf16 (fp32 bound)", "gpt2-small-bf16", floor=0.70),
        graph("8b", "gpt2-small fp16 (fp32 bound)", "gpt2-small-fp16", floor=0.70),
        graph("8c", "gpt2-small bf16, --memory-budget 128M: no fp32 copy (fp32 bound)", "gpt2-small-bf16",
              "--memory-budget", "128M", floor=0.70),
        Comparison(
            "9", f"neighbors --all --rows 0:{big_rows}, llama-shaped bf16 128256 x 4096, --memory-budget 1G"
                 " (no fp32 copy): throughput vs numpy sgemm (fp32, in memory)",
            Cmd(E + ["--debug", "neighbors", "--all", "-k", "10", "-m", str(llama), "-f", "tsv",
                     "--rows", f"0:{big_rows}", "--memory-budget", "1G"], stdout="devnull"),
            Cmd(mm_argv(big_rows, big_v, big_d)),
            "M['ratio_bracketed'] >= 0.70", metrics=sgemm_metrics(big_rows, big_v, big_d),
            b_label=f"numpy_matmul.py: W[i:i+{MATMUL_BLOCK}] @ W.T, {big_rows} rows of 128256 x 4096 fp32",
            needs=("llama-bf16-sharded",), show_ratio=False,
            note="the fp32 copy (2.0 GiB) exceeds the budget: rows are converted block by block, once per"
                 " chunk of as many queries as the budget's buffers hold"),
    ]


def sgemm_metrics(rows: int, V: int, d: int):
    """Metrics of a comparison against numpy_matmul.py on the same shapes: both sides' GFLOP/s
    (2 rows V d over embscope's median wall, over numpy's median loop seconds), `ratio` of those
    medians, and `ratio_bracketed`: the median over embscope's runs of (numpy's loop seconds in
    the runs just before and after it) / its wall, which follows a machine whose load drifts
    from minute to minute better than medians taken apart."""
    flops = 2.0 * rows * V * d

    def metrics(A, B, R):
        m = {}
        if A.ok:
            m["A_gflops"] = flops / A.wall / 1e9
        secs = [r.get("seconds") for r in B.bench_reps] if B is not None and B.ok else []
        if secs and all(x is not None for x in secs):
            m["B_gflops"] = flops / statistics.median(secs) / 1e9
            if A.ok:
                m["ratio"] = statistics.median(secs) / A.wall
                # order of runs: A0 B0 A1 B1 ...: A_i lies between B_(i-1) and B_i
                near = [[secs[j] for j in (i - 1, i) if 0 <= j < len(secs)] for i in range(len(A.walls))]
                m["ratio_bracketed"] = statistics.median(
                    statistics.mean(b) / a for a, b in zip(A.walls, near) if b)
        return m

    return metrics


# ----------------------------------------------------------------------------- running


_KV = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=([-+0-9.eE]+)")


def _parse_kv(text: str, stdout: str) -> dict:
    out = {}
    for line in text.splitlines():
        if line.startswith("bench:"):
            out.update({k: float(v) for k, v in _KV.findall(line)})
    first = stdout.splitlines()[0] if stdout else ""
    if first.startswith("gflops="):
        out.update({k: float(v) for k, v in _KV.findall(first)})
    return out


_STAGE = re.compile(r"([a-z][a-z ]*?) ([0-9.]+) s(?:,|$)")


def _parse_stages(text: str) -> dict:
    """{stage: seconds} from embscope's `--debug` line 'debug: stages: products 1.234 s, ...'."""
    for line in text.splitlines():
        if line.startswith("debug: stages:"):
            return {name.strip(): float(v) for name, v in _STAGE.findall(line[len("debug: stages:"):])}
    return {}


class Runner:
    def __init__(self, env: dict, rss_method: str, timeout: float, verbose: bool):
        self.env = env
        self.rss_method = rss_method
        self.timeout = timeout
        self.verbose = verbose

    def run_once(self, cmd: Cmd, into: Stats | None) -> None:
        """Run cmd once; append wall/RSS to `into` (None: warm-up, discard)."""
        env = dict(self.env)
        tmp_cache = None
        if cmd.fresh_cache:
            tmp_cache = tempfile.mkdtemp(prefix="embscope-bench-xdg-")
            env["XDG_CACHE_HOME"] = tmp_cache
        rss_file = None
        argv = [str(a) for a in cmd.argv]
        if self.rss_method == "time":
            fd, rss_file = tempfile.mkstemp(prefix="embscope-bench-rss-")
            os.close(fd)
            argv = [TIME_BIN, "-f", "%M", "-o", rss_file] + argv
        stdin = open(cmd.stdin, "rb") if cmd.stdin else subprocess.DEVNULL
        out_f = tempfile.TemporaryFile() if cmd.stdout == "capture" else subprocess.DEVNULL
        err_f = tempfile.TemporaryFile()
        try:
            t0 = time.perf_counter()
            try:
                p = subprocess.Popen(argv, stdin=stdin, stdout=out_f, stderr=err_f, env=env, cwd=REPO_DIR)
            except OSError as e:
                if into is not None and into.error is None:
                    into.error = f"cannot start: {e}"
                return
            # Blocking waits: Popen.wait(timeout=...) polls with sleeps of up to 50 ms, which
            # would quantise the timings. A timer thread enforces the timeout instead.
            killer = threading.Timer(self.timeout, p.kill)
            killer.start()
            rss_kib = None
            try:
                if self.rss_method == "wait4":
                    _, status, ru = os.wait4(p.pid, 0)  # this child's own rusage, KiB
                    wall = time.perf_counter() - t0
                    p.returncode = os.waitstatus_to_exitcode(status)
                    rss_kib = ru.ru_maxrss
                else:
                    p.wait()
                    wall = time.perf_counter() - t0
            finally:
                killer.cancel()
            rc = p.returncode
            err_f.seek(0)
            err = err_f.read().decode("utf-8", "replace")
            out = ""
            if cmd.stdout == "capture":
                out_f.seek(0)
                out = out_f.read(4096).decode("utf-8", "replace")
            if rss_file:
                try:
                    txt = Path(rss_file).read_text().strip().splitlines()
                    rss_kib = int(txt[-1]) if txt and txt[-1].isdigit() else None
                except OSError:
                    rss_kib = None
            if self.verbose:
                print(f"    {wall:8.3f} s  rc={rc}  rss={rss_kib} KiB  {cmd.shell()[:110]}",
                      file=sys.stderr, flush=True)
            if into is None:  # warm-up: a failure will recur and be recorded by the reps
                return
            if rc != 0:
                last = [line for line in err.strip().splitlines() if line.strip()]
                why = last[-1][:200] if last else ""
                if wall >= self.timeout:
                    why = f"killed after --timeout {self.timeout:g} s"
                into.error = into.error or f"exit {rc}" + (f": {why}" if why else "")
                return
            into.walls.append(wall)
            into.rss_kib.append(rss_kib if rss_kib is not None else 0)
            into.bench = _parse_kv(err, out) or into.bench
            into.bench_reps.append(_parse_kv(err, out))
            stages = _parse_stages(err)
            if stages:
                into.stages.append(stages)
            into.stdout_head = out[:600]
        finally:
            if cmd.stdin:
                stdin.close()
            if cmd.stdout == "capture":
                out_f.close()
            err_f.close()
            if rss_file:
                os.unlink(rss_file)
            if tmp_cache:
                shutil.rmtree(tmp_cache, ignore_errors=True)

    def compare(self, comp: Comparison, reps: int) -> tuple[Stats, Stats | None]:
        A = Stats()
        B = Stats() if comp.b else None
        cmds = [(comp.a, A, reps)]
        if comp.b:
            cmds.append((comp.b, B, min(reps, comp.b_reps or reps)))
        for cmd, _, _ in cmds:
            if cmd.warmup:
                self.run_once(cmd, None)
        for i in range(reps):  # A B A B ...
            for cmd, st, n in cmds:
                if st.error is None and i < n:
                    self.run_once(cmd, st)
        return A, B


def evaluate(res: Result, results: dict) -> None:
    comp = res.comp
    if not res.A.ok:
        res.status, res.detail = "error", f"A: {res.A.error}"
        return
    if res.B is not None and not res.B.ok:
        res.detail = f"B: {res.B.error}"
    try:
        ok = eval(comp.target, {"__builtins__": {}},  # noqa: S307 - our own expressions
                  {"A": res.A, "B": res.B, "R": results, "M": res.M, "MiB": MiB, "GiB": GiB})
        res.status = "PASS" if ok else "FAIL"
    except KeyError as e:
        res.status = "n/a"
        res.detail = (res.detail + "; " if res.detail else "") + f"needs {e} (not run or failed)"
    except Exception as e:  # B failed, other target errored, ...
        res.status = "n/a"
        res.detail = (res.detail + "; " if res.detail else "") + f"{type(e).__name__}: {e}"


class _ResultsView(dict):
    """R['1'] raises KeyError unless target 1 ran and its A side succeeded."""

    def __getitem__(self, k):
        r = dict.__getitem__(self, k)
        if not r.A.ok:
            raise KeyError(k)
        return r


# ----------------------------------------------------------------------------- output


def _fmt_s(st: Stats | None) -> str:
    if st is None:
        return "—"
    if not st.ok:
        return "error"
    return f"{st.wall:.3f} s"


def _fmt_rss(st: Stats | None) -> str:
    if st is None or not st.ok:
        return "—"
    return f"{st.rss_mib:.0f} MiB" if st.rss_kib and max(st.rss_kib) else "?"


def _fmt_num(v) -> str:
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) >= 10 else f"{v:.3g}"
    return str(v)


def markdown(results: list[Result], meta: dict) -> str:
    lines = [
        f"embscope benchmarks — {meta['date']}, {meta['reps']} reps (median wall, max peak RSS), "
        f"host {meta['host']['cpus']} CPUs, load avg before {meta['loadavg_before']}, "
        f"after {meta['loadavg_after']}, git {meta['git']}",
        "",
        "| id | what | A wall | A peak RSS | B | B wall | B peak RSS | A/B | metrics | target | result |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = "—"
        if r.comp.show_ratio and r.B is not None and r.A.ok and r.B.ok and r.B.wall > 0:
            ratio = f"{r.A.wall / r.B.wall:.3f}"
        metrics = ", ".join(f"{k}={_fmt_num(v)}" for k, v in r.M.items()) or "—"
        status = r.status + (f" ({r.detail})" if r.detail else "")
        b_label = r.comp.b_label or ("—" if r.B is None else "")
        lines.append(
            f"| {r.comp.id} | {r.comp.description} | {_fmt_s(r.A)} | {_fmt_rss(r.A)} | {b_label} | "
            f"{_fmt_s(r.B)} | {_fmt_rss(r.B)} | {ratio} | {metrics} | `{r.comp.target}` | "
            f"{status.replace('|', '/')} |")
    staged = [r for r in results if r.A.ok and r.A.stages]
    if staged:
        lines += ["", "Stages (embscope's `--debug` timings, median seconds over the runs; the rest of the"
                  " wall is start-up, loading and the stages not timed):", ""]
        for r in staged:
            med = r.A.stage_medians()
            parts = ", ".join(f"{n} {v:.3f} s ({v / r.A.wall:.1%})" for n, v in med.items())
            lines.append(f"- {r.comp.id} (wall {r.A.wall:.3f} s): {parts}")
    notes = [f"- {r.comp.id}: {r.comp.note}" for r in results if r.comp.note]
    if notes:
        lines += ["", "Notes:"] + notes
    lines += ["", "Commands:"]
    for r in results:
        lines.append(f"- {r.comp.id} A: `{r.comp.a.shell()}`")
        if r.comp.b:
            lines.append(f"- {r.comp.id} B: `{r.comp.b.shell()}`")
    return "\n".join(lines)


def _git_rev() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_DIR,
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_DIR,
                               capture_output=True, text=True).stdout.strip()
        return rev + ("+dirty" if dirty else "")
    except OSError:
        return "?"


def resolve_embscope(arg: str | None) -> list[str]:
    spec = arg or os.environ.get("EMBSCOPE_CMD")
    if spec:
        return shlex.split(spec)
    venv_bin = Path(sys.executable).parent
    exe = shutil.which("embscope", path=os.pathsep.join([str(venv_bin), os.environ.get("PATH", "")]))
    return [exe] if exe else ["embscope"]  # not found: every A run reports "cannot start"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 5; 3 with --quick)")
    ap.add_argument("--only", help="comma-separated target ids, e.g. 1,3a,6 (a bare 3 selects 3a,3b)")
    ap.add_argument("--quick", action="store_true",
                    help=f"3 reps; target 7 on the first {QUICK_ROWS} rows (see ALL_ROWS_FLAG)")
    ap.add_argument("--fixtures", type=Path, default=FIXTURES_DIR)
    ap.add_argument("--embscope", help="command that runs the CLI (default: `embscope` next to "
                    "this python, or $EMBSCOPE_CMD), e.g. 'python -m embscope'")
    ap.add_argument("--json", type=Path, default=RESULTS_DIR / "latest.json")
    ap.add_argument("--timeout", type=float, default=900.0, help="per process, seconds")
    ap.add_argument("--rss-method", choices=["time", "wait4"],
                    default="time" if os.access(TIME_BIN, os.X_OK) else "wait4")
    ap.add_argument("--list", action="store_true", help="print the targets and their commands")
    ap.add_argument("-v", "--verbose", action="store_true", help="log every run on stderr")
    args = ap.parse_args(argv)
    reps = args.reps or (3 if args.quick else 5)
    fx = args.fixtures.resolve()
    E = resolve_embscope(args.embscope)
    comps = comparisons(fx, E, args.quick)
    if args.only:
        want = [w.strip() for w in args.only.split(",") if w.strip()]
        comps = [c for c in comps if c.id in want or c.id.rstrip("abcdefgh") in want]
    if args.list:
        for c in comps:
            print(f"{c.id}: {c.description}\n   target: {c.target}\n   A: {c.a.shell()}")
            if c.b:
                print(f"   B: {c.b.shell()}")
        return 0

    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               HF_HUB_DISABLE_PROGRESS_BARS="1")
    env["TIKTOKEN_CACHE_DIR"] = str(setup_tiktoken_cache(fx))
    shared_cache = tempfile.mkdtemp(prefix="embscope-bench-xdg-shared-")
    env["XDG_CACHE_HOME"] = shared_cache
    runner = Runner(env, args.rss_method, args.timeout, args.verbose)

    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "reps": reps, "quick": args.quick, "embscope_cmd": E, "python": PY,
        "rss_method": args.rss_method, "git": _git_rev(),
        "host": {"cpus": os.cpu_count(), "machine": platform.machine(), "platform": platform.platform()},
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
    }
    results = _ResultsView()
    ordered: list[Result] = []
    try:
        for comp in comps:
            print(f"[{comp.id}] {comp.description} ...", file=sys.stderr, flush=True)
            missing = [n for n in comp.needs if not (fx / n).exists()]
            if missing:
                A = Stats(error=f"missing fixture(s) {missing}: run bench/make_fixtures.py")
                res = Result(comp, A, None)
            else:
                A, B = runner.compare(comp, reps)
                res = Result(comp, A, B)
                if comp.metrics:
                    try:
                        res.M = comp.metrics(A, B, results)
                    except Exception as e:
                        res.detail = f"metrics: {e}"
            evaluate(res, results)
            results[comp.id] = res
            ordered.append(res)
            print(f"[{comp.id}] {res.status} A={_fmt_s(res.A)} {_fmt_rss(res.A)} "
                  f"B={_fmt_s(res.B)} {res.detail}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(shared_cache, ignore_errors=True)
    meta["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]

    print(markdown(ordered, meta))
    payload = {"meta": meta, "results": [
        {"id": r.comp.id, "description": r.comp.description, "target": r.comp.target,
         "status": r.status, "detail": r.detail, "metrics": r.M, "note": r.comp.note,
         "A": {"cmd": r.comp.a.shell(), **r.A.to_json()},
         "B": None if r.B is None else {"cmd": r.comp.b.shell(), "label": r.comp.b_label, **r.B.to_json()},
         } for r in ordered]}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"\nJSON: {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
