"""The saved steps of a training run: a nanochat checkpoint folder (model_NNNNNN.pt beside
meta_NNNNNN.json) or an llm.c log folder (model_NNNNNNNN.bin), named once for all its steps."""

from __future__ import annotations

import os

from embscope.errors import EmbscopeError
from embscope.io import llmc, nanochat
from embscope.io.steps import steps_in


def saved_steps(spec: str) -> list[int]:
    """The steps saved in the run folder `spec` (or the folder of one of its step files), sorted."""
    if not os.path.exists(spec):
        raise EmbscopeError(f"{spec}: no such file or directory")
    found = nanochat.find(spec, None)
    if found is not None:
        return found.steps
    folder = spec if os.path.isdir(spec) else os.path.dirname(os.path.abspath(spec))
    if os.path.isdir(spec) or llmc.SNAPSHOT.fullmatch(os.path.basename(spec)):
        steps = steps_in(folder, llmc.SNAPSHOT)
        if steps:
            return sorted(steps)
    raise EmbscopeError(f"{spec}: not a folder of training steps (nanochat model_NNNNNN.pt"
                        " or llm.c model_NNNNNNNN.bin files)")

