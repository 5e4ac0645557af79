"""Where mwe keeps things that outlive a run: the call cache and converted model weights."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import platformdirs

from mwe import settings


def cache_dir() -> Path:
    """User cache folder (override with MWE_CACHE_DIR), never inside the repository."""
    path = settings.current().cache_dir or Path(platformdirs.user_cache_dir("mwe"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_store_path() -> Path:
    return cache_dir() / "calls.sqlite"


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so large weights hash once."""
    path = Path(path).resolve()
    st = path.stat()
    memo_path = cache_dir() / "hashes.json"
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    try:
        memo: dict[str, str] = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    if key in memo:
        return memo[key]
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    memo[key] = h.hexdigest()
    tmp = memo_path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(memo, indent=0))
    os.replace(tmp, memo_path)
    return memo[key]


def dir_fingerprint(path: str | Path) -> str:
    """Identity of a model folder: hashes of its config, tokenizer and weight files."""
    path = Path(path)
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file() and f.suffix in {".json", ".safetensors", ".bin", ".model", ".txt", ".gguf"}:
            h.update(f.name.encode())
            h.update(file_sha256(f).encode())
    return h.hexdigest()
