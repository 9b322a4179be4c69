"""Checkpoints that try to run code: embscope refuses them with one line, and nothing runs.

Every hostile file here would run its payload under `pickle.load` / `torch.load(weights_only=False)`
(test_payloads_are_live shows it); each test then loads it with embscope and checks that the
payload's marker file was never created and that no dangerous callable was reached.
"""

from __future__ import annotations

import builtins
import copyreg
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from embscope.errors import EmbscopeError
from embscope.model import load
from tests import untrusted as u
from tests.builders import save_char_nanogpt
from tests.helpers import run


def run_watched(argv, capsys):
    """`run`, with os.system and subprocess.Popen replaced by spies for the duration: if the
    unpickler ever reached one of them, the test would see the call (the marker files catch the
    rest: exec, eval, open)."""
    calls = []

    def spy(name):
        def f(*a, **k):
            calls.append((name, a))
            raise AssertionError(f"{name} was called with {a}")
        return f

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "system", spy("os.system"))
        mp.setattr(subprocess, "Popen", spy("subprocess.Popen"))
        result = run(argv, capsys)
    assert calls == []
    return result


def payloads(marker: Path) -> dict[str, tuple[object, str]]:
    """name -> (object whose unpickling creates `marker`, the global embscope must refuse)."""
    touch = f"touch {marker}"
    return {
        "os.system": (u.Reduce(os.system, (touch,)), "posix.system" if os.name == "posix" else "nt.system"),
        "exec": (u.Reduce(builtins.exec, (f"open({str(marker)!r}, 'w').close()",)), "builtins.exec"),
        "eval": (u.Reduce(builtins.eval, (f"open({str(marker)!r}, 'w')",)), "builtins.eval"),
        "open": (u.Reduce(open, (str(marker), "w")), "io.open"),
        "subprocess": (u.Reduce(subprocess.Popen, (["touch", str(marker)],)), "subprocess.Popen"),
    }


PAYLOADS = list(payloads(Path("x")))


def refused(path, name: str) -> str:
    return f"embscope: error: {path}: refused to load: the pickle asks to run '{name}', which embscope never runs\n"


def assert_refused(argv, capsys, path, name, marker):
    code, out, err = run_watched(argv, capsys)
    assert (code, out, err) == (1, "", refused(path, name))
    assert not marker.exists()


# --- the payloads work -------------------------------------------------------------------------

@pytest.mark.parametrize("payload", PAYLOADS)
def test_payloads_are_live(tmp_path, payload):
    """Control: plain pickle runs each payload (so the tests below prove something)."""
    marker = tmp_path / "MARKER"
    obj, _ = payloads(marker)[payload]
    result = pickle.loads(pickle.dumps(obj))
    if hasattr(result, "wait"):
        result.wait()
    if hasattr(result, "close"):
        result.close()
    assert marker.exists()


def test_torch_load_runs_the_checkpoint_payload(tmp_path):
    """Control: torch.load(weights_only=False) of the hostile ckpt.pt runs it."""
    marker = tmp_path / "MARKER"
    path = tmp_path / "ckpt.pt"
    torch.save({"model": u.small_state(), "x": payloads(marker)["os.system"][0]}, path)
    torch.load(path, weights_only=False)
    assert marker.exists()


# --- torch zip archives: ckpt.pt, pytorch_model.bin ----------------------------------------------

@pytest.mark.parametrize("payload", PAYLOADS)
def test_ckpt_pt(tmp_path, capsys, payload):
    marker = tmp_path / "MARKER"
    obj, name = payloads(marker)[payload]
    path = tmp_path / "ckpt.pt"
    u.save_nanogpt_ckpt(path, x=obj)
    assert_refused(["info", "-m", str(path)], capsys, path, name, marker)


def test_payload_inside_the_state_dict(tmp_path, capsys):
    """The hostile object sits among the tensors, before them in the pickle."""
    marker = tmp_path / "MARKER"
    obj, name = payloads(marker)["os.system"]
    path = tmp_path / "ckpt.pt"
    torch.save({"model": {"a": obj, **u.small_state()}}, path)
    assert_refused(["neighbors", "#1", "-m", str(path)], capsys, path, name, marker)


@pytest.mark.parametrize("payload", ["os.system", "exec"])
def test_pytorch_model_bin(tmp_path, capsys, payload):
    marker = tmp_path / "MARKER"
    obj, name = payloads(marker)[payload]
    d = tmp_path / "model"
    d.mkdir()
    torch.save({**u.small_state(), "evil": obj}, d / "pytorch_model.bin")
    u.write_json(d / "config.json", {"model_type": "gpt2"})
    assert_refused(["info", "-m", str(d)], capsys, d / "pytorch_model.bin", name, marker)


