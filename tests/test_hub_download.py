"""Hub ids fetched from a loopback stand-in of the Hub (tests/hub_server.py) by the real
huggingface_hub client: only the embedding bytes travel, the cache works offline, failures are
one line. Numbers are compared with the transformers models the fixtures were saved from."""

from __future__ import annotations

import json
import os
import pty
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from embscope.errors import EmbscopeError
from embscope.io import hub_cache
from embscope.io.hub import tokenizer_files
from embscope.model import load
from tests.conftest import GPT2_VOCAB, N_EMBD, N_POS
from tests.hub_server import HubServer, Repo

# One commit per repo (org/gpt2 has two: main, and an older fp16 one tagged v1).
C = {name: (f"{i:02x}" * 20) for i, name in enumerate(
    ["gpt2", "gpt2-fp16", "sharded", "bin", "bin-sharded", "bin-bf16", "bf16", "bert", "roberta", "llama", "gated",
     "strided"], start=1)}
REPOS = {  # repo id -> (fixture name in hf_models, commit)
    "org/gpt2": ("gpt2-lm", C["gpt2"]),
    "org/sharded": ("gpt2-sharded", C["sharded"]),
    "org/bin": ("gpt2-bin", C["bin"]),
    "org/bin-sharded": ("gpt2-bin-sharded", C["bin-sharded"]),
    "org/bin-bf16": ("gpt2-bin-bf16", C["bin-bf16"]),
    "org/bf16": ("gpt2-lm-bf16", C["bf16"]),
    "org/bert": ("bert", C["bert"]),
    "org/roberta": ("roberta", C["roberta"]),
    "org/llama": ("llama", C["llama"]),
    "org/gated": ("gpt2-lm", C["gated"]),
}


@pytest.fixture(scope="session")
def strided_bin(tmp_path_factory) -> tuple[Path, dict]:
    """A pytorch_model.bin (torch.save) whose tensors are views: wte a transposed (column-major)
    view, wpe rows 3.. of a bigger storage, as a state dict can hold them."""
    import torch
    import transformers as T

    torch.manual_seed(14)
    d = tmp_path_factory.mktemp("strided")
    wte = torch.randn(16, 300).t()  # (300, 16), strides (1, 300)
    wpe = torch.randn(40, 16)[3:]  # (37, 16), storage offset 48
    assert not wte.is_contiguous() and wpe.storage_offset() == 48
    torch.save({"transformer.wte.weight": wte, "transformer.wpe.weight": wpe}, d / "pytorch_model.bin")
    T.GPT2Config(vocab_size=300, n_positions=37, n_embd=16, n_layer=1, n_head=2).save_pretrained(str(d))
    return d, {"wte": wte.numpy().copy(), "wpe": wpe.numpy().copy()}


@pytest.fixture(scope="session")
def hub_server(hf_models, strided_bin):
    repos = {"org/strided": Repo({C["strided"]: strided_bin[0]}, refs={"main": C["strided"]})}
    for repo_id, (name, commit) in REPOS.items():
        repos[repo_id] = Repo({commit: Path(hf_models[name].path)}, refs={"main": commit},
                              gated=repo_id == "org/gated")
    # org/gpt2 has a second commit (fp16 weights), tagged v1
    repos["org/gpt2"].commits[C["gpt2-fp16"]] = Path(hf_models["gpt2-lm-fp16"].path)
    repos["org/gpt2"].refs["v1"] = C["gpt2-fp16"]
    with HubServer(repos) as server:
        yield server


@pytest.fixture
def hub(hub_server, monkeypatch, tmp_path):
    """The stand-in, reset; HF_ENDPOINT and a fresh HF_HOME for this test, in the environment
    (for subprocesses) and in huggingface_hub.constants (it reads the environment at import)."""
    hub_server.reset()
    home = tmp_path / "hf-home"
    set_home(monkeypatch, home, hub_server.url)
    monkeypatch.chdir(tmp_path)  # "org/gpt2" is never a local folder
    hub_server.home = home
    return hub_server


