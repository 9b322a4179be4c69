"""`embscope cache`: the embedding tensors embscope fetched from the Hub, and removing them."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from embscope.cli.common import FormatOpt, note, writer

app = typer.Typer(help="List (with sizes) or remove the tensors embscope fetched from the Hub.",
                  invoke_without_command=True, no_args_is_help=False)
COLUMNS = ["repo", "commit", "revisions", "tensors", "bytes", "size"]  # folders: <root>/<org--name>/<commit>


def _human(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


@app.callback()
def cache(ctx: typer.Context, format: FormatOpt = None):
    """List (with sizes) or remove the tensors embscope fetched from the Hub."""
    if ctx.invoked_subcommand is None:
        list_entries(format)


@app.command("list")
def list_entries(format: FormatOpt = None):
    """One row per cached commit: repo, commit, the revisions that named it, tensors, bytes."""
    from embscope.io import hub_cache
    from embscope.output import resolve_format

    entries = hub_cache.entries()
    fmt = resolve_format(format)
    if not entries and fmt == "table":  # an empty table says less than a sentence
        note(f"nothing cached in {hub_cache.root()}")
        return
    total = sum(e["bytes"] for e in entries)
    out = writer(fmt, COLUMNS, title=f"embscope cache: {hub_cache.root()}"
                 f" ({len(entries)} commit{'s' * (len(entries) != 1)}, {_human(total)})")
    for e in entries:
        out.write({**e, "revisions": ",".join(e["revisions"]) or "-", "size": _human(e["bytes"])})
    out.close()


@app.command("remove")
def remove(
    specs: Annotated[Optional[list[str]], typer.Argument(
        metavar="[REPO[@REVISION]]...", help="What to remove: every commit of REPO, or the one REVISION names.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Remove everything embscope cached.")] = False,
):
    """Remove cached tensors of a repo (all its commits, or one revision), or --all."""
    from embscope.errors import EmbscopeError, UsageError
    from embscope.io import hub_cache

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
        note(f"nothing cached in {hub_cache.root()}")
    for e in gone:
        note(f"removed {e['repo']}@{e['commit']}: {e['tensors']} tensors, {_human(e['bytes'])}")
