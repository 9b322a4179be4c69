"""Pipes, signals and output files, with real processes of the installed entry point.

`embscope ... | head -1` exits quietly; Ctrl-C exits 130 with one line; `-o FILE` is written whole
or not at all, with no temporary file left behind, however the write ends.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests import untrusted as u

EMBSCOPE = str(Path(sys.executable).parent / "embscope")  # the console script pip installed
ENV = {**os.environ, "EMBSCOPE_MODEL": "", "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "100"}


def _default_sigint():
    """Background jobs start with SIGINT ignored, and Python keeps it so; the user's terminal
    would deliver it. Restore the default so Python installs its KeyboardInterrupt handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory) -> Path:
    """GPT-2's 50257-token vocabulary (bundled tokenizer), 16 wide: --all takes seconds."""
    d = tmp_path_factory.mktemp("pipes") / "gpt2"
    u.save_gpt2_safetensors(d)
    return d


@pytest.fixture(scope="module")
def long_positions(tmp_path_factory) -> Path:
    """A model with 1024 positions: `positions -o` writes a 4 MiB matrix."""
    from safetensors.numpy import save_file

    d = tmp_path_factory.mktemp("pipes") / "long"
    d.mkdir()
    rng = np.random.default_rng(0)
    save_file({"transformer.wte.weight": rng.standard_normal((100, 16)).astype(np.float32),
               "transformer.wpe.weight": rng.standard_normal((1024, 16)).astype(np.float32)},
              str(d / "model.safetensors"))
    return d


def pipe_to_head(argv, stdin=None) -> tuple[int, bytes, bytes]:
    """`embscope argv | head -1`: (embscope's exit status, head's output, embscope's stderr)."""
    src = subprocess.Popen([EMBSCOPE, *argv], stdin=stdin or subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, env=ENV)
    head = subprocess.Popen(["head", "-1"], stdin=src.stdout, stdout=subprocess.PIPE)
    src.stdout.close()  # head holds the only reading end: when it exits, writes fail with EPIPE
    out, _ = head.communicate(timeout=120)
    err = src.stderr.read()
    src.stderr.close()
    return src.wait(timeout=120), out, err


# --- | head -1 -----------------------------------------------------------------------------------

@pytest.mark.parametrize("k", ["10", "50000"])  # fits in the pipe buffer / far larger than it
@pytest.mark.parametrize("fmt", ["tsv", "jsonl"])
def test_neighbors_into_head(gpt2, k, fmt):
    code, out, err = pipe_to_head(["neighbors", "king", "-k", k, "-m", str(gpt2), "-f", fmt])
    assert (code, err) == (0, b"")
    assert out == (b"rank\tid\ttoken\tscore\n" if fmt == "tsv" else out)
    assert out.count(b"\n") == 1


def test_batch_into_head(gpt2, tmp_path):
    """Thousands of queries from stdin; head reads one line."""
    words = ["king", "queen", "man", "woman", "Paris", "France", "#42", "king - man + woman"] * 500
    queries = tmp_path / "queries.txt"
    queries.write_text("\n".join(words) + "\n")
    with open(queries, "rb") as stdin:
        code, out, err = pipe_to_head(["neighbors", "-", "-k", "20", "-m", str(gpt2), "-f", "tsv"], stdin=stdin)
    assert (code, out, err) == (0, b"query\trank\tid\ttoken\tscore\n", b"")


@pytest.mark.parametrize("argv", [
    ["neighbors", "--all", "-k", "3", "-f", "tsv"],
    ["norms", "--all", "-f", "csv"],
    ["embed", "-", "-f", "tsv"],
    ["positions", "-f", "tsv"],
    ["info", "-f", "tsv"],
], ids=lambda a: "-".join(a[:2]))
def test_other_commands_into_head(gpt2, tmp_path, argv):
    stdin = None
    if argv[1] == "-":
        (tmp_path / "texts.txt").write_text("the quick brown fox\n" * 3000)
        stdin = open(tmp_path / "texts.txt", "rb")
    try:
        code, out, err = pipe_to_head([*argv, "-m", str(gpt2)], stdin=stdin)
    finally:
        if stdin:
            stdin.close()
    assert (code, err) == (0, b"")
    assert out.count(b"\n") == 1


def test_stdout_closed_before_start(gpt2):
    """The reader is gone before embscope writes anything at all."""
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([EMBSCOPE, "neighbors", "king", "-k", "50000", "-m", str(gpt2), "-f", "tsv"],
                           stdout=w, stderr=subprocess.PIPE, env=ENV, timeout=120)
    finally:
        os.close(w)
    assert (p.returncode, p.stderr) == (0, b"")