def set_home(monkeypatch, home: Path, endpoint: str, offline: bool = False) -> None:
    import huggingface_hub.constants as constants

    for var in ("HF_HUB_CACHE", "HF_ASSETS_CACHE", "HF_TOKEN", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE",
                "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_PROGRESS_BARS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    patched = {"HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HF_ASSETS_CACHE": str(home / "assets"),
               "HF_TOKEN_PATH": str(home / "token"), "HF_STORED_TOKENS_PATH": str(home / "stored_tokens"),
               "AGENT_HARNESSES_PATH": str(home / ".agent_harnesses.json"), "ENDPOINT": endpoint,
               "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
               "HF_HUB_OFFLINE": offline}
    for name, value in patched.items():
        monkeypatch.setattr(constants, name, value)
    if offline:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def go_offline(monkeypatch, hub) -> None:
    set_home(monkeypatch, hub.home, hub.url, offline=True)


def embscope(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    """A real `embscope` process with the test's environment (HF_ENDPOINT, HF_HOME) and `env`."""
    full = {k: v for k, v in os.environ.items() if k != "EMBSCOPE_MODEL"}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "embscope", *args], capture_output=True, text=True,
                          env=full, timeout=120)


def tensor_bytes(ref, dtype_size: int) -> int:
    n = ref.wte.size + (ref.wpe.size if ref.wpe is not None else 0)
    if ref.token_type0 is not None:
        n += ref.wte.shape[1] * 2  # the token type matrix is fetched whole (2 rows in BERT)
    if ref.norm is not None:
        n += 2 * ref.wte.shape[1]
    return n * dtype_size


def assert_same_as_reference(emb, ref) -> None:
    assert np.array_equal(emb.wte.to_float32(), ref.wte)
    if ref.wpe is None:
        assert emb.wpe is None
    else:
        assert np.array_equal(emb.wpe.to_float32(), ref.wpe)
    assert emb.wte.dtype_name == ref.dtype
    assert emb.layout.position_offset == ref.position_offset
    if ref.token_type0 is not None:
        assert np.array_equal(emb.token_type0, ref.token_type0)
    if ref.norm is not None:
        assert np.array_equal(emb.norm[0], ref.norm[0]) and np.array_equal(emb.norm[1], ref.norm[1])
        assert emb.norm[2] == pytest.approx(ref.norm[2])
    assert emb.tied == ref.tied
    assert emb.n_tokens == (ref.n_tokens or ref.wte.shape[0])


def cached_tensor_files(home: Path) -> list[str]:
    root = home / "assets" / "embscope"
    return sorted(p.name for p in root.rglob("*") if p.is_file() and p.name != "manifest.json"
                  and p.parent.name != "refs") if root.exists() else []


# --- numbers: equal to the transformers models, first run and cached run -------------------------

@pytest.mark.parametrize("repo_id", sorted(set(REPOS) - {"org/gated"}))
def test_numbers_equal_the_transformers_model(hub, hf_models, monkeypatch, repo_id):
    ref = hf_models[REPOS[repo_id][0]]
    emb = load(repo_id)
    assert_same_as_reference(emb, ref)
    assert emb.format == ref.format
    commit = REPOS[repo_id][1]
    assert all(f.startswith(f"hf://{repo_id}@{commit}/") for f in emb.files)
    assert emb.tokenizer is not None or ref.n_tokens is None
    if emb.tokenizer is not None:  # from the HF cache's snapshot folder of that commit
        assert emb.tokenizer.source.startswith(str(hub.home / "hub" / f"models--{repo_id.replace('/', '--')}"))
    # the second run: from embscope's cache, with the network off
    hub.reset()
    go_offline(monkeypatch, hub)
    again = load(repo_id)
    assert_same_as_reference(again, ref)
    assert hub.log == []


