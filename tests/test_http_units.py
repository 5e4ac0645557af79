"""Retry, rate-limit and concurrency control flow of the HTTP layer (stand-in calls; the
real server is exercised in test_http.py)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from mwe.errors import MweError
from mwe.models.http import HttpSettings, HttpStats, RateLimiter, classify, run_all, with_retries
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
    assert classify(asyncio.TimeoutError())[0] is True
    assert classify(ConnectionResetError())[:1] == (True,)
    assert classify(ValueError("bad"))[0] is False


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
