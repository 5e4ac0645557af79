"""Retry, rate-limit and concurrency control flow of the HTTP layer: faults told apart on
the SDKs' real exception instances (built around real httpx responses), Retry-After waited
out against a stand-in server; the real server is exercised in test_http.py."""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import JsonHandler, serve

from mwe.errors import MweError
from mwe.models import Sampling, anthropic_api, open_model, openai_compat
from mwe.models.http import HttpSettings, RateLimiter, network_reason, run_all
from mwe.models.openai_compat import parse_name
from mwe.models.retry import HttpStats, transport_faults, with_retries
from mwe.store import Store

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")
httpx = pytest.importorskip("httpx2")

OPENAI = openai_compat.faults() + transport_faults()
ANTHROPIC = anthropic_api.faults() + transport_faults()
REQUEST = httpx.Request("POST", "http://127.0.0.1:1/v1/completions")


def answer(code: int, retry_after: str | None = None) -> Any:
    """The response an SDK error carries: a real httpx response."""
    headers = {"retry-after": retry_after} if retry_after else {}
    return httpx.Response(code, headers=headers, json={"error": {"message": "x"}},
                          request=REQUEST)


def sdk_status(sdk: Any, code: int, retry_after: str | None) -> BaseException:
    """The exception an SDK raises for an error answer: the class it picks for the status."""
    kind = {400: sdk.BadRequestError, 401: sdk.AuthenticationError, 404: sdk.NotFoundError,
            409: sdk.ConflictError, 429: sdk.RateLimitError}.get(
        code, sdk.InternalServerError if code >= 500 else sdk.APIStatusError)
    return kind("x", response=answer(code, retry_after), body=None)


def openai_status(code: int, retry_after: str | None = None) -> BaseException:
    return sdk_status(openai, code, retry_after)


def anthropic_status(code: int, retry_after: str | None = None) -> BaseException:
    return sdk_status(anthropic, code, retry_after)


def test_classify_sdk_answers_by_type_and_status() -> None:
    for faults, status in ((OPENAI, openai_status), (ANTHROPIC, anthropic_status)):
        assert faults.classify(status(429, "1.5")) == (True, 1.5, "http_429")
        assert faults.classify(status(503)) == (True, None, "http_503")
        for code in (408, 409, 429, 500, 502, 503, 504, 529):
            assert faults.should_retry(status(code)), code
        for code in (400, 401, 403, 404, 405, 422, 501, 505):
            assert not faults.should_retry(status(code)), code
    assert isinstance(openai_status(429), openai.RateLimitError)
    assert isinstance(openai_status(500), openai.InternalServerError)
    assert isinstance(anthropic_status(529), anthropic.APIStatusError)
    # an error class of another SDK is not this backend's: not taken for a fault
    assert OPENAI.classify(anthropic_status(503)) == (False, None, "InternalServerError")
    assert not OPENAI.is_fault(anthropic_status(503))
    timeout = openai.APITimeoutError(request=REQUEST)
    assert OPENAI.classify(timeout) == (True, None, "timeout")
    assert ANTHROPIC.classify(anthropic.APITimeoutError(request=REQUEST))[:1] == (True,)
    assert OPENAI.classify(TimeoutError())[0] is True
    assert OPENAI.classify(ValueError("bad"))[0] is False
    assert OPENAI.classify(MweError("already explained"))[0] is False


def test_retry_after_in_seconds_milliseconds_or_a_date() -> None:
    from email.utils import formatdate

    assert OPENAI.retry_after(openai_status(429, "2")) == 2.0
    assert OPENAI.retry_after(openai_status(429)) is None
    assert OPENAI.retry_after(openai_status(429, "soon")) is None
    later = OPENAI.retry_after(openai_status(503, formatdate(time.time() + 30, usegmt=True)))
    assert later is not None and 25 < later <= 30
    ms = openai.RateLimitError("x", body=None, response=httpx.Response(
        429, headers={"retry-after-ms": "250"}, request=REQUEST))
    assert OPENAI.retry_after(ms) == 0.25


def wrapped(outer: BaseException, inner: BaseException) -> BaseException:
    outer.__cause__ = inner
    return outer


