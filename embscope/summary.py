"""The facts `embscope info` reports about a loaded model, as (field, value) pairs."""

from __future__ import annotations

from embscope.display import sanitize, shorten
from embscope.model import Embeddings, default_model_dir, display_path


# Facts a checkpoint format records (nanoGPT, nanochat, llm.c, modded-nanogpt, Lightning, a
# sentence-transformers pipeline), in this order; other string facts are file metadata (meta.*).
TRAINING_FACTS = ("iter_num", "step", "steps", "epoch", "global_step", "best_val_loss", "val_bpb", "val_loss",
                  "dataset", "llmc_version", "lightning_version", "sentence_transformers")


# Training facts that are numbers; safetensors metadata holds only strings ("1200"), shown as numbers.
NUMERIC_FACTS = ("iter_num", "step", "epoch", "global_step", "best_val_loss", "val_bpb", "val_loss")


def _number(value: object) -> object:
    """A numeric training fact stored as text, as the int or float it spells; else as it is."""
    if not isinstance(value, str) or len(value) > 40:
        return value
    for kind in (int, float):
        try:
            number = kind(value)
        except ValueError:
            continue
        return number if number == number and abs(number) != float("inf") else value
    return value


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _output_tensor(emb: Embeddings) -> str:
    """Where the output embedding (`--matrix output`) comes from."""
    head = shorten(emb.head_key) if emb.head_key else None
    if emb.tied:
        return "token_tensor (tied)" + (f"; {head} shares its storage" if head and emb.head_key != emb.layout.wte_key else "")
    if head:
        return f"{head} (untied)" if emb.tied is False else f"{head} (tying unknown)"
    return "none (no LM head in this checkpoint)"


def describe(emb: Embeddings) -> list[tuple[str, object]]:
    lay = emb.layout
    rows: list[tuple[str, object]] = [
        ("source", display_path(emb.source) + (" (embscope's bundled default)" if emb.source == default_model_dir() else "")),
        ("format", emb.format),
        ("family", lay.family),
        ("files", ", ".join(display_path(f) for f in emb.files)),
        ("token_tensor", shorten(lay.wte_key)),
        ("position_tensor", shorten(lay.wpe_key) if lay.wpe_key else "none (no learned positions)"),
        ("vocab_rows", emb.vocab_rows),
        ("tokens", emb.n_tokens),
        ("padding_rows", emb.vocab_rows - emb.n_tokens),
        ("dim", emb.dim),
        ("positions", emb.n_positions),
        ("position_offset", lay.position_offset),
        ("dtype", emb.wte.dtype_name),
        ("tied_lm_head", "unknown" if emb.tied is None else ("yes" if emb.tied else "no")),
        ("output_tensor", _output_tensor(emb)),
        ("tokenizer", emb.tokenizer.kind if emb.tokenizer else "none (query by id: #123)"),
        ("tokenizer_source", display_path(emb.tokenizer.source) if emb.tokenizer else ""),
        ("file_bytes", emb.file_bytes),
        ("read_bytes", emb.read_bytes),
        ("read_fraction", f"{emb.read_bytes / emb.file_bytes:.1%} ({_mib(emb.read_bytes)} of {_mib(emb.file_bytes)})"
         if emb.file_bytes else ""),
    ]
    if emb.norm is not None:
        rows.append(("embedding_layernorm", f"{shorten(lay.norm_keys[0])} (eps {emb.norm[2]:g})"))
    if lay.token_type_key:
        rows.append(("token_type_tensor", shorten(lay.token_type_key)))
    for key in TRAINING_FACTS:
        if key in emb.facts:
            value = _number(emb.facts[key]) if key in NUMERIC_FACTS else emb.facts[key]
            rows.append((key, shorten(value) if isinstance(value, str) else value))
    # safetensors __metadata__: shown up to 1000 characters a key or value (a value can be 60 MB)
    for key, value in sorted(emb.facts.items()):
        if key not in TRAINING_FACTS + ("model_args", "config") and isinstance(value, str):
            rows.append((f"meta.{shorten(key)}", shorten(value)))
    if isinstance(emb.facts.get("model_args"), dict):
        rows.append(("model_args", shorten(", ".join(f"{k}={v}" for k, v in emb.facts["model_args"].items()))))
    rows.append(("load_seconds", round(emb.load_seconds, 4)))
    # Tensor names, metadata and paths come from the files: no control characters reach a terminal.
    return [(field, sanitize(value) if isinstance(value, str) else value) for field, value in rows]
