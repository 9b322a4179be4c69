"""Bad input of every kind: one exact line on stderr, the right exit status, nothing on stdout.

The corrupt files are real files spoiled on purpose: a safetensors file written by safetensors'
`save_file` with its header or bytes edited, torch zips written by `torch.save` with an entry
replaced or damaged. Each case of CASES runs the real CLI entry point in-process.
"""

from __future__ import annotations

import json
import pickle
import shutil
import struct
import zipfile

import numpy as np
import pytest
import torch

from tests import untrusted as u
from tests.builders import GPT2_FILES, save_char_nanogpt
from tests.helpers import run, tsv

KING = 5822  # " king"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    """Name -> path (and a few numbers) for the templates in CASES."""
    from safetensors.numpy import save_file

    base = tmp_path_factory.mktemp("bad")
    f: dict[str, object] = {"base": base}

    # A GPT-2-shaped model (bundled GPT-2 tokenizer), one with NaN/Inf rows, and a 100-row one.
    u.save_gpt2_safetensors(base / "gpt2")
    f["gpt2"] = base / "gpt2"
    u.save_gpt2_safetensors(base / "nan", nan_rows=[5, 7], inf_rows=[9], snan_rows=[11], wpe_snan_rows=[3])
    f["nan"] = base / "nan"
    tiny = base / "tiny.safetensors"
    save_file(u.gpt2_tensors(vocab=100), str(tiny))
    f["tiny"] = tiny

    # --- spoiled copies of tiny.safetensors ---
    raw = tiny.read_bytes()
    hdr, data = u.header(tiny)
    (n,) = struct.unpack("<Q", raw[:8])
    f["n"], f["size"], f["D"] = n, len(raw), len(data)

    def put(name: str, content: bytes) -> None:
        (base / name).write_bytes(content)
        f[name.split(".")[0]] = base / name

    def edited(name: str, edit) -> None:
        f[name.split(".")[0]] = u.edit_header(tiny, base / name, edit)

    put("empty.safetensors", b"")
    put("short.safetensors", raw[:5])
    put("headcut.safetensors", raw[:8 + n // 2])
    f["headcut_size"] = 8 + n // 2
    put("datacut.safetensors", raw[:-100])
    cut = len(data) - 100
    first_past = next(k for k, v in hdr.items() if k != "__metadata__" and v["data_offsets"][1] > cut)
    f["cut_name"], f["cut_end"], f["cut_len"] = first_past, hdr[first_past]["data_offsets"][1], cut
    put("hlen.safetensors", struct.pack("<Q", len(raw)) + raw[8:])
    put("hhuge.safetensors", struct.pack("<Q", 2**63) + raw[8:])
    put("json.safetensors", raw[:8] + b"[" + raw[9:])
    put("notobj.safetensors", raw[:8] + b"[]" + b" " * (n - 2) + raw[8 + n:])
    digits = raw[8:8 + n].replace(b'"shape":[3,5,7]', b'"shape":[' + b"9" * 5000 + b",5,7]")
    put("digits.safetensors", struct.pack("<Q", len(digits)) + digits + data)
    edited("offout.safetensors", lambda h: h["vec"].update(data_offsets=[len(data), len(data) + 64]))
    wpe_start = hdr["transformer.wpe.weight"]["data_offsets"][0]
    edited("overlap.safetensors", lambda h: h["narrow"].update(data_offsets=[wpe_start, wpe_start + 2048]))
    wte_start = hdr["transformer.wte.weight"]["data_offsets"][0]

    def nested(h):  # vec inside wte, with an empty tensor between them in offset order
        h["vec"]["data_offsets"] = [wte_start + 64, wte_start + 128]
        h["z"] = {"dtype": "F32", "shape": [0], "data_offsets": [wte_start + 4, wte_start + 4]}
    edited("nested.safetensors", nested)
    edited("dtype.safetensors", lambda h: h["transformer.wte.weight"].update(dtype="F17"))
    edited("dtypelist.safetensors", lambda h: h["transformer.wte.weight"].update(dtype=[1]))
    edited("int.safetensors", lambda h: h["transformer.wte.weight"].update(dtype="I32"))
    edited("shape.safetensors", lambda h: h["transformer.wte.weight"].update(shape=[100, 17]))
    save_file({**u.gpt2_tensors(vocab=100), "transformer.wte.weight": np.zeros((0, 16), np.float32)},
              str(base / "zero.safetensors"))  # a valid file whose token matrix has no rows
    f["zero"] = base / "zero.safetensors"

    # --- model directories ---
    d = base / "noweights"
    d.mkdir()
    (d / "README.md").write_text("weights to follow\n")
    f["noweights"] = d
    small = base / "small"  # 100 token rows, GPT-2's 50257-id tokenizer beside them
    small.mkdir()
    shutil.copy(tiny, small / "model.safetensors")
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(GPT2_FILES / name, small / name)
    f["small"] = small
    f["gpt2files"] = GPT2_FILES
    bert = base / "bert"  # WordPiece: a query outside the vocabulary is [UNK]
    bert.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list("abcdefghijklmnopqrstuvwxyz") \
        + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"] + ["king", "queen"]
    (bert / "vocab.txt").write_text("\n".join(vocab) + "\n")
    t = u.gpt2_tensors(vocab=len(vocab))
    save_file({"embeddings.word_embeddings.weight": t["transformer.wte.weight"],
               "embeddings.position_embeddings.weight": t["transformer.wpe.weight"]}, str(bert / "model.safetensors"))
    u.write_json(bert / "config.json", {"model_type": "bert"})
    f["bert"] = bert
    unk = base / "unktok"  # a tokenizer.json whose unk token is missing from its vocabulary
    unk.mkdir()
    from tokenizers import Tokenizer, models

    Tokenizer(models.WordLevel(vocab={"a": 0, "b": 1}, unk_token="[UNK]")).save(str(unk / "tokenizer.json"))
    save_file({"transformer.wte.weight": t["transformer.wte.weight"][:2]}, str(unk / "model.safetensors"))
    f["unktok"] = unk
    roberta = base / "roberta"  # config.json with a pad_token_id that is not a number
    shutil.copytree(bert, roberta)
    u.write_json(roberta / "config.json", {"model_type": "roberta", "pad_token_id": "one"})
    f["roberta"] = roberta
    deep = base / "deep"
    shutil.copytree(bert, deep)
    (deep / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    f["deep"] = deep
    bos = base / "bos"
    shutil.copytree(base / "gpt2", bos)
    u.write_json(bos / "config.json", {"model_type": "gpt2", "bos_token_id": -5})
    f["bos"] = bos

    big = base / "big"  # finite rows whose float32 squares overflow (|x| up to 1e30)
    big.mkdir()
    t = u.gpt2_tensors(vocab=100)
    t["transformer.wte.weight"][3] *= 1e25
    t["transformer.wte.weight"][4] *= 1e30
    save_file({"transformer.wte.weight": t["transformer.wte.weight"]}, str(big / "model.safetensors"))
    f["big"] = big
    f["bignorm"] = f"{float(np.linalg.norm(t['transformer.wte.weight'][4].astype(np.float64))):.3g}"

    # --- nanoGPT: the real char-level checkpoint, and spoiled torch zips ---
    char = base / "char" / "a" / "b"
    char.mkdir(parents=True)
    f["char"], _ = save_char_nanogpt(char)
    meta = pickle.loads((char / "meta.pkl").read_bytes())
    bad_meta = dict(meta, stoi={**meta["stoi"], "a": -1})
    (base / "negmeta.pkl").write_bytes(pickle.dumps(bad_meta))
    f["negmeta"] = base / "negmeta.pkl"
    f["nchars"] = len(meta["itos"])
    with zipfile.ZipFile(base / "notorch.pt", "w") as z:
        z.writestr("hello.txt", "hello")
    f["notorch"] = base / "notorch.pt"
    torch.save({"foo": 1}, base / "foo.pt")
    f["foo"] = base / "foo.pt"
    (base / "ckpt.pt").write_bytes(b"")
    f["emptyckpt"] = base / "ckpt.pt"
    ckpt = base / "small.pt"
    u.save_nanogpt_ckpt(ckpt)
    entries = u.zip_entries(ckpt)
    f["prefix"] = prefix = next(k for k in entries if k.endswith("/data.pkl"))[: -len("data.pkl")]
    with zipfile.ZipFile(base / "deflated.pt", "w") as z:  # data.pkl deflated (a zip bomb could be)
        for k, v in entries.items():
            z.writestr(k, v, compress_type=zipfile.ZIP_DEFLATED if k.endswith("/data.pkl") else zipfile.ZIP_STORED)
    f["deflated"] = base / "deflated.pt"
    f["bigendian"] = u.replace_entry(ckpt, base / "bigendian.pt", "/byteorder", b"big")
    f["nostorage"] = base / "nostorage.pt"
    with zipfile.ZipFile(f["nostorage"], "w") as z:
        for k, v in entries.items():
            if k != prefix + "data/0":
                z.writestr(k, v)
    f["shortstorage"] = u.replace_entry(ckpt, base / "shortstorage.pt", "/data/0", entries[prefix + "data/0"][:-4])
    crc = bytearray(ckpt.read_bytes())
    start, end = u.entry_spans(ckpt)[prefix + "data.pkl"]
    crc[start + 10] ^= 0xFF
    (base / "crc.pt").write_bytes(bytes(crc))
    f["crc"] = base / "crc.pt"
    future = bytearray(ckpt.read_bytes())  # central directory: "version needed to extract" 6.4
    cd = struct.unpack("<I", future[future.rfind(b"PK\x05\x06") + 16:][:4])[0]
    future[cd + 6:cd + 8] = struct.pack("<H", 64)
    (base / "future.pt").write_bytes(bytes(future))
    f["future"] = base / "future.pt"
    f["hub"] = base / "empty-hub-cache"
    f["hub"].mkdir()
    return {k: str(v) for k, v in f.items()}


@pytest.fixture(autouse=True)
def _no_numpy_warnings():
    """A RuntimeWarning would reach a real stderr as two extra lines; pytest would swallow it."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    bad = [f"{w.filename}:{w.lineno}: {w.message}" for w in caught if issubclass(w.category, RuntimeWarning)]
    assert not bad, bad


E = "embscope: error: "

# (id, argv, exit status, stderr without the "embscope: error: " prefix, stdin)
CASES = [
    # --- where the model is ---
    ("missing path", ["info", "-m", "{base}/nope.safetensors"], 1, "{base}/nope.safetensors: no such file or directory", None),
    ("missing dir", ["info", "-m", "{base}/nope/"], 1, "{base}/nope/: no such file or directory", None),
    ("no weights", ["info", "-m", "{noweights}"], 1, "{noweights}: no model weights in this directory (looked for"
     " model.safetensors.index.json, model.safetensors, ckpt.pt, pytorch_model.bin.index.json, pytorch_model.bin)", None),
    ("unknown hub id offline", ["info", "-m", "nobody/nothing"], 1, "nobody/nothing: not a local path, and not in the"
     " Hugging Face cache (the hub is offline or unreachable)", None),
    # --- safetensors, spoiled ---
    ("empty file", ["info", "-m", "{empty}"], 1, "{empty}: not a valid safetensors file: 0 bytes is too short", None),
    ("5 bytes", ["info", "-m", "{short}"], 1, "{short}: not a valid safetensors file: 5 bytes is too short", None),
    ("header cut", ["info", "-m", "{headcut}"], 1, "{headcut}: not a valid safetensors file: header length {n} is"
     " larger than the file ({headcut_size} bytes)", None),
    ("data cut", ["info", "-m", "{datacut}"], 1, "{datacut}: not a valid safetensors file: tensor '{cut_name}' ends at"
     " byte {cut_end} of a {cut_len}-byte data buffer", None),
    ("header length = file size", ["info", "-m", "{hlen}"], 1, "{hlen}: not a valid safetensors file: header length"
     " {size} is larger than the file ({size} bytes)", None),
    ("header length 2**63", ["info", "-m", "{hhuge}"], 1, "{hhuge}: not a valid safetensors file: header length"
     " 9223372036854775808 is over the limit", None),
    ("invalid JSON", ["info", "-m", "{json}"], 1, "{json}: not a valid safetensors file: the header is not valid JSON", None),
    ("JSON not an object", ["info", "-m", "{notobj}"], 1, "{notobj}: not a valid safetensors file: the header is not a"
     " JSON object", None),
    ("5000-digit number", ["info", "-m", "{digits}"], 1, "{digits}: not a valid safetensors file: the header is not"
     " valid JSON", None),
    ("offsets outside the file", ["info", "-m", "{offout}"], 1, "{offout}: not a valid safetensors file: tensor 'vec'"
     " ends at byte {D_plus_64} of a {D}-byte data buffer", None),
    ("overlapping offsets", ["info", "-m", "{overlap}"], 1, "{overlap}: not a valid safetensors file: tensors 'narrow'"
     " and 'transformer.wpe.weight' overlap", None),
    ("overlap past an empty tensor", ["info", "-m", "{nested}"], 1, "{nested}: not a valid safetensors file: tensors"
     " 'transformer.wte.weight' and 'vec' overlap", None),
    ("unknown dtype", ["info", "-m", "{dtype}"], 1, "{dtype}: not a valid safetensors file: unknown dtype 'F17' for"
     " tensor 'transformer.wte.weight'", None),
    ("dtype not a string", ["info", "-m", "{dtypelist}"], 1, "{dtypelist}: not a valid safetensors file: unknown dtype"
     " [1] for tensor 'transformer.wte.weight'", None),
    ("integer dtype", ["info", "-m", "{int}"], 1, "{int}: tensor 'transformer.wte.weight' has dtype I32; embscope reads"
     " F32, F16, BF16 and F64 embeddings", None),
    ("shape and size disagree", ["info", "-m", "{shape}"], 1, "{shape}: not a valid safetensors file: tensor"
     " 'transformer.wte.weight' of shape (100, 17) F32 needs 6800 bytes, data_offsets give 6400", None),
    ("no token rows", ["info", "-m", "{zero}"], 1, "{zero}: tensor 'transformer.wte.weight' of shape (0, 16) is empty", None),
    # --- the wrong tensors ---
    ("wte 1-D", ["info", "-m", "{tiny}", "--wte-key", "vec"], 1, "{tiny}: tensor 'vec' has shape (16,); an embedding"
     " matrix is 2-D", None),
    ("wte 3-D", ["info", "-m", "{tiny}", "--wte-key", "cube"], 1, "{tiny}: tensor 'cube' has shape (3, 5, 7); an"
     " embedding matrix is 2-D", None),
    ("no such wte", ["info", "-m", "{tiny}", "--wte-key", "nope"], 1, "--wte-key: no tensor named 'nope' in the checkpoint", None),
    ("wte/wpe widths", ["info", "-m", "{tiny}", "--wpe-key", "narrow"], 1, "{tiny}: token embeddings are 16 wide but"
     " position embeddings 8: 'transformer.wte.weight' and 'narrow' do not belong together", None),
    # --- tokenizers that do not fit ---
    ("vocabulary smaller than the tokenizer", ["info", "-m", "{small}"], 1, "{small}: the tokenizer ({small}) has 50257"
     " ids but the model only 100 token embeddings: they do not belong together", None),
    ("--tokenizer too big", ["neighbors", "#1", "-m", "{tiny}", "--tokenizer", "{gpt2files}/vocab.json"], 1, "{tiny}:"
     " the tokenizer ({gpt2files}) has 50257 ids but the model only 100 token embeddings: they do not belong together", None),
    ("--tokenizer for a char model", ["info", "-m", "{char}", "--tokenizer", "{gpt2files}"], 1, "{char}: the tokenizer"
     " ({gpt2files}) has 50257 ids but the model only {nchars} token embeddings: they do not belong together", None),
    ("--tokenizer missing", ["info", "-m", "{tiny}", "--tokenizer", "{base}/nope.json"], 1,
     "{base}/nope.json: no such file or directory", None),
    ("--tokenizer of no known kind", ["info", "-m", "{tiny}", "--tokenizer", "{tiny}"], 1, "{tiny}: unknown tokenizer"
     " file (expected tokenizer.json, vocab.json, vocab.txt, meta.pkl, nanochat's tokenizer.pkl or llm.c's"
     " gpt2_tokenizer.bin)", None),
    ("meta.pkl with a negative id", ["info", "-m", "{char}", "--meta", "{negmeta}"], 1, "{negmeta}: not a nanoGPT"
     " meta.pkl ('stoi' and 'itos' do not number the same characters 0..{nchars_1})", None),
    ("tokenizer fails on the text", ["neighbors", "zzz", "-k", "1", "-m", "{unktok}"], 1, "{unktok}/tokenizer.json:"
     " the tokenizer cannot encode 'zzz' (WordLevel error: Missing [UNK] token from the vocabulary)", None),
    ("tokenizer fails on the text, embed", ["embed", "zzz", "-m", "{unktok}"], 1, "{unktok}/tokenizer.json: the"
     " tokenizer cannot encode 'zzz' (WordLevel error: Missing [UNK] token from the vocabulary)", None),
    # --- config.json ---
    ("pad_token_id not a number", ["info", "-m", "{roberta}"], 1, "config.json: 'pad_token_id' is 'one', not a number"
     " embscope can use", None),
    ("config.json nested 100000 deep", ["info", "-m", "{deep}"], 1, "{deep}/config.json: not readable JSON (nested too"
     " deeply)", None),
    ("negative bos_token_id", ["embed", "king", "--bos", "-m", "{bos}"], 1, "token id -5 is negative", None),
    # --- torch zips ---
    ("zip, not torch", ["info", "-m", "{notorch}"], 1, "{notorch}: a zip file, but not a torch checkpoint (no data.pkl)", None),
    ("ckpt.pt without 'model'", ["info", "-m", "{foo}"], 1, "{foo}: a torch checkpoint, but neither a state dict nor a"
     " checkpoint of nanoGPT, modded-nanogpt or PyTorch Lightning (no 'model' or 'state_dict' entry)", None),
    ("empty ckpt.pt", ["info", "-m", "{emptyckpt}"], 1, "{emptyckpt}: empty file", None),
    ("deflated entries", ["info", "-m", "{deflated}"], 1, "{deflated}: zip entry '{prefix}data.pkl' is compressed;"
     " torch never does that", None),
    ("zip from the future", ["info", "-m", "{future}"], 1, "{future}: not a readable zip archive (zip file version"
     " 6.4)", None),
    ("big-endian", ["info", "-m", "{bigendian}"], 1, "{bigendian}: big-endian torch checkpoints are not supported", None),
    ("storage missing", ["info", "-m", "{nostorage}"], 1, "{nostorage}: storage '0' is missing from the archive", None),
    ("storage too short", ["info", "-m", "{shortstorage}"], 1, "{shortstorage}: storage of"
     " 'transformer.wte.weight' has the wrong size", None),
    ("data.pkl CRC", ["info", "-m", "{crc}"], 1, "{crc}: corrupt zip entry '{prefix}data.pkl' (Bad CRC-32 for file"
     " '{prefix}data.pkl')", None),
    # --- queries ---
    ("WordPiece [UNK]", ["neighbors", "☃", "-m", "{bert}"], 1, "'☃' is not in the model's vocabulary", None),
    ("char-level unknown char", ["neighbors", "☃", "-m", "{char}"], 1, "character '☃' is not in the model's"
     " {nchars}-character vocabulary", None),
    ("char-level unknown char, embed", ["embed", "a☃", "-m", "{char}"], 1, "character '☃' is not in the model's"
     " {nchars}-character vocabulary", None),
    ("empty query", ["neighbors", "", "-m", "{gpt2}"], 2, "empty query", None),
    ("blank query", ["neighbors", "   ", "-m", "{gpt2}"], 2, "empty query", None),
    ("no query", ["neighbors", "-m", "{gpt2}"], 2, "give a query (a word, '#id', or '-' to read queries from stdin)", None),
    ("dangling operator", ["neighbors", "king -", "-m", "{gpt2}"], 2, "'king -': an operator '-' with nothing after it", None),
    ("id out of range", ["neighbors", "#50257", "-m", "{gpt2}"], 1, "token id #50257 is out of range (the model has"
     " 50257 tokens)", None),
    ("NaN query row", ["neighbors", "#5", "-m", "{nan}"], 1, "the query vector holds NaN or Inf (its token rows are not"
     " finite)", None),
    ("NaN query row, stdin", ["neighbors", "-", "-m", "{nan}"], 1, "stdin line 2: the query vector holds NaN or Inf"
     " (its token rows are not finite)", b"king\n#7\n"),
    ("id of 5000 digits", ["neighbors", "#" + "1" * 5000, "-m", "{gpt2}"], 1, "token id #111111111111... (5000"
     " digits) is out of range (the model has 50257 tokens)", None),
    ("dot scores overflow", ["neighbors", "#3", "--metric", "dot", "-m", "{big}"], 1, "--metric dot: vectors this"
     " long (norms up to {bignorm}) overflow float32 scores; use --metric cosine", None),
    ("euclidean scores overflow", ["neighbors", "#1", "--metric", "euclidean", "-m", "{big}"], 1, "--metric"
     " euclidean: vectors this long (norms up to {bignorm}) overflow float32 scores; use --metric cosine", None),
    ("empty text", ["embed", "", "-m", "{gpt2}"], 2, "empty text", None),
    ("invalid UTF-8 argument", ["neighbors", "ki\udcffng", "-m", "{gpt2}"], 2, "'ki\\xffng' is not valid UTF-8 text", None),
    ("invalid UTF-8 argument, embed", ["embed", "\udcc3", "-m", "{gpt2}"], 2, "'\\xc3' is not valid UTF-8 text", None),
    ("text longer than the positions", ["embed", "a" * 40, "-m", "{char}"], 1, "the text is 40 tokens but the model"
     " has only 32 positions (use --truncate to keep the first ones)", None),
    ("-k 0", ["neighbors", "king", "-k", "0", "-m", "{gpt2}"], 2, "--top must be at least 1 (got 0)", None),
    ("-k -3", ["neighbors", "king", "-k", "-3", "-m", "{gpt2}"], 2, "--top must be at least 1 (got -3)", None),
    ("-k beyond the vocabulary", ["neighbors", "king", "-k", "50258", "-m", "{gpt2}"], 2, "--top 50258 is more than"
     " the model's 50257 tokens", None),
    ("--range backwards", ["positions", "--range", "5:2", "-m", "{gpt2}"], 2, "--range '5:2': need 0 <= A < B <= 64"
     " (the model has 64 positions)", None),
    ("--range past the end", ["positions", "--range", "0:65", "-m", "{gpt2}"], 2, "--range '0:65': need 0 <= A < B <="
     " 64 (the model has 64 positions)", None),
    ("--range negative", ["positions", "--range=-5:2", "-m", "{gpt2}"], 2, "--range '-5:2': need 0 <= A < B <= 64"
     " (the model has 64 positions)", None),
    ("--range not A:B", ["positions", "--range", "abc", "-m", "{gpt2}"], 2, "--range 'abc': expected A:B, e.g. 0:256", None),
    ("--range 5000 digits", ["positions", "--range", "1:" + "9" * 5000, "-m", "{gpt2}"], 2,
     "--range '1:" + "9" * 5000 + "': expected A:B, e.g. 0:256", None),
    ("--rows backwards", ["neighbors", "--all", "--rows", "9:3", "-m", "{gpt2}"], 2, "--rows '9:3': need 0 <= A < B <="
     " 50257 (the model has 50257 tokens)", None),
    # --- stdin ---
    ("binary stdin, neighbors", ["neighbors", "-", "-m", "{gpt2}"], 1, "stdin is not UTF-8 text (byte 0)",
     b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"),
    ("binary stdin, embed", ["embed", "-", "-m", "{gpt2}"], 1, "stdin is not UTF-8 text (byte 4)",
     b"abcd\x89PNG\r\n\x1a\n"),
    ("NUL on stdin", ["neighbors", "-", "-m", "{gpt2}"], 1, "stdin holds binary data (a NUL byte), not one query per"
     " line", b"king\x00queen\n"),
    ("NUL on stdin, embed", ["embed", "-", "-m", "{gpt2}"], 1, "stdin holds binary data (a NUL byte), not one query"
     " per line", b"\x00" * 64),
    ("empty stdin", ["neighbors", "-", "-m", "{gpt2}"], 1, "no queries on stdin", b""),
    ("blank stdin, embed", ["embed", "-", "-m", "{gpt2}"], 1, "no text on stdin", b"\n  \n\t\n"),
    ("bad line in a batch", ["neighbors", "-", "-m", "{gpt2}"], 1, "stdin line 2: token id #99999 is out of range (the"
     " model has 50257 tokens)", b"king\n#99999\nqueen\n"),
]


def _fill(template: str, f: dict) -> str:
    values = {**f, "D_plus_64": int(f["D"]) + 64, "nchars_1": int(f["nchars"]) - 1}
    return template.format(**values) if "{" in template else template


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, files, capsys, monkeypatch, tmp_path):
    name, argv, status, message, stdin = case
    if name == "unknown hub id offline":
        import huggingface_hub.constants as constants

        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setenv("HF_HUB_CACHE", files["hub"])
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", files["hub"])
        monkeypatch.chdir(tmp_path)
    argv = [_fill(a, files) for a in argv]
    code, out, err = run(argv, capsys, stdin=stdin, monkeypatch=monkeypatch)
    expected = E + _fill(message, files) + "\n"
    assert (code, out, err) == (status, "", expected)


# --- NaN and Inf rows: reported, left out, no crash ---------------------------------------------

NAN_WARNING = "warning: 4 token rows hold NaN or Inf and are left out: #5, #7, #9, #11\n"  # (never before an error)


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
def test_nan_rows_neighbors(files, capsys, metric):
    code, out, err = run(["neighbors", "king", "-k", "50", "--metric", metric, "-m", files["nan"], "-f", "tsv"], capsys)
    assert (code, err) == (0, NAN_WARNING)
    ids = [int(r["id"]) for r in tsv(out)]
    assert len(ids) == 50 and not {5, 7, 9} & set(ids)


def test_nan_rows_analogy_cosmul(files, capsys):
    code, out, err = run(["neighbors", "king - man + woman", "--cosmul", "-k", "5", "-m", files["nan"], "-f", "tsv"],
                         capsys)
    assert (code, err) == (0, NAN_WARNING)
    assert len(tsv(out)) == 5


def test_nan_rows_batch(files, capsys, monkeypatch):
    for repeat in (1, 300):  # a few queries, and enough to score against a prepared dense copy
        code, out, err = run(["neighbors", "-", "-k", "3", "-m", files["nan"], "-f", "tsv"], capsys,
                             stdin="king\nqueen\n" * repeat, monkeypatch=monkeypatch)
        assert (code, err) == (0, NAN_WARNING)
        assert [r["query"] for r in tsv(out)] == (["king"] * 3 + ["queen"] * 3) * repeat


def test_nan_rows_knn_graph(files, capsys):
    """--all leaves the NaN/Inf rows out as queries too (they used to end the run with an error)."""
    code, out, err = run(["neighbors", "--all", "--rows", "0:12", "-k", "2", "-m", files["nan"], "-f", "tsv"], capsys)
    assert (code, err) == (0, NAN_WARNING)
    rows = tsv(out)
    assert sorted({int(r["id"]) for r in rows}) == [0, 1, 2, 3, 4, 6, 8, 10]
    assert not {5, 7, 9, 11} & {int(r["neighbor_id"]) for r in rows}


def test_nan_rows_norms(files, capsys):
    code, out, err = run(["norms", "-m", files["nan"], "-f", "tsv"], capsys)
    warning = "warning: 4 token rows hold NaN or Inf and are left out of the statistics: #5, #7, #9, #11\n"
    assert (code, err) == (0, warning)
    token, position = tsv(out)
    assert (token["rows"], token["count"], token["nonfinite"]) == ("token", "50253", "4")
    assert (position["rows"], position["count"], position["nonfinite"]) == ("position", "63", "1")
    code, out, err = run(["norms", "--centroid", "-m", files["nan"], "-f", "tsv"], capsys)
    assert (code, err) == (0, warning)
    assert not {"5", "7", "9", "11"} & {r["id"] for r in tsv(out)}


@pytest.mark.parametrize("metric", ["cosine", "dot", "euclidean"])
def test_nan_position_row(files, capsys, metric):
    """A (signalling) NaN in a position row: NaN cells for that position, nothing on stderr."""
    code, out, err = run(["positions", "--range", "2:5", "--metric", metric, "-m", files["nan"], "-f", "tsv"], capsys)
    assert (code, err) == (0, "")
    rows = {r["position"]: r for r in tsv(out)}
    assert rows["3"]["3"] == rows["2"]["3"] == rows["3"]["4"] == "nan"
    assert rows["2"]["4"] != "nan"


# --- things that are not errors ------------------------------------------------------------------

@pytest.mark.parametrize("query", ["[/x]", "[bold red]king[/]", "[link=http://x]k"])
@pytest.mark.parametrize("command", ["neighbors", "embed"])
def test_rich_markup_in_a_query_is_text(files, capsys, query, command):
    """The query is shown in the table's title: as text, not Rich markup ('[/x]' used to raise)."""
    code, out, err = run([command, query, "-m", files["gpt2"], "-f", "table"], capsys)
    assert code == 0
    assert query in out.splitlines()[0] or repr(query) in out.splitlines()[0]


def test_batch_query_column_is_escaped(files, capsys, monkeypatch):
    code, out, err = run(["neighbors", "-", "-k", "1", "-m", files["gpt2"], "-f", "tsv"], capsys,
                         stdin=b"king\x1b[2J\nque\xe2\x80\xaeen\n", monkeypatch=monkeypatch)
    assert code == 0
    assert [r["query"] for r in tsv(out)] == ["king\\x1b[2J", "que\\u202een"]


def test_every_case_checks_an_exact_line():
    """The table above is the contract: one line each, and no two cases alike."""
    assert len({c[0] for c in CASES}) == len(CASES)
    assert all("\n" not in c[3] for c in CASES)


def test_config_values_checked(tmp_path):
    from embscope.errors import EmbscopeError
    from embscope.families import detect_layout

    keys = ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
            "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias"]
    for config, message in [
        ({"model_type": "roberta", "pad_token_id": None}, "config.json: 'pad_token_id' is None, not a number embscope can use"),
        ({"model_type": "roberta", "pad_token_id": -3}, "config.json: 'pad_token_id' is -3, not a number embscope can use"),
        ({"layer_norm_eps": "tiny"}, "config.json: 'layer_norm_eps' is 'tiny', not a number embscope can use"),
        ({"layer_norm_eps": float("nan")}, "config.json: 'layer_norm_eps' is nan, not a number embscope can use"),
        ({"layer_norm_eps": [0] * 100},
         "config.json: 'layer_norm_eps' is [0, 0, 0, 0, 0, 0, ...], not a number embscope can use"),
    ]:
        with pytest.raises(EmbscopeError) as e:
            detect_layout(keys, config)
        assert str(e.value) == message
    assert detect_layout(keys, {"model_type": "roberta", "pad_token_id": 1}).position_offset == 2


def test_json_header_written_by_safetensors_still_reads(files):
    """The control for the spoiled copies: the original loads, with the values save_file wrote."""
    import numpy as np

    from embscope.model import load

    emb = load(files["tiny"])
    np.testing.assert_array_equal(emb.wte.to_float32(), u.gpt2_tensors(vocab=100)["transformer.wte.weight"])
    assert json.loads(json.dumps(u.header(files["tiny"])[0]))  # and its header is what edit_header edits


def test_broken_tokenizer_still_knows_its_words(files, capsys):
    """The same tokenizer fails on ' a' (the mid-sentence form tried first) but knows 'a'."""
    code, out, err = run(["neighbors", "a", "-k", "1", "-m", files["unktok"], "-f", "tsv"], capsys)
    assert (code, err) == (0, "")
    assert [r["id"] for r in tsv(out)] == ["1"]


def test_huge_finite_rows_cosine(files, capsys):
    """Rows with values near 1e30 are finite: not reported as NaN/Inf, and cosine ranks them right
    (their float32 norm used to overflow, which zeroed the query vector)."""
    wte = u.gpt2_tensors(vocab=100)["transformer.wte.weight"].astype(np.float64)
    wte[3] *= 1e25
    wte[4] *= 1e30
    w = wte.astype(np.float32).astype(np.float64)
    for query in (3, 4, 7):
        cos = w @ w[query] / np.linalg.norm(w, axis=1) / np.linalg.norm(w[query])
        cos[query] = -np.inf
        code, out, err = run(["neighbors", f"#{query}", "-k", "5", "-m", files["big"], "-f", "tsv"], capsys)
        assert (code, err) == (0, "")
        rows = tsv(out)
        assert [int(r["id"]) for r in rows] == np.argsort(-cos, kind="stable")[:5].tolist()
        np.testing.assert_allclose([float(r["score"]) for r in rows], np.sort(cos)[::-1][:5], rtol=1e-4)
