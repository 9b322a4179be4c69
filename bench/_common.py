"""Shared paths and small helpers for the benchmark scripts (stdlib only, cheap to import)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
FIXTURES_DIR = BENCH_DIR / ".fixtures"  # gitignored
RESULTS_DIR = BENCH_DIR / "results"  # gitignored
GPT2_TOKENIZER_DIR = REPO_DIR / "embscope" / "data" / "gpt2"  # vocab.json + merges.txt

# tiktoken.get_encoding("gpt2") reads these two URLs through its file cache; the cache
# key is sha1(url) and the content is checked against a sha256 that our copies match
# (OpenAI's encoder.json == vocab.json, vocab.bpe == merges.txt, byte for byte).
_TIKTOKEN_GPT2_FILES = {
    "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe": "merges.txt",
    "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json": "vocab.json",
}


def setup_tiktoken_cache(fixtures_dir: Path | None = None) -> Path:
    """Make tiktoken's "gpt2" encoding loadable offline; sets TIKTOKEN_CACHE_DIR.

    Equivalent to: cp merges.txt $TIKTOKEN_CACHE_DIR/$(printf %s URL | sha1sum | cut -c1-40)
    for vocab.bpe, and vocab.json likewise for encoder.json.
    """
    cache = Path(fixtures_dir or FIXTURES_DIR) / "tiktoken-cache"
    cache.mkdir(parents=True, exist_ok=True)
    for url, local in _TIKTOKEN_GPT2_FILES.items():
        dst = cache / hashlib.sha1(url.encode()).hexdigest()
        if not dst.exists():
            tmp = dst.with_name(dst.name + f".{os.getpid()}.tmp")
            shutil.copyfile(GPT2_TOKENIZER_DIR / local, tmp)
            os.replace(tmp, dst)
    os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
    return cache


def disk_usage(path: Path) -> tuple[int, int]:
    """(bytes allocated on disk, apparent bytes) of a file or a directory tree."""
    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    used = apparent = 0
    for p in files:
        st = p.stat()
        used += st.st_blocks * 512
        apparent += st.st_size
    return used, apparent


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n}"
