"""The three export formats. Each writer takes the rows' matrix (n, d), their ids (token ids or
position numbers) and token keys (embscope.export.keys), and writes its files atomically."""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from embscope.atomic import atomic_write
from embscope.errors import EmbscopeError
from embscope.export.text import FLOAT, float_lines

FORMATS = ("projector", "word2vec", "npy")
PROJECTOR_FILES = ("tensors.tsv", "metadata.tsv", "projector_config.pbtxt")
NPY_FILES = ("embeddings.npy", "vocab.tsv")
Advance = Callable[[int], None] | None


def check_target(to: str, path: str) -> None:
    """Fail before any work when `path` cannot take the export: a folder for projector and npy
    (made if missing; its parent must exist), a file for word2vec."""
    from embscope.atomic import check_writable

    if to == "word2vec":
        return check_writable(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise EmbscopeError(f"Cannot write {path}: it is a file, not a folder")
    if os.path.isdir(path):
        return check_writable(os.path.join(path, PROJECTOR_FILES[0]))
    check_writable(path)  # the folder to be made: its parent exists and takes new entries


def _folder(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise EmbscopeError(f"Cannot make folder {path}: {e.strerror or e}") from None


def _text(path: str, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _blocks(path: str, blocks) -> None:
    def write(f):
        for block in blocks:
            f.write(block)

    atomic_write(path, write)


def write_projector(path: str, matrix, ids: np.ndarray, keys: list[str] | None, norms: np.ndarray,
                    tensor_name: str, advance: Advance = None) -> tuple[str, ...]:
    """tensors.tsv (a row of tab-separated values per vector), metadata.tsv (a header, then
    token, id and norm per row; positions: position and norm) and projector_config.pbtxt, in
    the folder `path`: what TensorBoard's projector reads from a log folder."""
    _folder(path)
    files = tuple(os.path.join(path, name) for name in PROJECTOR_FILES)
    _blocks(files[0], float_lines(matrix, None, "\t", advance))
    if keys is None:
        header = "position\tnorm\n"
        rows = [f"{i}\t{FLOAT % v}\n" for i, v in zip(ids.tolist(), norms.tolist())]
    else:
        header = "token\tid\tnorm\n"
        rows = [f"{k}\t{i}\t{FLOAT % v}\n" for k, i, v in zip(keys, ids.tolist(), norms.tolist())]
    _text(files[1], header + "".join(rows))
    _text(files[2], projector_config(tensor_name, matrix.shape, PROJECTOR_FILES[0], PROJECTOR_FILES[1]))
    return files


def projector_config(tensor_name: str, shape: tuple[int, int], tensor_path: str, metadata_path: str) -> str:
    """A ProjectorConfig in protobuf text format, with one embedding."""
    return ("embeddings {\n"
            f"  tensor_name: {pb_string(tensor_name)}\n"
            f"  tensor_shape: {shape[0]}\n"
            f"  tensor_shape: {shape[1]}\n"
            f"  tensor_path: {pb_string(tensor_path)}\n"
            f"  metadata_path: {pb_string(metadata_path)}\n"
            "}\n")


def pb_string(text: str) -> str:
    """A protobuf text-format string literal: printable ASCII as is, quote and backslash
    escaped, every other byte of the UTF-8 as an octal escape."""
    out = []
    for b in text.encode("utf-8"):
        ch = chr(b)
        out.append("\\" + ch if ch in "\"\\" else ch if 0x20 <= b < 0x7F else f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def write_word2vec(path: str, matrix, keys: list[str], binary: bool, advance: Advance = None) -> tuple[str, ...]:
    """The word2vec format: a line 'count dim', then per row the key, a space and the values:
    as text (9 significant digits, space-separated, a line each) or binary (float32
    little-endian, a newline after each vector, as word2vec.c writes it)."""
    n, d = matrix.shape
    header = f"{n} {d}\n".encode("ascii")
    if binary:
        blocks = _binary_rows(matrix, keys, advance)
    else:
        blocks = float_lines(matrix, [k + " " for k in keys], " ", advance)
    _blocks(path, _chain([header], blocks))
    return (path,)


def _binary_rows(matrix, keys: list[str], advance: Advance):
    from embscope.export.text import BLOCK_ROWS

    n = matrix.shape[0]
    rows = matrix.rows if hasattr(matrix, "rows") else (lambda a, b: matrix[a:b])
    for start in range(0, n, BLOCK_ROWS):
        block = np.asarray(rows(start, min(n, start + BLOCK_ROWS)), dtype="<f4")  # (b, d)
        yield b"".join(keys[start + i].encode("utf-8") + b" " + row.tobytes() + b"\n"
                       for i, row in enumerate(block))
        if advance:
            advance(len(block))


def _chain(*parts):
    for part in parts:
        yield from part


def write_npy(path: str, matrix, ids: np.ndarray, keys: list[str] | None, id_name: str) -> tuple[str, ...]:
    """embeddings.npy (the (n, d) float32 matrix) and vocab.tsv (a header, then id and token per
    row; positions: the position), row i of one beside line i + 1 of the other."""
    _folder(path)
    files = tuple(os.path.join(path, name) for name in NPY_FILES)
    array = np.asarray(matrix.rows(0, matrix.shape[0]) if hasattr(matrix, "rows") else matrix, dtype=np.float32)
    atomic_write(files[0], lambda f: np.save(f, array))
    if keys is None:
        _text(files[1], f"{id_name}\n" + "".join(f"{i}\n" for i in ids.tolist()))
    else:
        _text(files[1], f"{id_name}\ttoken\n" + "".join(f"{i}\t{k}\n" for i, k in zip(ids.tolist(), keys)))
    return files


def unique_keys(keys: list[str], ids: np.ndarray) -> tuple[list[str], int]:
    """The keys with each repeat made unique by its id ('\\#ID' at the end), and how many were."""
    seen: set[str] = set()
    out, renamed = [], 0
    for k, i in zip(keys, ids.tolist()):
        if k in seen:
            k, renamed = f"{k}\\#{i}", renamed + 1
        seen.add(k)
        out.append(k)
    return out, renamed
