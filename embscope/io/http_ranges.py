"""Byte ranges of a file on the Hub, over huggingface_hub's own HTTP session.

Every request goes through `huggingface_hub.get_session()` with headers from `build_hf_headers()`
(token, user agent), to URLs from `hf_hub_url()` (HF_ENDPOINT), and every error response through
`hf_raise_for_status()`: proxies, login and gated repositories behave as in other HF tools.
Unlike `hf_hub_download`, nothing here sleeps and retries when the network is down: a connection
that cannot be made fails at once (connect timeout CONNECT_TIMEOUT); a connection dropped in the
middle of a range is resumed from the byte where it stopped, a few times at most.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

from embscope.errors import first_line

CONNECT_TIMEOUT = 1.25  # seconds to open a connection: an unreachable Hub fails fast
CONNECT_TIMEOUT_ENV = "EMBSCOPE_HUB_CONNECT_TIMEOUT"  # for links slower than that
CHUNK = 8 << 20  # bytes per range request when a tensor is fetched in parallel
WORKERS = 8  # range requests in flight at once
ATTEMPTS = 4  # tries per range: a dropped connection resumes where it stopped
RESUME_MIN = 64 << 10  # a try that brings this many bytes is progress, not a failed attempt
FLUSH = 4 << 20  # bytes received are written in blocks this big
TAIL = 64 << 10  # bytes fetched at once near the end of a file (a zip's directory)
AHEAD = 8 << 10  # least bytes fetched by one small read (zip headers)
PROGRESS_AFTER = 0.5  # seconds: shorter transfers show no progress bar


class NoRanges(Exception):
    """The server answered a range request with the whole file (it does not serve ranges)."""


class TransferFailed(Exception):
    """A range could not be fetched after ATTEMPTS tries."""


def timeout():
    """Connect within CONNECT_TIMEOUT seconds (or $EMBSCOPE_HUB_CONNECT_TIMEOUT), then wait for
    data as long as huggingface_hub's HF_HUB_DOWNLOAD_TIMEOUT."""
    import httpx2  # huggingface_hub 2.x's HTTP library

    from huggingface_hub import constants

    try:
        connect = float(os.environ.get(CONNECT_TIMEOUT_ENV, CONNECT_TIMEOUT))
    except ValueError:
        connect = CONNECT_TIMEOUT
    return httpx2.Timeout(float(constants.HF_HUB_DOWNLOAD_TIMEOUT), connect=connect)


def reachable() -> None:
    """Raise a network error at once if the Hub cannot be reached, before anything waits longer.

    huggingface_hub's build_hf_headers() fetches its agent-harness registry from the endpoint
    (once a day, with its own 3 s timeout) the first time a process builds headers; on a network
    that drops packets that alone takes 3 s. So the headers are built in a daemon thread while a
    HEAD of the endpoint, which needs no headers, goes through the same session: if that cannot
    connect within CONNECT_TIMEOUT, the thread is left behind and the error raised."""
    from huggingface_hub import constants, get_session
    from huggingface_hub.utils import build_hf_headers

    warm = threading.Thread(target=build_hf_headers, daemon=True)
    warm.start()
    get_session().head(constants.ENDPOINT + "/", timeout=timeout())
    warm.join()


def network_errors() -> tuple[type[Exception], ...]:
    """Errors that mean "the network or the server went away", not "the server said no"."""
    import httpx2

    return (httpx2.TransportError, httpx2.TimeoutException)


