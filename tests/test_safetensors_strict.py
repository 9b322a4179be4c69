"""embscope's safetensors reader against the reference: the `safetensors` package.

Real files written by `safetensors.numpy.save_file` are mutated by a seeded loop (offsets shifted,
gaps and trailing bytes, dtypes, shapes, repeated keys, odd JSON, metadata, ...). A file the
reference refuses, embscope refuses with one line; a file the reference reads, embscope reads to
the same names, shapes, dtypes, metadata and values."""

from __future__ import annotations

import json
import random
import struct

import numpy as np
import pytest

from embscope.errors import EmbscopeError
from embscope.io.dtypes import RAW_DTYPES
from embscope.io.safetensors_file import SafetensorsFile
from tests.helpers import run

safetensors = pytest.importorskip("safetensors")
from safetensors import SafetensorError, safe_open  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

CASES_PER_SOURCE = 400
DTYPES = ["F32", "F16", "F64", "BF16", "I32", "I64", "U8", "BOOL", "F4", "F6_E2M3", "F8_E4M3", "C64",
          "F8_E5M2FNUZ", "f32", "F17", "", "Q4"]


def sources(tmp_path_factory) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    d = tmp_path_factory.mktemp("st-sources")
    tensors = {
        "gpt2": {"transformer.wte.weight": rng.standard_normal((50, 8)).astype(np.float32),  # (V, d)
                 "transformer.wpe.weight": rng.standard_normal((16, 8)).astype(np.float32),  # (P, d)
                 "half": rng.standard_normal((6, 4)).astype(np.float16),
                 "wide": rng.standard_normal((3, 2)).astype(np.float64),
                 "ids": np.arange(5, dtype=np.int64), "vec": rng.standard_normal(8).astype(np.float32),
                 "cube": rng.standard_normal((2, 3, 4)).astype(np.float32)},
        "edges": {"empty": np.zeros((0, 8), np.float32), "scalar": np.array(3.5, dtype=np.float32),
                  "mask": np.array([True, False, True]), "row": rng.standard_normal((1, 8)).astype(np.float32),
                  "bytes": np.arange(7, dtype=np.uint8)},
        # equal byte lengths: swapped offsets are a valid file whose values moved
        "twins": {"a": rng.standard_normal((4, 4)).astype(np.float32),
                  "b": rng.standard_normal((4, 4)).astype(np.float32),
                  "h": rng.standard_normal((8, 4)).astype(np.float16), "v": rng.standard_normal(16).astype(np.float32)},
    }
    out = {}
    for name, t in tensors.items():
        path = d / f"{name}.safetensors"
        save_file(t, str(path), metadata={"format": "pt", "source": name} if name == "gpt2" else None)
        out[name] = path.read_bytes()
    return out


@pytest.fixture(scope="module")
def source_files(tmp_path_factory):
    return sources(tmp_path_factory)


# --- the two readers ---------------------------------------------------------------------------

def reference(path) -> dict | None:
    """What `safetensors` reads: {name: (dtype, shape, float values or None)}, metadata; None if refused."""
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            got = {}
            for name in f.keys():
                sl = f.get_slice(name)
                dtype, shape = sl.get_dtype(), tuple(sl.get_shape())
                values = f.get_tensor(name).astype(np.float32) if dtype in ("F32", "F16", "F64") else None
                got[name] = (dtype, shape, values)
            return {"tensors": got, "metadata": meta}
    except SafetensorError:
        return None


def embscope_reads(path) -> dict:
    st = SafetensorsFile(str(path))
    got = {}
    for name, info in st.tensors.items():
        values = None
        if info.dtype in RAW_DTYPES and len(info.shape) == 2:
            values = st.matrix(name).to_float32()
        elif info.dtype in RAW_DTYPES and len(info.shape) == 1:
            values = st.vector(name)
        got[name] = (info.dtype, info.shape, values)
    return {"tensors": got, "metadata": st.metadata}


def assert_same(ref: dict, ours: dict) -> None:
    assert ours["metadata"] == ref["metadata"]
    assert sorted(ours["tensors"]) == sorted(ref["tensors"])
    for name, (dtype, shape, values) in ref["tensors"].items():
        o_dtype, o_shape, o_values = ours["tensors"][name]
        assert (o_dtype, o_shape) == (dtype, shape), name
        if values is not None and o_values is not None:
            np.testing.assert_array_equal(o_values.reshape(shape), values, err_msg=name)


# --- mutations -----------------------------------------------------------------------------------

def split(raw: bytes) -> tuple[dict, bytes, bytes]:
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8:8 + n]), raw[8:8 + n], raw[8 + n:]


def assemble(header_text: bytes, data: bytes) -> bytes:
    return struct.pack("<Q", len(header_text)) + header_text + data


def dumps(header: dict) -> bytes:
    return json.dumps(header, separators=(",", ":")).encode()


def mutate(raw: bytes, rnd: random.Random) -> tuple[str, bytes]:
    """One random edit of a real file: (what was done, the new file's bytes)."""
    header, text, data = split(raw)
    names = [k for k in header if k != "__metadata__"]
    name = rnd.choice(names)
    entry = header[name]
    k = rnd.choice([1, 2, 4, 8, 16, 64])
    kind = rnd.choice(MUTATIONS)
    if kind == "shift":  # one tensor's span moved, its length kept
        s, e = entry["data_offsets"]
        delta = rnd.choice([-k, k])
        entry["data_offsets"] = [s + delta, e + delta]
    elif kind == "end":
        entry["data_offsets"][1] += rnd.choice([-k, k])
    elif kind == "swap":  # two spans swapped: valid when the lengths agree, then the values move
        other = header[rnd.choice(names)]
        entry["data_offsets"], other["data_offsets"] = other["data_offsets"], entry["data_offsets"]
    elif kind == "gap":  # k bytes inserted before a tensor, every later offset moved by k
        s = entry["data_offsets"][0]
        for n in names:
            header[n]["data_offsets"] = [o + k if o >= s and (o > s or n == name or header[n]["data_offsets"][1] > s)
                                         else o for o in header[n]["data_offsets"]]
        data = data[:s] + bytes(k) + data[s:]
    elif kind == "trailing":
        data = data + bytes(rnd.randrange(1, 33))
    elif kind == "cut":
        data = data[:-k]
    elif kind == "drop":  # a tensor left out of the header: its bytes belong to no tensor
        del header[name]
    elif kind == "dtype":
        entry["dtype"] = rnd.choice(DTYPES)
    elif kind == "shape":
        shape = entry["shape"]
        entry["shape"] = rnd.choice([shape + [1], shape[:-1], [1] + shape, [0] + shape, shape[::-1],
                                     [x * 2 for x in shape], [2**32, 2**32, 0], [0, 2**32, 2**32], [2**64 - 1],
                                     [2**61], [-1] + shape, [True] * len(shape), [float(x) for x in shape]])
    elif kind == "metadata":
        header["__metadata__"] = rnd.choice([None, {}, {"a": "b"}, {"a": 1}, {"a": None}, [], "x", {"a": ["b"]}])
    elif kind == "extra":  # unknown fields: ignored by the reference, whatever they hold
        entry[rnd.choice(["x", "dtype_", "__metadata__"])] = rnd.choice([1, -1, 1.5, None, [1, [2]], {"a": {}}, "s"])
    elif kind == "as_list":  # serde reads a struct from a list of its fields
        header[name] = [entry["dtype"], entry["shape"], entry["data_offsets"]] + ([] if rnd.random() < 0.6 else [0])
    elif kind == "offsets_form":
        entry["data_offsets"] = rnd.choice([entry["data_offsets"] + [0], entry["data_offsets"][:1],
                                            [float(o) for o in entry["data_offsets"]], {"0": 0},
                                            entry["data_offsets"][::-1], [-o for o in entry["data_offsets"]]])
    elif kind == "missing":
        del entry[rnd.choice(["dtype", "shape", "data_offsets"])]
    elif kind == "empty_tensor":  # a 0-element tensor put at some offset (inside another, or between)
        where = rnd.choice([0, len(data), header[rnd.choice(names)]["data_offsets"][rnd.randrange(2)],
                            rnd.randrange(len(data) + 1)])
        header["zz"] = {"dtype": "F32", "shape": [0, 3], "data_offsets": [where, where]}
    text = dumps(header)
    if kind == "text":  # an edit of the header's JSON text itself
        edit = rnd.choice(sorted(TEXT_EDITS))
        kind, text = f"text:{edit}", TEXT_EDITS[edit](text, name, rnd)
    return kind, assemble(text, data)


MUTATIONS = ["shift", "end", "swap", "gap", "trailing", "cut", "drop", "dtype", "shape", "metadata", "extra",
             "as_list", "offsets_form", "missing", "empty_tensor", "text", "text", "text"]


def _repeat_entry(text: bytes, name: str, rnd: random.Random) -> bytes:
    entry = json.dumps({name: {"dtype": rnd.choice(["F32", "F17"]), "shape": [1], "data_offsets": [0, 4]}},
                       separators=(",", ":")).encode()[1:-1]
    return text[:1] + entry + b"," + text[1:]


def _repeat_field(text: bytes, name: str, rnd: random.Random) -> bytes:
    return text.replace(b'"dtype":', b'"dtype":"F32","dtype":', 1)


def _repeat_metadata(text: bytes, name: str, rnd: random.Random) -> bytes:
    return text[:1] + b'"__metadata__":{"k":"v","k":"w"},"__metadata__":null,'[: rnd.choice([33, 54])] + text[1:]


def _deep(text: bytes, name: str, rnd: random.Random) -> bytes:
    depth = rnd.choice([124, 125, 126, 127])  # the entry sits at depth 2: 125 more parse, 126 do not
    return text.replace(b'"dtype":', b'"x":' + b"[" * depth + b"]" * depth + b',"dtype":', 1)


TEXT_EDITS = {
    "pad_spaces": lambda t, n, r: t + b" " * r.randrange(1, 9),
    "pad_nul": lambda t, n, r: t + b"\x00" * r.randrange(1, 9),
    "lead_space": lambda t, n, r: b" \n\t" + t,
    "bom": lambda t, n, r: b"\xef\xbb\xbf" + t,
    "garbage": lambda t, n, r: t + b"x",
    "flip": lambda t, n, r: (lambda i: t[:i] + bytes([t[i] ^ (1 << r.randrange(8))]) + t[i + 1:])(r.randrange(len(t))),
    "nan": lambda t, n, r: t.replace(b'"dtype":', b'"x":' + r.choice([b"NaN", b"Infinity", b"1e400", b"-0", b"9" * 30])
                                     + b',"dtype":', 1),
    "minus_zero_shape": lambda t, n, r: t.replace(b'"shape":[', b'"shape":[-0,', 1),
    "float_shape": lambda t, n, r: t.replace(b'"shape":[', b'"shape":[1.0,', 1),
    "surrogate": lambda t, n, r: t.replace(b'"' + n.encode() + b'"', b'"\\ud800' + n.encode() + b'"', 1),
    "pair": lambda t, n, r: t.replace(b'"' + n.encode() + b'"', b'"\\ud83d\\ude00' + n.encode() + b'"', 1),
    "ctrl": lambda t, n, r: t.replace(b'"' + n.encode() + b'"', b'"\x01' + n.encode() + b'"', 1),
    "repeat_entry": _repeat_entry,
    "repeat_field": _repeat_field,
    "repeat_metadata": _repeat_metadata,
    "deep": _deep,
}


# --- the differential loop -----------------------------------------------------------------------

def one_line_refusal(path, capsys) -> None:
    code, out, err = run(["info", "-m", str(path)], capsys)
    assert (code, out) == (1, ""), err
    assert err.startswith(f"embscope: error: {path}: not a valid safetensors file: ")
    assert err.count("\n") == 1 and err.endswith("\n")


@pytest.mark.parametrize("source", ["gpt2", "edges", "twins"])
def test_embscope_refuses_and_reads_what_the_reference_does(source, source_files, tmp_path, capsys):
    rnd = random.Random(f"embscope-{source}")
    outcomes: dict[str, list[int]] = {}
    for case in range(CASES_PER_SOURCE):
        kind, raw = mutate(source_files[source], rnd)
        path = tmp_path / f"{case:04d}-{kind}.safetensors"
        path.write_bytes(raw)
        ref = reference(path)
        outcomes.setdefault(kind, [0, 0])[ref is None] += 1
        if ref is None:
            with pytest.raises(EmbscopeError):
                SafetensorsFile(str(path))
            one_line_refusal(path, capsys)
        else:
            try:
                ours = embscope_reads(path)
            except EmbscopeError as e:
                pytest.fail(f"{path.name}: the reference reads it, embscope says: {e}")
            assert_same(ref, ours)
        path.unlink()
    accepted = sum(a for a, _ in outcomes.values())
    refused = sum(r for _, r in outcomes.values())
    assert accepted > 40 and refused > 150, outcomes  # both outcomes well covered
    for kind in ("gap", "trailing", "drop"):
        assert outcomes[kind][1] > 0, outcomes


def test_the_sources_read_the_same(source_files, tmp_path):
    for name, raw in source_files.items():
        path = tmp_path / f"{name}.safetensors"
        path.write_bytes(raw)
        assert_same(reference(path), embscope_reads(path))


# --- the cases, with their messages ------------------------------------------------------

def edited(source_files, tmp_path, edit) -> str:
    header, _, data = split(source_files["gpt2"])
    data = edit(header, data)
    path = tmp_path / "edited.safetensors"
    path.write_bytes(assemble(dumps(header), data))
    return str(path)


def refused_by_both(path: str, capsys) -> str:
    assert reference(path) is None
    code, out, err = run(["info", "-m", path], capsys)
    assert (code, out) == (1, "")
    return err.removeprefix(f"embscope: error: {path}: not a valid safetensors file: ").rstrip("\n")