def test_strided_views_in_a_torch_archive(hub, strided_bin, monkeypatch):
    """Views (a transposed matrix, rows from an offset) are fetched as the span they cover and
    stored C-ordered; the numbers are the tensors torch saved."""
    _, ref = strided_bin
    for _ in range(2):  # fetched, then from the cache offline
        emb = load("org/strided")
        assert np.array_equal(emb.wte.to_float32(), ref["wte"])
        assert np.array_equal(emb.wpe.to_float32(), ref["wpe"])
        go_offline(monkeypatch, hub)


def test_bert_family_vectors_come_along(hub):
    """LayerNorm weight/bias and the token-type matrix are fetched with wte/wpe, in one go."""
    load("org/bert")
    names = set(cached_tensor_files(hub.home))
    assert names == {"embeddings.word_embeddings.weight.safetensors", "embeddings.position_embeddings.weight.safetensors",
                     "embeddings.token_type_embeddings.weight.safetensors", "embeddings.LayerNorm.weight.safetensors",
                     "embeddings.LayerNorm.bias.safetensors"}


def test_cached_tensors_are_plain_safetensors(hub, hf_models):
    """The cache holds safetensors files the safetensors library itself reads."""
    from safetensors.numpy import load_file

    load("org/gpt2")
    folder = hub.home / "assets" / "embscope" / "org--gpt2" / C["gpt2"]
    data = load_file(str(folder / "transformer.wte.weight.safetensors"))
    assert list(data) == ["transformer.wte.weight"]
    assert np.array_equal(data["transformer.wte.weight"], hf_models["gpt2-lm"].wte)
    code = ("import huggingface_hub, sys; print(huggingface_hub.cached_assets_path(library_name='embscope',"
            f" namespace='org/gpt2', subfolder='{C['gpt2']}'))")
    where = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert where == f"{folder}\n"  # the folder huggingface_hub names for embscope's assets


# --- bytes over the wire -------------------------------------------------------------------------

@pytest.mark.parametrize("repo_id,itemsize", [("org/gpt2", 4), ("org/sharded", 4), ("org/bin", 4),
                                              ("org/bin-sharded", 4), ("org/bf16", 2), ("org/bert", 4)])
def test_only_the_embedding_bytes_travel(hub, hf_models, repo_id, itemsize):
    ref = hf_models[REPOS[repo_id][0]]
    folder = Path(ref.path)
    files = [p.name for p in folder.iterdir()]
    small = ["config.json", *tokenizer_files(files)] + [n for n in files if n.endswith(".index.json")]
    needed = tensor_bytes(ref, itemsize) + sum((folder / n).stat().st_size for n in small)
    load(repo_id)
    assert hub.total_sent() <= 1.05 * needed, (hub.sent, needed)
    # one listing, and only files that exist: no request answered 404 (no guessing of names)
    assert hub.resolved(404) == []
    fetched = {e.path.rsplit("/", 1)[1] for e in hub.resolved() if e.method == "GET" and e.range is None}
    assert fetched == set(small)


def test_weights_bytes_are_the_tensors_plus_the_header_probe(hub, hf_models):
    ref = hf_models["gpt2-lm"]
    load("org/gpt2")
    size = os.path.getsize(Path(ref.path, "model.safetensors"))
    tensors = (ref.wte.size + ref.wpe.size) * 4
    assert tensors < hub.sent["org/gpt2/model.safetensors"] <= tensors + min(size, 100_000)
    ranges = [e.range for e in hub.resolved() if e.path.endswith("/model.safetensors")]
    probe = max(4096, min(100_000, size // 64))  # the header: the first 100 kB, or 1/64 of a small file
    assert ranges[0] == f"bytes=0-{probe - 1}"
    assert all(r is not None for r in ranges)


# --- revisions -------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec,name", [("org/gpt2@v1", "gpt2-lm-fp16"), (f"org/gpt2@{C['gpt2-fp16']}", "gpt2-lm-fp16"),
                                       ("org/gpt2@main", "gpt2-lm"), (f"org/gpt2@{C['gpt2']}", "gpt2-lm")])
def test_revisions(hub, hf_models, monkeypatch, spec, name):
    emb = load(spec)
    assert_same_as_reference(emb, hf_models[name])
    go_offline(monkeypatch, hub)
    assert_same_as_reference(load(spec), hf_models[name])  # the revision resolves from the cache