# --- Ctrl-C --------------------------------------------------------------------------------------

def test_sigint_during_knn_graph(gpt2):
    """SIGINT about a second into `neighbors --all` (which runs for many seconds): exit 130 and
    exactly one line on stderr."""
    p = subprocess.Popen([EMBSCOPE, "neighbors", "--all", "-k", "5", "-m", str(gpt2), "-f", "tsv"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, preexec_fn=_default_sigint)
    first = p.stdout.readline()  # it is running and writing
    drained = threading.Thread(target=p.stdout.read, daemon=True)
    drained.start()
    time.sleep(1.0)
    assert p.poll() is None, "finished before the signal: the test needs a longer run"
    p.send_signal(signal.SIGINT)
    code = p.wait(timeout=60)
    err = p.stderr.read()
    assert first == b"id\ttoken\trank\tneighbor_id\tneighbor\tscore\n"
    assert (code, err) == (130, b"embscope: error: interrupted\n")


def test_sigint_while_reading_stdin(gpt2):
    """Ctrl-C while embscope waits for queries on stdin: exit 130, one line."""
    p = subprocess.Popen([EMBSCOPE, "neighbors", "-", "-m", str(gpt2)], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, preexec_fn=_default_sigint)
    time.sleep(1.5)
    p.send_signal(signal.SIGINT)
    code = p.wait(timeout=60)
    assert (code, p.stdout.read(), p.stderr.read()) == (130, b"", b"embscope: error: interrupted\n")
    p.stdin.close()


# --- -o FILE: whole or not at all ------------------------------------------------------------------

OUTPUTS = {  # command -> (argv with {out}, file name, model fixture)
    "positions": (["positions", "-o", "{out}"], "pos.npy", "long_positions"),
    "norms": (["norms", "-o", "{out}", "-f", "tsv"], "norms.png", "gpt2"),
    "embed": (["embed", "the quick brown fox", "-o", "{out}"], "emb.npy", "gpt2"),
    "neighbors": (["neighbors", "--all", "-k", "2", "--rows", "0:20000", "-o", "{out}"], "graph.tsv", "gpt2"),
    "tokens": (["tokens", "the quick brown fox jumps over the lazy dog", "-o", "{out}"], "tokens.jsonl", "gpt2"),
}


def _argv(command, out, request):
    argv, _, fixture = OUTPUTS[command]
    return [EMBSCOPE, *[a.format(out=out) for a in argv], "-m", str(request.getfixturevalue(fixture))]


def _complete(path: Path) -> None:
    """The file is whole: it parses as what it claims to be."""
    if path.suffix == ".npy":
        np.load(path)
    elif path.suffix == ".tsv":  # neighbors --all -k 2 --rows 0:20000: a header and two rows a token
        assert path.read_text().count("\n") == 1 + 2 * 20000
    elif path.suffix == ".jsonl":
        assert [json.loads(line)["pos"] for line in path.read_text().splitlines()] == list(range(9))
    else:
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82")


@pytest.mark.parametrize("command", list(OUTPUTS))
def test_output_written_whole(tmp_path, request, command):
    out = tmp_path / "out" / OUTPUTS[command][1]
    out.parent.mkdir()
    r = subprocess.run(_argv(command, out, request), capture_output=True, env=ENV, timeout=120)
    assert r.returncode == 0, r.stderr
    _complete(out)
    assert os.listdir(out.parent) == [out.name]
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _watch_and_kill(argv, directory: Path, sig=signal.SIGKILL) -> bool:
    """Start argv; the moment it holds a file open in `directory` (its output, being written),
    send `sig`. True when the signal went in mid-write."""
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV,
                         preexec_fn=_default_sigint)
    prefix = str(directory) + "/"
    try:
        while p.poll() is None:
            try:
                fds = os.listdir(f"/proc/{p.pid}/fd")
            except OSError:
                break
            for fd in fds:
                try:
                    target = os.readlink(f"/proc/{p.pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith(prefix):
                    p.send_signal(sig)
                    p.wait(timeout=60)
                    return True
            time.sleep(0.0002)
        return False
    finally:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=60)
        p.stderr.close()


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
@pytest.mark.parametrize("command", ["positions", "norms", "neighbors"])
def test_killed_mid_write(tmp_path, request, command, sig):
    """Killed while the output file is open: no file at the target, no temporary file beside it
    (the output is an O_TMPFILE file with no name until it is complete)."""
    if not hasattr(os, "O_TMPFILE") and sig != signal.SIGINT:
        pytest.skip("without O_TMPFILE only a handled signal can clean up")
    out = tmp_path / "out" / OUTPUTS[command][1]
    out.parent.mkdir()
    for _ in range(20):  # the write is short: try until a signal lands inside it
        if _watch_and_kill(_argv(command, out, request), out.parent, sig):
            break
        out.unlink(missing_ok=True)
    else:
        pytest.skip("never caught the process mid-write")
    assert os.listdir(out.parent) == [] or (os.listdir(out.parent) == [out.name] and _complete(out) is None)


