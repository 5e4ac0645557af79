"""A validation study on disk: DIR/validation.sqlite holds the sampled items, the raters and
every answer the moment it is given (one committed transaction each, so a closed tab or a
killed server loses nothing).

A rater's token is their password: the database keeps only its SHA-256, so a copy of the
database (for statistics, a backup) lets nobody rate; the tokens themselves sit in
DIR/tokens.json so that a restarted server prints the same links. The folder, the database
and the tokens file are private to their owner (0700/0600); a study written by an earlier
version (plain tokens in the database) is converted when opened, its links unchanged.

Reopening a study folder reuses its items and tokens; new rater names are added. A study of
other datasets or sampling settings in the same folder is refused rather than mixed in.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import secrets
import sqlite3
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mwe.errors import MweError
from mwe.validate.sample import ReplyInfo, StudyItem, rater_order
from mwe.validate.stats import Rating

DB_NAME = "validation.sqlite"
TOKENS_NAME = "tokens.json"
SCHEMA = """
CREATE TABLE IF NOT EXISTS study (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY, dataset TEXT NOT NULL, line INTEGER NOT NULL, family TEXT NOT NULL,
    path TEXT NOT NULL, description TEXT NOT NULL, question TEXT NOT NULL,
    answers TEXT NOT NULL, label TEXT NOT NULL, label_confidence REAL,
    UNIQUE (dataset, line));
