"""Whether a model's LM head is its token embedding matrix (weight tying), from what the
checkpoint shows: the format's own word, shared storage, config.json, or its absence."""

from __future__ import annotations

from embscope.errors import EmbscopeError
from embscope.families import strip_compile_prefix
from embscope.io.reader import Reader


# The output embedding's name: GPT-2, Llama, OPT, nanochat ...; Pythia; Meta's original layout;
# BERT's masked-LM decoder.
HEAD_SUFFIXES = ("lm_head.weight", "embed_out.weight", "cls.predictions.decoder.weight")
HEAD_TOP_LEVEL = ("output.weight",)  # only as the whole name: ".output.weight" is too common


def head_key(reader: Reader) -> str | None:
    """The output embedding (LM head) tensor, if the checkpoint holds one: the shortest name
    ("model.lm_head.weight" in a Lightning checkpoint, not a nested copy)."""
    heads = [k for k in reader.keys if strip_compile_prefix(k) in HEAD_SUFFIXES + HEAD_TOP_LEVEL
             or strip_compile_prefix(k).endswith(tuple("." + s for s in HEAD_SUFFIXES))]
    return min(heads, key=len) if heads else None


def tied(reader: Reader, wte_key: str) -> bool | None:
    """True or False when the checkpoint says, None when it cannot tell."""
    if reader.tied is not None:  # the format says (llm.c: wte is the lm_head)
        return reader.tied
    head = head_key(reader)
    if head is None and _headless(reader.config):
        return None
    if head is not None:
        same = reader.same_storage(head, wte_key)
        if same is not None:  # torch archives: one storage or two
            return same
    # safetensors cannot share storage, and sharded torch checkpoints span archives: the config says
    tie = reader.config.get("tie_word_embeddings")
    if tie is not None:
        if not isinstance(tie, bool):  # "false" is a string, and bool("false") is True
            raise EmbscopeError(f"config.json: 'tie_word_embeddings' is {tie!r:.40}, not true or false")
        return tie
    if head is None and reader.facts.get("format") == "nanogpt":
        return True  # safetensors exported from nanoGPT (embscope's bundled model): GPT ties them
    if head is None:
        return True if reader.format.safetensors and reader.config else None
    return None


def _headless(config: dict) -> bool:
    """config.json names only base classes (GPT2Model, BertModel): no LM head to be tied to."""
    archs = config.get("architectures")
    return isinstance(archs, list) and bool(archs) and all(
        isinstance(a, str) and a.endswith("Model") and "Head" not in a for a in archs)
