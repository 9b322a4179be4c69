"""`embscope tokens` and `Model.tokenize/lookup/grep`: token ids against tiktoken, `tokenizers`,
transformers and nanoGPT's meta.pkl; norms against the matrix as safetensors and torch read it."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

import embscope
from embscope.errors import EmbscopeError
from tests.builders import save_char_nanogpt, save_gpt2, save_hf
from tests.helpers import jsonl, run, tsv

TEXTS = ["To be, or not to be: that is the question.",
         "Wherefore art thou\n\tRomeo?  <|endoftext|> naïve café 🙂 — “quotes”",
         "   leading spaces and trailing   "]


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    """(model directory, wte as safetensors reads it from the file, float64)."""
    from safetensors.numpy import load_file

    d = tmp_path_factory.mktemp("tokens-gpt2")
    save_gpt2(d)
    return d, load_file(str(d / "model.safetensors"))["transformer.wte.weight"].astype(np.float64)


def shown(token: bytes) -> str:
    """The reference for how a token is printed, for the tokens these tests meet: UTF-8 text
    as it is (no backslash, no control character but newline and tab), \\n and \\t escaped,
    and each byte of a token that is not valid UTF-8 as \\xNN."""
    try:
        text = token.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(f"\\x{b:02x}" if b >= 0x80 else chr(b) for b in token)
    assert "\\" not in text and all(c.isprintable() or c in "\n\t" for c in text), token
    return text.replace("\n", "\\n").replace("\t", "\\t")


@pytest.mark.parametrize("text", TEXTS)
def test_ids_equal_tiktoken(gpt2, tiktoken_gpt2, text, capsys):
    d, wte = gpt2
    code, out, err = run(["tokens", text, "-m", str(d), "-f", "jsonl"], capsys)
    assert (code, err) == (0, "")
    rows = jsonl(out)
    ids = tiktoken_gpt2.encode(text, allowed_special="all")
    assert [r["id"] for r in rows] == ids
    assert [r["pos"] for r in rows] == list(range(len(ids)))
    assert [r["token"] for r in rows] == [shown(tiktoken_gpt2.decode_single_token_bytes(i)) for i in ids]
    np.testing.assert_allclose([r["norm"] for r in rows], np.linalg.norm(wte[ids], axis=1), rtol=1e-12)


def test_partial_utf8_tokens_are_escaped(gpt2, tiktoken_gpt2, capsys):
    d, _ = gpt2
    _, out, _ = run(["tokens", "🙂", "-m", str(d), "-f", "tsv"], capsys)
    ids = tiktoken_gpt2.encode("🙂")
    assert len(ids) > 1  # the emoji is split inside its UTF-8 bytes
    assert [r["token"] for r in tsv(out)] == [shown(tiktoken_gpt2.decode_single_token_bytes(i)) for i in ids]
    assert all(r["token"].startswith("\\x") for r in tsv(out))


def test_stdin_is_one_text_with_its_newlines(gpt2, tiktoken_gpt2, capsys, monkeypatch, shakespeare):
    d, _ = gpt2
    text = shakespeare[:3000]
    code, out, err = run(["tokens", "-", "-m", str(d), "-f", "tsv"], capsys, stdin=text, monkeypatch=monkeypatch)
    assert (code, err) == (0, "")
    assert [int(r["id"]) for r in tsv(out)] == tiktoken_gpt2.encode(text)


def test_norms_equal_torch_and_the_norms_command(tmp_path, capsys):
    """A nanoGPT ckpt.pt: norms against torch on the saved state dict, and equal to what
    `norms --all` prints for the same tokens."""
    import torch

    path, state = save_char_nanogpt(tmp_path)
    meta = pickle.loads((tmp_path / "meta.pkl").read_bytes())
    text = "First Citizen:\nBefore we proceed"
    _, out, _ = run(["tokens", text, "-m", str(path), "-f", "jsonl"], capsys)
    rows = jsonl(out)
    ids = [meta["stoi"][c] for c in text]
    assert [r["id"] for r in rows] == ids
    ref = torch.linalg.vector_norm(state["transformer.wte.weight"].double()[ids], dim=1).numpy()
    np.testing.assert_allclose([r["norm"] for r in rows], ref, rtol=1e-12)
    _, out, _ = run(["norms", "--all", "-m", str(path), "-f", "jsonl"], capsys)
    by_id = {r["id"]: r["norm"] for r in jsonl(out)}
    assert [r["norm"] for r in rows] == [by_id[i] for i in ids]


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    d = tmp_path_factory.mktemp("tokens-bert")
    save_hf(d, "bert")
    return d


def test_wordpiece_ids_equal_tokenizers_and_transformers(bert, capsys):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    text = "Wherefore art thou Romeo? Unaccustomed, unbelievable!"
    code, out, err = run(["tokens", text, "-m", str(bert), "-f", "tsv"], capsys)
    assert code == 0, err
    ids = [int(r["id"]) for r in tsv(out)]
    assert ids == Tokenizer.from_file(str(bert / "tokenizer.json")).encode(text, add_special_tokens=False).ids
    hf = AutoTokenizer.from_pretrained(str(bert))
    assert ids == hf(text, add_special_tokens=False)["input_ids"]
    assert [r["token"] for r in tsv(out)] == hf.convert_ids_to_tokens(ids)  # WordPiece pieces, "##" and all


def test_by_id(gpt2, tiktoken_gpt2, capsys, monkeypatch):
    d, wte = gpt2
    code, out, err = run(["tokens", "--id", "5822", "#198", "100:103", "-m", str(d), "-f", "tsv"], capsys)
    assert (code, err) == (0, "")
    rows = tsv(out)
    ids = [5822, 198, 100, 101, 102]
    assert list(rows[0]) == ["id", "token", "norm"]
    assert [int(r["id"]) for r in rows] == ids
    assert [r["token"] for r in rows] == [shown(tiktoken_gpt2.decode_single_token_bytes(i)) for i in ids]
    np.testing.assert_allclose([float(r["norm"]) for r in rows], np.linalg.norm(wte[ids], axis=1), rtol=1e-5)
    code, out2, _ = run(["tokens", "--id", "-", "-m", str(d), "-f", "tsv"], capsys,
                        stdin="5822 198\n100\n101 102\n", monkeypatch=monkeypatch)
    assert (code, out2) == (0, out)


def grep_reference(tiktoken_gpt2, keep) -> list[int]:
    return [i for i in range(tiktoken_gpt2.n_vocab) if keep(tiktoken_gpt2.decode_single_token_bytes(i))]


@pytest.mark.parametrize("pattern, keep", [
    ("^ king", lambda b: b.startswith(b" king")),
    ("ing$", lambda b: b.endswith(b"ing")),
    ("(?i)^ king$", lambda b: b.lower() == b" king"),
    # The text searched is the token as printed: a newline is the two characters \n there, so
    # the pattern \\n finds it (and a backslash before an n, printed \\n too).
    (r"\\n", lambda b: b"\n" in b or b"\\n" in b),
])
def test_grep_against_the_token_bytes(gpt2, tiktoken_gpt2, capsys, pattern, keep):
    d, _ = gpt2
    code, out, err = run(["tokens", "--grep", pattern, "-m", str(d), "-f", "tsv"], capsys)
    assert (code, err) == (0, "")
    assert [int(r["id"]) for r in tsv(out)] == grep_reference(tiktoken_gpt2, keep)


def test_grep_nothing_found(gpt2, capsys):
    d, _ = gpt2
    code, out, err = run(["tokens", "--grep", "^zzzzqqq", "-m", str(d), "-f", "tsv"], capsys)
    assert (code, out, err) == (0, "id\ttoken\tnorm\n", "no token matches '^zzzzqqq'\n")


def test_runaway_pattern_is_stopped(gpt2):
    """Nested repetition over GPT-2's long runs of dashes backtracks for minutes: stopped."""
    m = embscope.load(str(gpt2[0]))
    assert max(len(t) for t in (m.token(i) for i in range(m.n_tokens)) if set(t) == {"-"}) >= 32
    with pytest.raises(EmbscopeError, match=r"^'\(-\+\)\+x' took more than 0\.5 s over the vocabulary and was"
                                            r" stopped \(nested repetition such as '\(a\+\)\+' backtracks without end\)$"):
        m.grep("(-+)+x", seconds=0.5)
    assert m.grep("^ king$").ids.tolist() == [5822]  # the timer is off again: a later search runs


