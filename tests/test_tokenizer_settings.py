"""Tokenizer files as real exports carry them: padding, truncation, post-processors, added tokens,
normalizers, add_prefix_space, byte fallback. What embscope encodes must equal what the model's own
tokenizer gives (`transformers.AutoTokenizer`, special tokens off, no padding or truncation).

Every folder here is written by the real serializers: `tokenizers` (`Tokenizer.save`, trainers,
`enable_padding`/`enable_truncation`) and transformers (`save_pretrained`)."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch

from embscope.errors import EmbscopeError
from embscope.tokenizer import from_path
from tests.builders import GPT2_FILES, bert_tokenizer, gpt2_tokenizer, shakespeare_text
from tests.helpers import jsonl, run

LONG = " ".join(shakespeare_text()[:3000].split())  # several hundred tokens: more than any padding
TEXTS = [
    "king", " king", "The KING's Crown, 42 times", "Café naïve RÉSUMÉ façade Ångström",
    "  two  spaces\tand\ttabs\n", "东京 and 北京", "[CLS] the [SEP] <s> </s> <mask> <|endoftext|> [PAD]",
    "emoji ☕😀 and é", "<|user|>hi <|user|> there", "hello world, hello  world", LONG,
]


def reference_ids(directory, text: str) -> list[int]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(directory), trust_remote_code=False)
    return tok(text, add_special_tokens=False)["input_ids"]


def pad_and_truncate(path, length: int = 128, direction: str = "right") -> None:
    """What some exports ship: a tokenizer.json that pads every text to `length` and cuts longer ones."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    pad = tok.token_to_id("[PAD]") if tok.token_to_id("[PAD]") is not None else 0
    tok.enable_padding(length=length, direction=direction, pad_id=pad, pad_token=tok.id_to_token(pad))
    tok.enable_truncation(max_length=length)
    tok.save(str(path))


# --- the tokenizer folders -----------------------------------------------------------------------

def bert_padded(d):
    """A BERT-family export: BertTokenizer.save_pretrained, then tokenizer.json padding to 128
    and truncating at 128 (as a widely used sentence-embedding export does)."""
    bert_tokenizer(d)
    pad_and_truncate(d / "tokenizer.json")


def bert_cased_strip_accents(d):
    from transformers import BertTokenizer

    bert_tokenizer(d)
    BertTokenizer.from_pretrained(str(d), do_lower_case=False, strip_accents=True,
                                  tokenize_chinese_chars=False).save_pretrained(str(d))
    pad_and_truncate(d / "tokenizer.json", 16)


