#!/usr/bin/env python
"""Hub ids against a loopback stand-in of the Hub (tests/hub_server.py), driven by the real
huggingface_hub client through HF_ENDPOINT: ratios from one run.

    python bench/make_fixtures.py --only gpt2-xl       # once: the GPT-2-XL-shaped repo
    python bench/hub.py                                # ~2 min, writes ~6 GB for a moment
    python bench/hub.py --embscope /tmp/ev/bin/embscope --reps 5

Targets (issue 10):
  1. first `neighbors king` on the GPT-2-XL-shaped repo: bytes transferred <= 1.05 x (tensors
     used + tokenizer + config); wall <= 1/5 of hf_hub_download of its model.safetensors alone
  2. the second run, offline: <= 1.2 x the same command on the local directory
  3. unreachable endpoint, nothing cached: <= 2 s to the one-line error

Every measured command is a fresh process with its own HF_HOME (a first run gets an empty one).
Results: Markdown on stdout, bench/results/hub.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import FIXTURES_DIR, REPO_DIR, RESULTS_DIR, human  # noqa: E402

sys.path.insert(0, str(REPO_DIR))
from tests.hub_server import HubServer, Repo  # noqa: E402

REPO_ID = "bench/gpt2-xl"
COMMIT = "6b1f" * 10
PY = sys.executable


def tensor_bytes(model: Path, names: tuple[str, ...]) -> int:
    with open(model, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    return sum(header[k]["data_offsets"][1] - header[k]["data_offsets"][0] for k in names)


def run(argv: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    t = time.perf_counter()
    p = subprocess.run(argv, env=env, capture_output=True, text=True)
    return time.perf_counter() - t, p


def child_env(home: Path, endpoint: str, **extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("HF_", "HUGGINGFACE_", "EMBSCOPE_")) and k != "TRANSFORMERS_OFFLINE"}
    env.update(HF_HOME=str(home), HF_ENDPOINT=endpoint, HF_HUB_DISABLE_PROGRESS_BARS="1", **extra)
    return env


def check(p: subprocess.CompletedProcess, what: str) -> None:
    if p.returncode != 0:
        raise SystemExit(f"{what} failed: {p.stderr.strip().splitlines()[-1:]}")


def black_hole() -> tuple[socket.socket, list[socket.socket], int]:
    """A port whose SYNs are dropped, like a firewall's: a listener whose accept queue is full."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    port = srv.getsockname()[1]
    fill = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fill.append(c)
    time.sleep(0.2)
    return srv, fill, port


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--embscope", default=f"{PY} -m embscope", help="how to run embscope")
    ap.add_argument("--reps", type=int, default=5, help="repetitions of the quick measurements")
    ap.add_argument("--download-reps", type=int, default=2, help="repetitions of the 6 GB download")
    args = ap.parse_args()
    es = shlex.split(args.embscope)
    fixture = FIXTURES_DIR / "gpt2-xl"
    if not (fixture / "model.safetensors").is_file():
        raise SystemExit("no fixture: run python bench/make_fixtures.py --only gpt2-xl")
    work = Path(tempfile.mkdtemp(prefix="embscope-hub-bench-"))
    results: dict = {"fixture": str(fixture)}
    sys.path.insert(0, str(REPO_DIR))
    from embscope.io.hub import tokenizer_files

    names = [p.name for p in fixture.iterdir()]
    small = ["config.json", *tokenizer_files(names)]
    needed = tensor_bytes(fixture / "model.safetensors", ("transformer.wte.weight", "transformer.wpe.weight"))
    needed_all = needed + sum((fixture / n).stat().st_size for n in small)
    results["needed"] = {"tensors": needed, "with_tokenizer_and_config": needed_all, "small_files": small}
    cmd = [*es, "neighbors", "king", "-m", REPO_ID]
    try:
        with HubServer({REPO_ID: Repo({COMMIT: fixture}, refs={"main": COMMIT})}) as hub:
            # 1. first run vs hf_hub_download of model.safetensors alone
            first = []
            for i in range(3):
                hub.reset()
                home = work / f"first-{i}"
                wall, p = run(cmd, child_env(home, hub.url))
                check(p, "first run")
                first.append({"wall": wall, "bytes": hub.total_sent(), "per_file": dict(hub.sent)})
            download = []
            code = f"from huggingface_hub import hf_hub_download; hf_hub_download({REPO_ID!r}, 'model.safetensors')"
            for i in range(args.download_reps):
                hub.reset()
                home = work / f"download-{i}"
                wall, p = run([PY, "-c", code], child_env(home, hub.url))
                check(p, "hf_hub_download")
                download.append({"wall": wall, "bytes": hub.total_sent()})
                shutil.rmtree(home)
            results["first_run"], results["hf_hub_download"] = first, download

            # 2. second run offline (the first run's HF_HOME) vs the local directory
            cached = child_env(work / "first-0", hub.url, HF_HUB_OFFLINE="1")
            local = child_env(work / "empty", hub.url, HF_HUB_OFFLINE="1")
            local_cmd = [*es, "neighbors", "king", "-m", str(fixture)]
            outs = {}
            for argv, env, key in ((cmd, cached, "cached"), (local_cmd, local, "local")):  # warm-up
                _, p = run(argv, env)
                check(p, key)
                outs[key] = p.stdout
            walls = {"cached": [], "local": []}
            hub.reset()
            for _ in range(args.reps):
                for argv, env, key in ((cmd, cached, "cached"), (local_cmd, local, "local")):
                    wall, p = run(argv, env)
                    check(p, key)
                    walls[key].append(wall)
            results["second_run"] = {"walls": walls, "same_output": outs["cached"] == outs["local"],
                                     "requests_to_hub": len(hub.log)}

        # 3. unreachable endpoints, nothing cached
        unreachable = {}
        srv, fill, hole = black_hole()
        cases = {"connection refused": (f"http://127.0.0.1:{closed_port()}", {}),
                 "packets dropped": (f"http://127.0.0.1:{hole}", {}),
                 "packets dropped, HF_HUB_DISABLE_TELEMETRY=1": (f"http://127.0.0.1:{hole}",
                                                                 {"HF_HUB_DISABLE_TELEMETRY": "1"})}
        for name, (endpoint, extra) in cases.items():
            walls, lines = [], None
            for i in range(3):
                wall, p = run(cmd, child_env(work / f"unreachable-{len(unreachable)}-{i}", endpoint, **extra))
                walls.append(wall)
                lines = p.stderr
            unreachable[name] = {"walls": walls, "stderr": lines, "returncode": p.returncode}
        srv.close()
        for c in fill:
            c.close()
        results["unreachable"] = unreachable
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "hub.json").write_text(json.dumps(results, indent=1))
    return 0


