"""Retry, rate-limit and concurrency control flow of the HTTP layer (stand-in calls; the
real server is exercised in test_http.py)."""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from typing import Any

import pytest

from mwe.errors import MweError
from mwe.models.http import (
    HttpSettings,
    HttpStats,
    RateLimiter,
    classify,
    network_reason,
    run_all,
    with_retries,
)
from mwe.models.openai_compat import parse_name


class Status(Exception):
    def __init__(self, code: int, retry_after: str | None = None) -> None:
        super().__init__(f"HTTP {code}")
        self.status_code = code
        self.response = type("R", (), {"headers": {"retry-after": retry_after}
                                       if retry_after else {}, "status_code": code})()


def test_classify() -> None:
    assert classify(Status(429, "1.5")) == (True, 1.5, "http_429")
    assert classify(Status(503)) == (True, None, "http_503")
    assert classify(Status(400))[0] is False and classify(Status(404))[0] is False
    assert classify(TimeoutError())[0] is True
    assert classify(ConnectionResetError())[:1] == (True,)
    assert classify(ValueError("bad"))[0] is False
    for code in (408, 409, 429, 500, 502, 503, 504, 529):
        assert classify(Status(code))[0] is True, code
    for code in (400, 401, 403, 404, 405, 422, 501):
        assert classify(Status(code))[0] is False, code


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
        assert classify(exc)[0] is True, repr(exc)
    for exc in (FileNotFoundError(errno.ENOENT, "No such file", "/etc/ca.pem"),
                PermissionError(errno.EACCES, "Permission denied", "/root/key"),
                IsADirectoryError(), OSError("something local"), OSError(errno.ENOSPC, "full")):
        assert classify(exc)[0] is False, repr(exc)
    assert classify(ConnectionRefusedError())[2] == "connection"
    assert classify(TimeoutError())[2] == "timeout"

    class APIConnectionError(Exception):  # recognised by name (openai's, anthropic's)
        pass

    class NetworkError(Exception):
        pass

    class ConnectError(NetworkError):  # httpx's (and its forks')
        pass

    assert classify(wrapped(APIConnectionError(), ConnectionRefusedError()))[0] is True
    assert classify(ConnectError("All connection attempts failed"))[0] is True
    assert classify(wrapped(APIConnectionError(), FileNotFoundError()))[:1] == (False,)
    assert classify(wrapped(APIConnectionError(), PermissionError()))[2] == "PermissionError"
    openai = pytest.importorskip("openai")
    assert classify(openai.APITimeoutError(request=None)) == (True, None, "timeout")
    assert classify(wrapped(openai.APIConnectionError(request=None),
                            ConnectionResetError()))[:1] == (True,)
    assert classify(wrapped(openai.APIConnectionError(request=None),
                            FileNotFoundError()))[:1] == (False,)
    assert classify(MweError("already explained"))[0] is False


def test_local_errors_are_not_retried_network_errors_are() -> None:
    settings = HttpSettings(max_attempts=3, backoff=0.001, max_backoff=0.001)
    for exc in (FileNotFoundError(errno.ENOENT, "No such file"),
                PermissionError(errno.EACCES, "Permission denied")):
        stats = HttpStats()

        async def local(exc: BaseException = exc) -> str:
            raise exc

        with pytest.raises(type(exc)):
            asyncio.run(with_retries(local, settings, stats))
        assert stats.calls == 1 and stats.retries == 0
    for exc in (ConnectionRefusedError(errno.ECONNREFUSED, "refused"), TimeoutError()):
        stats = HttpStats()
        calls: list[int] = []

        async def network(exc: BaseException = exc, calls: list[int] = calls) -> str:
            calls.append(1)
            if len(calls) < 3:
                raise exc
            return "ok"

        assert asyncio.run(with_retries(network, settings, stats)) == "ok"
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
            raise Status(429, "0.3")
        return "ok"

    stats = HttpStats()
    settings = HttpSettings(backoff=0.01, max_backoff=0.01)
    assert asyncio.run(with_retries(flaky, settings, stats)) == "ok"
    assert stats.retries == 2 and stats.errors == {"http_429": 2}
    assert calls[1] - calls[0] >= 0.3 and calls[2] - calls[1] >= 0.3


def test_no_retry_on_client_errors_and_give_up_after_max_attempts() -> None:
    async def bad() -> str:
        raise Status(400)

    async def down() -> str:
        raise Status(503)

    settings = HttpSettings(max_attempts=3, backoff=0.001, max_backoff=0.001)
    stats = HttpStats()
    with pytest.raises(Status):
        asyncio.run(with_retries(bad, settings, stats))
    assert stats.calls == 1
    stats = HttpStats()
    with pytest.raises(MweError, match="gave up after 3 attempts"):
        asyncio.run(with_retries(down, settings, stats))
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