@pytest.mark.parametrize("command", list(OUTPUTS))
def test_previous_file_kept_when_the_write_fails(tmp_path, request, command):
    """A write that fails (here: the file size limit, EFBIG) leaves the old file as it was."""
    import resource

    out = tmp_path / "out" / OUTPUTS[command][1]
    out.parent.mkdir()
    out.write_bytes(b"the previous version")

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (200, 200))  # Python ignores SIGXFSZ: EFBIG

    argv = _argv(command, out, request)
    r = subprocess.run(argv, capture_output=True, env=ENV, timeout=120, preexec_fn=limit)
    assert r.returncode == 1
    assert r.stderr.decode().splitlines()[-1] == f"embscope: error: Cannot write {out}: File too large"
    assert out.read_bytes() == b"the previous version"
    assert os.listdir(out.parent) == [out.name]


@pytest.mark.parametrize("command", list(OUTPUTS))
def test_target_is_a_directory(tmp_path, request, command):
    out = tmp_path / OUTPUTS[command][1]
    out.mkdir()
    (out / "keep").write_text("x")
    r = subprocess.run(_argv(command, out, request), capture_output=True, env=ENV, timeout=120)
    assert r.returncode == 1
    assert r.stderr.decode().splitlines()[-1] == f"embscope: error: Cannot write {out}: it is a directory"
    assert sorted(os.listdir(tmp_path)) == [out.name] and os.listdir(out) == ["keep"]


@pytest.mark.parametrize("command", list(OUTPUTS))
def test_directory_missing(tmp_path, request, command):
    out = tmp_path / "nope" / OUTPUTS[command][1]
    r = subprocess.run(_argv(command, out, request), capture_output=True, env=ENV, timeout=120)
    assert r.returncode == 1
    assert r.stderr.decode().splitlines()[-1] == (f"embscope: error: Cannot write {out}: directory"
                                                  f" {out.parent} does not exist")
    assert os.listdir(tmp_path) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
@pytest.mark.parametrize("command", list(OUTPUTS))
def test_read_only_directory(tmp_path, request, command):
    out = tmp_path / "ro" / OUTPUTS[command][1]
    out.parent.mkdir()
    out.parent.chmod(0o555)
    try:
        r = subprocess.run(_argv(command, out, request), capture_output=True, env=ENV, timeout=120)
    finally:
        out.parent.chmod(0o755)
    assert r.returncode == 1
    assert r.stderr.decode().splitlines()[-1] == f"embscope: error: Cannot write {out}: Permission denied"
    assert os.listdir(out.parent) == []


def test_without_o_tmpfile_links(tmp_path, monkeypatch):
    """Where the anonymous file cannot be linked (EXDEV), it is copied into a named temporary
    file instead: same result, nothing left over."""
    from embscope import atomic

    def refuse(*a, **k):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(atomic.os, "link", refuse)
    out = tmp_path / "x.npy"
    atomic.atomic_write(str(out), lambda f: np.save(f, np.arange(10)))
    assert np.load(out).tolist() == list(range(10)) and os.listdir(tmp_path) == ["x.npy"]


def test_without_o_tmpfile(tmp_path, monkeypatch):
    """And where there is no O_TMPFILE at all, a failing write removes its temporary file."""
    from embscope import atomic
    from embscope.errors import EmbscopeError

    monkeypatch.setattr(atomic, "_anonymous_file", lambda d: None)
    out = tmp_path / "x.npy"
    atomic.atomic_write(str(out), lambda f: np.save(f, np.arange(10)))
    assert np.load(out).tolist() == list(range(10)) and os.listdir(tmp_path) == ["x.npy"]

    def broken(f):
        f.write(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(EmbscopeError, match=r"Cannot write .*: No space left on device"):
        atomic.atomic_write(str(out), broken)
    assert np.load(out).tolist() == list(range(10)) and os.listdir(tmp_path) == ["x.npy"]