def test_a_16_byte_gap_is_refused(source_files, tmp_path, capsys):
    def gap(header, data):
        s = header["vec"]["data_offsets"][0]
        for n, e in header.items():
            if n != "__metadata__":
                e["data_offsets"] = [o + 16 if o >= s and e["data_offsets"][1] > s else o for o in e["data_offsets"]]
        return data[:s] + bytes(16) + data[s:]
    path = edited(source_files, tmp_path, gap)
    s = split(source_files["gpt2"])[0]["vec"]["data_offsets"][0]
    assert refused_by_both(path, capsys) == f"bytes {s}..{s + 16} of the data buffer belong to no tensor" \
                                            " (a gap before tensor 'vec')"


def test_trailing_bytes_are_refused(source_files, tmp_path, capsys):
    path = edited(source_files, tmp_path, lambda h, data: data + b"\0" * 5)
    n = len(split(source_files["gpt2"])[2])
    assert refused_by_both(path, capsys) == f"bytes {n}..{n + 5} of the data buffer belong to no tensor" \
                                            " (after the last tensor)"


def test_an_empty_tensor_inside_another_is_refused(source_files, tmp_path, capsys):
    def inside(header, data):
        s = header["transformer.wte.weight"]["data_offsets"][0]
        header["z"] = {"dtype": "F32", "shape": [0], "data_offsets": [s + 4, s + 4]}
        return data
    assert refused_by_both(edited(source_files, tmp_path, inside), capsys) == \
        "empty tensor 'z' lies inside tensor 'transformer.wte.weight'"


@pytest.mark.parametrize("shape, dtype, message", [
    ([3], "F4", "tensor 'vec' of shape (3,) F4 is 12 bits, not a whole number of bytes"),
    ([2**32, 2**32, 0], "F32", "tensor 'vec' of shape (4294967296, 4294967296, 0) has more than 2**64 elements"),
    ([2**61], "F32", "tensor 'vec' of shape (2305843009213693952,) F32 is more than 2**64 bits"),
])
def test_sizes_the_reference_cannot_compute_are_refused(source_files, tmp_path, capsys, shape, dtype, message):
    path = edited(source_files, tmp_path, lambda h, data: h["vec"].update(shape=shape, dtype=dtype) or data)
    assert refused_by_both(path, capsys) == message


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace(b'"dtype":', b'"dtype":"F32","dtype":', 1), "tensor '{first}' has dtype twice"),
    (lambda t: b'{"__metadata__":null,' + t[1:], "__metadata__ appears twice"),
    (lambda t: t.replace(b'"shape":[', b'"shape":[-0,', 1), "bad shape for tensor '{first}'"),
    (lambda t: t.replace(b'"dtype":', b'"x":NaN,"dtype":', 1), "the header is not valid JSON"),
    (lambda t: t.replace(b'"dtype":', b'"x":' + b"[" * 126 + b"]" * 126 + b',"dtype":', 1),
     "the header is not valid JSON"),
    (lambda t: t.replace(b'"vec"', b'"\\ud800vec"', 1), "the header is not valid JSON"),
    (lambda t: b"\xef\xbb\xbf" + t, "the header is not valid JSON"),
    (lambda t: t + b"\x00", "the header is not valid JSON"),
])
def test_json_the_reference_refuses(source_files, tmp_path, capsys, edit, message):
    header, text, data = split(source_files["gpt2"])
    path = tmp_path / "edited.safetensors"
    path.write_bytes(assemble(edit(text.rstrip(b" ")), data))
    first = next(name for name in header if name != "__metadata__")  # the first entry in the text
    assert refused_by_both(str(path), capsys) == message.format(first=first)


@pytest.mark.parametrize("edit", [
    lambda t: t.replace(b'"dtype":', b'"x":' + b"[" * 125 + b"]" * 125 + b',"dtype":', 1),
    lambda t: t.replace(b'"dtype":', b'"x":' + b"9" * 30 + b',"dtype":', 1),
    lambda t: t.replace(b'"dtype":', b'"note":{"a":[1,2.5,null]},"dtype":', 1),
    lambda t: t + b" \t\n\r",
], ids=["125 deep", "30-digit number", "unknown field", "whitespace"])
def test_json_the_reference_reads(source_files, tmp_path, edit):
    header, text, data = split(source_files["gpt2"])
    path = tmp_path / "edited.safetensors"
    path.write_bytes(assemble(edit(text.rstrip(b" ")), data))
    ref = reference(path)
    assert ref is not None
    assert_same(ref, embscope_reads(path))


def test_metadata_null_and_a_list_entry_read_as_the_reference_does(source_files, tmp_path):
    def edit(header, data):
        header["__metadata__"] = None
        header["vec"] = [header["vec"]["dtype"], header["vec"]["shape"], header["vec"]["data_offsets"]]
        return data
    path = edited(source_files, tmp_path, edit)
    ref = reference(path)
    assert ref is not None and ref["metadata"] == {}
    assert_same(ref, embscope_reads(path))
