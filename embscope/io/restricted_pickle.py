"""Unpicklers that execute no code from the file.

A pickle names the callables it wants run (GLOBAL / STACK_GLOBAL opcodes). `find_class` decides
what each name becomes; ours return only embscope's own inert stand-ins, so a hostile `__reduce__`
(os.system, eval, ...) fails with an error before anything is called.

The opcodes run on pickle's pure-Python Unpickler (a small data.pkl or meta.pkl loads in
milliseconds), so that the work each opcode does can be bounded too:

- dict keys and set members must be plain scalars, and an int key must fit in 64 bits: a tuple
  nested in itself through the memo hashes in exponential time (a 200-byte pickle that never
  finishes), and ints that differ by a multiple of 2**61 - 1 share one hash (100k of them make
  dict inserts quadratic). Text PUT/GET memo indices are bounded the same way;
- the stand-ins take only short tuples of 64-bit counts (a `torch.Size` of a 1 MB bytes object
  would be a tuple of a million ints, every time the pickle calls it);
- BUILD (torch's `state_dict._metadata`) is accepted on a state dict and its state dropped:
  embscope's state dicts are plain dicts holding the pickle's items only, so no state can shadow
  their `items`, `values` or `get`; on anything else BUILD is refused;
- per pickle: at most MAX_PICKLE_BYTES are read and MAX_CALLS calls made.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass

from embscope.errors import EmbscopeError, first_line

# torch's legacy typed-storage class names, as torch.save writes them, and the raw dtype of each.
STORAGE_DTYPES = {
    "FloatStorage": "F32",
    "HalfStorage": "F16",
    "BFloat16Storage": "BF16",
    "DoubleStorage": "F64",
    "LongStorage": "I64",
    "IntStorage": "I32",
    "ShortStorage": "I16",
    "CharStorage": "I8",
    "ByteStorage": "U8",
    "BoolStorage": "BOOL",
}


@dataclass(frozen=True)
class StorageRef:
    """A tensor storage saved as `data/<key>` in the checkpoint archive."""

    key: str
    dtype: str
    numel: int


@dataclass(frozen=True)
class TensorRef:
    """What `torch._utils._rebuild_tensor_v2` would build, without building it."""

    storage: StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


class _StorageType:
    def __init__(self, dtype: str):
        self.dtype = dtype


MAX_PICKLE_BYTES = 64 << 20  # a data.pkl of 300k tensors is a few MB; meta.pkl is smaller
MAX_CALLS = 1 << 20  # calls to the stand-ins per pickle: torch makes about two per tensor
MAX_DIMS = 64  # torch's own limit on a tensor's dimensions
INT64 = 1 << 63  # sizes, strides, offsets and int keys lie in [0, 2**63) or [-2**63, 2**63)


def _count(value) -> bool:
    return type(value) is int and 0 <= value < INT64


def _counts(values) -> tuple[int, ...] | None:
    """A tensor's size or stride: a tuple (or list) of at most MAX_DIMS counts, checked before
    anything is built from it; None when it is not one."""
    if type(values) not in (tuple, list) or len(values) > MAX_DIMS or not all(_count(n) for n in values):
        return None
    return tuple(values)


def _rebuild_tensor(storage, storage_offset, size, stride, *_ignored) -> TensorRef:
    if not isinstance(storage, StorageRef):
        raise pickle.UnpicklingError("tensor without a storage")
    size, stride = _counts(size), _counts(stride)
    if size is None or stride is None or not _count(storage_offset) or len(size) != len(stride):
        raise pickle.UnpicklingError("tensor with a bad size, stride or offset")
    return TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, *_ignored):
    return data


def _size(*args):
    size = _counts(args[0]) if len(args) == 1 else None
    if size is None:
        raise pickle.UnpicklingError(f"torch.Size of something other than at most {MAX_DIMS} sizes")
    return size


class _StateDict(dict):
    """What torch's collections.OrderedDict becomes: a plain dict (ordered, as every dict is)."""

    __slots__ = ()