def test_every_format_and_output_file(gpt2, capsys, tmp_path):
    d, _ = gpt2
    base = ["tokens", "the king", "-m", str(d)]
    _, out, _ = run(base + ["-f", "json"], capsys)
    records = json.loads(out)
    assert [(r["pos"], r["id"], r["token"]) for r in records] == [(0, 1169, "the"), (1, 5822, " king")]
    _, out, _ = run(base + ["-f", "csv"], capsys)
    assert out.splitlines()[:2] == ["pos,id,token,norm", f"0,1169,the,{records[0]['norm']:.6g}"]
    _, out, _ = run(base + ["-f", "table"], capsys)
    assert out.splitlines()[0].strip() == "2 tokens"
    assert "␣king" in out
    for suffix in ("tsv", "csv", "json", "jsonl"):
        _, printed, _ = run(base + ["-f", suffix], capsys)
        code, out, err = run(base + ["-o", str(tmp_path / f"t.{suffix}")], capsys)
        assert (code, out, err) == (0, "", f"wrote {tmp_path / f't.{suffix}'}\n")
        assert (tmp_path / f"t.{suffix}").read_text() == printed
    code, out, err = run(base + ["-o", str(tmp_path / "ids.npy")], capsys)
    assert (code, out, err) == (0, "", f"wrote {tmp_path / 'ids.npy'}: array of shape (2,), int64\n")
    assert np.load(tmp_path / "ids.npy").tolist() == [1169, 5822]