def wordpiece_nfd_lowercase(d):
    """A WordPiece tokenizer.json from the `tokenizers` trainer: NFD + lowercase + strip accents,
    CLS/SEP template, padding and truncation, wrapped by transformers' generic class."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([normalizers.NFD(), normalizers.Lowercase(), normalizers.StripAccents()])
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    specials = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]
    tok.train_from_iterator(shakespeare_text().split("\n\n"), trainer=trainers.WordPieceTrainer(
        vocab_size=2000, special_tokens=specials, show_progress=False))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    tok.enable_padding(length=128, pad_id=tok.token_to_id("[PAD]"), pad_token="[PAD]")
    tok.enable_truncation(max_length=128)
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                            pad_token="[PAD]", mask_token="[MASK]").save_pretrained(str(d))


def roberta_prefix_space(d):
    """RoBERTa-style byte-level BPE with add_prefix_space, <s>/</s> post-processor and an added
    token, saved by transformers; then padded and truncated."""
    from transformers import RobertaTokenizer

    src = d / "src"
    src.mkdir()
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(GPT2_FILES / name, src / name)
    (src / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "RobertaTokenizer"}))
    tok = RobertaTokenizer.from_pretrained(str(src), add_prefix_space=True)
    tok.add_tokens(["<|user|>"])
    tok.save_pretrained(str(d))
    shutil.rmtree(src)
    pad_and_truncate(d / "tokenizer.json", 64, "left")


def llama_byte_fallback(d):
    """SentencePiece-style BPE: Metaspace, byte fallback, a BOS template, special and plain added
    tokens; padding left."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token=None, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    tok.train_from_iterator(shakespeare_text().split("\n\n"), trainer=trainers.BpeTrainer(
        vocab_size=1500, special_tokens=specials, show_progress=False))
    tok.add_special_tokens([AddedToken("<|user|>", special=True)])
    tok.add_tokens([AddedToken("hello world", single_word=True)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", tok.token_to_id("<s>"))])
    tok.enable_padding(length=96, direction="left", pad_id=0, pad_token="<unk>")
    tok.enable_truncation(max_length=96)
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                            pad_token="<unk>").save_pretrained(str(d))


def gpt2_bos_template(d):
    """GPT-2's files through transformers with an <|endoftext|> BOS template, an added special
    token and a plain one; padded."""
    from tokenizers import processors
    from transformers import GPT2Tokenizer

    tok = GPT2Tokenizer.from_pretrained(str(GPT2_FILES))
    tok.add_tokens(["<|user|>"], special_tokens=True)
    tok.add_tokens(["hello world"])
    tok.save_pretrained(str(d))
    from tokenizers import Tokenizer

    backend = Tokenizer.from_file(str(d / "tokenizer.json"))
    backend.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", 50256)])
    backend.save(str(d / "tokenizer.json"))
    pad_and_truncate(d / "tokenizer.json", 32)


TOKENIZER_JSON = {f.__name__: f for f in (bert_padded, bert_cased_strip_accents, wordpiece_nfd_lowercase,
                                          roberta_prefix_space, llama_byte_fallback, gpt2_bos_template)}


@pytest.fixture(scope="module", params=sorted(TOKENIZER_JSON))
def tokenizer_json_dir(request, tmp_path_factory):
    d = tmp_path_factory.mktemp(request.param)
    TOKENIZER_JSON[request.param](d)
    return d


SETTINGS = {  # what each fixture's tokenizer.json must hold besides padding and truncation
    "bert_padded": lambda doc: doc["normalizer"]["lowercase"] and doc["post_processor"]["type"] == "TemplateProcessing",
    "bert_cased_strip_accents": lambda doc: (doc["normalizer"]["lowercase"], doc["normalizer"]["strip_accents"],
                                             doc["normalizer"]["handle_chinese_chars"]) == (False, True, False),
    "wordpiece_nfd_lowercase": lambda doc: [n["type"] for n in doc["normalizer"]["normalizers"]]
    == ["NFD", "Lowercase", "StripAccents"],
    "roberta_prefix_space": lambda doc: doc["pre_tokenizer"]["add_prefix_space"] is True
    and doc["post_processor"]["type"] == "RobertaProcessing"
    and any(t["content"] == "<|user|>" and not t["special"] for t in doc["added_tokens"]),
    "llama_byte_fallback": lambda doc: doc["model"]["byte_fallback"] is True and doc["padding"]["direction"] == "Left"
    and any(t["content"] == "hello world" and t["single_word"] for t in doc["added_tokens"]),
    "gpt2_bos_template": lambda doc: doc["post_processor"]["single"][0]["SpecialToken"]["id"] == "<|endoftext|>"
    and any(t["content"] == "<|user|>" and t["special"] for t in doc["added_tokens"]),
}


def test_the_fixtures_carry_the_settings(tokenizer_json_dir):
    doc = json.loads((tokenizer_json_dir / "tokenizer.json").read_text(encoding="utf-8"))
    assert doc["padding"]["strategy"]["Fixed"] > 0 and doc["truncation"]["max_length"] > 0
    assert SETTINGS[tokenizer_json_dir.name.rstrip("0123456789")](doc)


def test_tokenizer_json_ids_equal_transformers(tokenizer_json_dir):
    tok = from_path(str(tokenizer_json_dir))
    for text in TEXTS:
        assert tok.encode(text) == reference_ids(tokenizer_json_dir, text), text
    assert len(tok.encode(LONG)) > 300


# --- vocab.txt and vocab.json + merges.txt, with tokenizer_config.json beside them ------------------

@pytest.fixture(scope="module", params=[
    {}, {"do_lower_case": False}, {"do_lower_case": False, "strip_accents": True},
    {"do_lower_case": True, "strip_accents": False}, {"tokenize_chinese_chars": False},
], ids=["defaults", "cased", "cased-strip-accents", "uncased-keep-accents", "no-chinese-split"])
def vocab_txt_dir(request, tmp_path_factory):
    """BERT's vocab.txt with the tokenizer_config.json BertTokenizer.save_pretrained writes for
    these settings, and no tokenizer.json (as older exports have)."""
    from transformers import BertTokenizer

    d = tmp_path_factory.mktemp("vocab-txt")
    bert_tokenizer(d)
    BertTokenizer.from_pretrained(str(d), **request.param).save_pretrained(str(d))
    (d / "tokenizer.json").unlink()
    config = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert {k: config[k] for k in request.param} == request.param
    return d


def test_vocab_txt_ids_equal_transformers(vocab_txt_dir):
    tok = from_path(str(vocab_txt_dir))
    assert tok.kind == "WordPiece (vocab.txt)"
    for text in TEXTS:
        assert tok.encode(text) == reference_ids(vocab_txt_dir, text), text


V4_MASK = {"__type": "AddedToken", "content": "<mask>", "lstrip": True, "normalized": False, "rstrip": False,
           "single_word": False}


@pytest.fixture(scope="module", params=["roberta-prefix-space", "roberta-v4-mask", "gpt2-added"])
def vocab_json_dir(request, tmp_path_factory):
    """GPT-2's vocab.json + merges.txt with a tokenizer_config.json from save_pretrained (the
    tokenizer.json it also writes removed, as older exports have none)."""
    from transformers import AutoTokenizer

    d = tmp_path_factory.mktemp(request.param)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(GPT2_FILES / name, d / name)
    cls = "GPT2Tokenizer" if request.param.startswith("gpt2") else "RobertaTokenizer"
    (d / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": cls}))
    tok = AutoTokenizer.from_pretrained(str(d), add_prefix_space=cls == "RobertaTokenizer")
    if request.param == "gpt2-added":
        tok.add_tokens(["<|user|>"], special_tokens=True)
    tok.save_pretrained(str(d))
    (d / "tokenizer.json").unlink()
    if request.param == "roberta-v4-mask":  # transformers 4 wrote the mask token with lstrip
        config = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8"))
        config["mask_token"] = V4_MASK
        (d / "tokenizer_config.json").write_text(json.dumps(config))
    return d


def test_vocab_json_ids_equal_transformers(vocab_json_dir):
    tok = from_path(str(vocab_json_dir))
    for text in TEXTS + ["the <mask> king", "a<mask>b", " <s>x</s>"]:
        assert tok.encode(text) == reference_ids(vocab_json_dir, text), text


# --- a BERT-family model whose tokenizer.json pads to 128: the commands see the real tokens -----

@pytest.fixture(scope="module")
def bert_model(tmp_path_factory):
    """BertModel (512 positions) saved by save_pretrained, with the padded tokenizer.json."""
    import transformers as tf

    d = tmp_path_factory.mktemp("bert-padded-model")
    torch.manual_seed(0)
    model = tf.BertModel(tf.BertConfig(vocab_size=30522, max_position_embeddings=512, hidden_size=32,
                                       num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)).eval()
    model.save_pretrained(str(d))
    bert_padded(d)
    return d, model


def test_neighbors_of_king_are_the_kings_row_neighbors(bert_model, capsys):
    d, model = bert_model
    (king,) = reference_ids(d, "king")
    w = model.embeddings.word_embeddings.weight.detach().numpy().astype(np.float64)  # (V, d)
    with np.errstate(invalid="ignore"):  # the [PAD] row is zero
        scores = w @ w[king] / (np.linalg.norm(w, axis=1) * np.linalg.norm(w[king]))  # (V,)
    scores[np.isnan(scores)] = -np.inf
    scores[king] = -np.inf
    order = np.argsort(-scores, kind="stable")[:10]
    code, out, err = run(["neighbors", "king", "-m", str(d), "-k", "10", "-f", "jsonl"], capsys)
    assert code == 0 and err == ""
    rows = jsonl(out)
    assert [r["id"] for r in rows] == order.tolist()
    np.testing.assert_allclose([r["score"] for r in rows], scores[order], rtol=1e-5)


@pytest.mark.parametrize("text", ["king", LONG[:1200]])
def test_embed_equals_the_embeddings_module_past_the_padding_length(bert_model, text, capsys):
    d, model = bert_model
    ids = reference_ids(d, text)
    assert len(ids) == 1 if text == "king" else 128 < len(ids) < 512
    code, out, err = run(["embed", text, "-m", str(d), "-f", "json"], capsys)
    assert code == 0, err
    doc = json.loads(out)
    assert doc["ids"] == ids
    with torch.no_grad():
        input_ids = torch.tensor([ids])
        ref = model.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids))[0].numpy()
    np.testing.assert_allclose(np.array(doc["vectors"], dtype=np.float32), ref, rtol=1e-5, atol=1e-5)


