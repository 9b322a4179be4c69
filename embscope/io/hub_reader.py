"""The tensors of a hub model's checkpoint: from embscope's cache, from a full copy of a shard in
the HF cache, or fetched by HTTP range (only the bytes of the tensors asked for).

A manifest (embscope.io.hub_cache) describes the checkpoint: format, tensor names and the file
each lives in, file sizes. It is built on first use from the safetensors header, the sharded
index, or the pickle of a pytorch_model.bin read by range, and is all an offline run needs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from math import prod

import numpy as np

from embscope.errors import EmbscopeError
from embscope.formats import Format
from embscope.io import hub_cache as cache
from embscope.io import shard_index
from embscope.io.reader import Reader
from embscope.io.torch_archive import byte_strides

# The first request for a safetensors file reads its first bytes, hoping the header is inside:
# 100 kB as huggingface_hub's get_safetensors_metadata does, but at most 1/64 of a small file
# (at least 4 KiB); a longer header costs one more request.
HEADER_PROBE = (4096, 100_000)


@dataclass
class Plan:
    """Bytes [start, end) of `remote` hold tensor `key`; `strides` (elements) when not C-ordered."""

    key: str
    remote: object  # http_ranges.RemoteFile
    start: int
    end: int
    dtype: str
    shape: tuple[int, ...]
    strides: tuple[int, ...] | None = None
    itemsize: int = 1


# --- one weight file, read by range ------------------------------------------------------------

class RemoteSafetensors:
    def __init__(self, remote):
        from embscope.io.safetensors_file import SafetensorsFile, header_length

        self.remote = remote
        if remote.size is None:
            remote.read(0, 1)  # the size, from Content-Range
        low, high = HEADER_PROBE
        first = remote.read(0, min(remote.size, max(low, min(high, remote.size // 64))))
        n = header_length(remote.label, remote.size, first[:8])
        raw = first[8:8 + n] if 8 + n <= len(first) else first[8:] + remote.read(len(first), 8 + n)
        self.header = SafetensorsFile.from_header(remote.label, remote.size, n, raw)
        self.header_bytes = 8 + n

    def keys(self) -> dict[str, None]:
        return dict.fromkeys(self.header.tensors)

    def plan(self, key: str) -> Plan:
        info = self.header.tensors[key]
        start = self.header.data_start + info.start
        return Plan(key, self.remote, start, self.header.data_start + info.end, info.dtype, info.shape)


class RemoteTorch:
    def __init__(self, remote):
        from embscope.io.http_ranges import RangeFile
        from embscope.io.torch_archive import TorchArchive

        if remote.size is None:
            remote.read(0, 1)
        self.remote = remote
        self.file = RangeFile(remote)
        try:
            self.archive = TorchArchive(remote.label, fileobj=self.file)
        except EmbscopeError:
            if self.file.error is not None:  # zipfile hides what went wrong with the transfer
                raise self.file.error from None
            raise
        self.state = state_dict(self.archive)
        self.header_bytes = self.archive.bytes_read

    def keys(self) -> dict[str, str]:
        return {k: ref.storage.key for k, ref in self.state.items()}

    def plan(self, key: str) -> Plan:
        ref = self.state[key]
        try:
            base, itemsize = self.archive.locate(ref, key)
        except EmbscopeError:
            if self.file.error is not None:
                raise self.file.error from None
            raise
        n = prod(ref.shape)
        c_strides = tuple(prod(ref.shape[i + 1:]) for i in range(len(ref.shape)))
        contiguous = all(s == c or d == 1 for s, c, d in zip(ref.stride, c_strides, ref.shape))
        last = ref.offset + sum((d - 1) * s for d, s in zip(ref.shape, ref.stride)) if n else ref.offset - 1
        start = base + ref.offset * itemsize
        end = start + (n if contiguous else last - ref.offset + 1) * itemsize
        return Plan(key, self.remote, start, end, ref.storage.dtype, tuple(ref.shape),
                    None if contiguous else tuple(ref.stride), itemsize)


def state_dict(archive) -> dict:
    """The TensorRefs of a torch archive's state dict, found as for a local file (a plain state
    dict, or a nanoGPT / Lightning checkpoint's); its training facts are not needed here."""
    from embscope.io.training_checkpoints import identify

    return identify(archive.tree, archive.path, lambda value: None).state


