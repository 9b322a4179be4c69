"""A sharded checkpoint's index (model.safetensors.index.json, pytorch_model.bin.index.json):
which shard file holds each tensor."""

from __future__ import annotations

from embscope.errors import EmbscopeError
from embscope.formats import Format
from embscope.io.small_files import read_json_object


def weight_map(index_path: str) -> dict[str, str]:
    """tensor name -> shard file name (a plain name in the index's folder, never a path)."""
    weight_map = read_json_object(index_path).get("weight_map")
    if not isinstance(weight_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and "/" not in v and v not in ("", ".", "..")
        for k, v in weight_map.items()
    ):
        raise EmbscopeError(f"{index_path}: not a sharded checkpoint index (bad 'weight_map')")
    return weight_map


def format_of(weight_map: dict[str, str]) -> Format:
    """Sharded safetensors when every shard is a .safetensors file, else sharded torch archives."""
    if all(v.endswith(".safetensors") for v in weight_map.values()):
        return Format.SAFETENSORS_SHARDED
    return Format.TORCH_SHARDED