def report(r: dict) -> None:
    med = statistics.median
    first_wall = med(x["wall"] for x in r["first_run"])
    first_bytes = max(x["bytes"] for x in r["first_run"])
    dl_wall = med(x["wall"] for x in r["hf_hub_download"])
    dl_bytes = max(x["bytes"] for x in r["hf_hub_download"])
    need = r["needed"]["with_tokenizer_and_config"]
    second = r["second_run"]
    cached, local = med(second["walls"]["cached"]), med(second["walls"]["local"])
    print("| target | asked | measured | |")
    print("| --- | --- | --- | --- |")
    print(f"| 1a. first run, bytes | <= 1.05 x {human(need)} (tensors {human(r['needed']['tensors'])}"
          f" + {', '.join(r['needed']['small_files'])}) | {human(first_bytes)} = **{first_bytes / need:.3f}x**"
          f" (hf_hub_download of model.safetensors: {human(dl_bytes)}) | {'met' if first_bytes <= 1.05 * need else 'NOT met'} |")
    print(f"| 1b. first run, wall | <= 1/5 of hf_hub_download ({dl_wall:.2f} s) | {first_wall:.2f} s ="
          f" **1/{dl_wall / first_wall:.1f}** | {'met' if first_wall <= dl_wall / 5 else 'NOT met'} |")
    print(f"| 2. second run, offline | <= 1.2 x local directory ({local:.3f} s) | {cached:.3f} s ="
          f" **{cached / local:.2f}x**; same output: {second['same_output']};"
          f" requests to the Hub: {second['requests_to_hub']} | {'met' if cached <= 1.2 * local else 'NOT met'} |")
    for name, u in r["unreachable"].items():
        wall = med(u["walls"])
        print(f"| 3. unreachable ({name}) | <= 2 s, one line | {wall:.2f} s, exit {u['returncode']},"
              f" {u['stderr'].count(chr(10))} line(s) | {'met' if wall <= 2 and u['stderr'].count(chr(10)) == 1 else 'NOT met'} |")
    for name, u in r["unreachable"].items():
        print(f"\n{name}: {u['stderr'].strip()}")


if __name__ == "__main__":
    sys.exit(main())
