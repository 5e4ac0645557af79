"""What every HTTP backend shares: many requests in flight, rate limits, retries.

A call that fails with a rate limit (429), a server error (5xx), a timeout or a dropped
connection is retried with exponential backoff and full jitter, waiting at least as long as
the server's Retry-After says. Each finished call is handed to `on_result` at once, so the
caller can commit it to the cache: a crash loses at most the calls in flight.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mwe.errors import MweError

T = TypeVar("T")
RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504, 520, 522, 524, 529}


class GaveUp(MweError):
    """A call that kept failing with faults worth retrying."""


@dataclass
class HttpSettings:
    """Throughput and fault tolerance; none of these change a call's result."""

    concurrency: int = 8
    rpm: float = 0.0  # requests per minute, 0 = no limit
    tpm: float = 0.0  # tokens per minute (prompt estimate + max tokens), 0 = no limit
    timeout: float = 60.0  # seconds per attempt
    max_attempts: int = 8
    backoff: float = 0.5  # first backoff in seconds, doubled per attempt
    max_backoff: float = 30.0


@dataclass
class HttpStats:
    calls: int = 0
    retries: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def note(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def settings_from(options: dict[str, str]) -> HttpSettings:
    """Settings from a model spec's options (`?concurrency=16&rpm=600`) or the environment."""
    s = HttpSettings()
    names = {"concurrency": int, "rpm": float, "tpm": float, "timeout": float,
             "max_attempts": int, "backoff": float, "max_backoff": float}
    for name, kind in names.items():
        raw = options.get(name, os.environ.get(f"MWE_HTTP_{name.upper()}"))
        if raw is None:
            continue
        try:
            value = kind(raw)
        except ValueError:
            raise MweError(f"'{name}' must be a number, got {raw!r}") from None
        if value < 0 or (name in ("concurrency", "max_attempts", "timeout") and value <= 0):
            raise MweError(f"'{name}' must be positive, got {raw!r}")
        setattr(s, name, value)
    return s


class RateLimiter:
    """Token buckets for requests and tokens per minute (a bucket holds one minute's worth)."""

    def __init__(self, rpm: float, tpm: float) -> None:
        self.limits = [(rpm, 1.0), (tpm, None)]
        self.level = [rpm, tpm]
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    async def acquire(self, tokens: int) -> None:
        if not any(lim for lim, _ in self.limits):
            return
        async with self.lock:
            while True:
                now = time.monotonic()
                for i, (lim, _) in enumerate(self.limits):
                    if lim:
                        self.level[i] = min(lim, self.level[i] + (now - self.stamp) * lim / 60)
                self.stamp = now
                need = [1.0, float(tokens)]
                waits = [max(0.0, (min(n, lim) - self.level[i]) * 60 / lim)
                         for i, ((lim, _), n) in enumerate(zip(self.limits, need)) if lim]
                wait = max(waits, default=0.0)
                if wait <= 0:
                    for i, (lim, _) in enumerate(self.limits):
                        if lim:
                            self.level[i] -= min(need[i], lim)
                    return
                await asyncio.sleep(wait)


def classify(exc: BaseException) -> tuple[bool, float | None, str]:
    """(retry?, Retry-After seconds if the server gave one, a short name for the fault)."""
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return True, None, "timeout"
    status = getattr(exc, "status_code", None)
    response = getattr(exc, "response", None)
    if status is None and response is not None:
        status = getattr(response, "status_code", None)
    name = type(exc).__name__
    if status is not None:
        after = None
        headers = getattr(response, "headers", None) or {}
        raw = headers.get("retry-after") if hasattr(headers, "get") else None
        if raw is not None:
            try:
                after = float(raw)
            except ValueError:
                after = None
        return int(status) in RETRY_STATUS, after, f"http_{status}"
    bases = {c.__name__ for c in type(exc).__mro__}
    if "Timeout" in name or bases & {"TimeoutException", "APITimeoutError"}:
        return True, None, "timeout"
    transport = {"TransportError", "NetworkError", "ProtocolError", "APIConnectionError"}
    if bases & transport or isinstance(exc, (ConnectionError, OSError)):
        return True, None, "connection"
    return False, None, name


async def with_retries(call: Callable[[], Awaitable[T]], settings: HttpSettings,
                       stats: HttpStats) -> T:
    for attempt in range(settings.max_attempts):
        try:
            stats.calls += 1
            # the client enforces `timeout` itself (cancelling a request mid-flight can leave
            # its connection pool stuck); this outer limit only catches a hung call
            return await asyncio.wait_for(call(), 2 * settings.timeout + 5)
        except Exception as exc:  # noqa: BLE001 - classified below
            retry, after, kind = classify(exc)
            stats.note(kind)
            if not retry or attempt == settings.max_attempts - 1:
                if retry:
                    raise GaveUp(f"gave up after {settings.max_attempts} attempts; last error: "
                                   f"{kind}: {exc}") from None
                raise
            delay = random.uniform(0, min(settings.max_backoff, settings.backoff * 2**attempt))
            stats.retries += 1
            # Retry-After is a minimum; the jitter on top keeps clients out of lockstep
            await asyncio.sleep((after or 0.0) + delay)
    raise AssertionError("unreachable")


def run_all(jobs: Sequence[Callable[[], Awaitable[T]]], settings: HttpSettings,
            stats: HttpStats, on_result: Callable[[int, T], None],
            token_estimates: Sequence[int] | None = None,
            finalize: Callable[[], Awaitable[None]] | None = None, retry: bool = True) -> None:
    """Run the jobs, at most `concurrency` at a time, within the rate limits; on_result(i, r)
    is called as each one finishes, in the calling thread. With `retry`, each job is retried
    as a whole; jobs that retry their own requests pass retry=False."""

    async def main() -> None:
        sem = asyncio.Semaphore(settings.concurrency)
        limiter = RateLimiter(settings.rpm, settings.tpm)

        async def one(i: int) -> tuple[int, Any]:
            async with sem:
                await limiter.acquire(token_estimates[i] if token_estimates else 1)
                if not retry:
                    return i, await jobs[i]()
                return i, await with_retries(jobs[i], settings, stats)

        tasks = [asyncio.ensure_future(one(i)) for i in range(len(jobs))]
        try:
            for fut in asyncio.as_completed(tasks):
                i, result = await fut
                on_result(i, result)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if finalize is not None:
                await finalize()

    if jobs:
        asyncio.run(main())


class HttpBackend:
    """What the HTTP backends share: settings, counters, the identity, and one async client
    per event loop (a client's connection pool belongs to the loop that opened it, so it is
    closed inside that loop when a batch of calls ends)."""

    def __init__(self, spec: str, options: dict[str, str], ident: dict[str, Any],
                 package: str) -> None:
        try:
            __import__(package)
        except ImportError:
            raise MweError(f"{spec} needs the {package} package: pip install 'mwe[http]' "
                           "(or run 'make setup')") from None
        self.spec = spec
        self.settings: HttpSettings = settings_from(options)
        self.stats = HttpStats()
        self._identity = ident
        self._client: Any = None
        self._loop: Any = None

    def identity(self) -> dict[str, Any]:
        return self._identity

    def _make_client(self) -> Any:
        raise NotImplementedError

    def client(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._client = self._make_client()
            self._loop = loop
        return self._client

    async def _close(self) -> None:
        if self._client is not None:
            await self._client.close()
        self._client = None
        self._loop = None

    def _run(self, jobs: Sequence[Callable[[], Awaitable[Any]]],
             on_result: Callable[[int, Any], None], tokens: Sequence[int] | None = None) -> None:
        run_all(jobs, self.settings, self.stats, on_result, tokens, self._close, retry=False)

    async def _request(self, make: Callable[[], Awaitable[T]]) -> T:
        """One HTTP request, retried on its own: a job made of several requests never repeats
        the ones that already succeeded."""
        return await with_retries(make, self.settings, self.stats)

    def _fan_out(self, sizes: Sequence[int], make: Callable[[int, int], Awaitable[Any]],
                 tokens: Callable[[int], int], on_group: Callable[[int, list[Any]], None]
                 ) -> None:
        """sizes[g] calls for each group g, all in flight together; on_group(g, results in
        call order) as soon as a group's last call finishes (a group of none at once)."""
        calls = [(g, j) for g, n in enumerate(sizes) for j in range(n)]
        results: dict[int, list[Any]] = {g: [None] * n for g, n in enumerate(sizes) if n}
        pending = {g: n for g, n in enumerate(sizes) if n}
        for g, n in enumerate(sizes):
            if not n:
                on_group(g, [])

        def done(i: int, value: Any) -> None:
            g, j = calls[i]
            results[g][j] = value
            pending[g] -= 1
            if pending[g] == 0:
                on_group(g, results.pop(g))

        def job(g: int, j: int) -> Callable[[], Awaitable[Any]]:
            return lambda: make(g, j)

        self._run([job(g, j) for g, j in calls], done, [tokens(g) for g, _ in calls])

    # Synchronous forms of the streaming calls.

    def score(self, requests: Sequence[Any]) -> list[list[float]]:
        out: list[list[float]] = [[] for _ in requests]
        self.score_each(requests, lambda i, r: out.__setitem__(i, r))
        return out

    def generate(self, prompts: Sequence[str], sampling: Any) -> list[list[str]]:
        out: list[list[str]] = [[] for _ in prompts]
        self.generate_each(prompts, sampling, lambda p, texts: out.__setitem__(p, texts))
        return out

    def generate_each(self, prompts: Sequence[str], sampling: Any,
                      on_result: Callable[[int, list[str]], None]) -> None:
        """One request per sample (servers ignore or lack `n`); on_result(prompt index,
        texts) when all samples of a prompt are in."""
        from mwe.models.base import cut_at_stop

        self._fan_out(
            [sampling.n] * len(prompts),
            lambda p, k: self._sample_one(prompts[p], sampling, k),
            lambda p: len(prompts[p]) // 4 + sampling.max_tokens,
            lambda p, texts: on_result(p, [cut_at_stop(t, sampling.stop) for t in texts]))

    async def _sample_one(self, prompt: str, sampling: Any, index: int) -> str:
        raise NotImplementedError

    def score_each(self, requests: Sequence[Any],
                   on_result: Callable[[int, list[float]], None]) -> None:
        raise NotImplementedError