def test_sharded_pytorch_model_bin(tmp_path, capsys):
    """The index points at a shard that is hostile."""
    marker = tmp_path / "MARKER"
    obj, name = payloads(marker)["os.system"]
    d = tmp_path / "model"
    d.mkdir()
    state = u.small_state()
    torch.save({"transformer.wte.weight": state["transformer.wte.weight"], "evil": obj},
               d / "pytorch_model-00001-of-00002.bin")
    torch.save({"transformer.wpe.weight": state["transformer.wpe.weight"]}, d / "pytorch_model-00002-of-00002.bin")
    u.write_json(d / "pytorch_model.bin.index.json", {"weight_map": {
        "transformer.wte.weight": "pytorch_model-00001-of-00002.bin",
        "transformer.wpe.weight": "pytorch_model-00002-of-00002.bin"}})
    assert_refused(["info", "-m", str(d)], capsys, d / "pytorch_model-00001-of-00002.bin", name, marker)


def test_legacy_torch_save(tmp_path, capsys):
    """torch.save's pre-1.6 format is a bare pickle stream: embscope never unpickles it."""
    marker = tmp_path / "MARKER"
    path = tmp_path / "ckpt.pt"
    torch.save({"model": u.small_state(), "x": payloads(marker)["os.system"][0]}, path,
               _use_new_zipfile_serialization=False)
    code, out, err = run_watched(["info", "-m", str(path)], capsys)
    assert (code, out) == (1, "")
    assert err == (f"embscope: error: {path}: a legacy (pre-zip) torch pickle; embscope reads only the zip"
                   " format torch.save has written since PyTorch 1.6 (re-save it with torch.save)\n")
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [0, 2, 5])
def test_bare_pickle_named_ckpt_pt(tmp_path, capsys, protocol):
    marker = tmp_path / "MARKER"
    path = tmp_path / "ckpt.pt"
    path.write_bytes(pickle.dumps(payloads(marker)["os.system"][0], protocol=protocol))
    code, out, err = run_watched(["info", "-m", str(path)], capsys)
    assert (code, out) == (1, "")
    if protocol == 0:  # text opcodes: not even the pickle magic byte
        assert err == f"embscope: error: {path}: not a checkpoint embscope can read (safetensors or torch zip)\n"
    else:
        assert err.startswith(f"embscope: error: {path}: a legacy (pre-zip) torch pickle;")
    assert not marker.exists()


# --- meta.pkl ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def char_ckpt(tmp_path_factory) -> Path:
    """nanoGPT shakespeare_char: ckpt.pt (torch.save of train.py's dict) + meta.pkl."""
    d = tmp_path_factory.mktemp("char") / "a" / "b"
    d.mkdir(parents=True)
    path, _ = save_char_nanogpt(d)
    return path


@pytest.mark.parametrize("payload", PAYLOADS)
def test_meta_pkl_beside_the_checkpoint(tmp_path, capsys, char_ckpt, payload):
    marker = tmp_path / "MARKER"
    obj, name = payloads(marker)[payload]
    d = tmp_path / "run"
    d.mkdir()
    shutil.copy(char_ckpt, d / "ckpt.pt")
    (d / "meta.pkl").write_bytes(pickle.dumps({"stoi": {"a": 0}, "itos": {0: "a"}, "x": obj}))
    assert_refused(["neighbors", "#1", "-m", str(d / "ckpt.pt")], capsys, d / "meta.pkl", name, marker)


def test_meta_pkl_given_with_meta_and_tokenizer(tmp_path, capsys, char_ckpt):
    marker = tmp_path / "MARKER"
    obj, name = payloads(marker)["os.system"]
    meta = tmp_path / "meta.pkl"
    meta.write_bytes(pickle.dumps(obj))
    for opt in ("--meta", "--tokenizer"):
        assert_refused(["info", "-m", str(char_ckpt), opt, str(meta)], capsys, meta, name, marker)


def test_meta_pkl_found_from_the_working_directory(tmp_path, capsys, char_ckpt, monkeypatch):
    """nanoGPT's sample.py place: data/<dataset>/meta.pkl under the working directory."""
    marker = tmp_path / "MARKER"
    obj, name = payloads(marker)["exec"]
    meta = tmp_path / "data" / "shakespeare_char" / "meta.pkl"
    meta.parent.mkdir(parents=True)
    meta.write_bytes(pickle.dumps(obj))
    d = tmp_path / "elsewhere" / "x" / "y" / "z"
    d.mkdir(parents=True)
    shutil.copy(char_ckpt, d / "ckpt.pt")
    monkeypatch.chdir(tmp_path)
    assert_refused(["info", "-m", str(d / "ckpt.pt")], capsys, Path("data/shakespeare_char/meta.pkl"), name, marker)