class LocalTorch:
    """A full copy of a pytorch_model.bin shard: tensors memory-mapped out of the zip."""

    def __init__(self, path: str):
        from embscope.io.torch_archive import TorchArchive

        self.path = path
        self.archive = TorchArchive(path)
        self.state = state_dict(self.archive)
        self.header_bytes = self.archive.bytes_read

    def matrix(self, key: str):
        return self.archive.matrix(self.state[key], key)

    def vector(self, key: str):
        return self.archive.vector(self.state[key], key)


def open_remote(repo, name: str):
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    from embscope import __version__
    from embscope.io.http_ranges import NoRanges, RemoteFile

    remote = RemoteFile(hf_hub_url(repo.repo_id, name, revision=repo.commit),
                        build_hf_headers(library_name="embscope", library_version=__version__),
                        repo.label(name), size=(repo.files or {}).get(name))
    try:
        return RemoteSafetensors(remote) if name.endswith(".safetensors") else RemoteTorch(remote)
    except NoRanges:
        raise
    except Exception as e:  # noqa: BLE001 - mapped to one line by HubRepo.error
        raise repo.error(e, name) from None


# --- manifests ---------------------------------------------------------------------------------

def _manifest(repo, fmt: str, keys: dict, weights: dict, metadata: dict, storage: dict) -> dict:
    return {"version": cache.VERSION, "repo": repo.repo_id, "commit": repo.commit, "format": fmt,
            "files": repo.files, "weights": weights, "keys": keys, "metadata": metadata,
            "storage": storage, "tensors": {}}


def single_manifest(repo, name: str):
    """(manifest, {name: remote}) of a checkpoint in one file, from its header or zip directory."""
    remote = open_remote(repo, name)
    weights = {name: {"size": remote.remote.size, "header_bytes": remote.header_bytes}}
    if isinstance(remote, RemoteSafetensors):
        keys = dict.fromkeys(remote.keys(), name)
        return _manifest(repo, Format.SAFETENSORS.value, keys, weights, dict(remote.header.metadata), {}), {name: remote}
    storage = remote.keys()
    keys = dict.fromkeys(storage, name)
    return _manifest(repo, Format.TORCH_STATE_DICT.value, keys, weights, {}, storage), {name: remote}


def sharded_manifest(repo, index_name: str, index_path: str) -> dict:
    weight_map = shard_index.weight_map(index_path)
    shards = sorted(set(weight_map.values()))
    fmt = shard_index.format_of(weight_map).value
    weights = {s: {"size": (repo.files or {}).get(s), "header_bytes": None} for s in shards}
    return _manifest(repo, fmt, dict(weight_map), weights, {}, {})


# --- the reader --------------------------------------------------------------------------------

