"""`embscope info`: what a checkpoint holds and how embscope reads it."""

from __future__ import annotations

from embscope.cli.common import FormatOpt, ModelSource, model_command
from embscope.cli.context import Environment


@model_command
def info(
    source: ModelSource,
    env: Environment,
    format: FormatOpt = None,
):
    """Model source and format, tensors used, sizes, dtype, tokenizer, bytes read."""
    writer = env.writer(format)  # a bad -f is a usage error before the model is read
    facts = source.load(env).info()
    if writer.takes_documents:  # json: one object keyed by field; jsonl: the same object on a line
        return writer.document(facts.as_dict(), [facts.as_dict()])
    out = writer.start(["field", "value"], title=f"embscope info: {facts.name}")
    for row in facts.to_records():
        out.write(row)
    out.close()