# --- find_class tricks, assembled from opcodes, as data.pkl of a real torch zip ----------------------

@pytest.fixture(scope="module")
def real_zip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("zip") / "ckpt.pt"
    u.save_nanogpt_ckpt(path)
    return path


def _touch(marker):
    return lambda p: p.str(f"touch {marker}")


TRICKS = {
    # GLOBAL (protocol 0-3) and STACK_GLOBAL (4+) name the same thing two ways.
    "GLOBAL posix.system": (lambda p, m: p.global_("posix", "system").tuple(_touch(m)).op(pickle.REDUCE),
                            "refused", "posix.system"),
    "STACK_GLOBAL posix.system": (lambda p, m: p.stack_global("posix", "system").tuple(_touch(m)).op(pickle.REDUCE),
                                  "refused", "posix.system"),
    "STACK_GLOBAL os.system": (lambda p, m: p.stack_global("os", "system").tuple(_touch(m)).op(pickle.REDUCE),
                               "refused", "os.system"),
    # Python 2 names (protocol 2): refused all the same, and named as Python 3 would run them.
    "__builtin__.eval": (lambda p, m: p.global_("__builtin__", "eval").tuple(lambda q: q.str(f"open('{m}','w')"))
                         .op(pickle.REDUCE), "refused", "builtins.eval"),
    "commands.getoutput": (lambda p, m: p.global_("commands", "getoutput").tuple(_touch(m)).op(pickle.REDUCE),
                           "refused", "subprocess.getoutput"),
    "builtins.getattr": (lambda p, m: p.stack_global("builtins", "getattr"), "refused", "builtins.getattr"),
    # The allowed names, with the module or the name swapped or extended.
    "os._rebuild_tensor_v2": (lambda p, m: p.stack_global("os", "_rebuild_tensor_v2"), "refused", "os._rebuild_tensor_v2"),
    "torch._utils.system": (lambda p, m: p.stack_global("torch._utils", "system"), "refused", "torch._utils.system"),
    "dotted attribute": (lambda p, m: p.stack_global("torch._utils", "_rebuild_tensor_v2.__globals__"),
                         "refused", "torch._utils._rebuild_tensor_v2.__globals__"),
    "dotted module": (lambda p, m: p.stack_global("torch", "_utils._rebuild_tensor_v2"),
                      "refused", "torch._utils._rebuild_tensor_v2"),
    "real torch loader": (lambda p, m: p.stack_global("torch.serialization", "load"), "refused", "torch.serialization.load"),
    "_rebuild_tensor (v1)": (lambda p, m: p.stack_global("torch._utils", "_rebuild_tensor"), "refused",
                             "torch._utils._rebuild_tensor"),
    "FloatStorage attribute": (lambda p, m: p.stack_global("torch", "FloatStorage.__init__"), "refused",
                               "torch.FloatStorage.__init__"),
    "INST opcode": (lambda p, m: p.op(pickle.MARK).str(f"touch {m}").op(pickle.INST, b"posix\nsystem\n"),
                    "refused", "posix.system"),
    # Names embscope allows, used for something else: nothing to call, nothing to mutate.
    "FloatStorage called": (lambda p, m: p.stack_global("torch", "FloatStorage").tuple(_touch(m)).op(pickle.REDUCE),
                            "unreadable", "TypeError"),
    "rebuild from a string": (lambda p, m: p.stack_global("torch._utils", "_rebuild_tensor_v2")
                              .tuple(_touch(m), lambda q: q.int(0), lambda q: q.op(pickle.EMPTY_TUPLE),
                                     lambda q: q.op(pickle.EMPTY_TUPLE)).op(pickle.REDUCE),
                              "unreadable", "tensor without a storage"),
    "BUILD on a stand-in": (lambda p, m: p.stack_global("torch._utils", "_rebuild_parameter").op(pickle.EMPTY_DICT)
                            .str("__defaults__").op(pickle.EMPTY_TUPLE).op(pickle.SETITEM).op(pickle.BUILD),
                            "unreadable", "BUILD of something other than an OrderedDict"),
    "OrderedDict with arguments": (lambda p, m: p.stack_global("collections", "OrderedDict")
                                   .tuple(lambda q: q.op(pickle.EMPTY_LIST)).op(pickle.REDUCE),
                                   "unreadable", "OrderedDict with arguments"),
    "storage of a spoofed type": (lambda p, m: p.tuple(lambda q: q.str("storage"), lambda q: q.str("FloatStorage"),
                                                      lambda q: q.str("0"), lambda q: q.str("cpu"),
                                                      lambda q: q.int(4)).op(pickle.BINPERSID),
                                  "unreadable", "unsupported persistent id"),
}


