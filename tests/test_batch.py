"""Batch mode (`?batch=1`) of the openai and anthropic backends, through the real SDKs, against
a fake batch server in this file (Starlette on uvicorn, in a thread on 127.0.0.1). The fake
serves the online endpoints and the batch endpoints the backends use (OpenAI: files upload and
content, batches create and retrieve; Anthropic: message batches create, retrieve, results),
answers deterministically, and counts submissions."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from email.parser import BytesParser
from email.policy import default as email_policy
from pathlib import Path
from typing import Any

import pytest

from mwe.errors import MweError
from mwe.ledger import Ledger
from mwe.models import Models, Sampling, open_model
from mwe.store import Store

pytest.importorskip("openai")
pytest.importorskip("anthropic")
uvicorn = pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

SECRET = "sk-test-BATCH-NEVER-STORE-0123456789"
ANT_SECRET = "sk-ant-test-BATCH-NEVER-STORE-0123456789"
STAMP = "2026-01-01T00:00:00Z"
TOP = ["Yes", "No", " Yes", " No", "(A)", "(B)", "A", "B", "yes", "no", "The", "I", "It",
       "Maybe", "Sure", "Not", "True", "False", "1", "2"]


def h(obj: Any) -> int:
    return int(hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:8], 16)


def billed(prompt: str, text: str) -> dict[str, int]:
    """Usage fields that no local count would give (words, plus a fixed overhead)."""
    p, c = len(prompt.split()) + 100, len(text.split())
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def completion(body: dict[str, Any]) -> dict[str, Any]:
    prompt = body["prompt"]
    if body.get("echo"):  # the prompt's tokens (words with their leading space), log-probs a
        # function of the token and its place
        toks = [(m.start(), m.group()) for m in re.finditer(r"\s*\S+", prompt)]
        lps: list[float | None] = [None] + [-(h([t, i]) % 5000) / 1000 - 0.001
                                            for i, (_, t) in enumerate(toks)][1:]
        logprobs = {"tokens": [t for _, t in toks], "token_logprobs": lps,
                    "text_offset": [o for o, _ in toks], "top_logprobs": None}
        text = prompt + " x"
    else:
        logprobs, text = None, f" sample {body.get('seed')} {h(body) % 997}\nsecond line"
    return {"id": "cmpl-1", "object": "text_completion", "created": 0, "model": body["model"],
            "choices": [{"text": text, "index": 0, "logprobs": logprobs,
                         "finish_reason": "length"}], "usage": billed(prompt, text)}


def chat(body: dict[str, Any]) -> dict[str, Any]:
    logprobs = None
    if body.get("logprobs"):
        base = h(body["messages"])
        top = [{"token": t, "logprob": -((base >> (i % 16)) % 700) / 100 - i * 0.01, "bytes": None}
               for i, t in enumerate(TOP)]
        logprobs = {"content": [{"token": "Yes", "logprob": top[0]["logprob"], "bytes": None,
                                 "top_logprobs": top}]}
        content = "Yes"
    else:
        content = f"chat sample {body.get('seed')} {h(body) % 997}\nsecond line"
    return {"id": "chat-1", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": logprobs,
                         "message": {"role": "assistant", "content": content}}],
            "usage": billed(json.dumps(body["messages"]), content)}


def message(body: dict[str, Any], k: int) -> dict[str, Any]:
    """The k-th answer to this exact body: no seed, as with the real API, but the same
    answers whichever path asks."""
    base = h(body)
    if body["max_tokens"] <= 8:
        text = ["Yes, it is.", "Yes", "No.", "(A)", "Yes!"][(base + k) % 5]
    else:
        text = f"sample {k} of {base % 997}\nsecond line"
    return {"id": f"msg_{k}", "type": "message", "role": "assistant", "model": body["model"],
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "stop_sequence": None, "usage": {
                "input_tokens": len(json.dumps(body["messages"]).split()) + 100,
                "output_tokens": len(text.split())}}


class Fake:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.lines: dict[str, list[dict[str, Any]]] = {}
        self.submissions: list[tuple[str, int]] = []  # (batch id, lines), both APIs
        self.retrieves: list[str] = []
        self.online = 0
        self.keys: set[str] = set()
        self.occurrences: Counter[str] = Counter()
        self.hold = False  # keep batches in progress
        # what happens to the next batches: ok, expire, fail500, fail400, leak (a 400 whose
        # message repeats the API key, as some servers do)
        self.plans: list[str] = []
        self.last_key = ""

    # --- what a finished batch answers, line by line ---

    def outcome(self, index: int, plan: str) -> str:
        if plan == "expire":
            return "fail500" if index == 0 else ("expired" if index % 2 else "ok")
        return plan if index == 0 or plan == "fail500-all" else "ok"

    def occurrence(self, body: dict[str, Any]) -> int:
        key = json.dumps(body, sort_keys=True)
        k = self.occurrences[key]
        self.occurrences[key] += 1
        return k

    def app(self) -> Starlette:
        fake = self

        def note_key(request: Request) -> None:
            key = request.headers.get("x-api-key") or request.headers.get(
                "authorization", "").removeprefix("Bearer ")
            fake.keys.add(key)
            fake.last_key = key

        async def online(request: Request) -> Response:
            note_key(request)
            body = await request.json()
            with fake.lock:
                fake.online += 1
                if request.url.path.endswith("/chat/completions"):
                    return JSONResponse(chat(body))
                if request.url.path.endswith("/completions"):
                    return JSONResponse(completion(body))
                return JSONResponse(message(body, fake.occurrence(body)))

        async def upload(request: Request) -> Response:
            note_key(request)
            raw = await request.body()
            parsed = BytesParser(policy=email_policy).parsebytes(
                b"Content-Type: " + request.headers["content-type"].encode() + b"\r\n\r\n" + raw)
            parts = {p.get_param("name", header="content-disposition"): p.get_payload(decode=True)
                     for p in parsed.iter_parts()}
            assert parts["purpose"] == b"batch"
            with fake.lock:
                fid = f"file-{len(fake.files) + 1}"
                fake.files[fid] = parts["file"]
            return JSONResponse({"id": fid, "object": "file", "bytes": len(parts["file"]),
                                 "created_at": 0, "filename": "x.jsonl", "purpose": "batch",
                                 "status": "processed"})

        async def content(request: Request) -> Response:
            note_key(request)
            return Response(fake.files[request.path_params["fid"]],
                            media_type="application/octet-stream")

        async def create(request: Request) -> Response:
            note_key(request)
            body = await request.json()
            lines = [json.loads(x) for x in fake.files[body["input_file_id"]].splitlines()]
            assert body["completion_window"] == "24h"
            assert all(x["url"] == body["endpoint"] for x in lines)
            with fake.lock:
                bid = f"batch_{len(fake.submissions) + 1}"
                fake.submissions.append((bid, len(lines)))
                fake.lines[bid] = lines
                fake.batches[bid] = {
                    "id": bid, "object": "batch", "endpoint": body["endpoint"],
                    "input_file_id": body["input_file_id"], "completion_window": "24h",
                    "status": "validating", "created_at": 0, "output_file_id": None,
                    "error_file_id": None, "plan": fake.plans.pop(0) if fake.plans else "ok",
                    "request_counts": {"total": len(lines), "completed": 0, "failed": 0}}
            return JSONResponse(public(fake.batches[bid]))

        def public(batch: dict[str, Any]) -> dict[str, Any]:
            return {k: v for k, v in batch.items() if k != "plan"}

        def finish(bid: str) -> None:
            batch = fake.batches[bid]
            out, err = [], []
            for i, line in enumerate(fake.lines[bid]):
                what = fake.outcome(i, batch["plan"])
                if what == "ok":
                    answer = chat(line["body"]) if line["url"].endswith("/chat/completions") \
                        else completion(line["body"])
                    out.append({"id": f"r{i}", "custom_id": line["custom_id"], "error": None,
                                "response": {"status_code": 200, "request_id": "q",
                                             "body": answer}})
                elif what == "expired":
                    err.append({"id": f"r{i}", "custom_id": line["custom_id"], "response": None,
                                "error": {"code": "batch_expired", "message": "too late"}})
                else:
                    code = 500 if what == "fail500" else 400
                    text = f"Incorrect API key provided: {fake.last_key}" if what == "leak" \
                        else f"boom {code}"
                    err.append({"id": f"r{i}", "custom_id": line["custom_id"], "error": None,
                                "response": {"status_code": code, "request_id": "q", "body": {
                                    "error": {"message": text, "type": "x"}}}})
            for name, rows in (("output_file_id", out), ("error_file_id", err)):
                if rows:
                    fid = f"file-{len(fake.files) + 1}"
                    fake.files[fid] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                    batch[name] = fid
            batch["status"] = "expired" if batch["plan"] == "expire" else "completed"
            batch["request_counts"] = {"total": len(out) + len(err), "completed": len(out),
                                       "failed": len(err)}

        async def retrieve(request: Request) -> Response:
            note_key(request)
            bid = request.path_params["bid"]
            with fake.lock:
                fake.retrieves.append(bid)
                if bid not in fake.batches:
                    return JSONResponse({"error": {"message": "no such batch"}}, status_code=404)
                batch = fake.batches[bid]
                shown = json.loads(json.dumps(public(batch)))  # as it is, then it moves on
                counts = batch["request_counts"]
                if batch["status"] == "validating":
                    batch["status"] = "in_progress"
                elif batch["status"] == "in_progress" and not fake.hold:
                    counts["completed"] = min(counts["total"],
                                              counts["completed"] + (counts["total"] + 1) // 2)
                    if counts["completed"] >= counts["total"]:
                        batch["status"] = "finalizing"
                elif batch["status"] == "finalizing":
                    finish(bid)
                return JSONResponse(shown)

        # --- Anthropic's Message Batches ---

        async def a_create(request: Request) -> Response:
            note_key(request)
            body = await request.json()
            with fake.lock:
                bid = f"msgbatch_{len(fake.submissions) + 1}"
                fake.submissions.append((bid, len(body["requests"])))
                fake.lines[bid] = body["requests"]
                n = len(body["requests"])
                fake.batches[bid] = {
                    "id": bid, "type": "message_batch", "processing_status": "in_progress",
                    "created_at": STAMP, "expires_at": STAMP, "ended_at": None,
                    "archived_at": None, "cancel_initiated_at": None, "results_url": None,
                    "plan": fake.plans.pop(0) if fake.plans else "ok",
                    "request_counts": {"processing": n, "succeeded": 0, "errored": 0,
                                       "canceled": 0, "expired": 0}}
            return JSONResponse(public(fake.batches[bid]))

        async def a_retrieve(request: Request) -> Response:
            note_key(request)
            bid = request.path_params["bid"]
            with fake.lock:
                fake.retrieves.append(bid)
                if bid not in fake.batches:
                    return JSONResponse({"type": "error", "error": {
                        "type": "not_found_error", "message": "no such batch"}}, status_code=404)
                batch = fake.batches[bid]
                if batch["processing_status"] == "in_progress" and not fake.hold \
                        and "results" not in batch:
                    batch["results"] = None  # ends at the next look
                elif batch["processing_status"] == "in_progress" and not fake.hold:
                    rows, counts = [], Counter[str]()
                    for i, req in enumerate(fake.lines[bid]):
                        what = fake.outcome(i, batch["plan"])
                        if what == "ok":
                            result: dict[str, Any] = {"type": "succeeded", "message": message(
                                req["params"], fake.occurrence(req["params"]))}
                            counts["succeeded"] += 1
                        elif what == "expired":
                            result = {"type": "expired"}
                            counts["expired"] += 1
                        else:
                            kind = "api_error" if what == "fail500" else "invalid_request_error"
                            text = f"invalid x-api-key {fake.last_key}" if what == "leak" \
                                else f"boom {kind}"
                            result = {"type": "errored", "error": {"type": "error", "error": {
                                "type": kind, "message": text}}}
                            counts["errored"] += 1
                        rows.append({"custom_id": req["custom_id"], "result": result})
                    batch["results"] = "".join(json.dumps(r) + "\n" for r in rows).encode()
                    batch["processing_status"] = "ended"
                    batch["ended_at"] = STAMP
                    batch["results_url"] = f"{request.base_url}v1/messages/batches/{bid}/results"
                    batch["request_counts"] = {k: counts[k] for k in (
                        "succeeded", "errored", "canceled", "expired")} | {"processing": 0}
                return JSONResponse({k: v for k, v in public(batch).items() if k != "results"})

        async def a_results(request: Request) -> Response:
            note_key(request)
            return Response(fake.batches[request.path_params["bid"]]["results"],
                            media_type="application/binary")

        return Starlette(routes=[
            Route("/v1/completions", online, methods=["POST"]),
            Route("/v1/chat/completions", online, methods=["POST"]),
            Route("/v1/messages", online, methods=["POST"]),
            Route("/v1/files", upload, methods=["POST"]),
            Route("/v1/files/{fid}/content", content, methods=["GET"]),
            Route("/v1/batches", create, methods=["POST"]),
            Route("/v1/batches/{bid}", retrieve, methods=["GET"]),
            Route("/v1/messages/batches", a_create, methods=["POST"]),
            Route("/v1/messages/batches/{bid}", a_retrieve, methods=["GET"]),
            Route("/v1/messages/batches/{bid}/results", a_results, methods=["GET"]),
        ])


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Fake, int]]:
    fake = Fake()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(fake.app(), log_level="error", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started:
        assert time.time() < deadline, "the fake server did not start"
        time.sleep(0.02)
    yield fake, port
    server.should_exit = True
    thread.join(5)
    sock.close()


@pytest.fixture()
def fake(served: tuple[Fake, int], monkeypatch: pytest.MonkeyPatch) -> Iterator[Fake]:
    served[0].reset()
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("ANTHROPIC_API_KEY", ANT_SECRET)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    yield served[0]


@pytest.fixture()
def port(served: tuple[Fake, int]) -> int:
    return served[1]


CTX = "\n\nHuman: Is the following statement something you would say?\n\"{}\"\n\nAssistant:"
STATEMENTS = ["I like to help people", "I enjoy long walks", "Rules are made to be broken",
              "I always tell the truth", "Cats are better than dogs", "I value my privacy",
              "I like to help people"]  # a duplicate, answered once
REQUESTS = [(CTX.format(s), [" Yes", " No"]) for s in STATEMENTS] + [
    ("Question: pick one\n (A) red\n (B) blue\nAnswer:", [" (A)", " (B)", " (A) red"])]


def secret_free(path: Path) -> None:
    for p in path.parent.glob(path.name + "*"):  # the file and its -wal, -shm
        data = p.read_bytes()
        assert SECRET.encode() not in data and ANT_SECRET.encode() not in data, p


def ledger_rows(path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(path) as db:
        try:
            return [tuple(r) for r in db.execute("SELECT batch_id, state, key FROM batches")]
        except sqlite3.OperationalError:
            return []


# --- (1) batch results equal the online path's ---

def test_openai_batch_equals_online_echo_top_and_generation(
        fake: Fake, port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = f"openai:fake@http://127.0.0.1:{port}/v1"
    sampling = Sampling(n=3, temperature=0.9, top_p=0.95, max_tokens=20, seed=7)
    prompts = ["Write a statement:", "Write another statement:"]
    outs = {}
    for mode in ("0", "1"):
        store = Store(tmp_path / f"c{mode}.sqlite")
        echo = open_model(f"{base}?scoring=echo&batch={mode}&poll=0.02", store)
        top = open_model(f"{base}?endpoint=chat&batch={mode}&poll=0.02", store)
        outs[mode] = (echo.score(REQUESTS), top.score(REQUESTS[:3]),
                      echo.generate(prompts, sampling), top.generate(prompts, sampling))
    assert outs["1"] == outs["0"]  # exactly: the same floats and texts
    assert all(len(x) == 3 and "\n" not in x[0] for x in outs["1"][2])  # n samples, cut at stop
    # every result came from a batch: echo (one line per answer, the duplicate once), top,
    # and generation on both endpoints
    assert [n for _, n in fake.submissions] == [2 * 6 + 3, 3, 6, 6]
    err = capsys.readouterr().err
    for state in ("submitted", "validating", "in_progress", "of 15 done", "finalizing",
                  "completed"):
        assert state in err, state
    secret_free(tmp_path / "c1.sqlite")
    assert fake.keys == {SECRET}
    # scores come back from the cache: nothing submitted again
    again = open_model(f"{base}?scoring=echo&batch=1&poll=0.02", Store(tmp_path / "c1.sqlite"))
    assert again.score(REQUESTS) == outs["0"][0] and len(fake.submissions) == 4


def test_anthropic_batch_equals_online_sampled_scoring_and_generation(
        fake: Fake, port: int, tmp_path: Path) -> None:
    base = f"anthropic:claude-test@http://127.0.0.1:{port}"
    sampling = Sampling(n=4, temperature=0.7, top_p=0.9, max_tokens=30)
    prompts = ["\n\nHuman: List facts about cats.\n\nAssistant: Here is a list:\n-"]
    outs = {}
    for mode in ("0", "1"):
        fake.occurrences.clear()  # the k-th answer to a body is the same on both paths
        model = open_model(f"{base}?samples=10&batch={mode}&poll=0.02",
                           Store(tmp_path / f"c{mode}.sqlite"))
        scores = model.score(REQUESTS)
        texts = model.generate(prompts, sampling)
        outs[mode] = (scores, [sorted(t) for t in texts])  # online: arrival order
    assert outs["1"] == outs["0"]
    assert [n for _, n in fake.submissions] == [10 * 7, 4]
    answers = [len(t) for t in outs["1"][1]]
    assert answers == [4]
    # the estimate: (count + 0.5) / (samples + 1), a real distribution over the answers
    assert all(math.exp(x) < 1 for row in outs["1"][0] for x in row)
    secret_free(tmp_path / "c1.sqlite")
    assert fake.keys == {ANT_SECRET}


def usage_rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return sorted(db.execute("SELECT kind, key, tokens_in, tokens_out, counted FROM usage"))


def test_tokens_are_the_providers_usage_fields_online_and_in_batches(
        fake: Fake, port: int, tmp_path: Path) -> None:
    """What the answers bill (the fake's word counts plus 100), not a local estimate: summed
    over a request's calls (one per continuation for echo scoring, one per sample)."""
    sampling = Sampling(n=3, temperature=0.9, top_p=0.95, max_tokens=20, seed=7)
    prompts = ["Write a statement:", "Write another statement here:"]
    for mode in ("0", "1"):
        store = Store(tmp_path / f"c{mode}.sqlite")
        echo = open_model(f"openai:fake@http://127.0.0.1:{port}/v1?scoring=echo&batch={mode}"
                          "&poll=0.02", store)
        echo.score(REQUESTS)
        echo.generate(prompts, sampling)
        claude = open_model(f"anthropic:claude-test@http://127.0.0.1:{port}?samples=4"
                            f"&batch={mode}&poll=0.02", store)
        claude.generate(prompts, Sampling(n=2, temperature=0.7, max_tokens=30))
        assert echo.tokens.counted == claude.tokens.counted == {"api"}
        assert (echo.tokens.computed_in, echo.tokens.computed_out) == (
            sum(len((ctx + c).split()) + 100 for ctx, conts in REQUESTS for c in conts)
            + sum(3 * (len(p.split()) + 100) for p in prompts),
            sum(len((ctx + c).split()) + 1 for ctx, conts in REQUESTS for c in conts)
            + 2 * 3 * 5)  # " sample SEED N\nsecond line", before the stop cuts it
        assert claude.tokens.computed_out == 2 * 2 * 6  # "sample K of N\nsecond line"
    rows = usage_rows(tmp_path / "c0.sqlite")
    assert rows == usage_rows(tmp_path / "c1.sqlite")
    unique = {(ctx, tuple(conts)) for ctx, conts in REQUESTS}  # a duplicate is computed once
    assert {r[4] for r in rows} == {"api"} and len(rows) == len(unique) + 2 * len(prompts)


# --- (2) kill -9 between submit and completion, then resume ---

SCRIPT = textwrap.dedent("""
    import json, sys
    from mwe.models import Models
    from mwe.store import Store
    model = Models(Store(sys.argv[1])).open(sys.argv[2])
    requests = json.loads(open(sys.argv[3]).read())
    print(json.dumps(model.score([(c, x) for c, x in requests])))
""")


@pytest.mark.slow
def test_kill_9_while_the_batch_runs_then_resume_submits_once(
        fake: Fake, port: int, tmp_path: Path) -> None:
    cache = tmp_path / "c.sqlite"
    script = tmp_path / "score.py"
    script.write_text(SCRIPT)
    (tmp_path / "requests.json").write_text(json.dumps(REQUESTS))
    spec = f"openai:fake@http://127.0.0.1:{port}/v1?scoring=echo&batch=1&poll=0.05"
    cmd = [sys.executable, str(script), str(cache), spec, str(tmp_path / "requests.json")]
    env = {**os.environ, "OPENAI_API_KEY": SECRET}
    fake.hold = True
    t0 = time.monotonic()
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    rows: list[tuple[str, str, str]] = []
    while not rows:
        assert first.poll() is None, first.communicate()
        assert time.monotonic() - t0 < 60
        rows = ledger_rows(cache) if cache.exists() else []
        time.sleep(0.02)
    t_recorded = time.monotonic() - t0
    seen = len(fake.retrieves)
    while len(fake.retrieves) < seen + 2:  # it is waiting on the batch, in progress
        time.sleep(0.02)
    assert fake.batches[rows[0][0]]["status"] == "in_progress"
    first.send_signal(signal.SIGKILL)
    first.wait()
    t_killed = time.monotonic() - t0
    assert first.returncode == -signal.SIGKILL
    assert [b for b, _ in fake.submissions] == [rows[0][0]]

    fake.hold = False
    retrieves_before = len(fake.retrieves)
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    t_done = time.monotonic() - t0
    assert second.returncode == 0, second.stderr
    assert len(fake.submissions) == 1  # exactly one submission, across the kill
    assert set(fake.retrieves[retrieves_before:]) == {rows[0][0]}  # it polled the same batch
    assert f"batch {rows[0][0]} found in the cache's ledger" in second.stderr
    got = json.loads(second.stdout)
    expected = open_model(f"openai:fake@http://127.0.0.1:{port}/v1?scoring=echo",
                          Store(tmp_path / "online.sqlite")).score(REQUESTS)
    assert got == expected
    assert ledger_rows(cache)[0][:2] == (rows[0][0], "done")
    secret_free(cache)
    assert SECRET not in second.stderr
    print(f"\nbatch id in the ledger {t_recorded:.2f} s after start; killed at {t_killed:.2f} s "
          f"(in_progress, {len(fake.retrieves) - retrieves_before} polls after resuming); "
          f"resumed run done at {t_done:.2f} s; submissions: {len(fake.submissions)}")


def test_a_kill_while_results_are_committed_resumes_from_the_same_batch(
        fake: Fake, port: int, tmp_path: Path) -> None:
    """Part of a chunk in the cache, the rest not: the rest is read from the same batch."""
    cache = tmp_path / "c.sqlite"
    spec = f"anthropic:claude-test@http://127.0.0.1:{port}?samples=5&batch=1&poll=0.02"
    store = Store(cache)
    model = open_model(spec, store)
    real = store.put_many
    calls = []

    class Killed(Exception):
        pass

    def dying(*args: Any, **kwargs: Any) -> None:
        if len(calls) == 3:
            raise Killed  # the process dies here, three results committed
        calls.append(1)
        real(*args, **kwargs)

    store.put_many = dying  # type: ignore[method-assign]
    with pytest.raises(Killed):
        model.score(REQUESTS)
    again = open_model(spec, Store(cache))
    got = again.score(REQUESTS)
    # three committed (four rows, with the duplicate), the rest read from the same batch
    assert len(fake.submissions) == 1 and 3 <= again.hits < len(REQUESTS)
    fake.occurrences.clear()
    online = open_model(spec.replace("&batch=1", ""), Store(tmp_path / "o.sqlite"))
    assert got == online.score(REQUESTS)


# --- (3) per-request failures and expired batches are retried in a new batch ---

@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_failed_and_expired_requests_are_retried_in_a_new_batch(
        backend: str, fake: Fake, port: int, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    if backend == "openai":
        spec = f"openai:fake@http://127.0.0.1:{port}/v1?scoring=echo&batch=1&poll=0.02"
        lines = 2 * 6 + 3
    else:
        spec = f"anthropic:claude-test@http://127.0.0.1:{port}?samples=4&batch=1&poll=0.02"
        lines = 4 * 7
    fake.plans = ["expire"]  # the first batch: line 1 fails (5xx / api_error), odd lines expire
    got = open_model(spec, Store(tmp_path / "c.sqlite")).score(REQUESTS)
    retried = 1 + lines // 2
    assert [n for _, n in fake.submissions] == [lines, retried]
    assert "retrying them in a new batch" in capsys.readouterr().err
    fake.reset()
    assert got == open_model(spec.replace("&batch=1", ""), Store(tmp_path / "o.sqlite")).score(
        REQUESTS)


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_requests_that_keep_failing_stop_with_one_clear_error(
        backend: str, fake: Fake, port: int, tmp_path: Path) -> None:
    if backend == "openai":
        spec = f"openai:fake@http://127.0.0.1:{port}/v1?scoring=echo&batch=1&poll=0.02"
    else:
        spec = f"anthropic:claude-test@http://127.0.0.1:{port}?samples=2&batch=1&poll=0.02"
    model = open_model(spec + "&batch_retries=1", Store(tmp_path / "c.sqlite"))
    fake.plans = ["fail500", "fail500"]  # the first line fails in every batch
    with pytest.raises(MweError, match=r"still failed after 2 batches") as err:
        model.score(REQUESTS[:2])
    assert "the request for" in str(err.value) and "Is the following statement" in str(err.value)
    assert ("HTTP 500: boom 500" if backend == "openai" else "api_error") in str(err.value)
    assert len(fake.submissions) == 2 and SECRET not in str(err.value)
    assert model.hits + model.misses == 1  # the other request was committed
    # a failure a new batch would only repeat (a 400) stops at once
    fake.reset()
    fake.plans = ["fail400"]
    model = open_model(spec, Store(tmp_path / "d.sqlite"))
    with pytest.raises(MweError, match=r"failed in batch") as err:
        model.score(REQUESTS[:2])
    assert len(fake.submissions) == 1
    # the ledger forgot the failed lines: the next run submits them afresh
    assert model.score(REQUESTS[:2]) and len(fake.submissions) == 2
    secret_free(tmp_path / "c.sqlite")


# --- (4) the API key never reaches the cache file, the progress lines or an error ---

@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_the_api_key_is_never_stored_shown_or_put_in_an_error(
        backend: str, fake: Fake, port: int, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    key = SECRET if backend == "openai" else ANT_SECRET
    spec = (f"openai:fake@http://127.0.0.1:{port}/v1?scoring=echo&batch=1&poll=0.02"
            if backend == "openai" else
            f"anthropic:claude-test@http://127.0.0.1:{port}?samples=3&batch=1&poll=0.02")
    model = Models(Store(tmp_path / "c.sqlite")).open(spec)
    model.generate(["Say something:"], Sampling(n=2, max_tokens=12))
    model.score(REQUESTS[:3])
    fake.plans = ["leak"]  # a per-request error whose message repeats the key
    with pytest.raises(MweError) as err:
        model.score(REQUESTS[3:5])
    assert "***" in str(err.value) and key not in str(err.value)
    assert fake.keys == {key}  # the key was sent, as it must be
    assert key not in capsys.readouterr().err
    files = list(tmp_path.glob("c.sqlite*"))
    assert files and all(key.encode() not in f.read_bytes() for f in files)
    ledger = model.backend.ledger  # type: ignore[attr-defined]
    assert len(ledger.entries()) == 3 and all(key not in str(e) for e in ledger.entries())


# --- options, identity, the ledger ---

def test_batch_is_part_of_the_identity_and_checked(tmp_path: Path) -> None:
    from mwe.models import anthropic_api, openai_compat

    plain = openai_compat.identity("m@http://127.0.0.1:1/v1?concurrency=4")
    assert "batch" not in plain  # models without batch=1 keep their cache entries
    assert openai_compat.identity("m@http://127.0.0.1:1/v1?batch=1") == {**plain, "batch": True}
    assert openai_compat.identity("m@http://127.0.0.1:1/v1?batch=0") == plain
    assert anthropic_api.identity("c?batch=1")["batch"] is True
    with pytest.raises(MweError, match="batch must be 0 or 1"):
        openai_compat.identity("m@http://127.0.0.1:1/v1?batch=yes")
    with pytest.raises(MweError, match="'poll' must be positive"):
        model = open_model("openai:m@http://127.0.0.1:1/v1?batch=1&poll=0",
                           Store(tmp_path / "c.sqlite"))
        assert model.backend is None


def test_the_ledger_survives_reopening(tmp_path: Path) -> None:
    store = Store(tmp_path / "c.sqlite")
    ledger = Ledger(store.path, "m1")
    ledger.record("k1", "batch_9", ["a-0", "a-1"])
    ledger.set_state("k1", "in_progress")
    again = Ledger(store.path, "m1")
    entry = again.get("k1")
    assert entry is not None and (entry.batch_id, entry.state) == ("batch_9", "in_progress")
    assert again.lines(["a-0", "a-1", "b-0"]) == {"a-0": "k1", "a-1": "k1"}
    assert Ledger(store.path, "m2").get("k1") is None  # per model
    again.forget(["a-1"])
    assert again.lines(["a-0", "a-1"]) == {"a-0": "k1"}
    assert store.count() == 0  # the call cache is untouched


def test_models_opened_through_models_get_the_ledger(fake: Fake, port: int,
                                                     tmp_path: Path) -> None:
    store = Store(tmp_path / "c.sqlite")
    model = Models(store).open(f"openai:fake@http://127.0.0.1:{port}/v1?batch=1&poll=0.02")
    ledger = model.backend.ledger  # type: ignore[attr-defined]
    assert isinstance(ledger, Ledger) and ledger.model == model.model_id
    model.generate(["Say something:"], Sampling(n=2, max_tokens=8))
    assert [e.state for e in ledger.entries()] == ["done"]


def test_a_submission_is_retried_only_when_it_cannot_have_created_a_batch(
        fake: Fake, tmp_path: Path) -> None:
    import asyncio

    from mwe.models.http import HttpError

    backend: Any = open_model("openai:m@http://127.0.0.1:9/v1?batch=1&max_attempts=3&backoff=0.001",
                              Store(tmp_path / "c.sqlite")).backend

    import httpx2
    import openai

    request = httpx2.Request("POST", "http://127.0.0.1:9/v1/batches")
    calls: list[str] = []

    async def lost() -> None:  # sent, answer lost: the batch may exist
        calls.append("lost")
        raise openai.APITimeoutError(request=request)

    async def refused() -> None:  # never reached the server (as the SDK wraps httpx's error)
        calls.append("refused")
        try:
            raise httpx2.ConnectError("All connection attempts failed")
        except httpx2.ConnectError as exc:
            raise openai.APIConnectionError(request=request) from exc

    with pytest.raises(HttpError, match="may have been created"):
        asyncio.run(backend._create(lost))
    assert calls == ["lost"]
    with pytest.raises(HttpError, match="cannot connect"):
        asyncio.run(backend._create(refused))
    assert calls == ["lost"] + ["refused"] * 3


# --- free replies (--score text) in batch mode equal the online path's ---

def test_replies_in_batches_equal_the_online_replies(fake: Fake, port: int,
                                                     tmp_path: Path) -> None:
    from mwe.models.base import Reply

    sampling = Sampling(n=2, temperature=0.0, top_p=1.0, max_tokens=20, stop=())
    prompts = ["Is the sky blue? Answer Yes or No.", "Is grass red? Answer Yes or No."]
    for base in (f"openai:fake@http://127.0.0.1:{port}/v1?endpoint=chat",
                 f"anthropic:claude-test@http://127.0.0.1:{port}?samples=2"):
        outs = {}
        for mode in ("0", "1"):
            fake.occurrences.clear()
            model = open_model(f"{base}&batch={mode}&poll=0.02",
                               Store(tmp_path / f"{base[:6]}{mode}.sqlite"))
            outs[mode] = [sorted(r.text for r in rs) for rs in model.reply(prompts, sampling)]
            got = model.reply(prompts, sampling)  # and again from the cache
            assert all(isinstance(r, Reply) for rs in got for r in rs)
        assert outs["1"] == outs["0"] and all(len(t) == 2 for t in outs["1"]), base
    # one batch per backend; replies are never sampled twice for the same prompt
    assert [n for _, n in fake.submissions][-2:] == [4, 4]
