"""The rating app hardened (issue 24, item 6 and part of 8): tokens kept only as hashes in a
private study folder, request bodies limited, deep JSON refused, the socket bound before the
links are printed, the security headers on every response, duplicated answer columns named.

What is about the server runs `mwe validate serve` (the real Starlette app on uvicorn) on
loopback and talks to it with real HTTP; the rest opens real study folders."""

from __future__ import annotations

import csv
import hashlib
import os
import re
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from helpers import Mwe
from test_validate import free_port, small

from mwe.errors import DataError
from mwe.validate import commands
from mwe.validate.answers import read_answers
from mwe.validate.sample import all_items
from mwe.validate.study import Study

OLD_SCHEMA = """
CREATE TABLE study (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE items (
    id INTEGER PRIMARY KEY, dataset TEXT NOT NULL, line INTEGER NOT NULL, family TEXT NOT NULL,
    path TEXT NOT NULL, description TEXT NOT NULL, question TEXT NOT NULL,
    answers TEXT NOT NULL, label TEXT NOT NULL, label_confidence REAL,
    UNIQUE (dataset, line));
CREATE TABLE raters (
    name TEXT PRIMARY KEY, token TEXT NOT NULL UNIQUE, position INTEGER NOT NULL DEFAULT 0);
CREATE TABLE ratings (
    rater TEXT NOT NULL REFERENCES raters(name), item INTEGER NOT NULL REFERENCES items(id),
    relevance INTEGER, answer TEXT, ambiguous INTEGER, updated REAL NOT NULL,
    source TEXT NOT NULL DEFAULT 'app', PRIMARY KEY (rater, item));
"""


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


def on_disk(folder: Path) -> bytes:
    """Every byte of the database, its write-ahead log and shared memory."""
    return b"".join(p.read_bytes() for p in sorted(folder.glob("validation.sqlite*")))


def umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


# --- tokens, file modes, an earlier version's study ----------------------------------------

def test_tokens_are_kept_as_hashes_in_a_private_folder(tmp_path: Path) -> None:
    folder = tmp_path / "study"
    study = commands.open_study(folder, [str(small(tmp_path))], per_dataset=4)
    raters = study.add_raters(["ann", "bo"])
    study.save("ann", 0, 4, " Yes", False)
    tokens = [r.token for r in raters]
    assert all(t is not None and len(t) >= 24 for t in tokens)
    data = on_disk(folder)
    for t in tokens:
        assert t is not None
        assert t.encode() not in data and sha256(t).encode() in data
    assert study.rater_by_token(str(tokens[0])) == raters[0]
    token = str(tokens[0])  # one character changed: a random token may already end in "x"
    assert study.rater_by_token(token[:-1] + ("y" if token.endswith("x") else "x")) is None
    assert mode(folder) == 0o700
    for p in [*folder.glob("validation.sqlite*"), folder / "tokens.json"]:
        assert mode(p) == 0o600, p
    # the statistics are results to share: the umask's mode, as every other output
    out = tmp_path / "stats"
    commands.write_stats(out, *commands.study_ratings(study), "study")
    for name in ("validation.json", "validation.csv", "answers.csv"):
        assert mode(out / name) == 0o666 & ~umask()
    study.close()
    assert [r.token for r in Study(folder).raters()] == tokens  # the same links again


