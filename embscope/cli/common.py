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


def _debug(ctx: typer.Context, _param, value: bool) -> None:
    if value:
        ctx.obj.debug = True  # the invocation's Environment, as `embscope --debug CMD` sets it


# --debug after the command name too (`embscope info --debug`): the same switch as before it.
DebugOpt = Annotated[bool, typer.Option("--debug", callback=_debug, expose_value=False, is_eager=True,
                                        help="Show tracebacks and loading details (before the command, too).")]


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
    --meta, --step, and --debug), passed to it as one `source: ModelSource` argument, and the CLI's
    `env: Environment` (from the click context the entry point made)."""
    own = [p for p in inspect.signature(command, eval_str=True).parameters.values()
           if p.name not in ("source", "env")]
    has_step = any(p.name == "step" for p in own)
    shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                annotation=CheckpointStepOpt if name == "checkpoint_step" and has_step else annotation)
              for name, annotation in MODEL_OPTIONS]
    shared.append(inspect.Parameter("debug", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=DebugOpt))
    context = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context)

    @functools.wraps(command)
    def with_source(ctx: typer.Context, **kwargs):
        kwargs.pop("debug", None)  # --debug acted when it was parsed (`_debug`)
        source = ModelSource(**{name: kwargs.pop(name) for name, _ in MODEL_OPTIONS})
        not_together(("--tokenizer", source.tokenizer), ("--meta", source.meta))  # --meta would be ignored
        env = ctx.obj
        try:
            result = command(source=source, env=env, **kwargs)
        except BaseException:
            env.discard_files()
            raise
        env.finish_files()  # -o data files get their names only now, whole
        return result

    parameters = [context] + own + shared
    with_source.__signature__ = inspect.Signature(parameters)
    with_source.__annotations__ = {p.name: p.annotation for p in parameters}
    return with_source


def choice(what: str, value: str, allowed: tuple[str, ...]) -> str:
    """`value` when it is one of `allowed`, else the usage error that lists them."""
    if value not in allowed:
        raise UsageError(f"unknown {what} '{value}' (choose from {', '.join(allowed)})")
    return value


def not_together(first: tuple[str, object], *others: tuple[str, object]) -> None:
    """The usage error when the option `first` names (a (words, value) pair: given when the value
    is neither None nor False) is given with one of `others`: they contradict each other, or one
    of them would be silently ignored. One message for every command."""
    name, value = first
    if value is None or value is False:
        return
    for other, other_value in others:
        if other_value is not None and other_value is not False:
            raise UsageError(f"{name} and {other} cannot be used together")


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


def note_multi_token(env: Environment, m, text: str, ids) -> None:
    """Say on stderr that a word or text is several tokens, which, and that their mean is used."""
    if len(ids) > 1:
        parts = ", ".join(f"'{m.token(i)}' #{i}" for i in ids)  # escaped as in the tables, not repr()
        env.note(f"'{text}' is {len(ids)} tokens ({parts}): using the mean of their vectors")


def warn_bad_rows(env: Environment, bad, what: str) -> None:
    """Say on stderr which token rows hold NaN or Inf, and what happens to them."""
    if len(bad):
        shown = ", ".join(f"#{i}" for i in bad[:10]) + (" ..." if len(bad) > 10 else "")
        env.note(f"warning: {len(bad)} token rows hold NaN or Inf and are {what}: {shown}")


DATA_FILES = ("tsv", "csv", "json", "jsonl")  # -o FILE in the format its suffix names: what -f would print


def output_opt(accepts: str):
    """The -o option of a command, its help naming exactly what the command accepts."""
    return Annotated[Optional[str], typer.Option(
        "--output", "-o", metavar="FILE", help=f"Write to FILE instead of stdout, as its suffix says: {accepts}.")]


OutputOpt = output_opt(".tsv, .csv, .json or .jsonl (the rows -f would print)")


def output_writer(env: Environment, output: str | None, format: str | None, files: tuple[str, ...] = ()):
    """(writer, kind of -o file or None), decided before any work: -f checked; with -o FILE of a
    data suffix (.tsv .csv .json .jsonl) the writer writes that format to FILE, which gets its
    name when the command succeeds; a suffix in `files` (npy, png) is a file the command writes
    itself, and the writer is stdout's. An unknown suffix, a missing extra or a FILE that cannot
    be written is an error now, before any output."""
    writer = env.writer(format)  # a bad -f is a usage error first
    if output is None:
        return writer, None
    kind = output_kind(output, DATA_FILES + files)
    if kind in files:
        return writer, kind
    if format is not None and format != kind:
        raise UsageError(f"-f {format} and -o {output} disagree: a file's format is its suffix")
    return env.file_writer(kind, output), kind


def output_kind(path: str, allowed: tuple[str, ...]) -> str:
    """The file type of `-o path`, once the path is known to be writable: a command checks it
    before it prints or computes anything."""
    from embscope.atomic import check_writable

    ext = path.rsplit(".", 1)[-1].lower() if "." in path else ""
    if ext not in allowed:
        names = ["." + a for a in allowed]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
        raise UsageError(f"-o {path}: unknown file type (use {listed})")
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


def stdin_lines(env: Environment, what: str = "queries") -> list[str]:
    """The non-empty lines of stdin, stripped; binary junk is an error, not a query. On a
    terminal, stderr first says that `what` are read from it, and how to end them."""
    if env.stdin_isatty:
        env.note(f"reading {what} from stdin, one per line (end them with Ctrl-D)")
    data = env.stdin.buffer.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise EmbscopeError(f"stdin is not UTF-8 text (byte {e.start})") from None
    if "\x00" in text:
        raise EmbscopeError("stdin holds binary data (a NUL byte), not one query per line")
    return [line.strip() for line in text.splitlines() if line.strip()]


def stdin_text(env: Environment) -> str:
    """All of stdin as one text, newlines included; bytes that are not UTF-8 are an error."""
    if env.stdin_isatty:
        env.note("reading the text from stdin (end it with Ctrl-D)")
    data = env.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise EmbscopeError(f"stdin is not UTF-8 text (byte {e.start})") from None
