"""What every HTTP backend shares: many requests in flight, rate limits, retries.

Each request is retried on its own by the one policy of mwe.models.retry, which tells faults
apart by the exception types of the backend's SDK (`HttpBackend.faults`). Rate limits are
aiolimiter's leaky buckets. A call that fails for good becomes one `HttpError` line naming
the model (credentials redacted) and the cause. Each finished call is handed to `on_result`
at once, so the caller can commit it to the cache: a crash loses at most the calls in flight.
"""

from __future__ import annotations

import asyncio
import contextvars
import ipaddress
import json
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from mwe.checks import text_number
from mwe.errors import MweError
from mwe.models.base import (
    Prompt,
    Reply,
    TokenUsage,
    add_usage,
    cut_at_stop,
    estimate_tokens,
    prompt_json,
    usage_of,
)
from mwe.models.http_errors import Explains, HttpError, network_reason
from mwe.models.retry import (
    Faults,
    GaveUp,
    HttpStats,
    causes,
    transport_faults,
    with_retries,
)
from mwe.redact import redact
from mwe.settings import HttpSettings, http_variables
from mwe.settings import current as current_settings

if TYPE_CHECKING:
    from aiolimiter import AsyncLimiter

T = TypeVar("T")
HTTP_MODULES = ("tenacity", "aiolimiter")  # what every HTTP backend needs beside its SDK
# the billed tokens of the requests one job made (several for forced scoring), gathered by
# `request` inside the job's own task, so concurrent jobs never mix their counts
_METER: contextvars.ContextVar[list[TokenUsage | None] | None] = contextvars.ContextVar(
    "mwe_http_meter", default=None)


CHECK_TIMEOUT = 2.0  # seconds a local server gets to accept the check's connection


def is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_server(base: str, key_env: str, key_needed: bool) -> None:
    """Before a command's first call: the key's variable is set where one is needed (its
    value is never shown), and a server on this machine (a loopback base URL) accepts a
    connection. Only a connection, no request: nothing is billed or counted as a call. A
    remote server is left to the first call; a probe there costs a round trip or more."""
    if key_needed and not os.environ.get(key_env):
        raise MweError(f"set {key_env} in the environment")
    parts = urlsplit(base)
    host = parts.hostname or ""
    if not is_loopback(host):
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=CHECK_TIMEOUT):
            pass
    except OSError as exc:
        why = ("connection refused" if isinstance(exc, ConnectionRefusedError) else
               f"no answer within {CHECK_TIMEOUT:g} s" if isinstance(exc, TimeoutError) else
               exc.strerror or str(exc))
        raise MweError(f"nothing answers at {redact(base)} ({why}); start the server first, "
                       "or check the URL") from None


def settings_from(options: dict[str, str]) -> HttpSettings:
    """Settings from a model spec's options (`?concurrency=16&rpm=600`), else the
    environment (MWE_HTTP_CONCURRENCY, ...: mwe.settings), else the defaults."""
    chosen: dict[str, Any] = {}
    for variable in http_variables():
        raw = options.get(variable.field)
        if raw is None:
            continue
        try:
            chosen[variable.field] = variable.kind.convert(raw)
        except ValueError:  # an option's own messages: not a number, or not positive
            value = text_number(raw)
            why = "positive" if value is not None and value <= 0 else "a number"
            raise MweError(f"'{variable.field}' must be {why}, got {raw!r}") from None
    return replace(current_settings().http, **chosen)


class RateLimiter:
    """Requests and tokens per minute, each an aiolimiter bucket holding a minute's worth
    (a burst of one minute's allowance, then the steady rate)."""

    def __init__(self, rpm: float, tpm: float) -> None:
        from aiolimiter import AsyncLimiter

        self.limits: list[tuple[AsyncLimiter, bool]] = [
            (AsyncLimiter(limit, 60), per_request)
            for limit, per_request in ((rpm, True), (tpm, False)) if limit]

    async def acquire(self, tokens: int) -> None:
        for bucket, per_request in self.limits:
            # a request larger than the bucket takes the whole bucket
            await bucket.acquire(min(1.0 if per_request else float(tokens), bucket.max_rate))


