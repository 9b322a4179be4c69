"""Where each model family keeps its token and position embeddings, and how it combines them."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from embscope.errors import EmbscopeError, NoSuchTensorError, NoTokenEmbeddingError

COMPILE_PREFIX = "_orig_mod."  # added to every key by torch.compile (nanoGPT saves it as is)

# Tensor-name suffixes, most specific first. A key matches when it equals the suffix or ends
# with "." + suffix, so "transformer.wte.weight" and "wte.weight" both match "wte.weight".
TOKEN_SUFFIXES = [
    ("wte.weight", "gpt2"),  # GPT-2, nanoGPT, GPT-Neo
    ("embeddings.word_embeddings.weight", "bert"),  # BERT, RoBERTa, DistilBERT
    ("decoder.embed_tokens.weight", "opt"),  # OPT
    ("embed_tokens.weight", "llama"),  # Llama, Mistral, Qwen, Gemma ...
    ("embed_in.weight", "gpt_neox"),  # Pythia / GPT-NeoX
    ("word_embeddings.weight", "bloom"),  # BLOOM
    ("tok_embeddings.weight", "llama"),  # Meta's original Llama layout
    ("embed.weight", "modded_nanogpt"),  # modded-nanogpt (rotary, GPT-2 vocabulary padded to 50304)
]
POSITION_SUFFIXES = {
    "gpt2": "wpe.weight",
    "bert": "embeddings.position_embeddings.weight",
    "opt": "decoder.embed_positions.weight",
}
# config.json model_type values whose position rows are shifted: row of position 0.
ROBERTA_LIKE = {"roberta", "xlm-roberta", "camembert", "longformer", "data2vec-text"}
OPT_POSITION_OFFSET = 2  # OPTLearnedPositionalEmbedding.offset
# Families whose 50257/50304-row vocabularies are GPT-2's BPE (padded for speed).
GPT2_VOCAB_FAMILIES = ("gpt2", "modded_nanogpt")
NANOCHAT_MARK = "attn.c_q.weight"  # nanochat: wte named as in GPT-2, separate q/k/v, rotary


@dataclass
class Layout:
    """Which tensors hold what, in one checkpoint."""

    family: str
    wte_key: str
    wpe_key: str | None
    position_offset: int = 0  # row of wpe that holds position 0
    # BERT family: token_type row 0 and the embedding LayerNorm are part of the embedding layer.
    token_type_key: str | None = None
    norm_keys: tuple[str, str] | None = None  # (weight, bias) of the embedding LayerNorm
    norm_eps: float = 1e-12
    others: list[str] = field(default_factory=list)  # other tensors that matched the token name


_COMPILE_PREFIXES = re.compile(r"(?:_orig_mod\.)*")  # COMPILE_PREFIX, any number of times


def strip_compile_prefix(key: str) -> str:
    """`key` without its leading COMPILE_PREFIXes, in one pass (a name may repeat it 300,000 times)."""
    return key[_COMPILE_PREFIXES.match(key).end():]


def _hits(keys: list[str], suffix: str) -> list[str]:
    return [k for k in keys if strip_compile_prefix(k) == suffix
            or strip_compile_prefix(k).endswith("." + suffix)]


def _find(keys: list[str], suffix: str, prefix: str | None = None) -> str | None:
    hits = _hits(keys, suffix)
    # The one under `prefix` (where the token embeddings are: "student." in a distillation
    # checkpoint), else the shortest name: "transformer.wte.weight" over a nested copy.
    same = [k for k in hits if prefix is not None and _prefix(k, suffix) == prefix]
    return min(same or hits, key=len) if hits else None


def _prefix(key: str, suffix: str) -> str:
    """What comes before the family's tensor name: "student." in "student.transformer.wte.weight"
    matched against "transformer.wte.weight"."""
    name = strip_compile_prefix(key)
    return name[: len(name) - len(suffix)]


def _config_number(config: dict, key: str, default, kind: type):
    """config[key] as an int >= 0 or a finite float >= 0: config.json comes from the model's author."""
    import math
    import reprlib

    value = config.get(key, default)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or isinstance(value, int)):
        try:
            number = kind(value)
        except OverflowError:
            number = None
        if number is not None and number >= 0 and (kind is int or math.isfinite(number)):
            return number
    raise EmbscopeError(f"config.json: '{key}' is {reprlib.repr(value)}, not a number embscope can use")


def _config_text(config: dict, key: str) -> str | None:
    """config[key] as a string (or None when absent): config.json comes from the model's author."""
    import reprlib

    value = config.get(key)
    if value is None or isinstance(value, str):
        return value
    raise EmbscopeError(f"config.json: '{key}' is {reprlib.repr(value)}, not a string embscope can use")


def detect_layout(
    keys: list[str],
    config: dict | None = None,
    wte_key: str | None = None,
    wpe_key: str | None = None,
) -> Layout:
    """Find the embedding tensors among `keys`; `wte_key`/`wpe_key` override the search."""
    config = config or {}
    family = None
    others: list[str] = []
    if wte_key is None:
        for suffix, fam in TOKEN_SUFFIXES:
            hits = _hits(keys, suffix)
            if hits:
                wte_key, family = _find(keys, suffix), fam
                others = [k for k in hits if k != wte_key]
                break
        if wte_key is None:
            raise NoTokenEmbeddingError(tuple(s for s, _ in TOKEN_SUFFIXES))
    elif wte_key not in keys:
        raise NoSuchTensorError("wte_key", wte_key)
    if family is None:
        family = next((f for s, f in TOKEN_SUFFIXES if strip_compile_prefix(wte_key).endswith(s)), "custom")

    layout = Layout(family=family, wte_key=wte_key, wpe_key=None, others=others)
    if wpe_key is not None:
        if wpe_key not in keys:
            raise NoSuchTensorError("wpe_key", wpe_key)
        layout.wpe_key = wpe_key
    elif family in POSITION_SUFFIXES:
        token_suffix = next(s for s, f in TOKEN_SUFFIXES if f == family)
        prefix = _prefix(wte_key, token_suffix) if strip_compile_prefix(wte_key).endswith(token_suffix) else None
        layout.wpe_key = _find(keys, POSITION_SUFFIXES[family], prefix)
    if family == "gpt2" and layout.wpe_key is None and _find(keys, NANOCHAT_MARK):
        layout.family = "nanochat"

    model_type = _config_text(config, "model_type")
    if family == "opt" and layout.wpe_key:
        layout.position_offset = OPT_POSITION_OFFSET
    if family == "bert":
        if model_type in ROBERTA_LIKE:
            layout.position_offset = _config_number(config, "pad_token_id", 1, int) + 1
        layout.token_type_key = _find(keys, "embeddings.token_type_embeddings.weight")
        w = _find(keys, "embeddings.LayerNorm.weight") or _find(keys, "embeddings.LayerNorm.gamma")
        b = _find(keys, "embeddings.LayerNorm.bias") or _find(keys, "embeddings.LayerNorm.beta")
        if w and b:
            layout.norm_keys = (w, b)
            layout.norm_eps = _config_number(config, "layer_norm_eps", 1e-12, float)
    if family == "bloom":
        w = _find(keys, "word_embeddings_layernorm.weight")
        b = _find(keys, "word_embeddings_layernorm.bias")
        if w and b:
            layout.norm_keys = (w, b)
            layout.norm_eps = _config_number(config, "layer_norm_epsilon", 1e-5, float)
    return layout
