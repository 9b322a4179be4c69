"""A stand-in of the Hugging Face Hub on 127.0.0.1, for tests and benchmarks.

It serves model folders (written by the real serializers) at the URL shapes the installed
`huggingface_hub` requests, with the headers it relies on:

- `GET /api/models/{repo}` and `/api/models/{repo}/revision/{rev}` (`?blobs=true` adds sizes):
  the repo's commit (`sha`) and its files (`siblings`); `/api/models/{repo}/tree/{rev}`, the
  listing snapshot_download reads.
- `HEAD`/`GET /{repo}/resolve/{rev}/{file}`: `X-Repo-Commit`, `ETag`, `X-Linked-Etag` and
  `X-Linked-Size` for large (LFS-style) files, `Content-Length`, `Accept-Ranges`, and for a
  `Range: bytes=a-b` request a 206 with `Content-Range` (unless ranges are switched off).
- Errors as the Hub gives them: `X-Error-Code: RepoNotFound`, `RevisionNotFound`,
  `EntryNotFound` (404) and `GatedRepo` (401 without a token, 403 with a wrong one).

It counts the body bytes it sends per file, logs every request, can drop a connection in the
middle of a response (`drop_after`: once, `drop_every`: always) and can send slowly (`delay`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

LFS_THRESHOLD = 10 * 1024  # files at least this big are served as LFS files do (X-Linked-*)


@dataclass
class Repo:
    """One repository: commits (sha -> folder), refs (branch or tag -> sha), access rules."""

    commits: dict[str, Path]
    refs: dict[str, str] = field(default_factory=dict)
    gated: bool = False  # files need `Authorization: Bearer <token>` with the server's token

    def resolve(self, rev: str) -> str | None:
        if rev in self.commits:
            return rev
        return self.refs.get(rev)


@dataclass
class Logged:
    method: str
    path: str
    range: str | None
    status: int
    authorized: bool


class _Quiet(ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # a client that went away is no news
        pass


def _etag(path: Path) -> str:
    """sha256 of the content, as the Hub's LFS etags are; for files over 64 MiB (the benchmark's
    6 GB one) a hash of name, size and mtime instead: an ETag only has to change with the file."""
    st = path.stat()
    if st.st_size > 64 << 20:
        return hashlib.sha256(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


class HubServer:
    """The stand-in: `with HubServer(repos) as hub:` then `HF_ENDPOINT=hub.url`."""

    def __init__(self, repos: dict[str, Repo], token: str = "hf_test_token"):
        self.repos = repos
        self.token = token
        self.ranges = True  # honour Range headers
        self.drop_after: dict[str, int] = {}  # file name -> drop its next response longer than N bytes after N
        self.drop_every: dict[str, int] = {}  # file name -> drop every response longer than N bytes after N
        self.delay = 0.0  # seconds to wait before each 64 KiB block of a file
        self.sent: dict[str, int] = {}  # "repo/file" -> body bytes sent
        self.log: list[Logged] = []
        self._lock = threading.Lock()
        self._etags: dict[Path, str] = {}
        self._httpd = _Quiet(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def reset(self) -> None:
        """Counts, log and faults back to nothing (between tests)."""
        with self._lock:
            self.sent.clear()
            self.log.clear()
            self.drop_after.clear()
            self.drop_every.clear()
        self.ranges, self.delay = True, 0.0

    def resolved(self, status: int | None = None) -> list[Logged]:
        """The logged requests for repo files (not the API), optionally of one status."""
        with self._lock:
            return [e for e in self.log if "/resolve/" in e.path and (status is None or e.status == status)]

    def total_sent(self) -> int:
        return sum(self.sent.values())

    def etag(self, path: Path) -> str:
        with self._lock:
            if path not in self._etags:
                self._etags[path] = _etag(path)
            return self._etags[path]

    def _count(self, key: str, n: int) -> None:
        with self._lock:
            self.sent[key] = self.sent.get(key, 0) + n

    def _record(self, entry: Logged) -> None:
        with self._lock:
            self.log.append(entry)

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                self._serve(head=True)

            def do_GET(self):
                self._serve(head=False)

            # --- plumbing ---------------------------------------------------------------------
            def _authorized(self) -> bool:
                return self.headers.get("Authorization") == f"Bearer {server.token}"

            def _reply(self, status: int, headers: dict, body: bytes = b"", head: bool = False) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, str(v))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head and body:
                    self.wfile.write(body)
                server._record(Logged(self.command, self.path, self.headers.get("Range"), status, self._authorized()))

            def _error(self, status: int, code: str, message: str, head: bool, commit: str | None = None) -> None:
                headers = {"X-Error-Code": code, "X-Error-Message": message, "Content-Type": "application/json"}
                if commit:
                    headers["X-Repo-Commit"] = commit
                self._reply(status, headers, json.dumps({"error": message}).encode(), head)

            def _serve(self, head: bool) -> None:
                parts = urlsplit(self.path)
                path = parts.path
                if path.startswith("/api/models/"):
                    return self._api(path[len("/api/models/"):], parse_qs(parts.query), head)
                m = re.fullmatch(r"/(?P<repo>[^/]+(?:/[^/]+)?)/resolve/(?P<rev>[^/]+)/(?P<file>.+)", path)
                if not m:
                    return self._error(404, "RepoNotFound", "Repository not found", head)
                return self._resolve(unquote(m["repo"]), unquote(m["rev"]), unquote(m["file"]), head)

            def _repo(self, repo_id: str, rev: str, head: bool, files: bool):
                repo = server.repos.get(repo_id)
                if repo is None:
                    self._error(404 if self._authorized() else 401, "RepoNotFound", "Repository not found", head)
                    return None, None
                commit = repo.resolve(rev)
                if commit is None:
                    self._error(404, "RevisionNotFound", "Invalid rev id: " + rev, head)
                    return None, None
                if files and repo.gated and not self._authorized():
                    status = 403 if self.headers.get("Authorization") else 401
                    self._error(status, "GatedRepo", f"Access to model {repo_id} is restricted.", head, commit)
                    return None, None
                return repo, commit

            # --- /api/models/{repo}[/revision/{rev}] -----------------------------------------
            def _api(self, rest: str, query: dict, head: bool) -> None:
                if "/tree/" in rest:
                    return self._tree(*rest.split("/tree/", 1), head)
                repo_id, _, rev = rest.partition("/revision/")
                repo, commit = self._repo(unquote(repo_id), unquote(rev) or "main", head, files=False)
                if repo is None:
                    return
                folder = repo.commits[commit]
                blobs = query.get("blobs", ["false"])[0].lower() == "true"
                siblings = []
                for f in sorted(p for p in folder.rglob("*") if p.is_file()):
                    entry = {"rfilename": f.relative_to(folder).as_posix()}
                    if blobs:
                        size = f.stat().st_size
                        entry.update(size=size, blobId=server.etag(f)[:40])
                        if size >= LFS_THRESHOLD:
                            entry["lfs"] = {"size": size, "sha256": server.etag(f), "pointerSize": 134}
                    siblings.append(entry)
                body = json.dumps({"id": repo_id, "modelId": repo_id, "sha": commit, "private": False,
                                   "gated": "auto" if repo.gated else False, "siblings": siblings}).encode()
                server._count(f"{repo_id}/api", len(body) if not head else 0)
                self._reply(200, {"Content-Type": "application/json"}, body, head)

            # --- /api/models/{repo}/tree/{rev} (snapshot_download's listing) -------------------
            def _tree(self, repo_id: str, rev: str, head: bool) -> None:
                repo, commit = self._repo(unquote(repo_id), unquote(rev.split("/")[0]), head, files=False)
                if repo is None:
                    return
                folder = repo.commits[commit]
                entries = []
                for f in sorted(p for p in folder.rglob("*") if p.is_file()):
                    size = f.stat().st_size
                    entry = {"type": "file", "path": f.relative_to(folder).as_posix(), "size": size,
                             "oid": server.etag(f)[:40]}
                    if size >= LFS_THRESHOLD:
                        entry["lfs"] = {"oid": server.etag(f), "size": size, "pointerSize": 134}
                    entries.append(entry)
                body = json.dumps(entries).encode()
                server._count(f"{repo_id}/api", len(body) if not head else 0)
                self._reply(200, {"Content-Type": "application/json"}, body, head)

            # --- /{repo}/resolve/{rev}/{file} ------------------------------------------------
            def _resolve(self, repo_id: str, rev: str, name: str, head: bool) -> None:
                repo, commit = self._repo(repo_id, rev, head, files=True)
                if repo is None:
                    return
                path = repo.commits[commit] / name
                if ".." in Path(name).parts or not path.is_file():
                    return self._error(404, "EntryNotFound", f"{name} does not exist", head, commit)
                size = path.stat().st_size
                etag = server.etag(path)
                headers = {"X-Repo-Commit": commit, "ETag": f'"{etag}"', "Accept-Ranges": "bytes",
                           "Content-Type": "application/octet-stream"}
                if size >= LFS_THRESHOLD:
                    headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": size})
                start, end, status = 0, size, 200
                rng = self.headers.get("Range")
                if rng and server.ranges:
                    m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
                    if not m or int(m[1]) >= size:
                        headers["Content-Range"] = f"bytes */{size}"
                        return self._reply(416, headers, b"", head)
                    start = int(m[1])
                    end = min(size, int(m[2]) + 1) if m[2] else size
                    status = 206
                    headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
                if not server.ranges:
                    headers.pop("Accept-Ranges")
                self._send_file(path, f"{repo_id}/{name}", status, headers, start, end, head)

            def _send_file(self, path: Path, key: str, status: int, headers: dict, start: int, end: int,
                           head: bool) -> None:
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, str(v))
                self.send_header("Content-Length", str(end - start))
                self.end_headers()
                server._record(Logged(self.command, self.path, self.headers.get("Range"), status, self._authorized()))
                if head:
                    return
                name = os.path.basename(key)
                with server._lock:
                    drop = server.drop_every.get(name)
                    if drop is None and server.drop_after.get(name, end - start) < end - start:
                        drop = server.drop_after.pop(name)
                    if drop is not None and drop >= end - start:
                        drop = None
                with open(path, "rb") as f:
                    f.seek(start)
                    left = end - start
                    while left:
                        if server.delay:
                            time.sleep(server.delay)
                        chunk = f.read(min(left, 1 << 16))
                        if drop is not None and drop < len(chunk):
                            self.wfile.write(chunk[:drop])
                            server._count(key, drop)
                            self.wfile.flush()
                            self.close_connection = True
                            self.connection.shutdown(2)  # the connection drops mid-response
                            return
                        if drop is not None:
                            drop -= len(chunk)
                        self.wfile.write(chunk)
                        server._count(key, len(chunk))
                        left -= len(chunk)

        return Handler