def test_text_longer_than_the_positions_keeps_the_clear_error(bert_model, capsys):
    d, model = bert_model
    text = LONG + " " + LONG
    n = len(reference_ids(d, text))
    assert n > 512
    code, out, err = run(["embed", text, "-m", str(d)], capsys)
    assert (code, out) == (1, "")
    assert err == (f"embscope: error: the text is {n} tokens but the model has only 512 positions"
                   " (use --truncate to keep the first ones)\n")
    code, out, err = run(["embed", text, "-m", str(d), "--truncate", "-f", "json"], capsys)
    assert code == 0 and json.loads(out)["ids"] == reference_ids(d, text)[:512]


def test_an_added_token_id_the_vocabulary_cannot_give_is_an_error(tmp_path, capsys):
    """transformers 4 wrote added_tokens_decoder with each token's id; one that disagrees with the
    vocabulary would shift ids, so it is refused in one line."""
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(GPT2_FILES / name, tmp_path / name)
    user = {"content": "<|user|>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
            "special": True}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": {"50300": user}}))
    code, out, err = run(["embed", "hi", "--tokenizer", str(tmp_path)], capsys)
    assert (code, out) == (1, "")
    assert err == (f"embscope: error: {tmp_path}: tokenizer_config.json gives the added token '<|user|>' id 50300,"
                   " but the vocabulary makes it 50257\n")


def test_an_unreadable_tokenizer_config_is_an_error(tmp_path):
    """A config that is there but unreadable is not ignored: the defaults could encode text
    differently from the model's own tokenizer."""
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(GPT2_FILES / name, tmp_path / name)
    config = tmp_path / "tokenizer_config.json"
    config.write_text("{not json")
    with pytest.raises(EmbscopeError, match=rf"^{re.escape(str(config))}: not readable JSON \("):
        from_path(str(tmp_path))
    config.write_text('{"add_prefix_space": "yes"}')
    with pytest.raises(EmbscopeError, match=rf"^{re.escape(str(config))}: 'add_prefix_space' is 'yes', not true or false$"):
        from_path(str(tmp_path))
    config.unlink()
    text = "king <|endoftext|>"
    assert from_path(str(tmp_path)).encode(text) == gpt2_tokenizer()(text)["input_ids"] == [3364, 220, 50256]