def _ordered_dict(*args):
    """collections.OrderedDict as torch pickles it: made empty, then filled by SETITEMS."""
    if args:
        raise pickle.UnpicklingError("OrderedDict with arguments")
    return _StateDict()


class _Refused(pickle.UnpicklingError):
    pass


def _refuse(unpickler: pickle._Unpickler, module: str, name: str) -> _Refused:
    """The refusal, naming what Python would run: protocol 0-2 pickles (torch.save writes 2) use
    Python 2 names, which pickle maps (__builtin__.exec is builtins.exec)."""
    if getattr(unpickler, "proto", 4) < 3:
        import _compat_pickle

        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
    return _Refused(f"{module}.{name}")


_KEY_TYPES = (str, int, float, bool, type(None), bytes)


def _keys(items):
    for k in items:
        kind = type(k)
        if kind not in _KEY_TYPES:
            raise pickle.UnpicklingError(f"a dict key or set member of type {kind.__name__}")
        if kind is int and not -INT64 <= k < INT64:
            raise pickle.UnpicklingError("a dict key or set member that is an int beyond 64 bits")
    return items


def _memo_index(line: bytes) -> int:
    """The index of a text PUT or GET (protocol 0): a small number, as pickle writes it."""
    if len(line) > 11 or not line[:-1].isdigit():
        raise pickle.UnpicklingError("a memo index that is not a small number")
    return int(line[:-1])


class _CheckedUnpickler(pickle._Unpickler):
    """pickle's pure-Python Unpickler with the checks described above."""

    dispatch = dict(pickle._Unpickler.dispatch)
    _calls = 0

    def _call(self, opcode):
        """REDUCE, OBJ, INST, NEWOBJ: counted, then run as pickle runs them."""
        self._calls += 1
        if self._calls > MAX_CALLS:
            raise pickle.UnpicklingError(f"more than {MAX_CALLS} calls in one pickle")
        pickle._Unpickler.dispatch[opcode[0]](self)

    # After MARK, self.stack holds just the items since the mark (key, value, key, value...).
    def _setitem(self):
        _keys([self.stack[-2]])
        pickle._Unpickler.load_setitem(self)

    def _setitems(self):
        _keys(self.stack[0::2])
        pickle._Unpickler.load_setitems(self)

    def _dict(self):
        _keys(self.stack[0::2])
        pickle._Unpickler.load_dict(self)

    def _additems(self):
        _keys(self.stack)
        pickle._Unpickler.load_additems(self)

    def _frozenset(self):
        _keys(self.stack)
        pickle._Unpickler.load_frozenset(self)

    def _build(self):
        """torch's `_metadata` on a state dict: checked, and dropped (embscope never uses it)."""
        state, inst = self.stack[-1], self.stack[-2]
        if type(inst) is not _StateDict or type(state) is not dict:
            raise pickle.UnpicklingError("BUILD of something other than an OrderedDict")
        self.stack.pop()

    def _put(self):
        self.memo[_memo_index(self.readline())] = self.stack[-1]

    def _get(self):
        self.append(self.memo[_memo_index(self.readline())])

    for _op, _fn in ((pickle.SETITEM, _setitem), (pickle.SETITEMS, _setitems), (pickle.DICT, _dict),
                     (pickle.ADDITEMS, _additems), (pickle.FROZENSET, _frozenset),
                     (pickle.BUILD, _build), (pickle.PUT, _put), (pickle.GET, _get)):
        dispatch[_op[0]] = _fn
    for _op in (pickle.REDUCE, pickle.OBJ, pickle.INST, pickle.NEWOBJ, pickle.NEWOBJ_EX):
        dispatch[_op[0]] = lambda self, _op=_op: self._call(_op)
    del _op, _fn


