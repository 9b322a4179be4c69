"""Options every command shares, and the helpers that turn them into a model and a writer."""

from __future__ import annotations

import functools
import inspect
import sys
from dataclasses import dataclass
from typing import Annotated, Optional

import typer

ModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", metavar="SPEC", envvar="EMBSCOPE_MODEL", show_envvar=True,
    help="ckpt.pt, .safetensors, model directory, or Hugging Face hub id (org/name@rev)."
    " Default: the bundled Tiny Shakespeare model.",
)]
WteKeyOpt = Annotated[Optional[str], typer.Option("--wte-key", help="Name of the token embedding tensor.")]
WpeKeyOpt = Annotated[Optional[str], typer.Option("--wpe-key", help="Name of the position embedding tensor.")]
TokenizerOpt = Annotated[Optional[str], typer.Option(
    "--tokenizer", metavar="PATH", help="tokenizer.json, vocab.json, vocab.txt, meta.pkl, nanochat tokenizer.pkl,"
    " llm.c gpt2_tokenizer.bin or a directory.")]
MetaOpt = Annotated[Optional[str], typer.Option("--meta", metavar="PATH", help="nanoGPT meta.pkl (character vocabulary).")]
_STEP_HELP = "Training step to read from a folder of steps (nanochat, llm.c snapshots). Default: the last."
# `positions` has a --step of its own (every S-th position): there only --checkpoint-step is offered.
StepOpt = Annotated[Optional[int], typer.Option("--step", "--checkpoint-step", metavar="N", help=_STEP_HELP)]
CheckpointStepOpt = Annotated[Optional[int], typer.Option("--checkpoint-step", metavar="N", help=_STEP_HELP)]
FormatOpt = Annotated[Optional[str], typer.Option(
    "--format", "-f", metavar="FMT",
    help="table, tsv, csv, json or jsonl. Default: table on a terminal, tsv otherwise.")]


MODEL_OPTIONS = [("model", ModelOpt), ("wte_key", WteKeyOpt), ("wpe_key", WpeKeyOpt),
                 ("tokenizer", TokenizerOpt), ("meta", MetaOpt), ("checkpoint_step", StepOpt)]


@dataclass
class ModelSource:
    """What the model options said: which model, and how to read it."""

    model: str | None = None
    wte_key: str | None = None
    wpe_key: str | None = None
    tokenizer: str | None = None
    meta: str | None = None
    checkpoint_step: int | None = None

    def load(self):
        """The model, as `embscope.load` gives it (an `embscope.api.Model`)."""
        from embscope.api import load

        m = load(self.model, wte_key=self.wte_key, wpe_key=self.wpe_key, tokenizer=self.tokenizer,
                 meta=self.meta, step=self.checkpoint_step)
        emb = m.emb
        for message in emb.notes:
            note(message)
        debug(f"loaded {emb.source}: {emb.format}, wte='{emb.layout.wte_key}'"
              f" wpe='{emb.layout.wpe_key}' in {emb.load_seconds:.3f}s")
        return m


def model_command(command):
    """Give `command` the options every command shares (-m, --wte-key, --wpe-key, --tokenizer,
    --meta, --step), passed to it as one `source: ModelSource` argument."""
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "source"]
    has_step = any(p.name == "step" for p in own)
    shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                annotation=CheckpointStepOpt if name == "checkpoint_step" and has_step else annotation)
              for name, annotation in MODEL_OPTIONS]

    @functools.wraps(command)
    def with_source(**kwargs):
        source = ModelSource(**{name: kwargs.pop(name) for name, _ in MODEL_OPTIONS})
        return command(source=source, **kwargs)

    parameters = own + shared
    with_source.__signature__ = inspect.Signature(parameters)
    with_source.__annotations__ = {p.name: p.annotation for p in parameters}
    return with_source


def writer(fmt, columns, title=None):
    from embscope.output import RecordWriter, resolve_format

    return RecordWriter(resolve_format(fmt), columns, title=title)


def token_label(emb, token_id: int) -> str:
    """The token as printable text (memoised per model: batch output repeats tokens a lot)."""
    labels = emb.__dict__.setdefault("_labels", {})
    label = labels.get(token_id)
    if label is None:
        from embscope.display import escape

        if token_id >= emb.n_tokens:
            label = "<pad>"
        else:
            label = escape(emb.token_text(token_id)) if emb.tokenizer else f"#{token_id}"
        labels[token_id] = label
    return label


def note(message: str) -> None:
    """People-talk: to stderr, never stdout. Control characters from queries are escaped."""
    from embscope.display import sanitize
    from embscope.output import stderr_console

    stderr_console().print(sanitize(message), markup=False, highlight=False)


def warn_bad_rows(bad, what: str) -> None:
    """Say on stderr which token rows hold NaN or Inf, and what happens to them."""
    if len(bad):
        shown = ", ".join(f"#{i}" for i in bad[:10]) + (" ..." if len(bad) > 10 else "")
        note(f"warning: {len(bad)} token rows hold NaN or Inf and are {what}: {shown}")


DEBUG = {"on": False}


def debug(message: str) -> None:
    if DEBUG["on"]:
        note(f"debug: {message}")


OutputOpt = Annotated[Optional[str], typer.Option(
    "--output", "-o", metavar="FILE", help="Write to FILE instead (.npy array, or .png picture).")]


def picture_console():
    """The stdout console for terminal pictures, and its colour mode for embscope.render."""
    from embscope.output import stdout_console

    console = stdout_console()
    system = console.color_system
    if system is None or console.no_color:  # not a terminal, TERM=dumb, or NO_COLOR
        color = "none"
    else:
        color = "truecolor" if system == "truecolor" else "256"
    return console, color


def output_kind(path: str, allowed: tuple[str, ...]) -> str:
    """The file type of `-o path`, once the path is known to be writable: a command checks it
    before it prints or computes anything."""
    from embscope.errors import UsageError
    from embscope.output import check_writable

    ext = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if ext not in allowed:
        raise UsageError(f"-o {path}: unknown file type (use {' or '.join('.' + a for a in allowed)})")
    if ext == "png":
        from embscope.render.png import require_matplotlib

        require_matplotlib()
    check_writable(path)
    return ext


def save_npy(path: str, array) -> None:
    import numpy as np

    from embscope.output import atomic_write

    atomic_write(path, lambda f: np.save(f, array))
    note(f"wrote {path}: array of shape {tuple(array.shape)}, {array.dtype}")


def stdin_lines() -> list[str]:
    """The non-empty lines of stdin, stripped; binary junk is an error, not a query."""
    from embscope.errors import EmbscopeError

    data = sys.stdin.buffer.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise EmbscopeError(f"stdin is not UTF-8 text (byte {e.start})") from None
    if "\x00" in text:
        raise EmbscopeError("stdin holds binary data (a NUL byte), not one query per line")
    return [line.strip() for line in text.splitlines() if line.strip()]
