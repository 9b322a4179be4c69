"""Which training loop wrote a torch checkpoint, and where in its object tree the weights are.

torch.save writes whatever dict the loop builds; embscope recognises:
- nanoGPT's train.py: {'model': state dict, 'optimizer', 'model_args', 'iter_num', 'best_val_loss', 'config'}
- modded-nanogpt's train_gpt.py: {'step', 'code' (the script's source), 'model': state dict, 'optimizers'}
- PyTorch Lightning: {'state_dict': the LightningModule's state dict, 'epoch', 'global_step',
  'pytorch-lightning_version', 'optimizer_states', ...}
- a plain state dict: torch.save(model.state_dict()), with whatever prefixes its module tree gives
The weights of every other entry (optimizer moments, ...) stay references that are never read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from embscope.errors import EmbscopeError
from embscope.formats import Format
from embscope.io.restricted_pickle import TensorRef

LIGHTNING_VERSION = "pytorch-lightning_version"


@dataclass
class Contents:
    """What one checkpoint holds: its format, its tensors by name, and training facts."""

    format: Format
    state: dict[str, TensorRef]
    facts: dict = field(default_factory=dict)


def identify(tree, path: str, scalar) -> Contents:
    """Recognise the checkpoint layout of `tree`; `scalar(value)` reads a number or a 0-d tensor."""
    if isinstance(tree, dict) and isinstance(tree.get("model"), dict):
        if isinstance(tree.get("code"), str):
            return Contents(Format.MODDED_NANOGPT, _tensors(tree["model"], path), _modded_facts(tree, scalar))
        return Contents(Format.NANOGPT, _tensors(tree["model"], path), _nanogpt_facts(tree, scalar))
    if isinstance(tree, dict) and isinstance(tree.get("state_dict"), dict) and not _has_tensors(tree):
        return Contents(Format.LIGHTNING, _tensors(tree["state_dict"], path), _lightning_facts(tree, scalar))
    if not _has_tensors(tree):
        raise EmbscopeError(
            f"{path}: a torch checkpoint, but neither a state dict nor a checkpoint of nanoGPT,"
            " modded-nanogpt or PyTorch Lightning (no 'model' or 'state_dict' entry)"
        )
    return Contents(Format.TORCH_STATE_DICT, _tensors(tree, path))


def _has_tensors(d) -> bool:
    return isinstance(d, dict) and any(isinstance(v, TensorRef) for v in d.values())


def _tensors(state: dict, path: str) -> dict[str, TensorRef]:
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, TensorRef)}
    if not tensors:
        raise EmbscopeError(f"{path}: the checkpoint's state dict holds no tensors")
    return tensors


def plain(d: dict) -> dict:
    """The entries of a pickled dict whose keys are strings and values plain scalars. Anything
    else from a hostile pickle (a list nested in itself through the memo, say) could take
    forever to print."""
    return {k: v for k, v in d.items() if isinstance(k, str)
            and (v is None or isinstance(v, (bool, int, float, str)))}


def _numbers(tree: dict, keys, scalar) -> dict:
    facts = {}
    for k in keys:
        value = scalar(tree.get(k))
        if value is not None:
            facts[k] = value
    return facts


def _nanogpt_facts(tree: dict, scalar) -> dict:
    facts = _numbers(tree, ("iter_num", "best_val_loss"), scalar)
    if isinstance(tree.get("model_args"), dict):
        facts["model_args"] = plain(tree["model_args"])
    if isinstance(tree.get("config"), dict):
        facts["config"] = plain(tree["config"])
        if isinstance(tree["config"].get("dataset"), str):
            facts["dataset"] = tree["config"]["dataset"]
    return facts


def _modded_facts(tree: dict, scalar) -> dict:
    return _numbers(tree, ("step",), scalar)


def _lightning_facts(tree: dict, scalar) -> dict:
    facts = _numbers(tree, ("epoch", "global_step"), scalar)
    if isinstance(tree.get(LIGHTNING_VERSION), str):
        facts["lightning_version"] = tree[LIGHTNING_VERSION]
    if isinstance(tree.get("hyper_parameters"), dict):
        facts["model_args"] = plain(tree["hyper_parameters"])
    return facts
