"""Fuzzing the readers: mutated safetensors files, torch zips and meta.pkl, and random pickles.

The only outcomes allowed are a load (with the token matrix equal to the original's when the
mutation left its bytes and everything that locates them alone) or embscope's own
EmbscopeError; any other exception, or a load that takes more than a few seconds, fails.

Two hypothesis profiles: "ci" (the default; a few hundred cases per test, derandomised, ~15 s)
and "long" (EMBSCOPE_FUZZ=long: many thousands per test, random, for a background run):

    EMBSCOPE_FUZZ=long nice python -m pytest tests/test_fuzz.py -q --hypothesis-show-statistics
"""

from __future__ import annotations

import itertools
import os
import pickle
import pickletools
import struct
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from embscope.errors import EmbscopeError
from embscope.model import load
from embscope.tokenizer import CharTokenizer, from_meta_pkl
from tests import nanogpt
from tests import untrusted as u
from tests.helpers import run, time_limit

_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture,
           HealthCheck.filter_too_much]
settings.register_profile("embscope-fuzz-ci", max_examples=150, deadline=None, database=None, derandomize=True,
                          suppress_health_check=_HEALTH)
settings.register_profile("embscope-fuzz-long", max_examples=int(os.environ.get("EMBSCOPE_FUZZ_EXAMPLES", 20_000)),
                          deadline=None, database=None, suppress_health_check=_HEALTH, print_blob=True)
