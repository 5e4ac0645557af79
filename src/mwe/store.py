"""The persistent cache and ledger of model calls (SQLite).

Every call is keyed by the model's identity (backend, weights hash, settings) and the exact
input, and written as soon as it finishes, so a killed run resumes without recomputing.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mwe.errors import MweError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    model TEXT PRIMARY KEY,
    identity TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS calls (
    model TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    input TEXT NOT NULL,
    output TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (model, kind, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS usage (
    model TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    counted TEXT NOT NULL,
    PRIMARY KEY (model, kind, key)
) WITHOUT ROWID;
"""
# usage.counted: how the tokens were counted - "api" (the provider's usage fields), "tokenizer"
# (the local model's own), or "estimate" (characters / 4, where neither is available)


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def digest(obj: Any) -> str:
    return hashlib.sha256(canonical(obj).encode("utf-8")).hexdigest()


class Store:
    """One SQLite file shared by every command; safe to open from several processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise MweError(f"cache {self.path}: is a folder, not a database file "
                           "(--cache names the SQLite file, e.g. DIR/calls.sqlite)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise MweError(f"cache {self.path}: cannot create its folder ({exc.strerror})") from None
        try:
            self._db = sqlite3.connect(str(self.path), timeout=60.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._db.commit()
            # a write now, not minutes into a run: a read-only file or folder fails here
            with self._db:
                self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema', '1')")
        except sqlite3.DatabaseError as exc:
            raise MweError(f"cache {self.path}: {cache_problem(exc)}") from None

    def register_model(self, identity: dict[str, Any]) -> str:
        model_id = digest(identity)
        self._db.execute(
            "INSERT OR IGNORE INTO models (model, identity) VALUES (?, ?)",
            (model_id, canonical(identity)),
        )
        self._db.commit()
        return model_id

    def get_many(self, model_id: str, kind: str, keys: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, output FROM calls WHERE model=? AND kind=? AND key IN ({marks})",
                (model_id, kind, *chunk),
            )
            for key, output in rows:
                found[key] = json.loads(output)
        return found

    def put_many(self, model_id: str, kind: str, items: Iterable[tuple[str, Any, Any]],
                 usage: Sequence[tuple[int, int, str]] | None = None) -> None:
        """Write (key, input, output) triples, and each call's (tokens in, tokens out, how
        counted) when given, in one transaction: all or none survive a kill."""
        now = time.time()
        rows = list(items)
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO calls (model, kind, key, input, output, created) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(model_id, kind, k, canonical(i), canonical(o), now) for k, i, o in rows],
            )
            if usage is not None:
                self._db.executemany(
                    "INSERT OR REPLACE INTO usage (model, kind, key, tokens_in, tokens_out, "
                    "counted) VALUES (?, ?, ?, ?, ?, ?)",
                    [(model_id, kind, k, u[0], u[1], u[2]) for (k, _, _), u in zip(rows, usage)])

    def get_usage(self, model_id: str, kind: str, keys: Sequence[str]
                  ) -> dict[str, tuple[int, int, str]]:
        """Tokens of earlier calls, by key (calls cached before mwe counted tokens have none)."""
        found: dict[str, tuple[int, int, str]] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, t_in, t_out, how in self._db.execute(
                    "SELECT key, tokens_in, tokens_out, counted FROM usage WHERE model=? AND "
                    f"kind=? AND key IN ({marks})", (model_id, kind, *chunk)):
                found[key] = (int(t_in), int(t_out), str(how))
        return found

    def count(self, model_id: str | None = None) -> int:
        if model_id is None:
            return int(self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])
        q = "SELECT COUNT(*) FROM calls WHERE model=?"
        return int(self._db.execute(q, (model_id,)).fetchone()[0])

    def close(self) -> None:
        self._db.close()


def cache_problem(exc: sqlite3.Error) -> str:
    """SQLite's message, said the way a user can act on it."""
    msg = str(exc)
    if "not a database" in msg:
        return "not an mwe cache (SQLite says: file is not a database); name another --cache"
    if "readonly" in msg or "read-only" in msg:
        return "cannot write to it (read-only file or folder)"
    if "unable to open" in msg:
        return "cannot open it (check the folder exists and is writable)"
    if "disk is full" in msg or "disk I/O" in msg:
        return f"cannot write to it ({msg}); free some space and run again to resume"
    return msg