def test_a_study_from_an_earlier_version_is_converted_and_its_links_still_work(
        tmp_path: Path) -> None:
    folder = tmp_path / "old"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    db = sqlite3.connect(folder / "validation.sqlite")
    db.executescript(OLD_SCHEMA)
    db.execute("INSERT INTO items VALUES (0, 'd', 1, 'persona', 'd.jsonl', 'x', 'q?', "
               "'[\" Yes\", \" No\"]', '[\" Yes\"]', 0.9)")
    db.execute("INSERT INTO study VALUES ('settings', '{\"seed\": 0}')")
    plain = {"ann": "A" * 24, "bo": "B" * 24}
    db.executemany("INSERT INTO raters (name, token, position) VALUES (?, ?, 0)", plain.items())
    db.execute("INSERT INTO ratings VALUES ('ann', 0, 5, ' Yes', 0, 1.0, 'app')")
    db.commit()
    db.close()
    (folder / "validation.sqlite").chmod(0o644)

    study = Study(folder)
    assert {r.name: r.token for r in study.raters()} == plain
    assert study.rater_by_token("A" * 24) is not None and study.rater_by_token("B" * 23) is None
    assert b"A" * 24 not in on_disk(folder) and b"B" * 24 not in on_disk(folder)
    assert len(study.ratings()) == 1
    assert mode(folder) == 0o700 and mode(folder / "validation.sqlite") == 0o600
    assert mode(folder / "tokens.json") == 0o600
    study.close()
    assert {r.name: r.token for r in Study(folder).raters()} == plain  # converted once