CREATE TABLE IF NOT EXISTS raters (
    name TEXT PRIMARY KEY, token_sha256 TEXT NOT NULL UNIQUE,
    position INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS ratings (
    rater TEXT NOT NULL REFERENCES raters(name), item INTEGER NOT NULL REFERENCES items(id),
    relevance INTEGER, answer TEXT, ambiguous INTEGER, updated REAL NOT NULL,
    source TEXT NOT NULL DEFAULT 'app', PRIMARY KEY (rater, item));
CREATE TABLE IF NOT EXISTS replies (
    item INTEGER PRIMARY KEY REFERENCES items(id), model TEXT NOT NULL, reply TEXT NOT NULL,
    labels TEXT NOT NULL, extracted TEXT, unscored TEXT, judge TEXT,
    has_judge INTEGER NOT NULL);
"""
SQLITE_FILES = ("", "-wal", "-shm", "-journal")


@dataclass(frozen=True)
class Rater:
    name: str
    token: str | None  # None: this copy of the study does not know it (only its hash)
    position: int


def token_hash(token: str) -> str:
    """SHA-256 is enough: tokens are 192 random bits, nothing to guess a dictionary from."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(24)


class Study:
    """The study's database; one connection per thread (the server opens its own)."""

    def __init__(self, folder: Path, create: bool = False) -> None:
        self.folder = folder
        self.path = folder / DB_NAME
        self.tokens_path = folder / TOKENS_NAME
        if not self.path.exists() and not create:
            raise MweError(f"{folder}: no {DB_NAME}: not a validation study (start one with "
                           "mwe validate serve DATASET... --out DIR)")
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            _make_private(folder)
            if not self.path.exists():  # created private, not 0644 then narrowed
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                      check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            self.db.executescript(SCHEMA)
            self._hash_plain_tokens()
        except sqlite3.DatabaseError as exc:
            raise MweError(f"{self.path}: not a validation study database ({exc})") from None
        except OSError as exc:
            raise MweError(f"{folder}: cannot write the study there ({exc.strerror})") from None

    def close(self) -> None:
        self.db.close()

    def _hash_plain_tokens(self) -> None:
        """A study from an earlier version kept tokens in plain text: move them to the private
        tokens file (the raters' links keep working) and leave only hashes in the database,
        with no stale copy in free pages or the write-ahead log.

        Converting rather than refusing: raters of a running study already hold their links,
        and their answers stay attached to them."""
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(raters)")}
        if "token" not in columns:
            return
        plain = {str(n): str(t) for n, t in self.db.execute("SELECT name, token FROM raters")}
        self._write_tokens({**self.tokens(), **plain})  # first: a crash here loses nothing
        self.db.execute("PRAGMA secure_delete=ON")
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("ALTER TABLE raters RENAME COLUMN token TO token_sha256")
            self.db.executemany("UPDATE raters SET token_sha256 = ? WHERE name = ?",
                                [(token_hash(t), n) for n, t in plain.items()])
        self.db.execute("VACUUM")
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

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
            self.db.executemany(  # a reply study's replies and what the readers made of them
                "INSERT INTO replies (item, model, reply, labels, extracted, unscored, judge, "
                "has_judge) VALUES (?,?,?,?,?,?,?,?)",
                [(k, r.model, r.reply, json.dumps(list(r.labels)), r.extracted, r.unscored,
                  r.judge, int(r.has_judge))
                 for k, it in enumerate(items) if (r := it.reply) is not None])
            self.db.execute("INSERT INTO study VALUES ('settings', ?)", (json.dumps(settings),))

    def items(self) -> list[StudyItem]:
        rows = self.db.execute(
            "SELECT i.dataset, i.line, i.family, i.path, i.description, i.question, i.answers, "
            "i.label, i.label_confidence, r.model, r.reply, r.labels, r.extracted, r.unscored, "
            "r.judge, r.has_judge FROM items i LEFT JOIN replies r ON r.item = i.id "
            "ORDER BY i.id")
        return [StudyItem(d, ln, f, p, desc, q, tuple(json.loads(a)), tuple(json.loads(lb)), c,
                          None if model is None else ReplyInfo(
                              model, reply, tuple(json.loads(labels)), ext, why, judge,
                              bool(has)))
                for (d, ln, f, p, desc, q, a, lb, c,
                     model, reply, labels, ext, why, judge, has) in rows]

    def is_replies(self) -> bool:
        """A study of a run's replies (`--replies RUN`), not of a dataset's labels."""
        return "replies" in (self.settings() or {})

    # --- raters ---

    def tokens(self) -> dict[str, str]:
        """The private tokens file: rater name -> token ({} when there is none)."""
        try:
            data = json.loads(self.tokens_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise MweError(f"{self.tokens_path}: cannot read the raters' tokens ({exc}); "
                           "delete it to give every rater a new link") from None
        if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
            raise MweError(f"{self.tokens_path}: not a JSON object of rater tokens; delete it "
                           "to give every rater a new link")
        return {str(k): v for k, v in data.items()}

    def _write_tokens(self, tokens: dict[str, str]) -> None:
        """Atomically, and 0600 from the start (mkstemp's mode, kept by the rename)."""
        fd, tmp = tempfile.mkstemp(prefix=f".{TOKENS_NAME}.", suffix=".tmp", dir=self.folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(tokens, fh, indent=1, sort_keys=True)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.tokens_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def add_raters(self, names: Sequence[str]) -> list[Rater]:
        """Each name gets an unguessable token once; existing raters keep theirs."""
        known = {r.name for r in self.raters()}
        fresh = {n: new_token() for n in dict.fromkeys(names) if n not in known}
        if fresh:
            self._write_tokens({**self.tokens(), **fresh})  # before the hash: never unknown
            with self.db:
                self.db.execute("BEGIN")
                self.db.executemany("INSERT INTO raters (name, token_sha256) VALUES (?, ?)",
                                    [(n, token_hash(t)) for n, t in fresh.items()])
        return self.raters()

    def new_links(self, names: Sequence[str]) -> list[Rater]:
        """New tokens for these raters; their old links stop working."""
        fresh = {n: new_token() for n in names}
        self._write_tokens({**self.tokens(), **fresh})
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("UPDATE raters SET token_sha256 = ? WHERE name = ?",
                                [(token_hash(t), n) for n, t in fresh.items()])
        return self.raters()

    def raters(self) -> list[Rater]:
        """The raters, with their tokens where the tokens file has the one the hash names."""
        tokens = self.tokens()
        out = []
        for name, digest, position in self.db.execute(
                "SELECT name, token_sha256, position FROM raters ORDER BY rowid"):
            token = tokens.get(name)
            if token is not None and not hmac.compare_digest(token_hash(token), digest):
                token = None  # a stale file: that token would not open the link
            out.append(Rater(name, token, position))
        return out

    def rater_by_token(self, token: str) -> Rater | None:
        digest = token_hash(token)
        found = None
        for name, stored, position in self.db.execute(
                "SELECT name, token_sha256, position FROM raters"):
            if hmac.compare_digest(stored, digest):  # every rater compared, in constant time
                found = Rater(name, token, position)
        return found

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


def _make_private(folder: Path) -> None:
    """Owner-only: the study folder 0700, the database and tokens files 0600 (an earlier
    version left them world-readable). A folder that is not the user's own is refused, not half-fixed."""
    try:
        if os.stat(folder).st_mode & 0o077:
            os.chmod(folder, 0o700)
        for name in [DB_NAME + suffix for suffix in SQLITE_FILES] + [TOKENS_NAME]:
            path = folder / name
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_mode & 0o077:
                    os.chmod(path, 0o600)
    except PermissionError as exc:
        raise MweError(f"{exc.filename or folder}: cannot make the study private to you "
                       f"({exc.strerror}); use a folder of your own for --out") from None