def test_classify_retries_network_faults_only() -> None:
    """Network faults are retried; local OSErrors (a missing file, a permission) are not,
    even when an SDK wraps them in its connection error."""
    for exc in (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), ConnectionResetError(),
                ConnectionAbortedError(), BrokenPipeError(), TimeoutError(),
                OSError(errno.ENETUNREACH, "Network is unreachable"),
                OSError(errno.EHOSTUNREACH, "No route to host"),
                socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")):
        assert OPENAI.classify(exc)[0] is True, repr(exc)
    for exc in (FileNotFoundError(errno.ENOENT, "No such file", "/etc/ca.pem"),
                PermissionError(errno.EACCES, "Permission denied", "/root/key"),
                IsADirectoryError(), OSError("something local"), OSError(errno.ENOSPC, "full")):
        assert OPENAI.classify(exc)[0] is False, repr(exc)
    assert OPENAI.classify(ConnectionRefusedError())[2] == "connection"
    assert OPENAI.classify(TimeoutError())[2] == "timeout"
    for faults, sdk in ((OPENAI, openai), (ANTHROPIC, anthropic)):
        refused = wrapped(sdk.APIConnectionError(request=REQUEST),
                          httpx.ConnectError("All connection attempts failed"))
        assert faults.classify(refused) == (True, None, "connection")
        assert faults.never_sent(refused)
        reset = wrapped(sdk.APIConnectionError(request=REQUEST), ConnectionResetError())
        assert faults.classify(reset)[:1] == (True,) and not faults.never_sent(reset)
        local = wrapped(sdk.APIConnectionError(request=REQUEST), FileNotFoundError())
        assert faults.classify(local)[:1] == (False,)
        assert faults.classify(wrapped(sdk.APIConnectionError(request=REQUEST),
                                       PermissionError()))[2] == "PermissionError"
    # httpx's own errors, as a streamed read raises them
    assert OPENAI.classify(httpx.ConnectError("All connection attempts failed"))[0] is True
    assert OPENAI.classify(httpx.ReadTimeout("slow"))[2] == "timeout"
    assert OPENAI.classify(httpx.UnsupportedProtocol("ftp"))[0] is False

    # a class that merely has an SDK's name is no SDK error: types, never names
    class APIConnectionError(Exception):
        pass

    assert OPENAI.classify(APIConnectionError())[0] is False


def test_local_errors_are_not_retried_network_errors_are() -> None:
    settings = HttpSettings(max_attempts=3, backoff=0.001, max_backoff=0.001)
    for exc in (FileNotFoundError(errno.ENOENT, "No such file"),
                PermissionError(errno.EACCES, "Permission denied")):
        stats = HttpStats()

        async def local(exc: BaseException = exc) -> str:
            raise exc

        with pytest.raises(type(exc)):
            asyncio.run(with_retries(local, settings, stats, OPENAI))
        assert stats.calls == 1 and stats.retries == 0
    for exc in (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), TimeoutError(),
                openai.APITimeoutError(request=REQUEST)):
        stats = HttpStats()
        calls: list[int] = []

        async def network(exc: BaseException = exc, calls: list[int] = calls) -> str:
            calls.append(1)
            if len(calls) < 3:
                raise exc
            return "ok"

        assert asyncio.run(with_retries(network, settings, stats, OPENAI)) == "ok"
        assert stats.calls == 3 and stats.retries == 2


def test_network_reasons_name_the_innermost_fault() -> None:
    assert network_reason([OSError("All connection attempts failed"),
                           ConnectionRefusedError(111, "Connect call failed")]) == \
        "connection refused"
    assert network_reason([ConnectionResetError()]) == "connection reset"
    assert network_reason([socket.gaierror(socket.EAI_NONAME, "Name or service not known")]) \
        == "host not found"
    assert network_reason([Exception("Server disconnected without sending a response.")]) == \
        "Server disconnected without sending a response."


def test_retries_honour_retry_after_then_succeed() -> None:
    calls: list[float] = []

    async def flaky() -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise openai_status(429, "0.3")
        return "ok"

    stats = HttpStats()
    settings = HttpSettings(backoff=0.01, max_backoff=0.01)
    assert asyncio.run(with_retries(flaky, settings, stats, OPENAI)) == "ok"
    assert stats.retries == 2 and stats.errors == {"http_429": 2}
    assert calls[1] - calls[0] >= 0.3 and calls[2] - calls[1] >= 0.3


