"""Which reader reads the model a user names: a file or folder known by its layout or its first
bytes (safetensors, torch zip, llm.c, nanochat, a sharded index, a sentence-transformers
pipeline), or a hub id."""

from __future__ import annotations

import os

from embscope.errors import EmbscopeError
from embscope.formats import Format
from embscope.io import hf_layouts, llmc, nanochat, shard_index
from embscope.io.hub import HubRepo, looks_like_hub_id
from embscope.io.reader import Reader
from embscope.io.safetensors_reader import SafetensorsReader
from embscope.io.small_files import read_json_object, require_regular
from embscope.io.steps import no_steps
from embscope.io.torch_archive import is_zip
from embscope.io.torch_reader import ShardedTorchReader, TorchReader

WEIGHT_FILES = [  # what a model directory may hold, in order of preference
    "model.safetensors.index.json",
    "model.safetensors",
    "ckpt.pt",
    "pytorch_model.bin.index.json",
    "pytorch_model.bin",
]


def local_fetch(directory: str):
    """fetch(name, required=False): the path of file `name` in `directory`, or None (an error
    when `required`); the hub's fetch downloads instead."""
    def fetch(name: str, required: bool = False) -> str | None:
        path = os.path.join(directory, name)
        if os.path.lexists(path) and not os.path.isdir(path):
            require_regular(path)  # a FIFO or /dev/zero under a model file's name is an error
            return path
        if required:
            raise EmbscopeError(f"{path}: no such file")
        return None

    return fetch


def _open_local(spec: str, step: int | None):
    """Local formats known by their folder layout or file header (nanochat, llm.c, a
    sentence-transformers pipeline, TF/Flax-only folders): (reader, directory, fetch), or None."""
    if not (os.path.isfile(spec) or os.path.isdir(spec)):
        no_steps(step, spec)
        return None
    found = nanochat.find(spec, step)
    if found is not None:
        weights = TorchReader(found.model_path, {})
        return nanochat.NanochatReader(found, weights), found.folder, local_fetch(found.folder)
    folder = spec if os.path.isdir(spec) else os.path.dirname(os.path.abspath(spec))
    if os.path.isdir(spec) or (step is not None and llmc.SNAPSHOT.fullmatch(os.path.basename(spec))):
        snapshot = llmc.snapshot(folder, step)
        if snapshot is not None:
            return llmc.LlmcReader(snapshot), folder, local_fetch(folder)
    no_steps(step, spec)
    if os.path.isdir(spec):
        pipeline = hf_layouts.pipeline(spec)
        if pipeline is not None and pipeline.folder != spec:
            return open_reader(pipeline.folder)
        hf_layouts.refuse_foreign_weights(spec, WEIGHT_FILES)
    return None


def open_reader(spec: str, step: int | None = None, progress: bool = False):
    """(reader, directory of the model or None, fetch function for sibling files). `progress`:
    progress bars on stderr while weights come from the Hub."""
    if os.path.exists(spec) and not os.path.isdir(spec):
        require_regular(spec)
    local = _open_local(spec, step)
    if local is not None:
        return local
    if os.path.isfile(spec):
        directory = os.path.dirname(os.path.abspath(spec))
        fetch = local_fetch(directory)
        config = read_json_object(fetch("config.json"))
        if spec.endswith(".json"):
            return _reader_for_index(spec, config, fetch), directory, fetch
        return _reader_for_file(spec, config), directory, fetch
    if os.path.isdir(spec):
        fetch = local_fetch(spec)
        repo_files = WEIGHT_FILES
    elif looks_like_hub_id(spec):
        repo = HubRepo(spec, progress)
        reader, path = repo.open([f for f in WEIGHT_FILES if f != "ckpt.pt"])
        if reader is not None:  # only the embedding tensors: by HTTP range, or from embscope's cache
            return reader, repo.directory, repo.fetch
        fetch, repo_files = repo.fetch, [os.path.basename(path)]  # a full copy in the HF cache
    else:
        raise EmbscopeError(f"{spec}: no such file or directory")
    for name in repo_files:
        path = fetch(name)
        if path:
            directory = os.path.dirname(path)
            config = read_json_object(fetch("config.json"))
            if name.endswith(".json"):
                return _reader_for_index(path, config, fetch), directory, fetch
            return _reader_for_file(path, config), directory, fetch
    if os.path.isdir(spec):
        singles = sorted(n for n in os.listdir(spec) if n.endswith(".safetensors"))
        if len(singles) == 1:
            return _reader_for_file(os.path.join(spec, singles[0]), read_json_object(fetch("config.json"))), spec, fetch
        raise EmbscopeError(
            f"{spec}: no model weights in this directory (looked for {', '.join(WEIGHT_FILES)})"
        )
    raise EmbscopeError(f"{spec}: the repository has none of {', '.join(repo_files)}")


def _reader_for_index(index_path: str, config: dict, fetch) -> Reader:
    weight_map = shard_index.weight_map(index_path)
    if shard_index.format_of(weight_map) is Format.SAFETENSORS_SHARDED:
        return SafetensorsReader(weight_map, config, fetch=lambda n: fetch(n, required=True))
    return ShardedTorchReader(weight_map, config, fetch)


def _reader_for_file(path: str, config: dict) -> Reader:
    require_regular(path)
    if path.endswith(".safetensors"):
        return SafetensorsReader(path, config)
    if os.path.getsize(path) == 0:
        raise EmbscopeError(f"{path}: empty file")
    if is_zip(path):
        return TorchReader(path, config)
    with open(path, "rb") as f:
        head = f.read(8)
    if llmc.magic(head) is not None:
        return llmc.LlmcReader(path)
    hf_layouts.refuse_foreign_file(path, head)
    if len(head) == 8 and int.from_bytes(head, "little") < os.path.getsize(path) and head[:1] != b"\x80":
        return SafetensorsReader(path, config)  # raises a precise error if it is not one
    if head[:1] == b"\x80":
        raise EmbscopeError(
            f"{path}: a legacy (pre-zip) torch pickle; embscope reads only the zip format"
            " torch.save has written since PyTorch 1.6 (re-save it with torch.save)"
        )
    raise EmbscopeError(f"{path}: not a checkpoint embscope can read (safetensors or torch zip)")
