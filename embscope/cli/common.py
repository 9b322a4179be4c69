"""Options every command shares, and the helpers that turn them into a model, checked values and files."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Annotated, Optional

import typer

from embscope.cli.context import Environment
from embscope.errors import EmbscopeError, UsageError

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
MatrixOpt = Annotated[str, typer.Option(
    "--matrix", metavar="WHICH", help="input (the token embedding) or output (the LM head; the same"
    " matrix when the model ties them).")]
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

    def load(self, env: Environment, matrix: str = "input"):
        """The model, as `embscope.load` gives it (an `embscope.api.Model`); what loading noticed
        goes to stderr. `matrix`: the `--matrix` option of the commands that have it."""
        from embscope.api import load
        from embscope.model import MATRICES, TIED_NOTE

        choice("--matrix", matrix, MATRICES)
        m = load(self.model, wte_key=self.wte_key, wpe_key=self.wpe_key, tokenizer=self.tokenizer,
                 meta=self.meta, step=self.checkpoint_step, progress=env.stderr_isatty, matrix=matrix)
        emb = m.emb
        if emb.guessed:
            env.note(emb.guessed.note("--wte-key/--wpe-key"))
        if emb.output_tied:
            env.note(TIED_NOTE)
        env.debug_note(f"loaded {emb.source}: {emb.format}, wte='{emb.head_key or emb.layout.wte_key}'"
                       f" wpe='{emb.layout.wpe_key}' in {emb.load_seconds:.3f}s")
        return m


def model_command(command):
    """Give `command` the options every command shares (-m, --wte-key, --wpe-key, --tokenizer,
    --meta, --step), passed to it as one `source: ModelSource` argument, and the CLI's
    `env: Environment` (from the click context the entry point made)."""
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values()
           if p.name not in ("source", "env")]
    has_step = any(p.name == "step" for p in own)
    shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                annotation=CheckpointStepOpt if name == "checkpoint_step" and has_step else annotation)
              for name, annotation in MODEL_OPTIONS]
    context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)

    @functools.wraps(command)
    def with_source(ctx: typer.Context, **kwargs):
        source = ModelSource(**{name: kwargs.pop(name) for name, _ in MODEL_OPTIONS})
        return command(source=source, env=ctx.obj, **kwargs)

    parameters = [context] + own + shared
    with_source.__signature__ = inspect.Signature(parameters)
    with_source.__annotations__ = {p.name: p.annotation for p in parameters}
    return with_source


def choice(what: str, value: str, allowed: tuple[str, ...]) -> str:
    """`value` when it is one of `allowed`, else the usage error that lists them."""
    if value not in allowed:
        raise UsageError(f"unknown {what} '{value}' (choose from {', '.join(allowed)})")
    return value


def at_least_one(option: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise UsageError(f"{option} must be at least 1 (got {value})")


def parse_range(text: str | None, n: int, option: str = "--range") -> tuple[int, int]:
    """`--range`/`--rows` 'A:B' (either end may be empty) -> (start, stop) within [0, n]."""
    if text is None:
        return 0, n
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start = int(parts[0]) if parts[0].strip() else 0
        stop = int(parts[1]) if parts[1].strip() else n
    except ValueError:
        raise UsageError(f"{option} '{text}': expected A:B, e.g. 0:256") from None
    if not 0 <= start < stop <= n:
        what = "positions" if option == "--range" else "tokens"
        raise UsageError(f"{option} '{text}': need 0 <= A < B <= {n} (the model has {n} {what})")
    return start, stop


def warn_bad_rows(env: Environment, bad, what: str) -> None:
    """Say on stderr which token rows hold NaN or Inf, and what happens to them."""
    if len(bad):
        shown = ", ".join(f"#{i}" for i in bad[:10]) + (" ..." if len(bad) > 10 else "")
        env.note(f"warning: {len(bad)} token rows hold NaN or Inf and are {what}: {shown}")


OutputOpt = Annotated[Optional[str], typer.Option(
    "--output", "-o", metavar="FILE", help="Write to FILE instead (.npy array, or .png picture).")]


def output_kind(path: str, allowed: tuple[str, ...]) -> str:
    """The file type of `-o path`, once the path is known to be writable: a command checks it
    before it prints or computes anything."""
    from embscope.atomic import check_writable

    ext = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if ext not in allowed:
        raise UsageError(f"-o {path}: unknown file type (use {' or '.join('.' + a for a in allowed)})")
    if ext == "png":
        from embscope.render.png import require_matplotlib

        require_matplotlib()
    check_writable(path)
    return ext


def save_npy(env: Environment, path: str, array) -> None:
    """`array` as a .npy file at `path` (written whole or not at all), said on stderr."""
    import numpy as np

    from embscope.atomic import atomic_write

    array = np.asarray(array)
    atomic_write(path, lambda f: np.save(f, array))
    env.note(f"wrote {path}: array of shape {tuple(array.shape)}, {array.dtype}")


def stdin_lines(env: Environment) -> list[str]:
    """The non-empty lines of stdin, stripped; binary junk is an error, not a query."""
    data = env.stdin.buffer.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise EmbscopeError(f"stdin is not UTF-8 text (byte {e.start})") from None
    if "\x00" in text:
        raise EmbscopeError("stdin holds binary data (a NUL byte), not one query per line")
    return [line.strip() for line in text.splitlines() if line.strip()]
