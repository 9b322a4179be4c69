"""`embscope info`: what a checkpoint holds and how embscope reads it."""

from __future__ import annotations

from embscope.cli.common import FormatOpt, MetaOpt, ModelOpt, TokenizerOpt, WpeKeyOpt, WteKeyOpt, load_model, writer


def info(
    model: ModelOpt = None,
    wte_key: WteKeyOpt = None,
    wpe_key: WpeKeyOpt = None,
    tokenizer: TokenizerOpt = None,
    meta: MetaOpt = None,
    format: FormatOpt = None,
):
    """Model source and format, tensors used, sizes, dtype, tokenizer, bytes read."""
    from embscope.summary import describe

    emb = load_model(model, wte_key, wpe_key, tokenizer, meta)
    out = writer(format, ["field", "value"], title=f"embscope info: {emb.name}")
    for field, value in describe(emb):
        out.write({"field": field, "value": value})
    out.close()