class TorchArchiveUnpickler(_CheckedUnpickler):
    """Reads `data.pkl` of a torch.save zip archive into dicts, lists and TensorRefs."""

    _ALLOWED = {
        ("collections", "OrderedDict"): _ordered_dict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch", "Size"): _size,
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        raise _refuse(self, module, name)

    def persistent_load(self, pid):
        if (
            isinstance(pid, tuple)
            and len(pid) == 5
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
            and isinstance(pid[2], str)
            and _count(pid[4])
        ):
            return StorageRef(key=pid[2], dtype=pid[1].dtype, numel=pid[4])
        raise pickle.UnpicklingError("unsupported persistent id")


class _EncodingState:
    """Stands in for tiktoken.core.Encoding: made empty by NEWOBJ, it keeps what BUILD hands
    it (the dict Encoding.__getstate__ returned) and runs nothing."""

    state: object = None

    def __setstate__(self, state) -> None:
        self.state = state


def _latin1_bytes(text, encoding):
    """bytes as pickle protocol 2 writes them: _codecs.encode(str, 'latin1'), nothing else."""
    if type(text) is not str or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode used for something other than bytes")
    return text.encode("latin-1")


class TiktokenEncodingUnpickler(_CheckedUnpickler):
    """Reads a pickled tiktoken.Encoding (nanochat's tokenizer.pkl) as an _EncodingState: the
    one global such a pickle names is mapped to that stand-in; tiktoken is never imported."""

    dispatch = dict(_CheckedUnpickler.dispatch)

    def find_class(self, module: str, name: str):
        if (module, name) == ("tiktoken.core", "Encoding"):
            return _EncodingState
        if (module, name) == ("_codecs", "encode"):  # protocol 2 writes bytes this way
            return _latin1_bytes
        raise _refuse(self, module, name)

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("unsupported persistent id")

    def _newobj(self):
        args, cls = self.stack.pop(), self.stack.pop()
        if cls is not _EncodingState or args != ():
            raise pickle.UnpicklingError("NEWOBJ of something other than a tiktoken Encoding")
        self.append(_EncodingState())

    def _build(self):
        state, inst = self.stack[-1], self.stack[-2]
        if type(inst) is not _EncodingState or inst.state is not None:
            raise pickle.UnpicklingError("BUILD of something other than a tiktoken Encoding")
        self.stack.pop()
        inst.__setstate__(state)

    dispatch[pickle.NEWOBJ[0]] = _newobj
    dispatch[pickle.BUILD[0]] = _build


def encoding_state(data: bytes, what: str) -> object:
    """What a pickled tiktoken.Encoding holds (a dict, or a registered encoding's name)."""
    obj = safe_loads(data, TiktokenEncodingUnpickler, what)
    if not isinstance(obj, _EncodingState):
        raise EmbscopeError(f"{what}: a pickle, but not of a tiktoken Encoding")
    return obj.state


class PlainDataUnpickler(_CheckedUnpickler):
    """Accepts only what pickles of dicts, lists, tuples, strings and numbers contain."""

    def find_class(self, module: str, name: str):
        raise _refuse(self, module, name)

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("unsupported persistent id")


class RefusedGlobal(EmbscopeError):
    """A pickle named a callable embscope does not run; `name` is what it named."""

    def __init__(self, what: str, name: str):
        super().__init__(f"{what}: refused to load: the pickle asks to run '{name}', which embscope never runs")
        self.name = name


def safe_loads(data: bytes, unpickler: type[pickle.Unpickler], what: str):
    """Unpickle `data` with a restricted unpickler; every failure becomes one EmbscopeError."""
    if len(data) > MAX_PICKLE_BYTES:
        raise EmbscopeError(f"{what}: a pickle of {len(data)} bytes; embscope reads pickles of at most"
                            f" {MAX_PICKLE_BYTES >> 20} MiB")
    try:
        return unpickler(io.BytesIO(data)).load()
    except _Refused as e:
        raise RefusedGlobal(what, str(e)) from None
    except pickle.UnpicklingError as e:  # ours and pickle's own say what is wrong
        raise EmbscopeError(f"{what}: not a readable pickle ({first_line(e)})") from None
    except Exception as e:  # noqa: BLE001 - any failure of a hostile or corrupt pickle
        raise EmbscopeError(f"{what}: not a readable pickle ({type(e).__name__})") from None