PROFILE = settings.get_profile("embscope-fuzz-" + ("long" if os.environ.get("EMBSCOPE_FUZZ") == "long" else "ci"))
FEW = settings(PROFILE, max_examples=max(10, PROFILE.max_examples // 5))  # the slower, CLI-level tests
TIME_LIMIT = 10  # seconds per case: a hang fails the case instead of the run


# Outcomes per test ("loaded", "refused"), printed at the end of the module (see with -s) and
# written as JSON to $EMBSCOPE_FUZZ_REPORT when set: how many cases ran, and what they did.
OUTCOMES: dict[str, dict[str, int]] = {}


def count(outcome: str) -> None:
    name = os.environ.get("PYTEST_CURRENT_TEST", "?").split(" ")[0].split("::")[-1]
    OUTCOMES.setdefault(name, {}).setdefault(outcome, 0)
    OUTCOMES[name][outcome] += 1
    if os.environ.get("EMBSCOPE_FUZZ_REPORT") and sum(OUTCOMES[name].values()) % 1000 == 0:
        _write_report()  # a long run cut short still says how far it got


def _write_report() -> None:
    import json

    Path(os.environ["EMBSCOPE_FUZZ_REPORT"]).write_text(json.dumps(OUTCOMES, indent=1))


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    import sys

    total = sum(sum(v.values()) for v in OUTCOMES.values())
    sys.stderr.write(f"\nfuzz ({PROFILE.max_examples} examples per test): {total} cases\n")
    for name, outcomes in sorted(OUTCOMES.items()):
        sys.stderr.write(f"  {name}: {outcomes}\n")
    if os.environ.get("EMBSCOPE_FUZZ_REPORT"):
        _write_report()


# --- base files ----------------------------------------------------------------------------------

VOCAB, DIM, POS = 40, 8, 16


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> dict:
    """The valid files the mutations start from, with what each holds and where."""
    import torch
    from safetensors.numpy import save_file

    root = tmp_path_factory.mktemp("fuzz-base")
    rng = np.random.default_rng(0)
    out = {"root": root, "counter": itertools.count()}

    tensors = {
        "transformer.wte.weight": rng.standard_normal((VOCAB, DIM)).astype(np.float32),  # (V, d)
        "transformer.wpe.weight": rng.standard_normal((POS, DIM)).astype(np.float16),  # (P, d)
        "transformer.ln_f.weight": rng.standard_normal(DIM).astype(np.float32),
        "extra": rng.standard_normal((4, DIM)).astype(np.float32),
    }
    st_path = root / "model.safetensors"
    save_file(tensors, str(st_path), metadata={"format": "pt"})
    raw = st_path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    wte = u.tensor_span(st_path, "transformer.wte.weight")
    # Bytes that do not locate or hold wte: the other tensors' data.
    others = [u.tensor_span(st_path, k) for k in tensors if k != "transformer.wte.weight"]
    out["safetensors"] = dict(raw=raw, wte=tensors["transformer.wte.weight"], hot=[(0, 8 + n), wte], safe=others)

    # nanoGPT checkpoints: a small one, and train.py's own (with AdamW state, `_orig_mod.` keys).
    for name, write in [
        ("small", lambda p: u.save_nanogpt_ckpt(p, u.small_state(vocab=VOCAB, n_pos=POS, dim=DIM))),
        ("trained", lambda p: nanogpt.train_checkpoint(
            p, vocab_size=VOCAB, data=torch.randint(VOCAB, (500,), generator=torch.Generator().manual_seed(0)),
            dataset="fuzz", n_embd=DIM, block_size=POS, compile=True)),
    ]:
        path = root / f"{name}.pt"
        write(path)
        raw = path.read_bytes()
        emb = load(str(path))
        wte_bytes = np.asarray(emb.wte.to_float32()).tobytes()
        spans = u.entry_spans(path)
        entries = u.zip_entries(path)
        wte_entry = next(k for k, v in entries.items() if v == wte_bytes)
        pkl = next(k for k in entries if k.endswith("/data.pkl"))
        end = raw.rfind(b"PK\x05\x06")  # end of central directory record: where the directory starts
        central = struct.unpack("<I", raw[end + 16:end + 20])[0]
        storages = [s for k, s in spans.items() if "/data/" in k and k != wte_entry]
        out[name] = dict(raw=raw, wte=np.asarray(emb.wte.to_float32()).copy(),
                         hot=[spans[pkl], (central, len(raw)), spans[wte_entry]], safe=storages)
        del emb

    meta = nanogpt.char_meta("First Citizen:\nBefore we proceed any further, hear me speak.\n")
    out["meta"] = pickle.dumps(meta)
    return out


def fresh(base, suffix: str, content: bytes) -> Path:
    """A new file per case (a mapped file is never rewritten under a live memory map); the
    previous case's file is removed (unlinking a mapped file is safe)."""
    import shutil

    if base.get("last"):
        shutil.rmtree(base["last"], ignore_errors=True)
    d = base["root"] / f"case{next(base['counter'])}"
    d.mkdir()
    base["last"] = d
    path = d / suffix
    path.write_bytes(content)
    return path


# --- mutations -----------------------------------------------------------------------------------

INTERESTING = [0, 1, 2, 7, 8, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53,
               2**63 - 1, 2**63, 2**64 - 1]


@st.composite
def mutation(draw, size: int, hot: list[tuple[int, int]]):
    """A list of edits [(kind, position, payload)], positions often inside the `hot` ranges."""

    def position():
        if hot and draw(st.booleans()):
            a, b = draw(st.sampled_from(hot))
            return draw(st.integers(a, max(a, b - 1)))
        return draw(st.integers(0, max(0, size - 1)))

    kinds = st.sampled_from(["flip", "set", "word", "insert", "delete", "truncate"])
    edits = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(kinds)
        if kind == "flip":
            edits.append((kind, position(), draw(st.integers(1, 255))))
        elif kind == "set":
            edits.append((kind, position(), draw(st.integers(0, 255))))
        elif kind == "word":  # a length or offset field set to an edge value
            width = draw(st.sampled_from([2, 4, 8]))
            value = draw(st.sampled_from(INTERESTING + [size, size - 1, size + 1])) % (1 << (8 * width))
            edits.append((kind, position(), value.to_bytes(width, "little")))
        elif kind == "insert":
            edits.append((kind, position(), draw(st.binary(min_size=1, max_size=16))))
        elif kind == "delete":
            edits.append((kind, position(), draw(st.integers(1, 64))))
        else:
            edits.append((kind, position(), None))
    return edits


def apply(raw: bytes, edits) -> bytes:
    b = bytearray(raw)
    for kind, pos, arg in edits:
        pos = min(pos, max(0, len(b) - 1))
        if not b and kind != "insert":
            continue
        if kind == "flip":
            b[pos] ^= arg
        elif kind == "set":
            b[pos] = arg
        elif kind == "word":
            b[pos:pos + len(arg)] = arg[: max(0, len(b) - pos)]
        elif kind == "insert":
            b[pos:pos] = arg
        elif kind == "delete":
            del b[pos:pos + arg]
        else:
            del b[pos:]
    return bytes(b)


def within(edits, spans) -> bool:
    """Every edit keeps the length and lands inside one of `spans`."""
    def inside(a, b):
        return any(s <= a and b <= e for s, e in spans)
    return all(kind in ("flip", "set", "word") and inside(pos, pos + (len(arg) if kind == "word" else 1))
               for kind, pos, arg in edits)


def load_or_refuse(path: Path):
    """load(path) and read every value it hands out; None when embscope refuses the file."""
    with time_limit(TIME_LIMIT):
        try:
            emb = load(str(path))
        except EmbscopeError as e:
            assert str(e)
            count("refused")
            return None
        count("loaded")
        wte = np.array(emb.wte.to_float32())  # touches every mapped byte
        if emb.wpe is not None:
            np.array(emb.wpe.to_float32())
        assert wte.ndim == 2 and 0 not in wte.shape
        return wte


def check(base, kind: str, suffix: str, edits):
    info = base[kind]
    path = fresh(base, suffix, apply(info["raw"], edits))
    wte = load_or_refuse(path)
    if within(edits, info["safe"]):  # nothing that locates or holds wte changed
        assert wte is not None, "a harmless edit made the file unreadable"
        np.testing.assert_array_equal(wte, info["wte"])


# --- the tests -----------------------------------------------------------------------------------

def _sizes(base, kind):
    return len(base[kind]["raw"]), base[kind]["hot"]


def test_safetensors_bytes(base):
    @PROFILE
    @given(mutation(*_sizes(base, "safetensors")))
    def inner(edits):
        check(base, "safetensors", "model.safetensors", edits)

    inner()


def test_safetensors_harmless_edits_keep_wte(base):
    """Edits inside the other tensors' bytes: always loads, wte unchanged."""
    spans = base["safetensors"]["safe"]

    @PROFILE
    @given(st.lists(st.tuples(st.sampled_from(spans), st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=8))
    def inner(flips):
        edits = [("flip", a + off % (b - a), mask) for (a, b), off, mask in flips]
        check(base, "safetensors", "model.safetensors", edits)

    inner()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


@st.composite
def header_edit(draw):
    """A semantic edit of the header: one field of one entry replaced, an entry dropped or added."""
    name = draw(st.sampled_from(["transformer.wte.weight", "transformer.wpe.weight", "transformer.ln_f.weight",
                                 "extra", "__metadata__", "new"]))
    action = draw(st.sampled_from(["dtype", "shape", "offsets", "entry", "drop"]))
    if action == "dtype":
        value = draw(st.sampled_from(["F32", "F16", "BF16", "F64", "I8", "U8", "BOOL", "F8_E4M3", "F4", "C64",
                                      "F17", "", "f32"]) | JSON_VALUES)
    elif action == "shape":
        value = draw(st.lists(st.sampled_from([0, 1, 2, 4, 8, 16, 40, 2**31, 2**62, -1]), max_size=4) | JSON_VALUES)
    elif action == "offsets":
        value = draw(st.lists(st.integers(-2, 2**64), min_size=2, max_size=2) | JSON_VALUES)
    else:
        value = draw(JSON_VALUES)
    return name, action, value


def test_safetensors_header_edits(base):
    raw = base["safetensors"]["raw"]
    (n,) = struct.unpack("<Q", raw[:8])

    @PROFILE
    @given(st.lists(header_edit(), min_size=1, max_size=3))
    def inner(edits):
        import json

        hdr, data = json.loads(raw[8:8 + n]), raw[8 + n:]
        for name, action, value in edits:
            if action == "drop":
                hdr.pop(name, None)
            elif action == "entry" or not isinstance(hdr.get(name), dict):
                hdr[name] = value
            else:
                hdr[name][{"offsets": "data_offsets"}.get(action, action)] = value
        path = fresh(base, "model.safetensors", u.with_header(hdr, data))
        load_or_refuse(path)

    inner()


@pytest.mark.parametrize("kind", ["small", "trained"])
def test_torch_zip_bytes(base, kind):
    @PROFILE
    @given(mutation(*_sizes(base, kind)))
    def inner(edits):
        check(base, kind, "ckpt.pt", edits)

    inner()


# Pickle opcodes with small plausible arguments: a grammar-free soup that still gets past the
# first few bytes often enough to reach the interesting opcodes.
_OPS = [op for op in pickletools.opcodes]


@st.composite
def pickle_soup(draw):
    out = bytearray(b"\x80" + bytes([draw(st.integers(0, 5))]))
    for _ in range(draw(st.integers(0, 40))):
        op = draw(st.sampled_from(_OPS))
        out += op.code.encode("latin-1")
        arg = op.arg
        if arg is None:
            continue
        if arg.n > 0:
            out += draw(st.binary(min_size=arg.n, max_size=arg.n))
        elif arg.n == pickletools.UP_TO_NEWLINE:
            out += draw(st.sampled_from([b"0\n", b"1\n", b"'a'\n", b"posix\nsystem\n", b"torch\nFloatStorage\n",
                                         b"collections\nOrderedDict\n", b"L10\n", b"1.5\n"]))
        else:  # length-prefixed: a small length and that many bytes, or a lie about the length
            width = {pickletools.TAKEN_FROM_ARGUMENT1: 1, pickletools.TAKEN_FROM_ARGUMENT4: 4,
                     pickletools.TAKEN_FROM_ARGUMENT4U: 4, pickletools.TAKEN_FROM_ARGUMENT8U: 8}[arg.n]
            length = draw(st.integers(0, 6))
            claimed = draw(st.sampled_from([length, length, 2**(8 * width - 1) - 1]))
            out += claimed.to_bytes(width, "little") + draw(st.binary(min_size=length, max_size=length))
    if draw(st.booleans()):
        out += b"."
    return bytes(out)


def test_meta_pkl_random_bytes(base):
    @PROFILE
    @given(st.binary(max_size=300) | pickle_soup())
    def inner(data):
        _meta_outcome(fresh(base, "meta.pkl", data))

    inner()


def test_meta_pkl_mutated(base):
    raw = base["meta"]

    @PROFILE
    @given(mutation(len(raw), [(0, len(raw))]))
    def inner(edits):
        _meta_outcome(fresh(base, "meta.pkl", apply(raw, edits)))

    inner()


def _meta_outcome(path: Path) -> None:
    with time_limit(TIME_LIMIT):
        try:
            tok = from_meta_pkl(str(path))
        except EmbscopeError:
            count("refused")
            return
        count("loaded")
    assert isinstance(tok, CharTokenizer)
    for i in range(tok.vocab_size):
        tok.token_bytes(i)


def test_data_pkl_soup(base):
    """Random pickles as data.pkl of a real torch zip."""
    @PROFILE
    @given(pickle_soup())
    def inner(data):
        src = base["root"] / "small.pt"
        path = fresh(base, "ckpt.pt", b"")
        u.replace_entry(src, path, "/data.pkl", data)
        load_or_refuse(path)

    inner()


@pytest.mark.parametrize("kind", ["small", "trained"])
def test_data_pkl_mutated(base, kind):
    """data.pkl itself mutated, then stored with a correct CRC: the unpickler sees every edit."""
    src = base["root"] / f"{kind}.pt"
    entries = u.zip_entries(src)
    pkl = next(v for k, v in entries.items() if k.endswith("/data.pkl"))

    @PROFILE
    @given(mutation(len(pkl), [(0, len(pkl))]))
    def inner(edits):
        path = fresh(base, "ckpt.pt", b"")
        u.replace_entry(src, path, "/data.pkl", apply(pkl, edits))
        load_or_refuse(path)

    inner()


# --- through the CLI: never a traceback ------------------------------------------------------------

def _cli_outcome(argv, capsys):
    """Exit 0, or 1 with nothing on stdout and the error as the last line of stderr (after
    embscope's own warnings, if any); never a traceback, never a numpy RuntimeWarning (pytest
    would swallow those, so they are recorded here)."""
    import warnings

    with time_limit(TIME_LIMIT), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        code, out, err = run(argv, capsys)
    assert not [w for w in caught if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in caught]
    assert "Traceback" not in err, err
    count(f"exit {code}")
    if code != 0:
        lines = err.splitlines()
        assert code == 1 and out == "", (code, out, err)
        assert lines[-1].startswith("embscope: error: "), err
        assert all(line.startswith("warning: ") for line in lines[:-1]), err


@pytest.mark.parametrize("kind,suffix", [("safetensors", "model.safetensors"), ("small", "ckpt.pt")])
def test_cli_never_shows_a_traceback(base, capsys, kind, suffix):
    @FEW
    @given(mutation(*_sizes(base, kind)), st.sampled_from([["info"], ["neighbors", "#1", "-k", "3"],
                                                          ["positions", "--range", "0:4"], ["norms"],
                                                          ["embed", "#1"]]))
    def inner(edits, command):
        path = fresh(base, suffix, apply(base[kind]["raw"], edits))
        _cli_outcome([*command, "-m", str(path), "-f", "tsv"], capsys)

    inner()


# --- issue 17: the classes of the hostile sweep ---------------------------------------------------
# Container sizes and key types (meta.pkl / data.pkl), tensor sizes and strides (data.pkl), tensor
# name lengths, and special files where a model folder's small files should be.

INT64 = 2**63
KEY_INTS = st.sampled_from([0, 1, -1, -2, 2**31, 2**61 - 1, 2**61, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1,
                            2**64, 10**30, -(10**30), 10**300]) | st.integers(-(2**70), 2**70)
KEYS = KEY_INTS | st.floats() | st.text(max_size=6) | st.binary(max_size=6) | st.none() | st.booleans() \
    | st.tuples(st.integers(0, 3))
LEAVES = st.none() | st.booleans() | KEY_INTS | st.floats() | st.text(max_size=8) | st.binary(max_size=8)


def _plain_keys(obj) -> bool:
    """Whether every dict key and set member in `obj` is what the restricted unpickler accepts:
    a str, float, bool, None, bytes, or an int within 64 bits."""
    if isinstance(obj, dict):
        return all(_plain_key(k) for k in obj) and all(_plain_keys(v) for v in obj.values())
    if isinstance(obj, (set, frozenset)):
        return all(_plain_key(k) for k in obj)
    if isinstance(obj, (list, tuple)):
        return all(_plain_keys(v) for v in obj)
    return True


def _plain_key(k) -> bool:
    if type(k) is int:
        return -INT64 <= k < INT64
    return type(k) in (str, float, bool, type(None), bytes)


@st.composite
def containers(draw):
    """A Python object of nested containers, some of them large (built, not drawn item by item),
    with keys of every type and size, including ints beyond 64 bits and ints sharing a hash."""
    def big(kind, n, key):
        if kind == "list":
            return list(range(n))
        if kind == "set":
            return {key(i) for i in range(n)}
        return {key(i): i for i in range(n)}

    key = draw(st.sampled_from([lambda i: i, lambda i: str(i), lambda i: float(i) + 0.5,
                                lambda i: 1 + i * (2**61 - 1), lambda i: -i - 2**40]))
    sized = st.builds(big, st.sampled_from(["list", "set", "dict"]), st.integers(0, 3000), st.just(key))
    nested = st.recursive(
        LEAVES | sized,
        lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
        | st.dictionaries(KEYS, inner, max_size=4) | st.frozensets(KEYS, max_size=4),
        max_leaves=12)
    return draw(nested)


def test_pickle_container_sizes_and_key_types():
    """Pickles of any containers, every protocol: the restricted unpickler returns exactly what
    pickle returns (they hold no globals, so pickle is safe to ask), or refuses a key with one
    error when, and only when, a key is not a plain scalar within 64 bits."""
    from embscope.io.restricted_pickle import PlainDataUnpickler, safe_loads

    @PROFILE
    @given(containers(), st.integers(4, pickle.HIGHEST_PROTOCOL))  # 0-3 pickle sets and bytes by calls
    def inner(obj, protocol):
        data = pickle.dumps(obj, protocol=protocol)
        with time_limit(TIME_LIMIT):
            try:
                got = safe_loads(data, PlainDataUnpickler, "x")
            except EmbscopeError as e:
                count("refused")
                assert not _plain_keys(obj)
                assert str(e).startswith("x: not a readable pickle (a dict key or set member "), str(e)
                return
        count("loaded")
        assert _plain_keys(obj)
        assert repr(got) == repr(pickle.loads(data))

    inner()


_SIZES = st.sampled_from([0, 1, 2, 8, 60, 65, 520, 2**31, 2**62, 2**63 - 1, 2**63, 2**64, 10**30])


@st.composite
def tensor_ref(draw):
    """wte as a reference into storage data/0 (VOCAB x DIM floats): any shape, stride and offset,
    often a readable one (contiguous, inside the storage) or one step away from it."""
    return draw(_readable_ref() | _readable_ref().flatmap(_nudged) | _any_ref())


@st.composite
def _readable_ref(draw):
    rows = draw(st.integers(1, VOCAB))
    offset = draw(st.integers(0, (VOCAB - rows) * DIM))
    if draw(st.booleans()):  # row-major, as saved; a single row may carry any stride
        return (rows, DIM), (draw(st.just(DIM) | _SIZES) if rows == 1 else DIM, 1), offset
    return (rows, DIM), (1, rows), offset  # column-major: a transposed matrix


def _nudged(ref):
    """One of the numbers of a readable reference moved by one, or set to an edge value."""
    shape, stride, offset = ref
    values = [*shape, *stride, offset]

    @st.composite
    def nudge(draw):
        moved = list(values)
        i = draw(st.integers(0, len(moved) - 1))
        moved[i] = draw(st.sampled_from([moved[i] + 1, max(0, moved[i] - 1), 0, 2**63 - 1, 2**63]))
        return tuple(moved[:2]), tuple(moved[2:4]), moved[4]

    return nudge()


@st.composite
def _any_ref(draw):
    rows = draw(st.integers(0, VOCAB + 5) | st.integers(1, VOCAB // 2) | _SIZES)
    cols = draw(st.just(DIM) | st.just(DIM) | st.integers(0, 9) | _SIZES)
    shape = draw(st.sampled_from([(rows, cols)] * 5 + [(rows,), (rows, cols, 2), ()]))
    stride = list(_contiguous(shape))
    how = draw(st.sampled_from(["contiguous", "contiguous", "one changed", "random"]))
    if how == "one changed" and shape:
        stride[draw(st.integers(0, len(shape) - 1))] = draw(_SIZES | st.integers(0, 9))
    elif how == "random":
        stride = draw(st.lists(_SIZES | st.integers(0, 9), min_size=len(shape), max_size=len(shape)))
    offset = draw(st.sampled_from([0, DIM, 5 * DIM]) | st.integers(0, VOCAB * DIM + 8)
                  | st.sampled_from([2**63 - 1, 2**63, 10**30]))
    return shape, tuple(stride), offset


def test_data_pkl_strides(base):
    """Every size, stride and offset for wte: either refused with one error, or read exactly as
    torch views the storage; and every non-empty 2-D view inside the storage with no more
    elements than the storage holds is read (no false refusals)."""
    src = base["root"] / "small.pt"
    storage = np.frombuffer(next(v for k, v in u.zip_entries(src).items() if k.endswith("/data/0")), np.float32)
    wpe = ("1", POS * DIM, (POS, DIM), (DIM, 1))

    @PROFILE
    @given(tensor_ref())
    def inner(ref):
        shape, stride, offset = ref
        data = u.state_pickle({"transformer.wte.weight": ("0", storage.size, shape, stride, offset),
                               "transformer.wpe.weight": wpe})
        path = fresh(base, "ckpt.pt", b"")
        u.replace_entry(src, path, "/data.pkl", data)
        wte = load_or_refuse(path)
        numel = int(np.prod(shape, dtype=object))
        last = offset + sum((n - 1) * s for n, s in zip(shape, stride))
        readable = (len(shape) == 2 and numel and shape[1] == DIM and numel <= storage.size
                    and last < storage.size and all(v < INT64 for v in (*shape, *stride, offset)))
        if wte is None:
            assert not readable, ref
        else:
            assert readable, ref
            # What torch shows for this view, element by element: storage[offset + i*s0 + j*s1].
            i, j = np.indices(shape)
            np.testing.assert_array_equal(wte, storage[offset + i * stride[0] + j * stride[1]])

    inner()


def _contiguous(shape) -> tuple:
    out, step = [], 1
    for n in reversed(shape):
        out.insert(0, step)
        step *= n
    return tuple(out)


@st.composite
def tensor_name(draw):
    """The wte name: `_orig_mod.` repeated up to 300,000 times, junk of up to a megabyte, or
    characters that must be escaped."""
    prefix = "_orig_mod." * draw(st.sampled_from([0, 1, 2, 1000, 300_000]))
    junk = draw(st.sampled_from(["", "x" * 1_000_000, "\x1b[2J" * 1000, "é\u202e" * 5000]))
    return prefix + junk + ("." if junk else "") + "transformer.wte.weight"


def test_tensor_name_lengths(base, capsys):
    """Long and repeated tensor names through `info` and `neighbors`: quick, and the name shown
    is the first 1000 characters (escaped) and the length."""
    from embscope.display import sanitize, shorten
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    wte = rng.standard_normal((VOCAB, DIM)).astype(np.float32)  # (V, d)

    @FEW
    @given(tensor_name())
    def inner(name):
        path = fresh(base, "model.safetensors", b"")
        save_file({name: wte}, str(path))
        with time_limit(TIME_LIMIT):
            code, out, err = run(["info", "-m", str(path), "-f", "tsv"], capsys)
        count(f"exit {code}")
        assert (code, err) == (0, ""), err
        fields = dict(line.split("\t", 1) for line in out.splitlines()[1:])
        assert fields["token_tensor"] == sanitize(shorten(name))
        _cli_outcome(["neighbors", "#1", "-k", "2", "-m", str(path), "-f", "tsv"], capsys)

    inner()


SPECIAL = ["fifo", "dev-zero", "dev-null", "directory", "dangling", "sparse 65 MiB", "empty"]
FOLDER_FILES = ["config.json", "tokenizer_config.json", "tokenizer.json", "vocab.txt", "vocab.json", "merges.txt",
                "special_tokens_map.json", "model.safetensors", "model.safetensors.index.json", "tokenizer.model"]


def _special(path: Path, kind: str) -> None:
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "dev-null":
        path.symlink_to("/dev/null")
    elif kind == "directory":
        path.mkdir()
    elif kind == "dangling":
        path.symlink_to(path.parent / "nowhere")
    elif kind == "sparse 65 MiB":
        with open(path, "wb") as f:
            f.truncate((64 << 20) + (1 << 20))
    else:
        path.write_bytes(b"")


@contextmanager
def _unblock_fifos_later(directory: Path, seconds: int = TIME_LIMIT + 2):
    """A watchdog process that opens the FIFOs in `directory` for writing after `seconds`: a
    regression that hands a FIFO to Rust code (which retries its open() on every signal, so the
    time limit cannot stop it) then fails instead of hanging the suite."""
    import subprocess
    import sys

    script = ("import os, stat, sys, time; time.sleep(float(sys.argv[2]))\n"
              "for n in os.listdir(sys.argv[1]):\n"
              "    p = os.path.join(sys.argv[1], n)\n"
              "    if stat.S_ISFIFO(os.lstat(p).st_mode):\n"
              "        try: os.close(os.open(p, os.O_WRONLY | os.O_NONBLOCK))\n"
              "        except OSError: pass\n")
    watchdog = subprocess.Popen([sys.executable, "-c", script, str(directory), str(seconds)])
    try:
        yield
    finally:
        watchdog.kill()
        watchdog.wait()


def test_special_files_in_a_model_folder(base, capsys):
    """FIFOs, devices, folders, dangling links, sparse giants and empty files where a model
    folder's files go (one or two at a time): an answer or one error line, never a hang (a FIFO
    opened for reading blocks) or a read without end (/dev/zero)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    tensors = {"embeddings.word_embeddings.weight": rng.standard_normal((8, DIM)).astype(np.float32),
               "embeddings.position_embeddings.weight": rng.standard_normal((POS, DIM)).astype(np.float32)}

    @FEW
    @given(st.lists(st.tuples(st.sampled_from(FOLDER_FILES), st.sampled_from(SPECIAL)), min_size=1, max_size=2,
                    unique_by=lambda t: t[0]),
           st.sampled_from([["info"], ["neighbors", "king", "-k", "2"], ["embed", "king"]]))
    def inner(specials, command):
        d = fresh(base, "model", b"").parent / "folder"
        d.mkdir()
        save_file(tensors, str(d / "model.safetensors"))
        (d / "config.json").write_text('{"model_type": "bert"}')
        (d / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "king"]) + "\n")
        for name, kind in specials:
            (d / name).unlink(missing_ok=True)
            _special(d / name, kind)
        with _unblock_fifos_later(d):
            _cli_outcome([*command, "-m", str(d), "-f", "tsv"], capsys)

    inner()