class HubReader(Reader):
    """The checkpoint of one commit of a hub repo, as every reader looks from above."""

    def __init__(self, repo, manifest: dict, remotes: dict):
        self.repo, self.manifest = repo, manifest
        self.format = Format(manifest["format"])
        self.keys = list(manifest["keys"])
        self.facts = dict(manifest.get("metadata") or {})
        self.config: dict = {}
        self._remotes = remotes  # weight file -> RemoteSafetensors / RemoteTorch, once opened
        self._locals: dict[str, object] = {}  # weight file -> a full copy in the HF cache, or None
        self._tensors: dict[str, object] = {}  # key -> what holds it (an extract, a full copy)
        self._used: set[str] = set()
        self.files: list[str] = []
        self.file_bytes = self.read_bytes = 0

    # --- what model.load asks ---------------------------------------------------------------
    def prefetch(self, keys: list[str]) -> None:
        """Make every tensor in `keys` readable, fetching the missing ones together."""
        missing = [k for k in dict.fromkeys(keys) if k in self.manifest["keys"] and not self._ready(k)]
        if missing:
            self._fetch(missing)

    def matrix(self, key: str):
        m = self._holder(key).matrix(key)
        self.read_bytes += m.nbytes
        return m

    def vector(self, key: str) -> np.ndarray:
        return self._holder(key).vector(key)

    def same_storage(self, a: str, b: str) -> bool | None:
        storage = self.manifest.get("storage") or {}
        return storage[a] == storage[b] if a in storage and b in storage else None

    def finish(self) -> None:
        for name in sorted(self._used):
            local = self._locals.get(name)
            self.files.append(local.path if local is not None else self.repo.label(name))
            w = self.manifest["weights"].get(name, {})
            self.file_bytes += w.get("size") or 0
            self.read_bytes += w.get("header_bytes") or 0

    # --- where each tensor is ---------------------------------------------------------------
    def _holder(self, key: str):
        if key not in self._tensors:
            self.prefetch([key])
        self._used.add(self.manifest["keys"][key])
        return self._tensors[key]

    def _local(self, name: str):
        """A full copy of weight file `name` in the HF cache (a shard, or after a fallback)."""
        if name not in self._locals:  # a miss is remembered too (until a download pops it)
            from embscope.io.safetensors_file import SafetensorsFile

            path = cache.hf_file(self.repo.repo_id, self.repo.commit, name)
            self._locals[name] = None if path is None else (
                SafetensorsFile(path) if name.endswith(".safetensors") else LocalTorch(path))
            if path is not None:  # its size, and the bytes read besides tensors (8 + header; the pickle)
                local = self._locals[name]
                header = 8 + local.header_bytes if name.endswith(".safetensors") else local.header_bytes
                self.manifest["weights"].setdefault(name, {}).update(size=os.path.getsize(path), header_bytes=header)
        return self._locals[name]

    def _origin(self, key: str) -> dict:
        return {"repo": self.repo.repo_id, "commit": self.repo.commit, "file": self.manifest["keys"][key]}

    def _ready(self, key: str) -> bool:
        from embscope.io.hub import UNREACHABLE, _offline, say

        local = self._local(self.manifest["keys"][key])
        if local is not None:
            self._tensors[key] = local
            return True
        path = cache.tensor_path(self.repo.repo_id, self.repo.commit, key)
        try:
            f = cache.open_tensor(path, key, self.manifest.get("tensors", {}).get(key), self._origin(key))
        except cache.Damaged as why:
            path.unlink(missing_ok=True)
            if _offline():
                raise EmbscopeError(f"{self.repo.spec}: the cached copy of tensor '{key}' was damaged ({why})"
                                    f" and is removed; it cannot be fetched again {UNREACHABLE}") from None
            say(f"the cached copy of tensor '{key}' was damaged ({why}): fetching it again")
            return False
        if f is not None:
            self._tensors[key] = f
        return f is not None

    # --- fetching -------------------------------------------------------------------------------
    def _fetch(self, missing: list[str]) -> None:
        from embscope.io.hub import UNREACHABLE, _offline

        if _offline():
            raise EmbscopeError(f"{self.repo.spec}: tensor '{missing[0]}' is not in embscope's cache {UNREACHABLE}")
        from concurrent.futures import ThreadPoolExecutor
        by_file: dict[str, list[str]] = {}
        for key in missing:
            by_file.setdefault(self.manifest["keys"][key], []).append(key)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(self._open_remote, [n for n in by_file if n not in self._remotes]))
        plans = []
        for name, keys in by_file.items():
            if self._remotes.get(name) is None:  # no ranges: a full copy was downloaded instead
                self._tensors.update({k: self._local(name) for k in keys})
                continue
            try:  # a torch archive's plan reads the zip entry's local header by range
                plans += [self._remotes[name].plan(k) for k in keys]
            except EmbscopeError:
                raise
            except Exception as e:  # noqa: BLE001 - the network, as everywhere else: one line
                raise self.repo.error(e, name) from None
        if plans:
            self._extract(plans)

    def _open_remote(self, name: str) -> None:
        from embscope.io.http_ranges import NoRanges
        from embscope.io.hub import _host, _mib, say

        try:
            self._remotes[name] = remote = open_remote(self.repo, name)
            self.manifest["weights"].setdefault(name, {}).update(
                size=remote.remote.size, header_bytes=remote.header_bytes)
        except NoRanges:
            size = (self.repo.files or {}).get(name) or 0
            say(f"{_host()} does not serve byte ranges: downloading all of {name} ({_mib(size)}) instead")
            self._remotes[name] = None
            self.repo.download(name, progress=self.repo.progress)
            self._locals.pop(name, None)

    def _extract(self, plans: list[Plan]) -> None:
        """Fetch every planned tensor in parallel ranges into its cache file, then open them."""
        from embscope.io.http_ranges import Progress
        repo = self.repo
        total = sum(p.end - p.start for p in plans)
        progress = Progress(f"{repo.spec}: {len(plans)} tensor{'s' * (len(plans) > 1)}", total, repo.progress)
        try:
            _write_nested(plans, [cache.tensor_path(repo.repo_id, repo.commit, p.key) for p in plans],
                          [self._origin(p.key) for p in plans], [], [], progress)
        except _Carrier as c:
            raise repo.error(c.error) from None
        except Exception as e:  # noqa: BLE001 - NoRanges mid-way, network: one line
            raise repo.error(e) from None
        finally:
            progress.close()
        cache.record_tensors(self.manifest, {p.key: {"dtype": p.dtype, "shape": list(p.shape)} for p in plans})
        for p in plans:
            if not self._ready(p.key):
                raise EmbscopeError(f"{repo.spec}: tensor '{p.key}' could not be cached")