def test_no_retry_on_client_errors_and_give_up_after_max_attempts() -> None:
    async def bad() -> str:
        raise openai_status(400)

    async def down() -> str:
        raise anthropic_status(503)

    settings = HttpSettings(max_attempts=3, backoff=0.001, max_backoff=0.001)
    stats = HttpStats()
    with pytest.raises(openai.BadRequestError):
        asyncio.run(with_retries(bad, settings, stats, OPENAI))
    assert stats.calls == 1
    stats = HttpStats()
    with pytest.raises(MweError, match="gave up after 3 attempts; last error: http_503"):
        asyncio.run(with_retries(down, settings, stats, ANTHROPIC))
    assert stats.calls == 3 and stats.retries == 2


def test_run_all_bounds_concurrency_and_reports_each_result() -> None:
    in_flight = 0
    peak = 0

    def job(i: int) -> Any:
        async def run() -> int:
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01 * (i % 3))
            in_flight -= 1
            return i * i
        return run

    seen: dict[int, int] = {}
    run_all([job(i) for i in range(30)], HttpSettings(concurrency=4), HttpStats(),
            lambda i, r: seen.__setitem__(i, r))
    assert seen == {i: i * i for i in range(30)} and peak == 4


def test_token_rate_limit_waits() -> None:
    async def go() -> float:
        limiter = RateLimiter(rpm=0, tpm=600)  # 10 tokens per second, a minute's bucket
        t0 = time.monotonic()
        await limiter.acquire(600)  # the full bucket: no wait
        await limiter.acquire(15)  # 1.5 s of refill
        return time.monotonic() - t0

    assert 1.3 < asyncio.run(go()) < 3.0


def test_model_strings_and_secrets_in_urls() -> None:
    model, base, opts = parse_name("smollm2@http://user:pw@127.0.0.1:8765/v1/?concurrency=3")
    assert (model, base, opts) == ("smollm2", "http://127.0.0.1:8765/v1", {"concurrency": "3"})
    with pytest.raises(MweError, match="unknown option"):
        parse_name("m@http://x/v1?colour=red")
    with pytest.raises(MweError, match="scoring must be"):
        parse_name("m@http://x/v1?scoring=psychic")
    with pytest.raises(MweError, match="not an http"):
        parse_name("m@ftp://x")


class Throttled:
    """A stand-in server whose first answer is 429 with `Retry-After: 1`, then a completion
    (OpenAI's or Anthropic's shape); it notes when each request came."""

    def __init__(self) -> None:
        self.times: list[float] = []
        owner = self

        class Handler(JsonHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.times.append(time.monotonic())
                if len(owner.times) == 1:
                    self.send_json(429, {"error": {"message": "slow down"}}, {"Retry-After": "1"})
                elif self.path.endswith("/messages"):
                    self.send_json(200, {"id": "m", "type": "message", "role": "assistant",
                                     "model": "c", "content": [{"type": "text", "text": "hi"}],
                                     "stop_reason": "end_turn", "stop_sequence": None,
                                     "usage": {"input_tokens": 1, "output_tokens": 1}})
                else:
                    self.send_json(200, {"id": "x", "object": "text_completion", "created": 0,
                                     "model": "m", "choices": [{"text": "hi", "index": 0,
                                                                "logprobs": None,
                                                                "finish_reason": "length"}]})


        self.server = serve(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture()
def throttled(monkeypatch: pytest.MonkeyPatch) -> Iterator[Throttled]:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test-0123456789")
    server = Throttled()
    yield server
    server.server.shutdown()


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_a_real_429_with_retry_after_is_waited_out(backend: str, throttled: Throttled,
                                                   tmp_path: Path) -> None:
    """Through the SDK as it is used: the 429's Retry-After (1 s) is waited, plus a jitter
    of at most max_backoff (0.05 s), and the call then succeeds."""
    base = f"{throttled.url}/v1" if backend == "openai" else throttled.url
    model = open_model(f"{backend}:m@{base}?backoff=0.05&max_backoff=0.05",
                       Store(tmp_path / "c.sqlite"))
    out = model.generate(["Hello"], Sampling(n=1, max_tokens=1, stop=()))
    assert out == [["hi"]]
    assert len(throttled.times) == 2
    waited = throttled.times[1] - throttled.times[0]
    assert 1.0 <= waited < 2.0, waited  # without Retry-After: at most 0.05 s
    assert model.backend.stats.retries == 1  # type: ignore[attr-defined]
    assert model.backend.stats.errors == {"http_429": 1}  # type: ignore[attr-defined]
