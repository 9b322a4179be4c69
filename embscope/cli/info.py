"""`embscope info`: what a checkpoint holds and how embscope reads it."""

from __future__ import annotations

from embscope.cli.common import FormatOpt, ModelSource, model_command, writer


@model_command
def info(
    source: ModelSource,
    format: FormatOpt = None,
):
    """Model source and format, tensors used, sizes, dtype, tokenizer, bytes read."""
    from embscope.summary import describe

    emb = source.load().emb
    out = writer(format, ["field", "value"], title=f"embscope info: {emb.name}")
    for field, value in describe(emb):
        out.write({"field": field, "value": value})
    out.close()
