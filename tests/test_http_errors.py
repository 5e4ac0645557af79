"""HTTP failures as one line: a 401, 403 or missing model, a refused connection, a server
that keeps failing. Against real servers on loopback (small http.server stand-ins in this
file, or a closed port), through the CLI as a user runs it: one `mwe: error:` line that
names the model string with its credentials redacted and the cause, exit status 2, no
traceback, no password or key, no output files. No model is loaded: the backends connect
lazily, and these servers answer at once."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO, Mwe

from mwe.errors import MweError
from mwe.models import open_model
from mwe.redact import redact
from mwe.store import Store

pytest.importorskip("openai")
pytest.importorskip("anthropic")

PASSWORD = "PASSWORD-hunter2-0123"
OPENAI_KEY = "sk-test-NEVER-SHOW-0123456789"
ANTHROPIC_KEY = "sk-ant-test-NEVER-SHOW-0123456789"
PERSONA = str(REPO / "examples" / "data" / "persona" / "agreeableness.jsonl")

# (status, JSON body) for a request path
Answer = Callable[[str], tuple[int, dict[str, Any]]]


class Server:
    """Answers every request with answer(path); counts the requests."""

    def __init__(self, answer: Answer) -> None:
        self.count = 0
        self.paths: list[str] = []
        lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    owner.count += 1
                    owner.paths.append(self.path)
                status, body = answer(self.path)
                data = json.dumps(body).encode()
                # the client may hang up once a concurrent call has failed
                with contextlib.suppress(OSError):
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

            do_GET = do_POST = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def error(message: str, kind: str = "error", code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": code}}


@pytest.fixture()
def serve() -> Iterator[Callable[[Answer], Server]]:
    servers: list[Server] = []

    def start(answer: Answer) -> Server:
        servers.append(Server(answer))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


@pytest.fixture()
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def evaluate(spec: str, tmp_path: Path) -> list[str]:
    """`mwe evaluate` of two persona questions by `spec`, into tmp_path/out."""
    out = tmp_path / "out"
    return ["evaluate", "-m", spec, "-d", PERSONA, "--limit", "2", "--out", str(out),
            "--cache", str(out / "c.sqlite")]


def keys(tmp_path: Path) -> dict[str, str]:
    """Stand-in API keys (never to be shown), the test's own cache folder, and quick retries
    (a refused connection is retried)."""
    return {"MWE_CACHE_DIR": str(tmp_path / "cache"), "OPENAI_API_KEY": OPENAI_KEY,
            "ANTHROPIC_API_KEY": ANTHROPIC_KEY, "MWE_HTTP_MAX_ATTEMPTS": "2",
            "MWE_HTTP_BACKOFF": "0.01"}


def check_one_line(res: subprocess.CompletedProcess[str], spec: str | None, cause: str,
                   tmp_path: Path) -> str:
    text = res.stdout + res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("mwe: error:")]
    assert res.returncode == 2, text
    assert len(errors) == 1, text
    if spec is not None:
        assert errors[0].startswith(f"mwe: error: {redact(spec)}: "), errors[0]
    assert cause in errors[0], errors[0]
    assert "Traceback" not in text
    for secret in (PASSWORD, OPENAI_KEY, ANTHROPIC_KEY):
        assert secret not in text
    out = tmp_path / "out"
    written = {p.name for p in out.iterdir()} if out.exists() else set()
    assert written <= {"c.sqlite", "c.sqlite-wal", "c.sqlite-shm"}, written  # the cache only
    return errors[0]


def unauthorized(path: str) -> tuple[int, dict[str, Any]]:
    return 401, error(f"Incorrect API key provided: {OPENAI_KEY}", "invalid_request_error",
                      "invalid_api_key")


@pytest.mark.parametrize("scoring", ["echo", "auto"])
def test_openai_401_is_one_line(scoring: str, serve: Callable[[Answer], Server],
                                tmp_path: Path, mwe: Mwe) -> None:
    server = serve(unauthorized)
    spec = f"openai:m@http://alice:{PASSWORD}@127.0.0.1:{server.port}/v1?scoring={scoring}"
    res = mwe(evaluate(spec, tmp_path), env=keys(tmp_path), timeout=120)
    line = check_one_line(res, spec, "the server answered 401 Unauthorized (check OPENAI_API_KEY)",
                          tmp_path)
    assert "alice:***@" in line
    # not retried: at most one request per question and answer (2 x 2), all in flight at once
    assert 1 <= server.count <= 4


@pytest.mark.parametrize("scoring", ["echo", "auto"])
def test_openai_connection_refused_is_one_line(scoring: str, closed_port: int,
                                               tmp_path: Path, mwe: Mwe) -> None:
    spec = f"openai:m@http://alice:{PASSWORD}@127.0.0.1:{closed_port}/v1?scoring={scoring}"
    res = mwe(evaluate(spec, tmp_path), env=keys(tmp_path), timeout=120)
    # found by the check before any call (mwe.models.check_models), not by a call's retries
    check_one_line(res, None, f"--model '{redact(spec)}': nothing answers at "
                              f"http://127.0.0.1:{closed_port}/v1 (connection refused)", tmp_path)


def test_anthropic_401_is_one_line(serve: Callable[[Answer], Server], tmp_path: Path,
                                   mwe: Mwe) -> None:
    server = serve(lambda path: (401, {"type": "error", "error": {
        "type": "authentication_error", "message": "invalid x-api-key"}}))
    spec = f"anthropic:claude-test@http://alice:{PASSWORD}@127.0.0.1:{server.port}?samples=2"
    res = mwe(evaluate(spec, tmp_path), env=keys(tmp_path), timeout=120)
    check_one_line(res, spec, "the server answered 401 Unauthorized (check ANTHROPIC_API_KEY)",
                   tmp_path)
    assert 1 <= server.count <= 4  # 2 questions x 2 samples, none retried


def test_anthropic_connection_refused_is_one_line(closed_port: int, tmp_path: Path,
                                                  mwe: Mwe) -> None:
    spec = f"anthropic:claude-test@http://alice:{PASSWORD}@127.0.0.1:{closed_port}?samples=2"
    res = mwe(evaluate(spec, tmp_path), env=keys(tmp_path), timeout=120)
    check_one_line(res, None, f"--model '{redact(spec)}': nothing answers at "
                              f"http://127.0.0.1:{closed_port} (connection refused)", tmp_path)


def test_a_secret_in_the_query_is_never_shown(tmp_path: Path, mwe: Mwe) -> None:
    spec = f"openai:m@http://127.0.0.1:9/v1?scoring=echo&api_key={PASSWORD}"
    res = mwe(evaluate(spec, tmp_path), env=keys(tmp_path), timeout=120)
    check_one_line(res, None, "openai: unknown option 'api_key'", tmp_path)


# --- in process: what the probe hides and what it must not; retries ---


def score(spec: str, tmp_path: Path, answers: tuple[str, ...] = (" Yes", " No")) -> Any:
    model = open_model(spec, Store(tmp_path / "c.sqlite"))
    with pytest.raises(MweError) as info:
        model.score([("Is the sky blue?", list(answers))])
    return model, str(info.value)


@pytest.mark.parametrize("scoring", ["echo", "auto"])
def test_403_and_a_missing_model_are_not_taken_for_missing_features(
        scoring: str, serve: Callable[[Answer], Server], tmp_path: Path) -> None:
    forbidden = serve(lambda path: (403, error("Your key may not use model m")))
    spec = f"openai:m@http://127.0.0.1:{forbidden.port}/v1?scoring={scoring}"
    model, message = score(spec, tmp_path)
    assert message == (f"{spec}: the server answered 403 Forbidden (check OPENAI_API_KEY and "
                       "what it may access): Your key may not use model m")
    assert model.backend.stats.retries == 0

    # llama.cpp's /extras/tokenize exists here; the completions endpoint lacks the model
    def no_model(path: str) -> tuple[int, dict[str, Any]]:
        if path.startswith("/extras/tokenize"):
            return 200, {"tokens": [1, 2, 3]}
        return 404, error("The model `m` does not exist.", "invalid_request_error",
                          "model_not_found")

    missing = serve(no_model)
    spec = f"openai:m@http://127.0.0.1:{missing.port}/v1?scoring={scoring}"
    _, message = score(spec, tmp_path / "b")
    assert message == (f"{spec}: the server answered 404 Not Found: model 'm' not found "
                       "(The model `m` does not exist.)")


def test_the_probe_says_why_neither_method_works(serve: Callable[[Answer], Server],
                                                 tmp_path: Path) -> None:
    def answer(path: str) -> tuple[int, dict[str, Any]]:
        if path.startswith("/extras"):
            return 404, {"detail": "Not Found"}
        return 400, error("echo is not supported with logprobs")

    server = serve(answer)
    spec = f"openai:m@http://127.0.0.1:{server.port}/v1"
    _, message = score(spec, tmp_path)
    assert "can score neither by echoing prompt log-probs (the server answered 400 Bad Request " \
           f"for POST http://127.0.0.1:{server.port}/v1/completions: echo is not supported " \
           "with logprobs) nor by forced one-token completions (the server answered 404 Not " \
           f"Found for POST http://127.0.0.1:{server.port}/extras/tokenize: Not Found)" in message


def test_a_failing_server_is_retried_then_named(serve: Callable[[Answer], Server],
                                                tmp_path: Path) -> None:
    server = serve(lambda path: (503, error("overloaded")))
    spec = f"openai:m@http://127.0.0.1:{server.port}/v1?scoring=echo&max_attempts=3" \
           "&backoff=0.01"
    model, message = score(spec, tmp_path, (" Yes",))  # one call
    assert message == (f"{spec}: the server answered 503 Service Unavailable for POST "
                       f"http://127.0.0.1:{server.port}/v1/completions: overloaded "
                       "(tried 3 times)")
    assert server.count == 3 and model.backend.stats.retries == 2


def test_credentials_in_anthropic_base_url_from_the_environment(
        closed_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://alice:{PASSWORD}@127.0.0.1:{closed_port}")
    model, message = score("anthropic:claude-test?samples=1&max_attempts=1", tmp_path)
    assert message == ("anthropic:claude-test?samples=1&max_attempts=1: cannot connect to "
                       f"http://127.0.0.1:{closed_port} (connection refused)")
    assert PASSWORD not in json.dumps(model.identity())
