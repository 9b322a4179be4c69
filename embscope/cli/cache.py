"""`embscope cache`: the embedding tensors embscope fetched from the Hub, and removing them."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from embscope.cli.common import DebugOpt, FormatOpt, OutputOpt, output_writer
from embscope.cli.context import Environment

app = typer.Typer(help="List (with sizes) or remove the tensors embscope fetched from the Hub.",
                  invoke_without_command=True, no_args_is_help=False)
COLUMNS = ["repo", "commit", "revisions", "tensors", "bytes", "size"]  # folders: <root>/<org--name>/<commit>


def _human(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


@app.callback()
def cache(ctx: typer.Context, output: OutputOpt = None, format: FormatOpt = None, debug: DebugOpt = False):
    """List (with sizes) or remove the tensors embscope fetched from the Hub."""
    from embscope.cli.common import not_together

    removing = ctx.invoked_subcommand == "remove"
    not_together((f"-f {format}", format), ("remove", removing))
    not_together((f"-o {output}", output), ("remove", removing))
    if ctx.invoked_subcommand is None:
        list_entries(ctx, output, format)


@app.command("list")
def list_entries(ctx: typer.Context, output: OutputOpt = None, format: FormatOpt = None, debug: DebugOpt = False):
    """One row per cached commit: repo, commit, the revisions that named it, tensors, bytes."""
    env: Environment = ctx.obj
    output, format = _with_the_groups(ctx, output, format)
    out, _ = output_writer(env, output, format)
    try:
        _list(env, out)
    except BaseException:
        env.discard_files()
        raise
    env.finish_files()


def _with_the_groups(ctx: typer.Context, output: str | None, format: str | None) -> tuple[str | None, str | None]:
    """-o and -f given before `list` (`embscope cache -f json list`) count for it too; given on
    both sides, they must be the same."""
    from embscope.cli.common import not_together

    if ctx.parent is None or ctx.parent.info_name != "cache" or ctx.command.name != "list":
        return output, format  # called by the group itself (`embscope cache`)
    given = []
    for flag, mine in (("-o", output), ("-f", format)):
        theirs = ctx.parent.params.get("output" if flag == "-o" else "format")
        if theirs and mine and theirs != mine:
            not_together((f"{flag} {theirs}", theirs), (f"{flag} {mine}", mine))
        given.append(mine or theirs)
    return given[0], given[1]


def _list(env: Environment, out) -> None:
    from embscope.io import hub_cache

    entries = hub_cache.entries()
    if not entries and out.name == "table":  # an empty table says less than a sentence
        env.note(f"nothing cached in {hub_cache.root()}")
        return
    total = sum(e["bytes"] for e in entries)
    out.start(COLUMNS, title=f"embscope cache: {hub_cache.root()}"
              f" ({len(entries)} commit{'s' * (len(entries) != 1)}, {_human(total)})")
    for e in entries:
        out.write({**e, "revisions": ",".join(e["revisions"]) or "-", "size": _human(e["bytes"])})
    out.close()


@app.command("remove")
def remove(
    ctx: typer.Context,
    specs: Annotated[Optional[list[str]], typer.Argument(
        metavar="[REPO[@REVISION]]...", help="What to remove: every commit of REPO, or the one REVISION names.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Remove everything embscope cached.")] = False,
    debug: DebugOpt = False,
):
    """Remove cached tensors of a repo (all its commits, or one revision), or --all."""
    from embscope.errors import EmbscopeError, UsageError
    from embscope.io import hub_cache

    env: Environment = ctx.obj
    if all_ == bool(specs):
        raise UsageError("name what to remove (REPO or REPO@REVISION), or --all")
    gone = hub_cache.remove() if all_ else []
    for spec in specs or []:
        repo_id, _, revision = spec.partition("@")
        commit = (hub_cache.read_ref(repo_id, revision) or revision) if revision else None
        removed = hub_cache.remove(repo_id, commit)
        if not removed:
            raise EmbscopeError(f"{spec}: nothing cached for it (see 'embscope cache')")
        gone += removed
    if not gone:
        env.note(f"nothing cached in {hub_cache.root()}")
    for e in gone:
        env.note(f"removed {e['repo']}@{e['commit']}: {e['tensors']} tensors, {_human(e['bytes'])}")