def test_api(gpt2, tiktoken_gpt2):
    d, wte = gpt2
    m = embscope.load(str(d))
    t = m.tokenize("the king")
    assert (t.text, t.ids.tolist(), t.tokens) == ("the king", [1169, 5822], ("the", " king"))
    np.testing.assert_allclose(t.norms, np.linalg.norm(wte[[1169, 5822]], axis=1), rtol=1e-12)
    assert t.to_records()[1] == {"pos": 1, "id": 5822, "token": " king", "norm": float(t.norms[1])}
    assert m.tokenize("king", bos=True).ids.tolist() == [50256] + tiktoken_gpt2.encode("king")
    found = m.lookup([198, 5822])
    assert (found.text, found.tokens, found.columns) == (None, ("\\n", " king"), ["id", "token", "norm"])
    assert m.grep("^ queen").ids.tolist() == grep_reference(tiktoken_gpt2, lambda b: b.startswith(b" queen"))


@pytest.mark.parametrize("argv, message, status", [
    ([], "give a TEXT ('-' reads it from stdin), --id ID..., or --grep REGEX", 2),
    (["a", "b"], "one TEXT, in quotes: got 2 arguments (quote the text, or use --id for ids)", 2),
    ([""], "empty text", 2),
    (["x", "--grep", "a"], "--grep searches the vocabulary: it takes no TEXT and no --id", 2),
    (["--id", "--grep", "a"], "--grep searches the vocabulary: it takes no TEXT and no --id", 2),
    (["--grep", "(a"], "'(a' is not a regular expression (missing ), unterminated subpattern at position 0)", 2),
    (["--grep", "a" * 1001], "the pattern is 1001 characters long (at most 1000)", 2),
    (["--id", "king"], "'king' is not a token id (42, '#42', or A:B with A < B)", 2),
    (["--id", "5:5"], "'5:5' is not a token id (42, '#42', or A:B with A < B)", 2),
    (["--id", "50257"], "token id #50257 is out of range (the model has 50257 tokens)", 1),
    (["the", "-o", "t.txt"], "-o t.txt: unknown file type (use .tsv, .csv, .json, .jsonl or .npy)", 2),
    (["the", "-o", "t.tsv", "-f", "json"], "-f json and -o t.tsv disagree: a file's format is its suffix", 2),
])
def test_bad_input_one_line(gpt2, capsys, argv, message, status):
    d, _ = gpt2
    code, out, err = run(["tokens", *argv, "-m", str(d)], capsys)
    assert (code, out, err) == (status, "", f"embscope: error: {message}\n")


def test_model_without_tokenizer(tmp_path, capsys):
    from safetensors.numpy import save_file

    save_file({"transformer.wte.weight": np.ones((100, 8), np.float32)}, str(tmp_path / "model.safetensors"))
    for argv in (["hi"], ["--id", "3"], ["--grep", "a"]):
        code, out, err = run(["tokens", *argv, "-m", str(tmp_path)], capsys)
        assert (code, out, err) == (1, "", f"embscope: error: {tmp_path}: this model has no tokenizer, so its"
                                           " tokens have no text (give --tokenizer)\n")


def test_stdin_not_utf8(gpt2, capsys, monkeypatch):
    d, _ = gpt2
    code, out, err = run(["tokens", "-", "-m", str(d)], capsys, stdin=b"ok \xff\xfe", monkeypatch=monkeypatch)
    assert (code, out, err) == (1, "", "embscope: error: stdin is not UTF-8 text (byte 3)\n")