@pytest.mark.parametrize("trick", list(TRICKS))
def test_find_class_tricks(tmp_path, capsys, real_zip, trick):
    marker = tmp_path / "MARKER"
    build, kind, detail = TRICKS[trick]
    p = u.Pickle(protocol=2 if trick in ("GLOBAL posix.system", "__builtin__.eval", "commands.getoutput", "INST opcode") else 4)
    build(p, marker)
    path = u.replace_entry(real_zip, tmp_path / "ckpt.pt", "/data.pkl", p.bytes())
    code, out, err = run_watched(["info", "-m", str(path)], capsys)
    if kind == "refused":
        assert (code, out, err) == (1, "", refused(path, detail))
    else:
        assert (code, out, err) == (1, "", f"embscope: error: {path}: not a readable pickle ({detail})\n")
    assert not marker.exists()


def test_extension_registry(tmp_path, capsys, real_zip):
    """EXT1 names a global through copyreg's registry: it still goes through find_class."""
    marker = tmp_path / "MARKER"
    copyreg.add_extension("posix", "system", 0xF0)
    try:
        p = u.Pickle().op(pickle.EXT1, bytes([0xF0])).tuple(_touch(marker)).op(pickle.REDUCE)
        path = u.replace_entry(real_zip, tmp_path / "ckpt.pt", "/data.pkl", p.bytes())
        assert_refused(["info", "-m", str(path)], capsys, path, "posix.system", marker)
    finally:
        copyreg.remove_extension("posix", "system", 0xF0)


def test_same_tricks_in_meta_pkl(tmp_path, capsys):
    """meta.pkl allows no globals at all, not even the torch stand-ins."""
    meta = tmp_path / "meta.pkl"
    for module, name in [("posix", "system"), ("torch._utils", "_rebuild_tensor_v2"), ("collections", "OrderedDict"),
                         ("torch", "FloatStorage")]:
        meta.write_bytes(u.Pickle().stack_global(module, name).bytes())
        with pytest.raises(EmbscopeError) as e:
            from embscope.tokenizer import from_meta_pkl

            from_meta_pkl(str(meta))
        assert str(e.value) == (f"{meta}: refused to load: the pickle asks to run '{module}.{name}',"
                                " which embscope never runs")


# --- pickles that hang or blow up instead ----------------------------------------------------------

