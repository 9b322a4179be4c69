"""Models named by a Hugging Face hub id (`org/name@revision`), read without the download.

Where the embedding tensors come from, first found wins:
1. a full copy of the weights already in the Hugging Face cache (read like a local directory);
2. embscope's own cache of tensors fetched before (embscope.io.hub_cache), with no network;
3. the Hub: one listing of the repo's files (its commit, names and sizes), then config.json and
   the tokenizer files into the HF cache, the safetensors header (or the zip directory and pickle
   of a pytorch_model.bin) by HTTP range, and then only the bytes of the tensors used, in
   parallel ranges, each stored in embscope's cache as a one-tensor safetensors file.
A server that does not serve ranges gets a normal `hf_hub_download`, and embscope says so.

Offline (HF_HUB_OFFLINE) or with the Hub unreachable, 1 and 2 answer, or one line of error.
"""

from __future__ import annotations

import os
import re
import sys

from embscope.errors import EmbscopeError, first_line
from embscope.io import hub_cache as cache
from embscope.io import shard_index
from embscope.io.small_files import read_json_object

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?(@[\w./-]+)?$")
SMALL_WORKERS = 4  # config, tokenizer and index files fetched at once
UNREACHABLE = "(the hub is offline or unreachable)"


def looks_like_hub_id(spec: str) -> bool:
    return bool(HUB_ID.match(spec)) and not spec.endswith((".pt", ".bin", ".safetensors", ".json", ".ckpt"))


def tokenizer_files(names) -> list[str]:
    """The files embscope.tokenizer.from_directory would use, among a repo's file names, in its
    order of preference: only those are fetched."""
    names = set(names)
    if "tokenizer.json" in names:
        return ["tokenizer.json"]
    if {"vocab.json", "merges.txt"} <= names:
        return ["vocab.json", "merges.txt"]
    extra = ["tokenizer_config.json"]
    if "vocab.txt" in names:  # WordPiece: tokenizer_config.json says whether it lowercases
        return ["vocab.txt"] + [n for n in extra if n in names]
    model = [n for n in ("tokenizer.model", "spiece.model", "sentencepiece.bpe.model") if n in names]
    if model:  # SentencePiece, through transformers
        extra += ["special_tokens_map.json", "added_tokens.json"]
        return model[:1] + [n for n in extra if n in names]
    return []


def say(message: str) -> None:
    """People-talk from the hub code (a fallback, a repair): one line on stderr."""
    from embscope.display import sanitize

    sys.stderr.write(f"embscope: {sanitize(message)}\n")
    sys.stderr.flush()


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.is_offline_mode())


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


class HubRepo:
    """A hub model `org/name@revision`: where its files are, and how to get the ones needed."""

    def __init__(self, spec: str, progress: bool = False):
        self.repo_id, _, revision = spec.partition("@")
        self.revision = revision or None
        self.spec = spec
        self.progress = progress  # progress bars on stderr for downloads of weights
        self.commit: str | None = None  # resolved, once known
        self.files: dict[str, int | None] | None = None  # the repo's files and sizes, once listed
        self._listed = False

    @property
    def rev(self) -> str:
        return self.revision or "main"

    @property
    def directory(self) -> str:
        """Where config.json and the tokenizer files are (the HF cache's snapshot folder)."""
        return cache.hf_snapshot(self.repo_id, self.commit) if self.commit else ""

    def label(self, name: str) -> str:
        return f"hf://{self.repo_id}@{self.commit}/{name}"

    # --- finding the weights --------------------------------------------------------------
    def open(self, weight_files: list[str]):
        """(reader, None) for the embedding tensors by range or from embscope's cache, or
        (None, path) of a full copy of the weights in the HF cache."""
        commit = cache.read_ref(self.repo_id, self.rev)  # what embscope resolved the revision to
        for known in dict.fromkeys([cache.hf_commit(self.repo_id, self.rev), commit]):
            path = self._full_copy(known, weight_files)
            if path:
                return None, path
        manifest = cache.load_manifest(self.repo_id, commit) if commit else None
        if manifest is not None:
            return self._reader(commit, manifest), None
        if _offline():
            raise EmbscopeError(f"{self.spec}: not a local path, and not in the Hugging Face cache {UNREACHABLE}")
        self._list()
        cache.write_ref(self.repo_id, self.rev, self.commit)
        path = self._full_copy(self.commit, weight_files)
        if path:
            return None, path
        manifest = cache.load_manifest(self.repo_id, self.commit)
        if manifest is not None:
            return self._reader(self.commit, manifest), None
        name = next((n for n in weight_files if n in self.files), None)
        if name is None:
            raise EmbscopeError(f"{self.spec}: the repository has none of {', '.join(weight_files)}")
        return self._first_fetch(name)

    def _full_copy(self, commit: str | None, weight_files: list[str]) -> str | None:
        if not commit:
            return None
        for name in weight_files:
            path = cache.hf_file(self.repo_id, commit, name)
            if path and (not name.endswith(".json") or self._all_shards_cached(commit, path)):
                self.commit = commit
                return path
        return None

    def _all_shards_cached(self, commit: str, index_path: str) -> bool:
        shards = set(shard_index.weight_map(index_path).values())
        return all(cache.hf_file(self.repo_id, commit, s) for s in shards)

    def _reader(self, commit: str, manifest: dict, remotes: dict | None = None):
        from embscope.io.hub_reader import HubReader

        self.commit = commit
        self.files = manifest["files"]
        reader = HubReader(self, manifest, remotes or {})
        path = self.fetch("config.json")
        saved = manifest.get("config")
        reader.config = read_json_object(path) if path or not isinstance(saved, dict) else saved
        return reader

    def _first_fetch(self, name: str):
        """First use of this commit: the small files and the weights' structure, in parallel."""
        from concurrent.futures import ThreadPoolExecutor

        from embscope.io import hub_reader
        from embscope.io.http_ranges import NoRanges

        small = [n for n in ["config.json", *tokenizer_files(self.files)] if n in self.files]
        with ThreadPoolExecutor(SMALL_WORKERS) as pool:
            futures = [pool.submit(self.fetch, n) for n in small]
            try:
                manifest, remotes = self._structure(name, hub_reader)
            except NoRanges:
                say(f"{_host()} does not serve byte ranges: downloading all of {name}"
                    f" ({_mib(self.files.get(name) or 0)}) instead")
                manifest, remotes = None, None
            for f in futures:
                f.result()
        if manifest is None:
            return None, self.download(name, progress=self.progress)
        manifest["config"] = read_json_object(self.fetch("config.json"))  # kept: the layout depends on it
        cache.save_manifest(manifest)
        return self._reader(self.commit, manifest, remotes), None

    def _structure(self, name: str, hub_reader):
        if name.endswith(".json"):
            return hub_reader.sharded_manifest(self, name, self.fetch(name, required=True)), {}
        return hub_reader.single_manifest(self, name)

    # --- the Hub's answers ----------------------------------------------------------------
    def _list(self) -> None:
        """One request: the commit the revision names, and the repo's files with their sizes."""
        self.commit, self.files = self.listing(self.revision)
        self._listed = True

    def listing(self, revision: str | None) -> tuple[str, dict[str, int | None]]:
        from embscope.io.http_ranges import reachable, timeout

        try:
            reachable()
            from huggingface_hub import HfApi  # (a large import: after the check)

            info = HfApi().model_info(self.repo_id, revision=revision, files_metadata=True, timeout=timeout())
        except Exception as e:  # noqa: BLE001 - mapped to a message by error()
            raise self.error(e) from None
        if not isinstance(info.sha, str) or not cache.COMMIT.match(info.sha) or info.siblings is None:
            raise EmbscopeError(f"{self.spec}: {_host()} did not answer as a Hugging Face Hub does")
        return info.sha, {s.rfilename: s.size for s in info.siblings}

    def _try_list(self) -> bool:
        """The files of the commit a full copy in the HF cache belongs to (for a tokenizer it
        lacks); quietly False when offline or unreachable."""
        if self._listed is False and not _offline():
            try:
                _, self.files = self.listing(self.commit)
                self._listed = True
            except EmbscopeError:
                self._listed = None  # tried
        return bool(self._listed)

    def fetch(self, name: str, required: bool = False) -> str | None:
        """Local path of `name` (config.json, a tokenizer file, an index) at this commit, fetched
        into the HF cache when the listing shows it is in the repo and wanted; else None."""
        path = cache.hf_file(self.repo_id, self.commit, name) if self.commit else None
        if path:
            return path
        if self._wanted(name) and not _offline():
            return self.download(name)
        if required:
            raise EmbscopeError(f"{self.spec}: {name} is not in the Hugging Face cache {UNREACHABLE}")
        return None

    def _wanted(self, name: str) -> bool:
        """Whether `name` is one of the small files embscope uses, and in the repo's listing."""
        if self.files is None and not self._list_for_full_copy(name):
            return False
        small = {"config.json", *tokenizer_files(self.files)}
        return name in self.files and (name in small or name.endswith(".index.json"))

    def _list_for_full_copy(self, name: str) -> bool:
        """Weights from the HF cache but no config.json or no tokenizer beside them: list the repo
        (once) to fetch what it has. With a tokenizer there, no network at all."""
        snapshot = self.directory
        present = os.listdir(snapshot) if os.path.isdir(snapshot) else []
        lacking = name not in present if name == "config.json" else not tokenizer_files(present)
        return lacking and self._try_list()

    def download(self, name: str, progress: bool = False) -> str:
        """hf_hub_download of one file at the resolved commit (its own progress bar only for
        weights, when asked)."""
        from huggingface_hub import hf_hub_download

        try:
            return hf_hub_download(self.repo_id, name, revision=self.commit,
                                   tqdm_class=None if progress else _quiet_tqdm())
        except Exception as e:  # noqa: BLE001 - mapped to a message by hub_error
            raise self.error(e, name) from None

    # --- errors -----------------------------------------------------------------------------
    def error(self, e: BaseException, name: str | None = None) -> EmbscopeError:
        """The one line a failure of the Hub or of the network becomes."""
        from huggingface_hub import errors

        from embscope.io.http_ranges import NoRanges, TransferFailed, network_errors

        spec = self.spec
        if isinstance(e, EmbscopeError):
            return e
        if isinstance(e, errors.GatedRepoError):
            return EmbscopeError(f"{spec}: a gated model: accept its conditions on the Hugging Face Hub,"
                                 " then log in (hf auth login) or set HF_TOKEN")
        if isinstance(e, (errors.RepositoryNotFoundError, errors.HFValidationError)):
            return EmbscopeError(f"{spec}: no such model on the Hugging Face Hub (or a private one:"
                                 " log in with hf auth login or set HF_TOKEN)")
        if isinstance(e, errors.RevisionNotFoundError):
            return EmbscopeError(f"{spec}: no revision '{self.revision}' on the Hugging Face Hub")
        if isinstance(e, (errors.EntryNotFoundError, errors.RemoteEntryNotFoundError)):
            return EmbscopeError(f"{spec}: the repository has no {name}")
        if isinstance(e, (errors.OfflineModeIsEnabled, errors.LocalEntryNotFoundError)):
            return EmbscopeError(f"{spec}: not a local path, and not in the Hugging Face cache {UNREACHABLE}")
        if isinstance(e, network_errors()):
            return EmbscopeError(f"{spec}: not a local path, and not in the Hugging Face cache"
                                 f" ({_host()} is unreachable: {first_line(e, 160)})")
        if isinstance(e, NoRanges):  # ranges served for the header, then not for the tensors
            return EmbscopeError(f"{spec}: {_host()} stopped serving byte ranges ({e}); run again")
        if isinstance(e, TransferFailed):
            return EmbscopeError(f"{spec}: the transfer failed ({e}); nothing was cached, run again to restart it")
        if isinstance(e, errors.HfHubHTTPError) and e.response is not None:
            return EmbscopeError(f"{spec}: {_host()} answered HTTP {e.response.status_code}"
                                 + (f" for {name}" if name else ""))
        if isinstance(e, OSError):
            return EmbscopeError(f"{spec}: {e.strerror or first_line(e, 160)}")
        return EmbscopeError(f"{spec}: could not read {name or 'the repository'} from {_host()}"
                             f" ({type(e).__name__}: {first_line(e, 160)})")


def _host() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _quiet_tqdm():
    from huggingface_hub.utils import tqdm

    class Quiet(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return Quiet
