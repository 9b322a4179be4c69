"""embscope's cache of embedding tensors fetched from the Hub, and lookups in the HF cache.

Layout, under `huggingface_hub.cached_assets_path(library_name="embscope", namespace=repo_id,
subfolder=commit)` (that is $HF_HOME/assets/embscope/org--name/<commit>/):

    manifest.json                  what the checkpoint holds: format, tensor names, sizes
    <tensor name>.safetensors      one extracted tensor, a plain safetensors file
    ../refs/<revision>             the commit a branch or tag named when it was fetched

Every file is written atomically (embscope.atomic.atomic_write: on Linux an unnamed O_TMPFILE
linked into place when complete), so an interrupted transfer leaves nothing behind, and a
tensor file is checked (header, size, name, dtype, shape) each time before it is trusted.

Lookups never import huggingface_hub's download machinery (only its constants): a cached run
starts as fast as a local one.
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path
from urllib.parse import quote, unquote

from embscope.errors import EmbscopeError
from embscope.formats import Format
from embscope.io.small_files import read_small

LIBRARY = "embscope"
MANIFEST = "manifest.json"
VERSION = 1
COMMIT = re.compile(r"^[0-9a-f]{40}$")


class Damaged(Exception):
    """A cached tensor file that is not what the manifest says it is."""


def _constants():
    from huggingface_hub import constants

    return constants


def _flat(name: str) -> str:
    """A repo id or revision as one folder name, as cached_assets_path spells namespaces."""
    for part in (" ", "/", "\\"):
        name = name.replace(part, "--")
    return name


def root() -> Path:
    """$HF_ASSETS_CACHE/embscope (cached_assets_path's assets_dir, resolved the same way)."""
    return Path(_constants().HF_ASSETS_CACHE).expanduser().resolve() / LIBRARY


def commit_dir(repo_id: str, commit: str, create: bool = False) -> Path:
    if create:
        from huggingface_hub import cached_assets_path

        # assets_dir given: the value huggingface_hub.constants holds now (the function's own
        # default was bound when it was imported)
        return cached_assets_path(library_name=LIBRARY, namespace=repo_id, subfolder=commit,
                                  assets_dir=_constants().HF_ASSETS_CACHE)
    return root() / _flat(repo_id) / commit


# --- refs: branch or tag -> commit -----------------------------------------------------------

def _ref_path(repo_id: str, revision: str) -> Path:
    return root() / _flat(repo_id) / "refs" / quote(revision, safe="")


def read_ref(repo_id: str, revision: str) -> str | None:
    if COMMIT.match(revision):
        return revision
    try:
        commit = _ref_path(repo_id, revision).read_text().strip()
    except OSError:
        return None
    return commit if COMMIT.match(commit) else None


def write_ref(repo_id: str, revision: str, commit: str) -> None:
    if revision == commit:
        return
    from embscope.atomic import atomic_write

    path = _ref_path(repo_id, revision)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(str(path), lambda f: f.write(commit.encode()))


# --- the Hugging Face cache (full copies of files) ---------------------------------------------

def hf_snapshot(repo_id: str, commit: str) -> str:
    """The HF cache's folder for one commit of a model repo (it may not exist)."""
    c = _constants()
    return os.path.join(c.HF_HUB_CACHE, "models--" + repo_id.replace("/", "--"), "snapshots", commit)


def _one_name(name: str) -> bool:
    """A commit: one folder name."""
    return name not in ("", ".", "..") and "/" not in name and os.sep not in name


def _inside(revision: str) -> bool:
    """A revision that names a file below refs/ (`main`, `refs/pr/1`), never a way out of it."""
    return all(_one_name(part) for part in revision.split("/"))


def hf_commit(repo_id: str, revision: str) -> str | None:
    """The snapshot folder the HF cache keeps `revision` in, as try_to_load_from_cache finds it:
    the commit refs/<revision> names, else a snapshot named `revision` itself."""
    repo = os.path.join(_constants().HF_HUB_CACHE, "models--" + repo_id.replace("/", "--"))
    if not _inside(revision):  # never a path out of the repo's folder (org/name@../../dev/zero)
        return None
    try:
        revision = read_small(os.path.join(repo, "refs", revision), 1024).decode().strip()
    except (EmbscopeError, UnicodeDecodeError):
        pass
    ok = _one_name(revision)
    return revision if ok and os.path.isdir(os.path.join(repo, "snapshots", revision)) else None


def hf_file(repo_id: str, commit: str, name: str) -> str | None:
    path = os.path.join(hf_snapshot(repo_id, commit), name)
    return path if os.path.isfile(path) else None


# --- manifests --------------------------------------------------------------------------------

def load_manifest(repo_id: str, commit: str) -> dict | None:
    path = commit_dir(repo_id, commit) / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    ok = (isinstance(data, dict) and data.get("version") == VERSION and data.get("repo") == repo_id
          and data.get("commit") == commit and isinstance(data.get("keys"), dict)
          and isinstance(data.get("weights"), dict) and isinstance(data.get("files"), dict)
          and data.get("format") in {f.value for f in Format})
    return data if ok else None


def save_manifest(manifest: dict) -> None:
    from embscope.atomic import atomic_write

    path = commit_dir(manifest["repo"], manifest["commit"], create=True) / MANIFEST
    atomic_write(str(path), lambda f: f.write(json.dumps(manifest, indent=1).encode()))


def record_tensors(manifest: dict, tensors: dict[str, dict]) -> None:
    """Add extracted tensors ({key: {"dtype", "shape"}}) to the manifest, merged with what another
    process may have recorded meanwhile, and save it."""
    on_disk = load_manifest(manifest["repo"], manifest["commit"]) or {}
    manifest["tensors"] = {**(on_disk.get("tensors") or {}), **(manifest.get("tensors") or {}), **tensors}
    save_manifest(manifest)


# --- tensor files -----------------------------------------------------------------------------

def tensor_path(repo_id: str, commit: str, key: str) -> Path:
    name = quote(key, safe="._-")
    if len(name) > 200:
        import hashlib

        name = hashlib.sha256(key.encode()).hexdigest()
    return commit_dir(repo_id, commit) / f"{name}.safetensors"


def tensor_header(key: str, dtype: str, shape: tuple[int, ...], nbytes: int, metadata: dict) -> bytes:
    """The first bytes of a one-tensor safetensors file: length, JSON header padded to 8 bytes."""
    header = {"__metadata__": metadata, key: {"dtype": dtype, "shape": list(shape), "data_offsets": [0, nbytes]}}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def write_tensor(path: Path, head: bytes, nbytes: int, fill) -> None:
    """Write `head`, then let fill(fd, data_start) put the nbytes of data in place (os.pwrite,
    from many threads); the file appears at `path` only when complete."""
    from embscope.atomic import atomic_write

    path.parent.mkdir(parents=True, exist_ok=True)

    def write(f) -> None:
        f.write(head)
        f.truncate(len(head) + nbytes)
        f.flush()
        fill(f.fileno(), len(head))

    atomic_write(str(path), write)


def open_tensor(path: Path, key: str, expected: dict | None, origin: dict):
    """The SafetensorsFile of a cached tensor, checked; None if absent; Damaged if wrong."""
    from embscope.io.safetensors_file import SafetensorsFile

    if not path.is_file():
        return None
    try:
        f = SafetensorsFile(str(path))
    except EmbscopeError as e:
        raise Damaged(str(e).split(": ", 1)[-1]) from None
    info = f.tensors.get(key)
    if info is None or set(f.tensors) != {key}:
        raise Damaged(f"it does not hold '{key}' alone")
    if any(f.metadata.get(k) != v for k, v in origin.items()):
        raise Damaged("it was extracted from another repository or commit")
    if expected and (info.dtype != expected.get("dtype") or list(info.shape) != expected.get("shape")):
        raise Damaged(f"it holds {info.dtype} {list(info.shape)}, not {expected.get('dtype')} {expected.get('shape')}")
    if 8 + f.header_bytes + info.end != f.size:
        raise Damaged(f"it is {f.size} bytes, not {8 + f.header_bytes + info.end}")
    return f


# --- `embscope cache` ------------------------------------------------------------------------

def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def entries() -> list[dict]:
    """Every cached commit: repo, commit, revisions naming it, tensors, bytes, folder."""
    out = []
    base = root()
    if not base.is_dir():
        return out
    for repo_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        refs = {}
        for ref in sorted((repo_dir / "refs").glob("*")) if (repo_dir / "refs").is_dir() else []:
            refs.setdefault(ref.read_text().strip(), []).append(unquote(ref.name))
        for d in sorted(p for p in repo_dir.iterdir() if p.is_dir() and COMMIT.match(p.name)):
            try:
                repo = json.loads((d / MANIFEST).read_text(encoding="utf-8"))["repo"]
            except (OSError, ValueError, KeyError, TypeError, RecursionError):
                repo = repo_dir.name
            out.append({"repo": repo, "commit": d.name, "revisions": refs.get(d.name, []),
                        "tensors": len(list(d.glob("*.safetensors"))), "bytes": _size(d), "path": str(d)})
    return out


def remove(repo_id: str | None = None, commit: str | None = None) -> list[dict]:
    """Delete the cached commits of one repo (one commit, or all), or of every repo; returns them."""
    import shutil

    gone = [e for e in entries() if (repo_id is None or e["repo"] == repo_id)
            and (commit is None or e["commit"] == commit)]
    for e in gone:
        shutil.rmtree(e["path"], ignore_errors=True)
    for repo_dir in {Path(e["path"]).parent for e in gone}:
        if not any(p.is_dir() and COMMIT.match(p.name) for p in repo_dir.iterdir()):
            shutil.rmtree(repo_dir, ignore_errors=True)  # its refs too
        else:
            for ref in (repo_dir / "refs").glob("*"):
                if not (repo_dir / ref.read_text().strip()).is_dir():
                    ref.unlink()
    return gone