@dataclass
class RemoteFile:
    """One file of a repo at one commit: its URL, the request headers, and its size once known."""

    url: str
    headers: dict
    label: str  # how messages name it: hf://org/name@commit/file
    size: int | None = None

    def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end) in one request (headers, zip directories: small reads)."""
        out = bytearray(end - start)

        def sink(offset: int, data: bytes) -> None:
            out[offset - start:offset - start + len(data)] = data

        fetch_ranges([(self, start, end, sink)], progress=None)
        return bytes(out)


class _Pending:
    """Bytes received but not yet handed to the sink: handed on in blocks of FLUSH bytes (page
    cache pages written in big blocks map faster later: a cached run reads them), and always
    before at[0] moves, so that at[0] never counts bytes the sink has not had."""

    def __init__(self, sink, at: list[int]):
        self.sink, self.at, self.data = sink, at, bytearray()

    @property
    def end(self) -> int:
        return self.at[0] + len(self.data)

    def add(self, data: bytes) -> None:
        self.data += data
        if len(self.data) >= FLUSH:
            self.flush()

    def flush(self) -> None:
        if self.data:
            self.sink(self.at[0], self.data)
            self.at[0] += len(self.data)
            self.data = bytearray()


def _open_range(f: RemoteFile, at: list[int], end: int, stop: threading.Event, sink, count) -> None:
    """Stream bytes [at[0], end) of `f` into sink(offset, data), moving at[0] along (so that
    after a failure it says where to resume)."""
    from huggingface_hub import get_session
    from huggingface_hub.utils import hf_raise_for_status

    headers = {**f.headers, "Range": f"bytes={at[0]}-{end - 1}", "Accept-Encoding": "identity"}
    with get_session().stream("GET", f.url, headers=headers, timeout=timeout()) as response:
        if response.status_code >= 400:
            response.read()
            hf_raise_for_status(response)
        if response.status_code != 206:
            raise NoRanges(f.label)
        total = _content_range(response.headers.get("Content-Range"), at[0])
        if total is not None and f.size is None:
            f.size = total
        pending = _Pending(sink, at)
        try:
            for data in response.iter_bytes():  # as it arrives: a dropped connection loses nothing received
                if stop.is_set():
                    return
                data = data[:end - pending.end]
                pending.add(data)
                count(len(data))
                if pending.end >= end:
                    return
        finally:
            pending.flush()


def _content_range(value: str | None, start: int) -> int | None:
    """The total size from `Content-Range: bytes a-b/total`; a range that starts elsewhere is refused."""
    if not value or not value.startswith("bytes "):
        raise TransferFailed("the server's answer to a range request has no Content-Range")
    span, _, total = value[len("bytes "):].partition("/")
    if int(span.split("-")[0]) != start:
        raise TransferFailed(f"asked for bytes from {start}, the server sent '{value}'")
    return int(total) if total.isdigit() else None


def _fetch_one(f: RemoteFile, start: int, end: int, sink, stop: threading.Event, count) -> None:
    """Bytes [start, end) of `f`: a connection dropped (or a range cut short) is resumed where it
    stopped; ATTEMPTS tries in a row that bring less than RESUME_MIN bytes end it."""
    at, tries = [start], 0
    while at[0] < end and not stop.is_set():
        before, error = at[0], None
        try:
            _open_range(f, at, end, stop, sink, count)
        except network_errors() as e:
            error = e
        if at[0] >= end or stop.is_set():
            return
        tries = 0 if at[0] - before >= RESUME_MIN else tries + 1
        if tries >= ATTEMPTS:
            why = first_line(error, 160) if error is not None else "the server sent fewer bytes than asked for"
            raise TransferFailed(f"{f.label}: {why}")
        time.sleep(0.1 * tries)


def fetch_ranges(jobs, progress: Progress | None) -> None:
    """Fetch every (file, start, end, sink) job, cut into CHUNK-sized ranges, WORKERS at a time.
    The first failure stops the others and is raised."""
    pieces = [(f, a, min(a + CHUNK, end), sink) for f, start, end, sink in jobs for a in range(start, end, CHUNK)]
    if not pieces:
        return
    stop = threading.Event()
    count = progress.advance if progress is not None else (lambda n: None)

    if len(pieces) == 1:
        f, a, b, sink = pieces[0]
        _fetch_one(f, a, b, sink, stop, count)
        return
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    pool = ThreadPoolExecutor(max_workers=min(WORKERS, len(pieces)))
    try:
        futures = [pool.submit(_fetch_one, f, a, b, sink, stop, count) for f, a, b, sink in pieces]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        for fut in done:
            if fut.exception() is not None:
                raise fut.exception()
    finally:
        stop.set()  # on failure or Ctrl-C, the other ranges end at their next block
        pool.shutdown(wait=True, cancel_futures=True)


class RangeFile:
    """A read-only, seekable file object over a RemoteFile, for zipfile: reads near the end fetch
    the last TAIL bytes at once (the central directory), others at least AHEAD bytes."""

    def __init__(self, remote: RemoteFile):
        if remote.size is None:
            raise ValueError("RangeFile needs the file's size")
        self.remote = remote
        self.size = remote.size
        self.name = remote.label
        self._pos = 0
        self._buf_start, self._buf = 0, b""
        self.error: BaseException | None = None  # what a failed read raised (zipfile rewraps it)

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self.size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, n: int = -1) -> bytes:
        end = self.size if n is None or n < 0 else min(self.size, self._pos + n)
        if self._pos >= end:
            return b""
        if not (self._buf_start <= self._pos and end <= self._buf_start + len(self._buf)):
            self._fill(self._pos, end)
        i = self._pos - self._buf_start
        data = self._buf[i:i + end - self._pos]
        self._pos = end
        return data

    def _fill(self, start: int, end: int) -> None:
        if end > self.size - TAIL:
            start = min(start, max(0, self.size - TAIL))
            end = self.size
        else:
            end = min(self.size, max(end, start + AHEAD))
        self.error = None
        try:
            self._buf_start, self._buf = start, self.remote.read(start, end)
        except BaseException as e:
            self.error = e
            raise

    def close(self) -> None:
        pass


def _bars_disabled() -> bool:
    from huggingface_hub.utils import are_progress_bars_disabled

    return are_progress_bars_disabled()


class Progress:
    """A progress bar (bytes, rate) on stderr for a transfer of `total` bytes; it appears only
    when the caller asks (`show`: the CLI when stderr is a terminal), HF_HUB_DISABLE_PROGRESS_BARS
    is not set, and the transfer is still going after PROGRESS_AFTER seconds."""

    def __init__(self, description: str, total: int, show: bool):
        self._description, self._total = description, total
        self._done = 0
        self._lock = threading.Lock()
        self._bar = None
        self._timer = None
        if show and not _bars_disabled():
            self._timer = threading.Timer(PROGRESS_AFTER, self._show)
            self._timer.daemon = True
            self._timer.start()

    def _show(self) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress as Bar, TextColumn,
                                   TimeRemainingColumn, TransferSpeedColumn)

        with self._lock:
            if self._timer is None:
                return
            self._bar = Bar(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                            TransferSpeedColumn(), TimeRemainingColumn(),
                            console=Console(stderr=True), transient=True)
            self._task = self._bar.add_task(self._description, total=self._total, completed=self._done)
            self._bar.start()

    def advance(self, n: int) -> None:
        with self._lock:
            self._done += n
            if self._bar is not None:
                self._bar.update(self._task, completed=self._done)

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._bar is not None:
                self._bar.stop()
                self._bar = None