def test_a_lost_tokens_file_gives_new_links(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "study"
    study = commands.open_study(folder, [str(small(tmp_path))], per_dataset=4)
    old = study.add_raters(["ann"])[0].token
    (folder / "tokens.json").unlink()
    [(name, url)] = commands.links(study, "127.0.0.1", 8765)
    assert name == "ann" and old is not None and not url.endswith(old)
    assert study.rater_by_token(old) is None
    assert study.rater_by_token(url.rsplit("/", 1)[1]) is not None
    assert "no token for ann: new links made" in capsys.readouterr().err


# --- the app on a real server ---------------------------------------------------------------

class Served:
    """`mwe validate serve` in a subprocess; its log (stderr) goes to a file."""

    def __init__(self, mwe: Mwe, tmp: Path) -> None:
        self.port = free_port()
        self.log = tmp / "server.log"
        self.folder = tmp / "study"
        with open(self.log, "w") as log:
            self.proc = mwe.popen(["validate", "serve", small(tmp), "--raters", "ann",
                                   "--out", self.folder, "--port", str(self.port)],
                                  stdout=subprocess.PIPE, stderr=log, text=True)
        assert self.proc.stdout is not None
        self.link = ""
        for line in self.proc.stdout:
            m = re.match(r"\s+ann: (http://\S+)$", line)
            self.link = m.group(1) if m else self.link
            if line.startswith("Ctrl-C"):
                break
        assert self.link, self.log.read_text()
        deadline = time.monotonic() + 30  # an earlier version printed links before binding
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the server is not listening"
                time.sleep(0.1)

    def peak_rss_kib(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, mwe: Mwe) -> Iterator[Served]:
    server = Served(mwe, tmp_path_factory.mktemp("served"))
    yield server
    server.proc.kill()
    server.proc.wait(timeout=30)


def http(url: str, data: bytes | None = None, method: str | None = None,
         ) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=20) as res:
            return res.status, {k.lower(): v for k, v in res.headers.items()}, res.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def raw(port: int, head: bytes, chunks: Iterable[bytes] = ()) -> tuple[bytes, int]:
    """A request by hand: the head, then `chunks` sent from a second thread while this one
    reads the response head. Returns the response as read and the body bytes sent."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=20)
    sent = 0

    def push() -> None:
        nonlocal sent
        try:
            for c in chunks:
                sock.sendall(c)
                sent += len(c)
        except OSError:  # the server closed the connection: what a 413 does
            pass

    sock.sendall(head)
    pusher = threading.Thread(target=push, daemon=True)
    pusher.start()
    got = b""
    try:
        while b"\r\n\r\n" not in got:
            more = sock.recv(65536)
            if not more:
                break
            got += more
    except OSError:
        pass
    pusher.join(timeout=60)
    sock.close()
    return got, sent


def test_every_response_carries_the_security_headers(served: Served) -> None:
    base = f"http://127.0.0.1:{served.port}"
    for url, method, status in [(base + "/", "GET", 200), (served.link, "GET", 200),
                                (served.link + "/item/0", "GET", 200),
                                (base + "/no/such/page", "GET", 404),
                                (base + "/rate/" + "x" * 32, "GET", 404),
                                (served.link + "/item/99", "GET", 404),
                                (base + "/", "POST", 405)]:
        code, headers, _ = http(url, b"{}" if method == "POST" else None, method)
        assert code == status, url
        assert "frame-ancestors 'none'" in headers["content-security-policy"], url
        assert "default-src 'none'" in headers["content-security-policy"], url
        assert headers["x-frame-options"] == "DENY", url
        assert headers["x-content-type-options"] == "nosniff", url
    assert mode(served.folder) == 0o700 and mode(served.folder / "validation.sqlite") == 0o600


def test_over_large_bodies_get_413_before_they_are_read(served: Served) -> None:
    path = served.link.split(str(served.port), 1)[1] + "/item/0"
    before = served.peak_rss_kib()
    # declared: answered from the head alone, though 300 MB were announced
    start = time.monotonic()
    got, _ = raw(served.port, (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: "
                               "application/json\r\nContent-Length: 300000000\r\n\r\n{").encode())
    assert got.startswith(b"HTTP/1.1 413"), got
    assert b"x-frame-options: DENY" in got and b"connection: close" in got
    assert time.monotonic() - start < 10
    # undeclared (chunked): counted while it streams, cut off long before 128 MB arrive
    piece = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
    got, sent = raw(served.port, (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: "
                                  "application/json\r\nTransfer-Encoding: chunked\r\n\r\n").encode(),
                    (piece for _ in range(2048)))
    assert got.startswith(b"HTTP/1.1 413"), got
    assert sent < 64 * 2**20
    assert served.peak_rss_kib() - before < 32 * 1024  # the server held none of it
    # an answer padded to just under the limit is still an answer
    body = b'{"relevance": 3}' + b" " * (60 * 1024)
    code, _, saved = http(served.link + "/item/0", body)
    assert code == 200 and b'"relevance":3' in saved


def test_deeply_nested_json_is_a_400_and_no_traceback(served: Served) -> None:
    url = served.link + "/item/1"
    code, _, text = http(url, b"[" * 20_000 + b"]" * 20_000)
    assert code == 400 and b"nested too deeply" in text
    code, _, text = http(url, b"{\"a\":" * 10_000 + b"1" + b"}" * 10_000)
    assert code == 400 and b"nested too deeply" in text
    code, _, _ = http(url, b"[" * 200_000)  # the body: over the limit, never parsed
    assert code == 413
    code, _, _ = http(url, b'{"relevance": 2}')
    assert code == 200  # the server is fine
    log = served.log.read_text()
    assert "Traceback" not in log and "RecursionError" not in log, log


def test_a_port_in_use_or_a_foreign_address_is_an_error_before_any_link(tmp_path: Path,
                                                                        mwe: Mwe) -> None:
    data = str(small(tmp_path))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for extra, message in [([], f"mwe: error: cannot listen on 127.0.0.1:{port}: "
                                    "Address already in use (in use? try --port)"),
                               (["--host", "192.0.2.1"], "mwe: error: cannot listen on "
                                f"192.0.2.1:{port}: Cannot assign requested address")]:
            res = mwe(["validate", "serve", data, "--out", tmp_path / "s", "--port", str(port),
                       *extra], timeout=120)
            assert res.returncode == 2, (res.stdout, res.stderr)
            assert res.stderr.strip().splitlines()[-1].startswith(message), res.stderr
            assert "http://" not in res.stdout and "already saved" not in res.stdout
            assert "Traceback" not in res.stderr


# --- answer files -----------------------------------------------------------------------------

def test_an_answer_file_with_a_column_twice_is_told_so(tmp_path: Path) -> None:
    items = all_items([str(small(tmp_path))])
    path = tmp_path / "answers.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["dataset", "item", "rater", "relevance", "answer", "ambiguous", "rater"])
        w.writerow(["wants-more-power", "1", "ann", "5", "Yes", "no", "bo"])
        w.writerow(["wants-more-power", "1", "bo", "4", "No", "no", "bo"])
    with pytest.raises(DataError) as err:
        read_answers(path, items)
    assert str(err.value) == (f"{path}:1: field 'rater': the header has this column more than "
                              "once (columns 3, 7); keep one")
