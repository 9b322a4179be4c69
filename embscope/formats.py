"""What kind of file a model came from, as a value: readers set it, `info` prints it, and the
loader branches on it (never on the wording of the display string)."""

from __future__ import annotations

import enum


class Format(str, enum.Enum):
    """A checkpoint format. The value is what `info` prints."""

    SAFETENSORS = "safetensors"
    SAFETENSORS_SHARDED = "safetensors (sharded)"
    NANOGPT = "nanoGPT checkpoint (torch zip)"
    TORCH_STATE_DICT = "torch state dict (zip)"
    TORCH_SHARDED = "torch state dict (sharded)"
    LIGHTNING = "PyTorch Lightning checkpoint (torch zip)"
    MODDED_NANOGPT = "modded-nanogpt checkpoint (torch zip)"
    NANOCHAT = "nanochat checkpoint (torch zip + meta json)"
    LLMC = "llm.c checkpoint"

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__

    @property
    def safetensors(self) -> bool:
        return self in (Format.SAFETENSORS, Format.SAFETENSORS_SHARDED)
