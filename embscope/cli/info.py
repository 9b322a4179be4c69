"""`embscope info`: what a checkpoint holds and how embscope reads it."""

from __future__ import annotations

from embscope.cli.common import FormatOpt, ModelSource, OutputOpt, model_command, output_writer
from embscope.cli.context import Environment


@model_command
def info(
    source: ModelSource,
    env: Environment,
    output: OutputOpt = None,
    format: FormatOpt = None,
):
    """Model source and format, tensors used, sizes, dtype, tokenizer, bytes read."""
    writer, _ = output_writer(env, output, format)  # a bad -f or -o is a usage error before the model is read
    facts = source.load(env).info()
    if writer.takes_documents:  # json: one object keyed by field; jsonl: the same object on a line
        return writer.document(facts.as_dict(), [facts.as_dict()])
    out = writer.start(["field", "value"], title=f"embscope info: {facts.name}")
    for row in facts.to_records():
        out.write(row)
    out.close()
