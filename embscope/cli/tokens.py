"""`embscope tokens`: how a text tokenizes, tokens by id, and a regex search of the vocabulary."""

from __future__ import annotations

import re
from typing import Annotated, Optional

import typer

from embscope.cli.common import (
    FormatOpt, MatrixOpt, ModelSource, model_command, not_together, output_opt, output_writer, save_npy,
    stdin_text,
)
from embscope.cli.context import Environment
from embscope.errors import UsageError

_ID = re.compile(r"#?(\d{1,18})")
_RANGE = re.compile(r"(\d{0,18}):(\d{0,18})")


@model_command
def tokens(
    source: ModelSource,
    env: Environment,
    args: Annotated[Optional[list[str]], typer.Argument(
        metavar="TEXT | ID...", help="The text ('-': all of stdin, as one text); with --id, token ids"
        " (42, '#42', or A:B for ids A..B-1; '-': ids from stdin).", show_default=False)] = None,
    by_id: Annotated[bool, typer.Option("--id", help="The arguments are token ids: show those tokens.")] = False,
    grep: Annotated[Optional[str], typer.Option(
        "--grep", metavar="REGEX", help="The tokens whose printed text (escaped, as shown) REGEX finds.")] = None,
    output: output_opt(".tsv, .csv, .json or .jsonl (the rows -f would print) or .npy (the token ids)") = None,
    format: FormatOpt = None,
    matrix: MatrixOpt = "input",
):
    """How a text tokenizes (position, id, token, norm); tokens by id; tokens matching a regex."""
    from embscope.errors import EmbscopeError

    args = args or []
    if grep is not None and (by_id or args):
        raise UsageError("--grep searches the vocabulary: it takes no TEXT and no --id")
    if grep is None and not args:
        raise UsageError("give a TEXT ('-' reads it from stdin), --id ID..., or --grep REGEX")
    if not by_id and len(args) > 1:
        raise UsageError(f"one TEXT, in quotes: got {len(args)} arguments (quote the text, or use --id for ids)")
    if not by_id and grep is None and args[0] == "":
        raise UsageError("empty text")
    if grep is not None:
        from embscope.analysis.vocab import compile_pattern

        compile_pattern(grep)  # a bad pattern is a usage error before the model is read
    out, kind = output_writer(env, output, format, ("npy",))
    not_together((f"-o {output}", kind == "npy"), (f"-f {format}", format))  # the ids alone: stdout gets nothing
    ids = _ids(env, args) if by_id else None
    text = None
    if not by_id and grep is None:
        text = stdin_text(env) if args == ["-"] else _checked(args[0])
        if not text:
            raise EmbscopeError("no text on stdin")
    m = source.load(env, matrix)
    if m.tokenizer is None:
        raise EmbscopeError(f"{m.name}: this model has no tokenizer, so its tokens have no text (give --tokenizer)")
    if grep is not None:
        found, title = m.grep(grep), f"tokens matching '{grep}'"
        if not len(found):
            env.note(f"no token matches '{grep}'")
    elif by_id:
        found, title = m.lookup(ids), None
    else:
        found = m.tokenize(text)
        title = f"{len(found)} tokens"
    if kind == "npy":
        return save_npy(env, output, found.ids)  # (n,) int64
    out.start(found.columns, title=title)
    for row in found.to_records():
        out.write(row)
    out.close()


def _checked(text: str) -> str:
    from embscope.queries import check_text

    return check_text(text)


def _ids(env: Environment, args: list[str]) -> list[int]:
    """Token ids from arguments: 42, '#42', A:B (ids A..B-1, both ends given), or '-' for ids
    on stdin, separated by whitespace. Whether they are in range is the model's to say."""
    if args == ["-"]:
        args = stdin_text(env).split()
        if not args:
            raise UsageError("no token ids on stdin")
    ids: list[int] = []
    for a in args:
        one, span = _ID.fullmatch(a), _RANGE.fullmatch(a)
        if one:
            ids.append(int(one.group(1)))
        elif span and span.group(1) and span.group(2) and int(span.group(1)) < int(span.group(2)):
            ids.extend(range(int(span.group(1)), int(span.group(2))))
        else:
            raise UsageError(f"'{a}' is not a token id (42, '#42', or A:B with A < B)")
    return ids
