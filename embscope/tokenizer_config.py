"""tokenizer_config.json (and special_tokens_map.json) beside a vocab.json or vocab.txt: the
settings and the added/special tokens transformers applies when it loads those files."""

from __future__ import annotations

import os

from embscope.errors import EmbscopeError
from embscope.io.small_files import read_json

# BERT's special tokens and their names when tokenizer_config.json does not rename them
BERT_SPECIALS = {"unk_token": "[UNK]", "sep_token": "[SEP]", "cls_token": "[CLS]", "pad_token": "[PAD]",
                 "mask_token": "[MASK]"}
# in the order transformers adds them (new tokens get the next ids in this order)
_NAMED_SPECIALS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
_ADDED_FLAGS = ("single_word", "lstrip", "rstrip", "normalized", "special")


def token_content(value) -> str | None:
    """A special token as tokenizer_config.json names it: "<s>" or {"content": "<s>", ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def config_tokens(config: dict) -> list[tuple[int | None, dict]]:
    """(declared id or None, AddedToken arguments) for every added and special token the config
    names: `added_tokens_decoder` (id -> token with its flags), then the named special tokens and
    `additional_special_tokens`, as transformers registers them."""
    found: list[tuple[int | None, dict]] = []
    decoder = config.get("added_tokens_decoder")
    for key, value in (decoder.items() if isinstance(decoder, dict) else ()):
        content = token_content(value)
        if content is not None and str(key).isdigit():
            found.append((int(key), {"content": content, "special": False, **_flags(value, _ADDED_FLAGS)}))
    found.sort(key=lambda t: t[0])
    named = [config.get(k) for k in _NAMED_SPECIALS]
    for key in ("additional_special_tokens", "extra_special_tokens"):  # transformers 4, 5
        named += config[key] if isinstance(config.get(key), list) else []
    for value in named:
        content = token_content(value)
        if content is not None:
            found.append((None, {"content": content, **_flags(value, _ADDED_FLAGS[:4]), "special": True}))
    return found


def _flags(value: object, names: tuple[str, ...]) -> dict[str, bool]:
    """The AddedToken flags a token entry sets ({"lstrip": true, ...}); a plain string sets none."""
    return {f: value[f] for f in names if isinstance(value, dict) and isinstance(value.get(f), bool)}


def add_config_tokens(tok, config: dict, source: str) -> None:
    """Register the config's added tokens on a `tokenizers.Tokenizer`, at the ids it declares."""
    import tokenizers as tk

    done: set[str] = set()
    for declared, args in config_tokens(config):
        if args["content"] in done:
            continue
        done.add(args["content"])
        args.setdefault("normalized", not args["special"])
        tok.add_tokens([tk.AddedToken(**args)])
        got = tok.token_to_id(args["content"])
        if declared is not None and got != declared:
            raise EmbscopeError(f"{source}: tokenizer_config.json gives the added token '{args['content']}'"
                                f" id {declared}, but the vocabulary makes it {got}")


BOOLEAN_SETTINGS = ("do_lower_case", "tokenize_chinese_chars", "add_prefix_space")  # strip_accents: or null


def read_tokenizer_config(directory: str) -> dict:
    """special_tokens_map.json, then tokenizer_config.json, beside a vocabulary ({} when there are
    none: the defaults apply). A file that is there but unreadable, or a setting of the wrong type,
    is an error: guessing would encode text differently from the model's own tokenizer."""
    config: dict = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        path = os.path.join(directory, name)
        if not os.path.lexists(path):
            continue
        part = read_json(path)  # a regular file, size-capped: never a FIFO or /dev/zero
        if not isinstance(part, dict):
            raise EmbscopeError(f"{path}: not a JSON object")
        for key in BOOLEAN_SETTINGS + ("strip_accents",):
            value = part.get(key)
            if key in part and not isinstance(value, bool) and not (key == "strip_accents" and value is None):
                raise EmbscopeError(f"{path}: '{key}' is {value!r:.40}, not true or false")
        config.update(part)
    return config