def prompt_tokens(prompt: Prompt) -> int:
    """A prompt's tokens for the rate limit, estimated as the usage ledger estimates them."""
    return estimate_tokens(prompt if isinstance(prompt, str) else json.dumps(prompt_json(prompt)))


def run_all(jobs: Sequence[Callable[[], Awaitable[T]]], settings: HttpSettings,
            stats: HttpStats, on_result: Callable[[int, T], None],
            token_estimates: Sequence[int] | None = None,
            finalize: Callable[[], Awaitable[None]] | None = None) -> None:
    """Run the jobs, at most `concurrency` at a time, within the rate limits; on_result(i, r)
    is called as each one finishes, in the calling thread. Jobs retry their own requests
    (`HttpBackend.request`), so a job of several never repeats one that succeeded."""

    async def main() -> None:
        sem = asyncio.Semaphore(settings.concurrency)
        limiter = RateLimiter(settings.rpm, settings.tpm)

        async def one(i: int) -> tuple[int, Any]:
            async with sem:
                await limiter.acquire(token_estimates[i] if token_estimates else 1)
                return i, await jobs[i]()

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


def cut_reply(reply: Reply, stop: Sequence[str]) -> Reply:
    text = cut_at_stop(reply.text, stop)
    return reply if text == reply.text else Reply(text, reply.reasoning, "stop")


def field_of(obj: Any, name: str) -> Any:
    """A field of an SDK object or of its JSON body, including fields the SDK does not
    declare (a server's `reasoning_content`)."""
    if isinstance(obj, dict):
        return obj.get(name)
    value = getattr(obj, name, None)
    if value is None:
        extra = getattr(obj, "model_extra", None)
        value = extra.get(name) if isinstance(extra, dict) else None
    return value


