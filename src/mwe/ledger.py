"""The ledger of submitted batches (`?batch=1`), in the same SQLite file as the call cache.

A batch's id is committed here before anything waits on it, so a run killed at any point
finds the batch again and polls it instead of submitting (and paying for) it twice.

    batches(model, key, batch_id, state, submitted)   one row per submitted batch
    batch_lines(model, line, key)                     which batch holds each request line

`model` is the model's cache id (`Store.register_model`), `key` a digest of the batch's
request lines (`mwe.store.digest`), `line` a request's custom id, itself a digest of the
request's inputs. `state` is the provider's last status (validating, in_progress, ended,
...), `done` once its results were read, or `given_up` when it can no longer be used (a
batch that failed validation, or whose results are gone); a batch in any other state is
polled again on resume. The line map lets a run killed while results were being committed
(part of a chunk in the cache, the rest not) find the rest in the same batch. Nothing here
is secret: no key, no prompt text.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mwe.errors import MweError
from mwe.store import cache_problem

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    model TEXT,
    key TEXT,
    batch_id TEXT,
    state TEXT,
    submitted REAL,
    PRIMARY KEY (model, key)
);
CREATE TABLE IF NOT EXISTS batch_lines (
    model TEXT NOT NULL,
    line TEXT NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (model, line)
) WITHOUT ROWID;
"""
DONE = "done"
GIVEN_UP = "given_up"


@dataclass(frozen=True)
class Entry:
    key: str
    batch_id: str
    state: str
    submitted: float


class Ledger:
    """Batches of one model. Opens its own connection (WAL) on first use; ':memory:' keeps
    the ledger in this process only (a backend used without the cache)."""

    def __init__(self, path: str | Path, model: str) -> None:
        self.path = str(path)
        self.model = model
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                db = sqlite3.connect(self.path, timeout=60.0)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(_SCHEMA)
                db.commit()
            except sqlite3.DatabaseError as exc:
                raise MweError(f"cache {self.path}: {cache_problem(exc)}") from None
            self._db = db
        return self._db

    def _write(self, sql: str, rows: Iterable[tuple[object, ...]]) -> None:
        db = self._conn()
        try:
            with db:
                db.executemany(sql, rows)
        except sqlite3.DatabaseError as exc:
            raise MweError(f"cache {self.path}: {cache_problem(exc)}") from None

    def get(self, key: str) -> Entry | None:
        row = self._conn().execute(
            "SELECT key, batch_id, state, submitted FROM batches WHERE model=? AND key=?",
            (self.model, key)).fetchone()
        return None if row is None else Entry(str(row[0]), str(row[1]), str(row[2]),
                                              float(row[3]))

    def record(self, key: str, batch_id: str, lines: Sequence[str], state: str = "submitted"
               ) -> None:
        """A batch just submitted, and the request lines it holds: one transaction. A batch
        resubmitted with the same lines replaces the old one under the same key."""
        db = self._conn()
        now = time.time()
        try:
            with db:
                db.execute("INSERT OR REPLACE INTO batches (model, key, batch_id, state, "
                           "submitted) VALUES (?, ?, ?, ?, ?)",
                           (self.model, key, batch_id, state, now))
                db.executemany("INSERT OR REPLACE INTO batch_lines (model, line, key) "
                               "VALUES (?, ?, ?)", [(self.model, line, key) for line in lines])
        except sqlite3.DatabaseError as exc:
            raise MweError(f"cache {self.path}: {cache_problem(exc)}") from None

    def set_state(self, key: str, state: str) -> None:
        self._write("UPDATE batches SET state=? WHERE model=? AND key=?",
                    [(state, self.model, key)])

    def lines(self, lines: Sequence[str]) -> dict[str, str]:
        """The batch key each of these request lines was last submitted under."""
        found: dict[str, str] = {}
        unique = list(dict.fromkeys(lines))
        db = self._conn()
        for start in range(0, len(unique), 500):
            chunk = unique[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for line, key in db.execute(
                    f"SELECT line, key FROM batch_lines WHERE model=? AND line IN ({marks})",
                    (self.model, *chunk)):
                found[str(line)] = str(key)
        return found

    def forget(self, lines: Iterable[str]) -> None:
        """Request lines that failed for good: a later run submits them afresh."""
        self._write("DELETE FROM batch_lines WHERE model=? AND line=?",
                    [(self.model, line) for line in lines])

    def entries(self) -> list[Entry]:
        rows = self._conn().execute(
            "SELECT key, batch_id, state, submitted FROM batches WHERE model=? "
            "ORDER BY submitted", (self.model,))
        return [Entry(str(k), str(b), str(s), float(t)) for k, b, s, t in rows]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