class _Carrier(Exception):
    """Carries an error out of atomic_write untouched (it rewrites OSErrors, and huggingface_hub's
    HTTP errors are OSErrors)."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


def _pwrite_all(fd: int, data, offset: int) -> None:
    view = memoryview(data)
    while len(view):
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _write_nested(plans, paths, origins, jobs, finishers, progress) -> None:
    """Open one atomic cache file per plan (each call nests the next inside its write), fetch
    all ranges at the innermost level, and let each file appear as the calls unwind: either every
    file is complete, or none is left behind."""
    if not plans:
        from embscope.io.http_ranges import fetch_ranges

        try:
            fetch_ranges(jobs, progress)
            for finish in finishers:
                finish()
        except Exception as e:  # noqa: BLE001
            raise _Carrier(e) from None
        return
    plan, path, origin = plans[0], paths[0], origins[0]
    head = cache.tensor_header(plan.key, plan.dtype, plan.shape, _nbytes(plan),
                               {**origin, "tensor": plan.key, "written_by": "embscope"})

    def fill(fd: int, data_start: int) -> None:
        if plan.strides is None:
            shift = data_start - plan.start
            jobs.append((plan.remote, plan.start, plan.end, lambda off, data: _pwrite_all(fd, data, shift + off)))
        else:
            buf = bytearray(plan.end - plan.start)

            def sink(off: int, data: bytes) -> None:
                buf[off - plan.start:off - plan.start + len(data)] = data

            jobs.append((plan.remote, plan.start, plan.end, sink))
            finishers.append(lambda: _pwrite_all(fd, _contiguous(buf, plan), data_start))
        _write_nested(plans[1:], paths[1:], origins[1:], jobs, finishers, progress)

    cache.write_tensor(path, head, _nbytes(plan), fill)


def _nbytes(plan: Plan) -> int:
    return plan.end - plan.start if plan.strides is None else prod(plan.shape) * plan.itemsize


def _contiguous(buf: bytearray, plan: Plan) -> bytes:
    """A strided view (torch archives may store one) made C-ordered, byte for byte."""
    raw = np.frombuffer(buf, dtype=np.dtype(f"V{plan.itemsize}"))
    view = np.lib.stride_tricks.as_strided(raw, shape=plan.shape,
                                           strides=byte_strides(plan.shape, plan.strides, plan.itemsize))
    return np.ascontiguousarray(view).tobytes()
