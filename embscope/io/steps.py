"""Training loops that write one file per step (nanochat's model_NNNNNN.pt, llm.c's
model_NNNNNNNN.bin): which steps a folder holds, and which one the user means."""

from __future__ import annotations

import os
import re

from embscope.errors import StepError


def steps_in(folder: str, pattern: re.Pattern) -> dict[int, str]:
    """step -> file name, for the files of `folder` whose whole name matches `pattern` (its one
    group is the step number)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return {}
    found = {}
    for name in names:
        m = pattern.fullmatch(name)
        if m and os.path.isfile(os.path.join(folder, name)):
            found[int(m.group(1))] = name
    return found


def choose(steps: dict[int, str], step: int | None, folder: str, what: str) -> int:
    """The step asked for (`step`), else the last one."""
    if step is None:
        return max(steps)
    if step not in steps:
        shown = ", ".join(str(s) for s in sorted(steps)[-10:])
        raise StepError(step, f"{folder} has no {what} of step {step} (steps: {shown})")
    return step


def no_steps(step: int | None, spec: str) -> None:
    """`step` names a training step: refuse it for a model that is not a folder of steps."""
    if step is not None:
        raise StepError(step, f"{spec} is not a folder of training steps (nanochat model_NNNNNN.pt"
                              " or llm.c model_NNNNNNNN.bin files)")

