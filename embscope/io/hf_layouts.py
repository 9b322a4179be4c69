"""Hugging Face repositories as people have them, beyond a plain model folder.

- sentence-transformers: `modules.json` lists the pipeline (Transformer, Pooling, Normalize,
  ...); the token and position embeddings are the Transformer module's, saved in the folder
  itself (`"path": ""`) or in a subfolder such as `0_Transformer/`, with its tokenizer beside.
- TensorFlow- or Flax-only repositories (`tf_model.h5`, `flax_model.msgpack`): embscope reads
  PyTorch and safetensors weights only, and says so in one line.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from embscope.errors import EmbscopeError
from embscope.io.small_files import read_json

MODULES = "modules.json"
FOREIGN = {"tf_model.h5": "TensorFlow", "flax_model.msgpack": "Flax"}
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@dataclass
class Pipeline:
    """A sentence-transformers folder: where its Transformer module is, and its modules."""

    folder: str  # the Transformer module's folder (the repository folder itself, or a subfolder)
    description: str  # "Transformer (./) > Pooling (1_Pooling/) > Normalize (2_Normalize/)"


def pipeline(directory: str) -> Pipeline | None:
    """The sentence-transformers pipeline saved in `directory`, or None when it has no modules.json."""
    path = os.path.join(directory, MODULES)
    if not os.path.isfile(path):
        return None
    modules = _modules(path)
    described, folder = [], None
    for module in modules:
        kind = module["type"].rsplit(".", 1)[-1]
        described.append(f"{kind} ({module['path'] or '.'}/)")
        if kind == "Transformer" and folder is None:
            folder = os.path.join(directory, module["path"]) if module["path"] else directory
    if folder is None:
        raise EmbscopeError(f"{path}: a sentence-transformers pipeline without a Transformer module"
                            " (embscope reads the token embeddings of its Transformer)")
    return Pipeline(folder, " > ".join(described))


def _modules(path: str) -> list[dict]:
    modules = read_json(path)  # a regular file, size-capped
    if not isinstance(modules, list) or not all(
        isinstance(m, dict) and isinstance(m.get("type"), str) and isinstance(m.get("path"), str)
        and _inside(m["path"]) for m in modules
    ):
        raise EmbscopeError(f"{path}: not a sentence-transformers modules.json (a list of modules,"
                            " each with a 'type' and a 'path' inside the folder)")
    return modules


def _inside(sub: str) -> bool:
    """A module path that stays in the repository folder: relative, without '..'."""
    parts = sub.replace("\\", "/").split("/")
    return not sub.startswith(("/", "\\")) and ".." not in parts and ":" not in sub


def refuse_foreign_weights(directory: str, weight_files: list[str]) -> None:
    """A folder whose only weights are TensorFlow's or Flax's: one clear error."""
    if any(os.path.isfile(os.path.join(directory, n)) for n in weight_files):
        return
    if any(n.endswith(".safetensors") for n in os.listdir(directory)):
        return
    for name, framework in FOREIGN.items():
        if os.path.isfile(os.path.join(directory, name)):
            raise foreign(directory, name, framework)


def refuse_foreign_file(path: str, head: bytes) -> None:
    """tf_model.h5 (an HDF5 file) or flax_model.msgpack named directly."""
    if head.startswith(HDF5_SIGNATURE):
        raise foreign(path, os.path.basename(path), "TensorFlow")
    if path.endswith(".msgpack"):
        raise foreign(path, os.path.basename(path), "Flax")


def foreign(where: str, name: str, framework: str) -> EmbscopeError:
    flag = "from_tf" if framework == "TensorFlow" else "from_flax"
    return EmbscopeError(
        f"{where}: only {framework} weights ({name}); embscope reads PyTorch and safetensors weights"
        f" (convert with transformers 4: AutoModel.from_pretrained(path, {flag}=True).save_pretrained(path))"
    )