def test_two_revisions_are_cached_apart(hub):
    load("org/gpt2")
    load("org/gpt2@v1")
    entries = {e["commit"]: e for e in hub_cache.entries()}
    assert set(entries) == {C["gpt2"], C["gpt2-fp16"]}
    assert entries[C["gpt2"]]["revisions"] == ["main"]
    assert entries[C["gpt2-fp16"]]["revisions"] == ["v1"]


def test_unknown_revision(hub):
    with pytest.raises(EmbscopeError) as e:
        load("org/gpt2@nope")
    assert str(e.value) == "org/gpt2@nope: no revision 'nope' on the Hugging Face Hub"


def test_unknown_repo(hub):
    with pytest.raises(EmbscopeError) as e:
        load("org/nothing")
    assert str(e.value) == ("org/nothing: no such model on the Hugging Face Hub (or a private one:"
                            " log in with hf auth login or set HF_TOKEN)")


# --- a gated repo ----------------------------------------------------------------------------------

GATED = ("org/gated: a gated model: accept its conditions on the Hugging Face Hub, then log in"
         " (hf auth login) or set HF_TOKEN")


@pytest.mark.parametrize("token", [None, "hf_wrong"])
def test_gated_repo_without_access(hub, token):
    p = embscope("neighbors", "king", "-m", "org/gated", env={"HF_TOKEN": token} if token else {})
    assert (p.returncode, p.stdout, p.stderr) == (1, "", f"embscope: error: {GATED}\n")
    assert cached_tensor_files(hub.home) == []


def test_gated_repo_with_a_token(hub, hf_models, monkeypatch):
    p = embscope("info", "-m", "org/gated", "-f", "json", env={"HF_TOKEN": hub.token})
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    facts = json.loads(p.stdout)  # one object keyed by field
    assert facts["files"] == f"hf://org/gated@{C['gated']}/model.safetensors"
    assert all(e.authorized for e in hub.resolved())  # the token went with every file request
    go_offline(monkeypatch, hub)
    assert_same_as_reference(load("org/gated"), hf_models["gpt2-lm"])


# --- transfers that go wrong -------------------------------------------------------------------------

def test_connection_dropped_mid_range_resumes(hub, hf_models):
    ref = hf_models["gpt2-lm"]
    tensors = (ref.wte.size + ref.wpe.size) * 4
    hub.drop_after["model.safetensors"] = 1_000_000  # inside wte (3.2 MB)
    emb = load("org/gpt2")
    assert_same_as_reference(emb, ref)
    ranges = [e.range for e in hub.resolved() if e.path.endswith("/model.safetensors")]
    wte_size = ref.wte.size * 4
    first = next(r for r in ranges if r.endswith(f"-{int(r.split('=')[1].split('-')[0]) + wte_size - 1}"))
    start = int(first.split("=")[1].split("-")[0])  # the wte range, then its resumption
    assert ranges.count(f"bytes={start + 1_000_000}-{start + wte_size - 1}") == 1
    assert hub.sent["org/gpt2/model.safetensors"] <= tensors + 100_000  # resumed, not restarted


def test_connection_dropping_every_megabyte_still_completes(hub, hf_models):
    hub.drop_every["model.safetensors"] = 1_000_000  # each resumption brings a megabyte more
    assert_same_as_reference(load("org/gpt2"), hf_models["gpt2-lm"])


def test_connection_that_brings_nothing_fails_and_caches_nothing(hub, hf_models):
    hub.drop_every["model.safetensors"] = 0  # every answer breaks off before its first byte
    p = embscope("neighbors", "king", "-m", "org/gpt2")
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.startswith(f"embscope: error: org/gpt2: the transfer failed (hf://org/gpt2@{C['gpt2']}"
                               "/model.safetensors: peer closed connection without sending complete message body")
    assert p.stderr.endswith("; nothing was cached, run again to restart it\n") and p.stderr.count("\n") == 1
    assert cached_tensor_files(hub.home) == []  # no tensor, no temporary file
    hub.drop_every.clear()
    assert_same_as_reference(load("org/gpt2"), hf_models["gpt2-lm"])


