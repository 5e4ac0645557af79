"""A validation study on disk: DIR/validation.sqlite holds the sampled items, the raters with
their private tokens, and every answer the moment it is given (one committed transaction
each, so a closed tab or a killed server loses nothing).

Reopening a study folder reuses its items and tokens; new rater names are added. A study of
other datasets or sampling settings in the same folder is refused rather than mixed in.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mwe.errors import MweError
from mwe.validate.sample import StudyItem, rater_order
from mwe.validate.stats import Rating

DB_NAME = "validation.sqlite"
SCHEMA = """
CREATE TABLE IF NOT EXISTS study (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY, dataset TEXT NOT NULL, line INTEGER NOT NULL, family TEXT NOT NULL,
    path TEXT NOT NULL, description TEXT NOT NULL, question TEXT NOT NULL,
    answers TEXT NOT NULL, label TEXT NOT NULL, label_confidence REAL,
    UNIQUE (dataset, line));
CREATE TABLE IF NOT EXISTS raters (
    name TEXT PRIMARY KEY, token TEXT NOT NULL UNIQUE, position INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS ratings (
    rater TEXT NOT NULL REFERENCES raters(name), item INTEGER NOT NULL REFERENCES items(id),
    relevance INTEGER, answer TEXT, ambiguous INTEGER, updated REAL NOT NULL,
    source TEXT NOT NULL DEFAULT 'app', PRIMARY KEY (rater, item));
"""


@dataclass(frozen=True)
class Rater:
    name: str
    token: str
    position: int


class Study:
    """The study's database; one connection per thread (the server opens its own)."""

    def __init__(self, folder: Path, create: bool = False) -> None:
        self.folder = folder
        self.path = folder / DB_NAME
        if not self.path.exists() and not create:
            raise MweError(f"{folder}: no {DB_NAME}: not a validation study (start one with "
                           "mwe validate serve DATASET... --out DIR)")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                      check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise MweError(f"{self.path}: not a validation study database ({exc})") from None
        except OSError as exc:
            raise MweError(f"{folder}: cannot write the study there ({exc.strerror})") from None

    def close(self) -> None:
        self.db.close()

    # --- the sample ---

    def settings(self) -> dict[str, Any] | None:
        row = self.db.execute("SELECT value FROM study WHERE key = 'settings'").fetchone()
        return json.loads(row[0]) if row else None

    def setup(self, items: Sequence[StudyItem], settings: dict[str, Any]) -> None:
        """Store the sample once; a reopened study must be the same sample."""
        old = self.settings()
        if old is not None:
            if old != settings:
                raise MweError(f"{self.folder} holds a study of other datasets or settings "
                               f"({json.dumps(old)}); use another --out")
            return
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT INTO items (id, dataset, line, family, path, description, question, "
                "answers, label, label_confidence) VALUES (?,?,?,?,?,?,?,?,?,?)",
                [(k, it.dataset, it.line, it.family, it.path, it.description, it.question,
                  json.dumps(list(it.answers)), json.dumps(list(it.label)), it.label_confidence)
                 for k, it in enumerate(items)])
            self.db.execute("INSERT INTO study VALUES ('settings', ?)", (json.dumps(settings),))

    def items(self) -> list[StudyItem]:
        rows = self.db.execute("SELECT dataset, line, family, path, description, question, "
                               "answers, label, label_confidence FROM items ORDER BY id")
        return [StudyItem(d, ln, f, p, desc, q, tuple(json.loads(a)), tuple(json.loads(lb)), c)
                for d, ln, f, p, desc, q, a, lb, c in rows]

    # --- raters ---

    def add_raters(self, names: Sequence[str]) -> list[Rater]:
        """Each name gets an unguessable token once; existing raters keep theirs."""
        with self.db:
            self.db.execute("BEGIN")
            for n in names:
                self.db.execute("INSERT OR IGNORE INTO raters (name, token) VALUES (?, ?)",
                                (n, secrets.token_urlsafe(18)))
        return self.raters()

    def raters(self) -> list[Rater]:
        return [Rater(*r) for r in self.db.execute(
            "SELECT name, token, position FROM raters ORDER BY rowid")]

    def rater_by_token(self, token: str) -> Rater | None:
        for r in self.raters():  # compared in constant time, not by an indexed lookup
            if secrets.compare_digest(r.token.encode(), token.encode()):
                return r
        return None

    def set_position(self, rater: str, position: int) -> None:
        self.db.execute("UPDATE raters SET position = ? WHERE name = ?", (position, rater))

    def order(self, rater: str) -> list[int]:
        settings = self.settings() or {}
        n = self.db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        return rater_order(int(n), int(settings.get("seed", 0)), rater)

    # --- answers ---

    def save(self, rater: str, item: int, relevance: int | None, answer: str | None,
             ambiguous: bool | None, source: str = "app") -> None:
        """One answer, committed before the call returns (the rating page says "saved" only
        then)."""
        self.db.execute(
            "INSERT INTO ratings (rater, item, relevance, answer, ambiguous, updated, source) "
            "VALUES (?,?,?,?,?,?,?) ON CONFLICT (rater, item) DO UPDATE SET "
            "relevance = excluded.relevance, answer = excluded.answer, "
            "ambiguous = excluded.ambiguous, updated = excluded.updated, source = excluded.source",
            (rater, item, relevance, answer, None if ambiguous is None else int(ambiguous),
             time.time(), source))

    def answers_of(self, rater: str) -> dict[int, tuple[int | None, str | None, bool | None]]:
        return {i: (rel, ans, None if amb is None else bool(amb)) for i, rel, ans, amb in
                self.db.execute("SELECT item, relevance, answer, ambiguous FROM ratings "
                                "WHERE rater = ?", (rater,))}

    def ratings(self) -> list[Rating]:
        rows = self.db.execute(
            "SELECT i.dataset, i.line, r.rater, r.relevance, r.answer, r.ambiguous "
            "FROM ratings r JOIN items i ON i.id = r.item ORDER BY i.id, r.rater")
        return [Rating(d, str(ln), who, rel, ans, None if amb is None else bool(amb))
                for d, ln, who, rel, ans, amb in rows]
