"""The openai backend against a real OpenAI-compatible server on loopback: llama.cpp's
server (llama-cpp-python[server]) serving the bundled SmolLM2, started here and stopped at
the end. Scores must agree with the local llamacpp backend; faults injected by a proxy must
cost no row and double none; the API key must never be stored."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from faultproxy import FaultProxy
from helpers import REPO, Mwe

from mwe import prompts
from mwe.datasets import load
from mwe.errors import MweError
from mwe.models import Sampling, open_model
from mwe.store import Store

pytestmark = pytest.mark.slow
SECRET = "sk-test-NEVER-STORE-THIS-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    pytest.importorskip("uvicorn", reason="needs llama-cpp-python[server] (make setup)")
    from mwe.models.bundled import gguf_path

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model",
         str(gguf_path("smollm2-135m-instruct")), "--model_alias", "smollm2", "--host",
         "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2",
         "--verbose", "False"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                raise RuntimeError("llama_cpp.server did not start") from None
            time.sleep(0.3)
    yield port
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def requests_for(path: str, n: int) -> list[tuple[str, list[str]]]:
    datasets, _ = load([path])
    out = []
    for item in datasets[0].items[:n]:
        ctx = prompts.context(item, "human-assistant")
        out.append((ctx, [prompts.continuation(a, ctx) for a in item.answers]))
    return out


PERSONA = str(REPO / "examples" / "data" / "persona" / "agreeableness.jsonl")
RISK = str(REPO / "examples" / "data" / "few-shot" / "power-seeking-inclination.jsonl")
N_PERSONA = 12


@pytest.fixture(scope="module")
def rows() -> list[tuple[str, list[str]]]:
    # one-token answers (" Yes"/" No") and multi-token ones (" (A)"/" (B)")
    return requests_for(PERSONA, N_PERSONA) + requests_for(RISK, 4)


@pytest.fixture(scope="module")
def local_scores(rows: list[tuple[str, list[str]]], tmp_path_factory: pytest.TempPathFactory
                 ) -> list[list[float]]:
    store = Store(tmp_path_factory.mktemp("local") / "c.sqlite")
    return open_model("llamacpp:smollm2-135m-instruct", store).score(rows)


def test_http_scores_agree_with_the_local_backend(server: int, rows: list[tuple[str, list[str]]],
                                                  local_scores: list[list[float]],
                                                  tmp_path: Path) -> None:
    model = open_model(f"openai:smollm2@http://127.0.0.1:{server}/v1?concurrency=4",
                       Store(tmp_path / "c.sqlite"))
    got = model.score(rows)
    # SmolLM2 has no BOS token: llama.cpp's server echoes log-probs off by one, so the
    # probe must have chosen forced completions
    assert model.backend.resolve_scoring() == "forced"  # type: ignore[attr-defined]
    assert len(got) == len(rows)
    assert all(len(a) == len(b) for a, b in zip(got, local_scores))
    check_agreement(got, local_scores)


def check_agreement(got: list[list[float]], local: list[list[float]]) -> None:
    """Persona rows (one-token answers after a short prompt) agree to 1e-3. The server reuses
    its KV cache across requests and evaluates the rest of a prompt in batches of another
    size, so on the long advanced-AI-risk prompts log-probs move by up to ~0.1 between runs
    (the server's notes allow 0.25)."""
    persona = [abs(x - y) for a, b in zip(got[:N_PERSONA], local[:N_PERSONA]) for x, y in zip(a, b)]
    risk = [abs(x - y) for a, b in zip(got[N_PERSONA:], local[N_PERSONA:]) for x, y in zip(a, b)]
    assert max(persona) < 1e-3
    assert max(risk) < 0.25
    print(f"\nmax |HTTP - local|: persona {max(persona):.1e} ({len(persona)} answers), "
          f"advanced AI risk {max(risk):.1e} ({len(risk)} answers)")


def test_http_generation_is_seeded_stops_and_is_cached(server: int, tmp_path: Path) -> None:
    spec = f"openai:smollm2@http://127.0.0.1:{server}/v1?concurrency=4"
    prompt = "\n\nHuman: Write a list of facts about cats.\n\nAssistant: Here they are:\n-"
    s = Sampling(n=4, temperature=1.0, top_p=0.95, max_tokens=24, seed=5)
    store = Store(tmp_path / "a.sqlite")
    model = open_model(spec, store)
    first = model.generate([prompt, prompt + " A"], s)
    assert [len(x) for x in first] == [4, 4]
    assert all("\n" not in t for texts in first for t in texts)
    assert len(set(first[0])) > 1  # one seed per sample
    assert model.backend.stats.calls == 8  # type: ignore[attr-defined]
    # tokens are the server's usage fields: its prompt tokens, once per sample, are what the
    # model's own tokenizer counts; at most max_tokens out per sample
    assert model.tokens.counted == {"api"}
    local = open_model("llamacpp:smollm2-135m-instruct", Store(tmp_path / "l.sqlite")).backend
    assert model.tokens.computed_in == 4 * sum(local.count_tokens(  # type: ignore[attr-defined]
        [prompt, prompt + " A"]))
    assert 8 <= model.tokens.computed_out <= 8 * 24
    again = open_model(spec, store)
    assert again.generate([prompt, prompt + " A"], s) == first
    assert again.misses == 0 and again._backend is None  # from the cache, no connection
    # the server's sampler is seeded: most samples repeat (its prefix cache can shift a
    # near-tie, so not necessarily all)
    fresh = open_model(spec, Store(tmp_path / "b.sqlite")).generate([prompt], s)
    assert sum(a == b for a, b in zip(fresh[0], first[0])) >= 2


def test_chat_endpoint_generation_and_top_logprobs(server: int, tmp_path: Path) -> None:
    spec = f"openai:smollm2@http://127.0.0.1:{server}/v1?endpoint=chat"
    model = open_model(spec, Store(tmp_path / "c.sqlite"))
    out = model.generate([model.chat("Name a colour.")],
                         Sampling(n=2, temperature=0.0, max_tokens=8, stop=()))
    assert len(out[0]) == 2 and out[0][0] == out[0][1] and out[0][0].strip()
    lps = model.score([(model.chat("Is the sky blue? Answer Yes or No."),
                        [" Yes", " No"])])
    assert len(lps[0]) == 2 and all(lp <= 0 for lp in lps[0])
    assert model.backend.resolve_scoring() == "top"  # type: ignore[attr-defined]


def test_faults_lose_nothing_and_double_nothing(server: int, rows: list[tuple[str, list[str]]],
                                                local_scores: list[list[float]],
                                                tmp_path: Path) -> None:
    schedule = ["429", None, None, "500", None, None, "reset", None, None, None, "delay", None,
                None]
    proxy = FaultProxy(server, schedule, delay=6.0)
    try:
        store = Store(tmp_path / "c.sqlite")
        model = open_model(f"openai:smollm2@http://127.0.0.1:{proxy.port}/v1?concurrency=4"
                           "&timeout=4&backoff=0.05&max_backoff=0.5&max_attempts=12", store)
        got = model.score(rows)
        stats = model.backend.stats  # type: ignore[attr-defined]
    finally:
        proxy.close()
    injected = sum(proxy.injected.values())
    assert all(proxy.injected[f] > 0 for f in ("429", "500", "reset", "delay")), proxy.injected
    assert stats.retries >= injected - proxy.injected["delay"]
    assert len(got) == len(rows)  # nothing lost
    check_agreement(got, local_scores)
    # nothing doubled: one cache row per question
    assert store.count(model.model_id) == len(rows)
    print(f"\nfaults injected {proxy.injected}, retries {stats.retries}, "
          f"errors {stats.errors}, requests seen {proxy.count}, rows {len(got)}")


def test_api_key_never_stored(server: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              mwe: Mwe) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    out = tmp_path / "out"
    cache = tmp_path / "c.sqlite"
    res = mwe(["evaluate", "-m", f"openai:smollm2@http://127.0.0.1:{server}/v1", "-d", PERSONA,
               "--limit", "3", "-o", out], cache=cache, progress=False)
    assert res.returncode == 0, res.stderr
    assert len((out / "rows.jsonl").read_text().splitlines()) == 3
    for path in [cache, *out.iterdir()]:
        assert SECRET.encode() not in path.read_bytes(), path
    for wal in tmp_path.glob("c.sqlite*"):
        assert SECRET.encode() not in wal.read_bytes()
    assert SECRET not in res.stdout + res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["summary"][0]["n"] == 3


def test_a_server_without_log_probs_is_a_clear_error(tmp_path: Path) -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class NoLogprobs(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path.startswith("/extras"):
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = json.dumps({"id": "x", "object": "text_completion", "created": 0,
                               "model": "m", "choices": [{"text": "ok", "index": 0,
                                                          "logprobs": None,
                                                          "finish_reason": "length"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), NoLogprobs)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        model = open_model(f"openai:m@http://127.0.0.1:{srv.server_address[1]}/v1"
                           "?max_attempts=2&backoff=0.01", Store(tmp_path / "c.sqlite"))
        with pytest.raises(MweError, match="can score neither"):
            model.score([("Hello", [" world"])])
    finally:
        srv.shutdown()


def test_kill_9_over_http_loses_only_calls_in_flight(server: int, tmp_path: Path, mwe: Mwe
                                                     ) -> None:
    import signal
    import sqlite3

    def committed() -> int:
        try:
            with sqlite3.connect(cache, timeout=1) as db:
                return int(db.execute("SELECT COUNT(*) FROM calls WHERE kind='score'")
                           .fetchone()[0])
        except sqlite3.Error:
            return 0

    cache = tmp_path / "c.sqlite"
    args = ["evaluate", "-m", f"openai:smollm2@http://127.0.0.1:{server}/v1?concurrency=4",
            "-d", PERSONA, "--limit", "40", "--no-progress", "--cache", str(cache)]
    proc = mwe.popen([*args, "-o", str(tmp_path / "a")])
    deadline = time.time() + 300
    while committed() < 5 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = committed()
    assert 5 <= done < 40  # committed one by one, not per chunk of 256
    res = mwe([*args, "-o", str(tmp_path / "b")])
    assert res.returncode == 0, res.stderr
    assert f"{done} from the cache, {40 - done} computed" in res.stderr