def test_killed_mid_transfer_leaves_nothing_trusted(hub, hf_models):
    hub.delay = 0.02  # ~1 s for wte
    proc = subprocess.Popen([sys.executable, "-m", "embscope", "info", "-m", "org/gpt2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while hub.sent.get("org/gpt2/model.safetensors", 0) < 300_000 and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    folder = hub.home / "assets" / "embscope" / "org--gpt2" / C["gpt2"]
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json"]
    hub.delay = 0
    assert_same_as_reference(load("org/gpt2"), hf_models["gpt2-lm"])


def test_ctrl_c_mid_transfer_stops_cleanly(hub, hf_models):
    hub.delay = 0.02
    proc = subprocess.Popen([sys.executable, "-m", "embscope", "info", "-m", "org/gpt2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while hub.sent.get("org/gpt2/model.safetensors", 0) < 300_000 and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)  # the parallel ranges stop too: no hang
    assert (proc.returncode, out, err) == (130, "", "embscope: error: interrupted\n")
    folder = hub.home / "assets" / "embscope" / "org--gpt2" / C["gpt2"]
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json"]


@pytest.mark.parametrize("repo_id,weights", [("org/gpt2", "model.safetensors"), ("org/bin", "pytorch_model.bin")])
def test_server_without_ranges_falls_back_to_a_download(hub, hf_models, monkeypatch, repo_id, weights):
    hub.ranges = False
    ref = hf_models[REPOS[repo_id][0]]
    size = os.path.getsize(Path(ref.path, weights))
    p = embscope("info", "-m", repo_id, "-f", "json")
    assert p.returncode == 0
    assert p.stderr == (f"embscope: {hub.url} does not serve byte ranges: downloading all of {weights}"
                        f" ({size / 2**20:.1f} MiB) instead\n")
    snapshot = hub.home / "hub" / f"models--{repo_id.replace('/', '--')}" / "snapshots" / REPOS[repo_id][1]
    facts = json.loads(p.stdout)  # one object keyed by field
    assert facts["files"] == str(snapshot / weights)  # read like any full copy in the HF cache
    go_offline(monkeypatch, hub)
    assert_same_as_reference(load(repo_id), ref)


def test_sharded_repo_without_ranges(hub, hf_models, monkeypatch):
    hub.ranges = False
    p = embscope("info", "-m", "org/sharded", "-f", "json")
    assert p.returncode == 0, p.stderr
    lines = p.stderr.splitlines()
    assert lines and all("does not serve byte ranges: downloading all of model-0000" in line for line in lines)
    go_offline(monkeypatch, hub)
    assert_same_as_reference(load("org/sharded"), hf_models["gpt2-sharded"])


# --- the cache: damaged entries, offline runs, a full copy in the HF cache ---------------------------

def _wte_file(hub) -> Path:
    return hub.home / "assets" / "embscope" / "org--gpt2" / C["gpt2"] / "transformer.wte.weight.safetensors"


@pytest.mark.parametrize("damage", ["truncate", "header", "swap"])
def test_a_damaged_cache_entry_is_fetched_again(hub, hf_models, damage):
    load("org/gpt2")
    wte = _wte_file(hub)
    if damage == "truncate":
        with open(wte, "r+b") as f:
            f.truncate(wte.stat().st_size - 100)
    elif damage == "header":
        with open(wte, "r+b") as f:
            f.write(b"\xff" * 16)
    else:  # another tensor's file under this name
        os.replace(wte.with_name("transformer.wpe.weight.safetensors"), wte)
    hub.reset()
    p = embscope("neighbors", "king", "-m", "org/gpt2", "-k", "3")
    assert p.returncode == 0
    assert p.stderr.startswith("embscope: the cached copy of tensor 'transformer.wte.weight' was damaged (")
    assert p.stderr.endswith("): fetching it again\n") and p.stderr.count("\n") == 1
    assert hub.sent["org/gpt2/model.safetensors"] >= hf_models["gpt2-lm"].wte.size * 4
    assert_same_as_reference(load("org/gpt2"), hf_models["gpt2-lm"])


def test_a_damaged_cache_entry_offline(hub):
    load("org/gpt2")
    wte = _wte_file(hub)
    data_start = 8 + int.from_bytes(wte.read_bytes()[:8], "little")
    with open(wte, "r+b") as f:
        f.truncate(data_start + 1000)
    p = embscope("info", "-m", "org/gpt2", env={"HF_HUB_OFFLINE": "1"})
    assert (p.returncode, p.stdout) == (1, "")
    assert p.stderr == ("embscope: error: org/gpt2: the cached copy of tensor 'transformer.wte.weight' was damaged"
                        " (not a valid safetensors file: tensor 'transformer.wte.weight' ends at byte 3216448 of a"
                        " 1000-byte data buffer) and is removed; it cannot be fetched again (the hub is offline or"
                        " unreachable)\n")
    assert not wte.exists()


def test_a_damaged_manifest_is_rebuilt(hub, hf_models):
    load("org/gpt2")
    manifest = hub.home / "assets" / "embscope" / "org--gpt2" / C["gpt2"] / "manifest.json"
    manifest.write_text("{not json")
    assert_same_as_reference(load("org/gpt2"), hf_models["gpt2-lm"])
    assert json.loads(manifest.read_text())["commit"] == C["gpt2"]


@pytest.mark.parametrize("how", ["HF_HUB_OFFLINE", "unreachable"])
def test_second_run_needs_no_network(hub, how):
    first = embscope("neighbors", "king", "-m", "org/gpt2", "-k", "5")
    assert first.returncode == 0 and first.stderr == ""
    hub.reset()
    env = {"HF_HUB_OFFLINE": "1"} if how == "HF_HUB_OFFLINE" else {"HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}
    second = embscope("neighbors", "king", "-m", "org/gpt2", "-k", "5", env=env)
    assert (second.returncode, second.stdout, second.stderr) == (0, first.stdout, "")
    assert hub.log == []


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_endpoint_is_one_line(hub):
    port = closed_port()
    p = embscope("neighbors", "king", "-m", "org/gpt2", env={"HF_ENDPOINT": f"http://127.0.0.1:{port}"})
    assert (p.returncode, p.stdout) == (1, "")
    assert p.stderr == (f"embscope: error: org/gpt2: not a local path, and not in the Hugging Face cache"
                        f" (http://127.0.0.1:{port} is unreachable: [Errno 111] Connection refused)\n")


def test_offline_and_nothing_cached_is_one_line(hub):
    p = embscope("neighbors", "king", "-m", "org/gpt2", env={"HF_HUB_OFFLINE": "1"})
    assert (p.returncode, p.stdout) == (1, "")
    assert p.stderr == ("embscope: error: org/gpt2: not a local path, and not in the Hugging Face cache"
                        " (the hub is offline or unreachable)\n")
    assert hub.log == []


def test_a_full_copy_in_the_hf_cache_is_used_directly(hub, hf_models):
    from huggingface_hub import snapshot_download

    snapshot = snapshot_download("org/gpt2")
    hub.reset()
    emb = load("org/gpt2")
    assert emb.files == [os.path.join(snapshot, "model.safetensors")]
    assert hub.log == []  # not a single request: the weights and the tokenizer are there
    assert cached_tensor_files(hub.home) == []
    assert_same_as_reference(emb, hf_models["gpt2-lm"])


def test_a_full_copy_without_tokenizer_lists_once(hub):
    """Weights downloaded alone (as `hf_hub_download(..., "model.safetensors")` leaves them):
    one listing finds the tokenizer, no name is guessed."""
    from huggingface_hub import hf_hub_download

    hf_hub_download("org/gpt2", "model.safetensors")
    hub.reset()
    emb = load("org/gpt2")
    assert emb.tokenizer.source.endswith("/tokenizer.json")
    assert [e.path.split("?")[0] for e in hub.log if e.path.startswith("/api/models")] == ["/api/models/org/gpt2/revision/" + C["gpt2"]]
    assert {e.path.rsplit("/", 1)[1] for e in hub.resolved()} == {"config.json", "tokenizer.json"}
    assert hub.resolved(404) == []


# --- a progress bar, on a terminal only --------------------------------------------------------------

def _stderr_on_a_terminal(argv: list[str]) -> tuple[int, str, str]:
    """Run `argv` with stderr on a pseudo-terminal: (exit status, stdout, what the terminal saw)."""
    env = {k: v for k, v in os.environ.items() if k != "EMBSCOPE_MODEL"}
    master, slave = pty.openpty()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    out, _ = p.communicate(timeout=60)
    os.close(master)
    return p.returncode, out.decode(), b"".join(chunks).decode(errors="replace")


def test_progress_bar_on_a_terminal(hub):
    hub.delay = 0.02  # about a second for wte
    code, out, err = _stderr_on_a_terminal(
        [sys.executable, "-m", "embscope", "neighbors", "king", "-m", "org/gpt2", "-f", "tsv"])
    assert code == 0
    assert "org/gpt2: 2 tensors" in err and "/s" in err  # description, rate
    assert out.startswith("rank\tid\ttoken\tscore\n")


@pytest.mark.parametrize("progress", [False, True])
def test_the_api_shows_a_progress_bar_only_when_asked(hub, progress):
    """embscope.load does not look at the terminal: no bar by default, even on one."""
    hub.delay = 0.02
    script = (f"import embscope; m = embscope.load('org/gpt2', progress={progress});"
              " print(m.wte.shape, m.wpe.shape)")
    code, out, err = _stderr_on_a_terminal([sys.executable, "-c", script])
    assert (code, out) == (0, f"({GPT2_VOCAB}, {N_EMBD}) ({N_POS}, {N_EMBD})\n")
    if progress:
        assert "org/gpt2: 2 tensors" in err and "/s" in err
    else:
        assert err == ""


# --- embscope cache --------------------------------------------------------------------------------

def test_cache_lists_and_removes(hub):
    load("org/gpt2")
    load("org/gpt2@v1")
    load("org/bert")
    p = embscope("cache", "list", "-f", "json")
    assert p.returncode == 0 and p.stderr == ""
    rows = json.loads(p.stdout)
    root = hub.home / "assets" / "embscope"
    expect = []
    for repo_id, commit, revs in [("org/bert", C["bert"], ["main"]), ("org/gpt2", C["gpt2"], ["main"]),
                                  ("org/gpt2", C["gpt2-fp16"], ["v1"])]:
        folder = root / repo_id.replace("/", "--") / commit
        size = sum(f.stat().st_size for f in folder.iterdir())
        n = len(list(folder.glob("*.safetensors")))
        expect.append({"repo": repo_id, "commit": commit, "revisions": ",".join(revs), "tensors": n,
                       "bytes": size, "size": f"{size / 2**20:.1f} MiB"})
    assert rows == expect
    listed = hub.home / "cache.json"
    p = embscope("cache", "-o", str(listed))  # -o: what -f json prints, in a file
    assert (p.returncode, p.stdout, p.stderr) == (0, "", f"wrote {listed}\n")
    assert json.loads(listed.read_text()) == expect
    p = embscope("cache", "remove", "org/gpt2@v1")
    assert (p.returncode, p.stdout) == (0, "")
    assert p.stderr == f"removed org/gpt2@{C['gpt2-fp16']}: 2 tensors, {expect[2]['size']}\n"
    assert [r["commit"] for r in json.loads(embscope("cache", "-f", "json").stdout)] == [C["bert"], C["gpt2"]]
    assert not (root / "org--gpt2" / "refs" / "v1").exists()
    p = embscope("cache", "remove", "org/gpt2")
    assert p.returncode == 0 and not (root / "org--gpt2").exists()
    p = embscope("cache", "remove", "org/gpt2")
    assert (p.returncode, p.stderr) == (1, "embscope: error: org/gpt2: nothing cached for it (see 'embscope cache')\n")
    p = embscope("cache", "remove", "--all")
    assert p.returncode == 0 and json.loads(embscope("cache", "-f", "json").stdout) == []


def test_cache_remove_needs_a_target(hub):
    p = embscope("cache", "remove")
    assert (p.returncode, p.stderr) == (2, "embscope: error: name what to remove (REPO or REPO@REVISION), or --all\n")


# --- which tokenizer files a listing asks for ---------------------------------------------------------

@pytest.mark.parametrize("name", ["gpt2-lm", "bert", "gpt2-bin"])
def test_tokenizer_files_are_what_from_directory_reads(hf_models, tmp_path, name):
    """Only the files tokenizer_files() picks, copied alone, give the same tokenizer."""
    import shutil

    from embscope.tokenizer import from_directory

    folder = Path(hf_models[name].path)
    picked = tokenizer_files(p.name for p in folder.iterdir())
    for n in picked:
        shutil.copyfile(folder / n, tmp_path / n)
    full, alone = from_directory(str(folder)), from_directory(str(tmp_path))
    assert alone.kind == full.kind
    text = "The king's crown, 1234 times!"
    assert alone.encode(text) == full.encode(text)
    assert [alone.token_bytes(i) for i in range(alone.vocab_size)] == [full.token_bytes(i) for i in range(full.vocab_size)]


def test_config_is_kept_with_the_tensors(hub, hf_models, monkeypatch):
    """RoBERTa's position offset comes from config.json: an offline run whose HF cache lost the
    file still reads it (from the manifest), never silently the wrong rows."""
    load("org/roberta")
    snapshot = hub.home / "hub" / "models--org--roberta" / "snapshots" / C["roberta"]
    os.unlink(snapshot / "config.json")
    go_offline(monkeypatch, hub)
    emb = load("org/roberta")
    assert emb.layout.position_offset == 2
    assert_same_as_reference(emb, hf_models["roberta"])


# --- start-up: what is imported when -------------------------------------------------------------

def _imports(*args, env=None) -> set[str]:
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "embscope", *args], capture_output=True,
                       text=True, env={**os.environ, **(env or {})}, timeout=120)
    return {line.rsplit("|", 1)[1].strip() for line in p.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


@pytest.mark.parametrize("args", [["--help"], ["cache", "--help"]])
def test_help_does_not_import_huggingface_hub(args):
    modules = _imports(*args)
    assert "embscope.cli.main" in modules
    assert not {m.split(".")[0] for m in modules} & {"huggingface_hub", "httpx2", "torch", "transformers"}


def test_a_cached_run_imports_no_http(hub):
    assert embscope("info", "-m", "org/gpt2").returncode == 0
    modules = _imports("info", "-m", "org/gpt2", env={"HF_HUB_OFFLINE": "1"})
    assert "embscope.io.hub_reader" in modules and "huggingface_hub.constants" in modules
    assert not {m.split(".")[0] for m in modules} & {"httpx2", "torch", "transformers"}


def test_output_matrix_from_the_hub_then_offline(hub, hf_models, monkeypatch):
    """--matrix output on a hub repo: the untied lm_head's bytes travel too, and are cached."""
    ref = hf_models["llama"]
    emb = load("org/llama", matrix="output")
    assert emb.head_key == "lm_head.weight"
    assert np.array_equal(emb.wte.to_float32(), ref.facts["lm_head"])
    hub.reset()
    go_offline(monkeypatch, hub)
    assert np.array_equal(load("org/llama", matrix="output").wte.to_float32(), ref.facts["lm_head"])
    assert hub.log == []


def test_output_matrix_offline_when_only_the_input_was_fetched(hub, monkeypatch):
    load("org/llama")
    go_offline(monkeypatch, hub)
    with pytest.raises(EmbscopeError, match=r"^org/llama: tensor 'lm_head.weight' is not in embscope's cache"
                       r" \(the hub is offline or unreachable\)$"):
        load("org/llama", matrix="output")
