"""Opening the small files beside a model (config.json, tokenizer_config.json, an index, meta.pkl)
only when they are regular files, and reading them with a size cap.

A name in a model folder can be a FIFO (opening it blocks until someone writes), a symlink to
/dev/zero (reading never ends) or a 10 GB "config.json". Each of these files is checked with
`os.stat` before it is opened, opened without blocking, checked again on the open descriptor
(the name may have been swapped in between), and read up to its cap. Files handed to other
libraries by name (tokenizer.json to `tokenizers`) go through `require_regular` first.
"""

from __future__ import annotations

import json
import os
import stat

from embscope.errors import EmbscopeError

SMALL_FILE_LIMIT = 64 << 20  # config.json and friends: a few KB, an index or a vocabulary a few MB

_KINDS = [(stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")]


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _check(path: str, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise EmbscopeError(f"{path}: not a regular file ({_kind(st.st_mode)})")


def require_regular(path: str) -> int:
    """The size of `path` (symlinks followed), which must be a regular file."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise EmbscopeError(f"{path}: {e.strerror}") from None
    _check(path, st)
    return st.st_size


def read_small(path: str, limit: int = SMALL_FILE_LIMIT) -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them (more is an error)."""
    require_regular(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        raise EmbscopeError(f"{path}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        _check(path, st)  # what was opened, not what the name pointed to a moment ago
        if st.st_size > limit:
            raise EmbscopeError(f"{path}: {st.st_size} bytes is more than embscope reads from such a"
                                f" file ({limit >> 20} MiB)")
        data = f.read(limit + 1)
    if len(data) > limit:  # grew while we read
        raise EmbscopeError(f"{path}: more than {limit >> 20} MiB, more than embscope reads from such a file")
    return data


def read_json(path: str, limit: int = SMALL_FILE_LIMIT) -> object:
    """The JSON value in the regular file `path` (at most `limit` bytes)."""
    data = read_small(path, limit)
    try:
        return json.loads(data)
    except RecursionError:
        raise EmbscopeError(f"{path}: not readable JSON (nested too deeply)") from None
    except ValueError as e:  # bad UTF-8, bad JSON, an integer of 5000 digits
        raise EmbscopeError(f"{path}: not readable JSON ({e})") from None


def read_json_object(path: str | None) -> dict:
    """config.json and the like: the JSON object in `path`, or {} when there is no such file
    (`path` None) or it holds something other than an object."""
    if not path:
        return {}
    data = read_json(path)
    return data if isinstance(data, dict) else {}