class HttpBackend(Explains):
    """What the HTTP backends share: settings, counters, the identity, one async client
    per event loop (a client's connection pool belongs to the loop that opened it, so it is
    closed inside that loop when a batch of calls ends), and errors explained in one line."""

    key_env = "API_KEY"  # the environment variable the key comes from, named in a 401's hint

    def __init__(self, spec: str, options: dict[str, str], ident: dict[str, Any],
                 package: str) -> None:
        # the spec is only ever shown: never with the credentials a URL or query may carry
        self.spec = redact(spec)
        for module in (package, *HTTP_MODULES):
            try:
                __import__(module)
            except ImportError:
                raise MweError(f"{self.spec} needs the {module} package: pip install "
                               "'mwe[http]' (or run 'make setup')") from None
        self.settings: HttpSettings = settings_from(options)
        self.stats = HttpStats()
        self.faults: Faults = self._sdk_faults() + transport_faults()
        self._identity = ident
        self._client: Any = None
        self._loop: Any = None
        self._secret = ""  # the API key, scrubbed from any message shown
        self.model = ""
        # batch mode's ledger (mwe.ledger.Ledger), set by the cache wrapper: where batch ids
        # are recorded before anything waits on them
        self.ledger: Any = None

    def identity(self) -> dict[str, Any]:
        return self._identity

    def _make_client(self) -> Any:
        raise NotImplementedError

    def _sdk_faults(self) -> Faults:
        """The SDK's exception types (mwe.models.retry.Faults)."""
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
        run_all(jobs, self.settings, self.stats, on_result, tokens, self._close)

    async def request(self, make: Callable[[], Awaitable[T]]) -> T:
        """One HTTP request, retried on its own: a job made of several requests never repeats
        the ones that already succeeded. A request that fails for good raises HttpError."""
        try:
            result = await with_retries(make, self.settings, self.stats, self.faults)
        except GaveUp as exc:
            if exc.last is None:
                raise
            raise self.failure(exc.last, exc.attempts) from None
        except MweError:
            raise
        except Exception as exc:
            if not self.faults.is_fault(exc):
                raise  # a bug, not a fault of the server or the network: keep its traceback
            raise self.failure(exc, 1) from None
        meter = _METER.get()
        if meter is not None:
            meter.append(usage_of(result))
        return result

    async def _create(self, make: Callable[[], Awaitable[T]]) -> T:
        """A request that starts billed work (a batch). Retried only when the server answered
        with an error worth retrying or the connection never opened; a request sent whose
        answer was lost (a timeout, a dropped connection) may have created the work, so it
        stops with an error rather than risk creating it twice."""

        async def once() -> T:
            try:
                return await make()
            except Exception as exc:
                faults = self.faults
                if (faults.status_of(exc) is not None or faults.never_sent(exc)
                        or not faults.is_fault(exc)):
                    raise
                raise HttpError(self.spec, "no answer to a batch submission "
                                f"({self._clean(network_reason(causes(exc)))}); the batch may "
                                "have been created: check the provider's batch list before "
                                "running again") from None

        return await self.request(once)

    def _fan_out(self, sizes: Sequence[int], make: Callable[[int, int], Awaitable[Any]],
                 tokens: Callable[[int], int],
                 on_group: Callable[[int, list[Any], TokenUsage | None], None]) -> None:
        """sizes[g] calls for each group g, all in flight together; on_group(g, results in
        call order, the tokens billed for them) as soon as a group's last call finishes (a
        group of none at once)."""
        calls = [(g, j) for g, n in enumerate(sizes) for j in range(n)]
        results: dict[int, list[Any]] = {g: [None] * n for g, n in enumerate(sizes) if n}
        billed: dict[int, list[TokenUsage | None]] = {g: [] for g in results}
        pending = {g: n for g, n in enumerate(sizes) if n}
        for g, n in enumerate(sizes):
            if not n:
                on_group(g, [], None)

        def done(i: int, value: tuple[Any, list[TokenUsage | None]]) -> None:
            g, j = calls[i]
            results[g][j] = value[0]
            billed[g].extend(value[1])
            pending[g] -= 1
            if pending[g] == 0:
                on_group(g, results.pop(g), add_usage(billed.pop(g)))

        def job(g: int, j: int) -> Callable[[], Awaitable[Any]]:
            async def metered() -> tuple[Any, list[TokenUsage | None]]:
                meter: list[TokenUsage | None] = []
                _METER.set(meter)  # this job runs in a task of its own: its own context
                return await make(g, j), meter
            return metered

        self._run([job(g, j) for g, j in calls], done, [tokens(g) for g, _ in calls])

    # Synchronous forms of the streaming calls.

    def score(self, requests: Sequence[Any]) -> list[list[float]]:
        out: list[list[float]] = [[] for _ in requests]
        self.score_each(requests, lambda i, r, _: out.__setitem__(i, r))
        return out

    def generate(self, prompts: Sequence[Prompt], sampling: Any) -> list[list[str]]:
        out: list[list[str]] = [[] for _ in prompts]
        self.generate_each(prompts, sampling, lambda p, texts, _: out.__setitem__(p, texts))
        return out

    def generate_each(self, prompts: Sequence[Prompt], sampling: Any,
                      on_result: Callable[[int, list[str], TokenUsage | None], None]) -> None:
        """One request per sample (servers ignore or lack `n`); on_result(prompt index,
        texts) when all samples of a prompt are in."""
        self._fan_out(
            [sampling.n] * len(prompts),
            lambda p, k: self._sample_one(prompts[p], sampling, k),
            lambda p: prompt_tokens(prompts[p]) + sampling.max_tokens,
            lambda p, texts, usage: on_result(p, [cut_at_stop(t, sampling.stop) for t in texts],
                                              usage))

    async def _sample_one(self, prompt: Prompt, sampling: Any, index: int) -> str:
        raise NotImplementedError

    def reply_each(self, prompts: Sequence[Prompt], sampling: Any,
                   on_result: Callable[[int, list[Reply], TokenUsage | None], None]) -> None:
        """Free replies, as `generate_each` samples, each with what the API says beside the
        text (reasoning, why it ended)."""
        self._fan_out(
            [sampling.n] * len(prompts),
            lambda p, k: self._reply_one(prompts[p], sampling, k),
            lambda p: prompt_tokens(prompts[p]) + sampling.max_tokens,
            lambda p, replies, usage: on_result(p, [cut_reply(r, sampling.stop)
                                                    for r in replies], usage))

    async def _reply_one(self, prompt: Prompt, sampling: Any, index: int) -> Reply:
        return Reply(await self._sample_one(prompt, sampling, index))

    def score_each(self, requests: Sequence[Any],
                   on_result: Callable[[int, list[float], TokenUsage | None], None]) -> None:
        raise NotImplementedError