def _run_subprocess(argv, timeout=60):
    env = {**os.environ, "EMBSCOPE_MODEL": ""}
    return subprocess.run([sys.executable, "-m", "embscope", *argv], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_hash_bomb_in_data_pkl(tmp_path, real_zip):
    """A 200-byte data.pkl whose one dict key takes 2**60 steps to hash (in a subprocess, so
    a regression fails by timeout instead of hanging the suite)."""
    path = u.replace_entry(real_zip, tmp_path / "ckpt.pt", "/data.pkl", u.hash_bomb(60))
    r = _run_subprocess(["info", "-m", str(path)])
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == f"embscope: error: {path}: not a readable pickle (a dict key or set member of type tuple)\n"


def test_hash_bomb_in_meta_pkl(tmp_path, char_ckpt):
    meta = tmp_path / "meta.pkl"
    meta.write_bytes(u.hash_bomb(60))
    r = _run_subprocess(["info", "-m", str(char_ckpt), "--meta", str(meta)])
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == f"embscope: error: {meta}: not a readable pickle (a dict key or set member of type tuple)\n"


def test_print_bomb_in_model_args(tmp_path):
    """model_args holding a list that prints as 2**60 items: loads, and `info` leaves it out."""
    path = tmp_path / "ckpt.pt"
    u.save_nanogpt_ckpt(path, model_args={"n_embd": 8, "evil": u.list_bomb(60)})
    assert path.stat().st_size < 20_000
    r = _run_subprocess(["info", "-m", str(path), "-f", "tsv"])
    assert (r.returncode, r.stderr) == (0, "")
    assert "model_args\tn_embd=8\n" in r.stdout


def test_frozen_tensor_refs_cannot_be_rewritten(tmp_path, capsys, real_zip):
    """BUILD writes straight into an object's __dict__, past a frozen dataclass: it could give a
    TensorRef a shape of -1 rows after its checks. BUILD is refused on anything but an OrderedDict."""
    storage = lambda q: q.tuple(lambda r: r.str("storage"), lambda r: r.stack_global("torch", "FloatStorage"),  # noqa: E731
                                lambda r: r.str("0"), lambda r: r.str("cpu"), lambda r: r.int(16)).op(pickle.BINPERSID)
    shape = lambda q: q.tuple(lambda r: r.int(2), lambda r: r.int(8))  # noqa: E731
    stride = lambda q: q.tuple(lambda r: r.int(8), lambda r: r.int(1))  # noqa: E731
    p = u.Pickle().op(pickle.EMPTY_DICT).str("model").op(pickle.EMPTY_DICT).str("transformer.wte.weight")
    p.stack_global("torch._utils", "_rebuild_tensor_v2").tuple(storage, lambda q: q.int(0), shape, stride)
    p.op(pickle.REDUCE)  # a valid TensorRef (2, 8) ...
    p.op(pickle.EMPTY_DICT).str("shape").tuple(lambda q: q.int(-1), lambda q: q.int(8)).op(pickle.SETITEM)
    p.op(pickle.BUILD)  # ... whose shape BUILD would set to (-1, 8)
    p.op(pickle.SETITEM).op(pickle.SETITEM)
    path = u.replace_entry(real_zip, tmp_path / "ckpt.pt", "/data.pkl", p.bytes())
    code, out, err = run_watched(["info", "-m", str(path)], capsys)
    assert (code, out) == (1, "")
    assert err == f"embscope: error: {path}: not a readable pickle (BUILD of something other than an OrderedDict)\n"


def test_load_never_imports_torch(tmp_path):
    """No torch.load anywhere: reading a torch checkpoint does not even import torch."""
    path = tmp_path / "ckpt.pt"
    u.save_nanogpt_ckpt(path)
    code = ("import sys; from embscope.model import load; e = load(sys.argv[1]); e.wte.to_float32();"
            " assert 'torch' not in sys.modules, 'torch imported'; print('ok')")
    r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert (r.returncode, r.stdout, r.stderr) == (0, "ok\n", "")


def test_memory_maps_are_read_only(tmp_path):
    """The arrays embscope hands out cannot write back into the checkpoint."""
    from safetensors.numpy import save_file

    st = tmp_path / "model.safetensors"
    save_file(u.gpt2_tensors(vocab=100), str(st))
    ckpt = tmp_path / "ckpt.pt"
    u.save_nanogpt_ckpt(ckpt)
    for path in (st, ckpt):
        before = path.read_bytes()
        emb = load(str(path))
        for m in (emb.wte, emb.wpe):
            with pytest.raises(ValueError, match="read-only"):
                m.raw[0, 0] = 1.0
            with pytest.raises(ValueError, match="read-only"):
                m.rows(0, 1)[0, 0] = 1.0
        del emb
        assert path.read_bytes() == before


# --- code beside the model: transformers' custom-code tokenizers ----------------------------------

def test_custom_code_tokenizer_never_runs(tmp_path):
    """A folder whose tokenizer_config.json maps AutoTokenizer to a .py file in the folder (and
    holds a tokenizer.model, so embscope hands the folder to transformers). transformers would
    ask "Do you wish to run the custom code? [y/N]" and read stdin; "y" arrives there, and still
    nothing runs: one line, exit 1."""
    from safetensors.numpy import save_file

    marker = tmp_path / "MARKER"
    d = tmp_path / "model"
    d.mkdir()
    state = {k: v.numpy() for k, v in u.small_state().items()}
    save_file(state, str(d / "model.safetensors"))
    u.write_json(d / "config.json", {"n_positions": 16})  # no model_type: no built-in tokenizer class
    (d / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    u.write_json(d / "tokenizer_config.json", {"auto_map": {"AutoTokenizer": ["evil.EvilTokenizer", None]}})
    (d / "tokenizer.model").write_bytes(b"not a sentencepiece model")
    embscope = str(Path(sys.executable).parent / "embscope")
    r = subprocess.run([embscope, "neighbors", "-", "-m", str(d)], input=b"y\nking\n",
                       capture_output=True, timeout=120, cwd=tmp_path)
    assert not marker.exists()
    assert (r.returncode, r.stdout) == (1, b"")
    assert r.stderr.decode().splitlines()[-1].startswith(
        f"embscope: error: {d}: transformers could not load the tokenizer (The repository")
    assert b"Do you wish to run" not in r.stderr
