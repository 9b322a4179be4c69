"""The `embscope` command: global options, command registration, and the one place where
exceptions become messages and exit codes."""

from __future__ import annotations

import os
import sys
import warnings
from typing import Annotated

import typer

from embscope import __version__
from embscope.cli.context import Environment

app = typer.Typer(
    name="embscope",
    help="Look inside the input embeddings (wte, wpe) of language models.",
    add_completion=True,  # --install-completion, --show-completion (docs: README)
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool):
    if value:
        print(f"embscope {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and loading details (after the command, too).")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
):
    # `main` made the Environment; a caller that invokes `app` itself (CliRunner) gets one here.
    if ctx.obj is None:
        ctx.obj = Environment.detect()
    ctx.obj.debug = debug


def _register() -> None:
    from embscope.cli import cache, embed, glitch, info, neighbors, norms, positions, sim, tokens
    from embscope.cli.diff import diff
    from embscope.cli.export import export_command
    from embscope.cli.map import map_command

    app.command("info")(info.info)
    app.command("neighbors")(neighbors.neighbors)
    app.command("positions")(positions.positions)
    app.command("norms")(norms.norms)
    app.command("embed")(embed.embed)
    app.command("sim")(sim.sim)
    app.command("tokens")(tokens.tokens)
    app.command("diff")(diff)
    app.command("map")(map_command)
    app.command("export")(export_command)
    app.command("glitch")(glitch.glitch)
    app.add_typer(cache.app, name="cache")


_register()


def _click_exceptions():
    """ClickException and UsageError: typer >= 0.27 vendors click; older typer uses click."""
    try:
        from typer._click.exceptions import ClickException, UsageError
    except ImportError:  # typer < 0.27
        from click.exceptions import ClickException, UsageError
    return ClickException, UsageError


# How the CLI names the arguments of embscope.load in its messages.
_OPTION_WORDS = {"wte_key": "--wte-key", "wpe_key": "--wpe-key", "tokenizer": "--tokenizer",
                 "step": "checkpoint step ", "unused": "--unused", "by_token": "--by-token"}


def cli_message(e) -> str:
    """An error's message in the CLI's words: the core names its arguments (metric 'dot',
    wte_key=), the CLI its options (--metric dot, --wte-key)."""
    from embscope.errors import ArgumentError, ScoreOverflowError

    if isinstance(e, ScoreOverflowError):
        return (f"--metric {e.metric}: vectors this long (norms up to {e.longest:.3g}) overflow float32"
                " scores; use --metric cosine")
    if isinstance(e, ArgumentError):
        return e.worded(_OPTION_WORDS[e.argument])
    return str(e)


def main(argv: list[str] | None = None) -> None:
    """Run embscope. Every failure ends here as one line on stderr and an exit status."""
    from embscope.display import sanitize
    from embscope.errors import EmbscopeError, ExitStatus

    # numpy asks Linux for huge pages for every array over 4 MiB; where the kernel then compacts
    # memory synchronously (transparent_hugepage/defrag = madvise, a common default), each fresh
    # array stalls on its page faults (numpy/numpy#31590). embscope's arrays are made once and
    # read a few times: the CLI lets the user's own setting win, and otherwise does without.
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
    ClickException, ClickUsageError = _click_exceptions()  # noqa: N806
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:  # a bare `embscope` asks what it can do: the help, on stdout, exit 0
        argv = ["--help"]
    command = typer.main.get_command(app)
    # The shell's completion script runs `embscope` with _EMBSCOPE_COMPLETE set: answer, exit.
    command._main_shell_completion({}, "embscope", None)
    env = Environment.detect()
    # NaN/Inf rows are found and reported by the commands themselves; numpy's own
    # RuntimeWarnings about them would only add noise (and raw text) to stderr.
    warnings.filterwarnings("ignore", category=RuntimeWarning, module=r"embscope\.")

    def fail(message: str, status: int):
        env.stderr.write(f"embscope: error: {sanitize(message)}\n")
        env.stderr.flush()
        sys.exit(status)

    try:
        with command.make_context("embscope", argv, obj=env) as ctx:
            command.invoke(ctx)
        env.stdout.flush()
    except (typer.Exit, typer.Abort) as e:
        sys.exit(getattr(e, "exit_code", 1))
    except BrokenPipeError:
        # The reader went away (`| head -1`): normal in a pipeline. Point stdout at /dev/null so
        # the interpreter's final flush does not fail again, and exit quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), env.stdout.fileno())
        sys.exit(ExitStatus.OK)
    except KeyboardInterrupt:
        if env.debug:
            raise
        fail("interrupted", ExitStatus.INTERRUPTED)
    except ClickUsageError as e:
        where = e.ctx.command_path if e.ctx else "embscope"
        fail(f"{e.format_message()} (see '{where} --help')", ExitStatus.USAGE)
    except ClickException as e:
        fail(e.format_message(), e.exit_code)
    except EmbscopeError as e:
        if env.debug:
            raise
        fail(cli_message(e), e.status)
    except MemoryError:
        if env.debug:
            raise
        fail("out of memory", ExitStatus.ERROR)
    except BaseException as e:  # a Rust panic outside embscope.native's guard (not an Exception)
        from embscope.errors import first_line
        from embscope.native import is_panic

        if not is_panic(e) or env.debug:
            raise
        fail(f"a library panicked: {first_line(e)}", ExitStatus.ERROR)

