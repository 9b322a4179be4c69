"""The `embscope` command: global options, command registration, and the one place where
exceptions become messages and exit codes."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from embscope import __version__
from embscope.cli import common

app = typer.Typer(
    name="embscope",
    help="Look inside the input embeddings (wte, wpe) of language models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool):
    if value:
        print(f"embscope {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks and loading details.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
):
    common.DEBUG["on"] = debug


def _register() -> None:
    from embscope.cli import info, neighbors

    app.command("info")(info.info)
    app.command("neighbors")(neighbors.neighbors)


_register()


def main(argv: list[str] | None = None) -> None:
    import click

    from embscope.display import sanitize
    from embscope.errors import EmbscopeError, ExitStatus

    argv = sys.argv[1:] if argv is None else argv
    command = typer.main.get_command(app)

    def fail(message: str, status: int) -> None:
        sys.stderr.write(f"embscope: error: {sanitize(message)}\n")
        sys.stderr.flush()
        sys.exit(status)

    try:
        status = command.main(args=argv, prog_name="embscope", standalone_mode=False)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head -1`): normal in a pipeline. Point stdout at /dev/null so
        # the interpreter's final flush does not fail again, and exit quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except (KeyboardInterrupt, click.exceptions.Abort):
        if common.DEBUG["on"]:
            raise
        fail("interrupted", ExitStatus.INTERRUPTED)
    except click.exceptions.UsageError as e:
        cmd = e.ctx.command_path if e.ctx else "embscope"
        fail(f"{e.format_message()} (see '{cmd} --help')", ExitStatus.USAGE)
    except click.ClickException as e:
        fail(e.format_message(), e.exit_code)
    except EmbscopeError as e:
        if common.DEBUG["on"]:
            raise
        fail(str(e), e.status)
    except MemoryError:
        if common.DEBUG["on"]:
            raise
        fail("out of memory", ExitStatus.ERROR)
    sys.exit(status if isinstance(status, int) else 0)
