"""Writing a file whole or not at all: `atomic_write(path, write_bytes)`, `AtomicFile` for output
written piece by piece, and `check_writable` to fail before any output when the file could not
be written.

Used for every file embscope writes: `-o` data, arrays and pictures, and the Hub tensor cache.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
import tempfile

from embscope.errors import EmbscopeError


def _usual_mode(path: str) -> None:
    """mkstemp makes 0600 files; give ours the mode any new file gets (0666 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def check_writable(path: str) -> None:
    """Fail now, before any output, if `path` cannot be written as atomic_write writes it: a
    directory, a missing directory, or a directory where no file can be made (read-only, no
    permission). A nameless file is made there and closed (on Linux it never gets a name)."""
    directory = _check_target(path)
    try:
        tempfile.TemporaryFile(dir=directory, prefix=".embscope-").close()
    except OSError as e:
        raise EmbscopeError(f"Cannot write {path}: {e.strerror or e}") from None


def _check_target(path: str) -> str:
    """The directory `path` goes in, after the checks atomic_write makes first."""
    directory = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise EmbscopeError(f"Cannot write {path}: it is a directory")
    if not os.path.isdir(directory):
        raise EmbscopeError(f"Cannot write {path}: directory {os.path.dirname(path) or '.'} does not exist")
    return directory


def atomic_write(path: str, write_bytes) -> None:
    """Call write_bytes(file) on a file with no name yet, in `path`'s directory, then give it
    `path`: readers see the whole file or none of it, and nothing is left behind on failure.

    On Linux the file is opened with O_TMPFILE: until it is linked it has no name, so even a
    process killed mid-write (SIGKILL, SIGXFSZ at a file size limit) leaves no temporary file.
    It is then linked under a temporary name and renamed onto `path` (rename replaces
    atomically). Elsewhere a named temporary file is used, removed on any exception."""
    f = AtomicFile(path)
    try:
        write_bytes(f.file)
    except BaseException as e:
        f.discard()
        if isinstance(e, OSError):
            raise f.error(e) from None
        raise
    f.commit()


class AtomicFile:
    """A binary file being written for `path` (`.file`), as atomic_write writes it: `commit()`
    gives it `path`, whole; `discard()` drops it, leaving `path` as it was. `text()` is a
    UTF-8 text stream onto it whose write failures are EmbscopeErrors naming `path`."""

    def __init__(self, path: str):
        self.path = path
        directory = _check_target(path)
        self._directory, self._tmp = directory, None
        try:
            fd = _anonymous_file(directory)
            if fd is None:
                fd, self._tmp = tempfile.mkstemp(prefix=".embscope-", dir=directory)
                _usual_mode(self._tmp)
        except OSError as e:
            raise self.error(e) from None
        self.file = os.fdopen(fd, "w+b")

    def error(self, e: OSError) -> EmbscopeError:
        return EmbscopeError(f"Cannot write {self.path}: {e.strerror or e}")

    def text(self):
        return _TextOnto(self)

    def commit(self) -> None:
        try:
            self.file.flush()
            if self._tmp is None:  # give the finished file a (temporary) name
                self._tmp = _name_anonymous(self.file, self._directory)
            self.file.close()
            os.replace(self._tmp, self.path)
        except BaseException as e:
            self.discard()
            if isinstance(e, OSError):
                raise self.error(e) from None
            raise

    def discard(self) -> None:
        try:
            self.file.close()
        except OSError:
            pass
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except OSError:
                pass
            self._tmp = None


class _TextOnto(io.TextIOBase):
    """UTF-8 text written through to an AtomicFile; an OSError (disk full, file too large)
    becomes the EmbscopeError that names the file."""

    def __init__(self, target: AtomicFile):
        self._target = target

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        try:
            self._target.file.write(text.encode("utf-8", "surrogateescape"))
        except OSError as e:
            raise self._target.error(e) from None
        return len(text)

    def flush(self) -> None:
        try:
            self._target.file.flush()
        except OSError as e:
            raise self._target.error(e) from None

    def isatty(self) -> bool:
        return False


def _anonymous_file(directory: str) -> int | None:
    """An O_TMPFILE descriptor in `directory` (mode 0o666 less the umask), or None where the OS
    or the file system has none."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        return os.open(directory, flag | os.O_RDWR, 0o666)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
            return None
        raise


def _name_anonymous(f, directory: str) -> str:
    """Link the O_TMPFILE file `f` into `directory` under a fresh temporary name. Where the
    link is refused, copy it into a named temporary file instead."""
    name = f".embscope-{os.urandom(6).hex()}"
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:  # a dir fd makes os.link call linkat(AT_SYMLINK_FOLLOW): /proc/self/fd/N is a magic link
        os.link(f"/proc/self/fd/{f.fileno()}", name, dst_dir_fd=dir_fd, follow_symlinks=True)
        return os.path.join(directory, name)
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.EACCES, errno.ENOENT, errno.EOPNOTSUPP):
            raise
    finally:
        os.close(dir_fd)
    fd, tmp = tempfile.mkstemp(prefix=".embscope-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            f.seek(0)
            shutil.copyfileobj(f, out)
        _usual_mode(tmp)
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp
