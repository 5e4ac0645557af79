"""What every HTTP backend shares: many requests in flight, rate limits, retries.

A call that fails with a rate limit (429), a server error (5xx), 408, 409, a timeout or a
network fault (connection refused, reset or aborted) is retried with exponential backoff and
full jitter, waiting at least as long as the server's Retry-After says. Anything else (401,
403, 404, a local file or permission error) fails at once. A call that fails for good becomes
one `HttpError` line naming the model (credentials redacted) and the cause. Each finished
call is handed to `on_result` at once, so the caller can commit it to the cache: a crash
loses at most the calls in flight.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import ipaddress
import json
import os
import random
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import urlsplit

from mwe.errors import MweError
from mwe.models.base import Prompt, TokenUsage, add_usage, usage_of
from mwe.redact import redact

T = TypeVar("T")
RETRY_STATUS = {408, 409, 429}  # and every 5xx but 501 and 505 (see retry_status)
# what a server answers when it lacks a feature (an endpoint, a parameter): the scoring
# probe takes these as "not supported" and tries another method
UNSUPPORTED_STATUS = {400, 404, 405, 415, 422, 501}
NETWORK_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE,
                  errno.ETIMEDOUT, errno.ENETDOWN, errno.ENETUNREACH, errno.ENETRESET,
                  errno.EHOSTDOWN, errno.EHOSTUNREACH}
# local faults that no retry will cure, even when an SDK wraps them as a connection error
LOCAL_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError,
                FileExistsError, ssl.SSLCertVerificationError)
# transport errors of the SDKs and of httpx/httpcore (or forks), recognised by class name
NETWORK_CLASSES = {"APIConnectionError", "APITimeoutError", "NetworkError", "TimeoutException",
                   "RemoteProtocolError"}
TIMEOUT_CLASSES = {"APITimeoutError", "TimeoutException"}
# the billed tokens of the requests one job made (several for forced scoring), gathered by
# `_request` inside the job's own task, so concurrent jobs never mix their counts
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


def retry_status(status: int) -> bool:
    return status in RETRY_STATUS or (500 <= status < 600 and status not in (501, 505))


class GaveUp(MweError):
    """A call that kept failing with faults worth retrying; `last` is the last fault."""

    def __init__(self, message: str, last: BaseException | None = None, attempts: int = 0) -> None:
        super().__init__(message)
        self.last = last
        self.attempts = attempts


class HttpError(MweError):
    """A call that failed for good, as one line: the model string (redacted), then the cause.
    `status` is the HTTP status if the server answered; `unsupported` is true when the answer
    says the server lacks a feature (not an auth error, a missing model or a network fault)."""

    def __init__(self, spec: str, cause: str, status: int | None = None,
                 unsupported: bool = False) -> None:
        super().__init__(f"{spec}: {cause}")
        self.cause = cause
        self.status = status
        self.unsupported = unsupported


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
    poll: float = 30.0  # batch mode: longest wait between status checks, in seconds
    batch_retries: int = 3  # batch mode: new batches for lines that failed or expired


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
             "max_attempts": int, "backoff": float, "max_backoff": float, "poll": float,
             "batch_retries": int}
    for name, kind in names.items():
        raw = options.get(name, os.environ.get(f"MWE_HTTP_{name.upper()}"))
        if raw is None:
            continue
        try:
            value = kind(raw)
        except ValueError:
            raise MweError(f"'{name}' must be a number, got {raw!r}") from None
        if value < 0 or (name in ("concurrency", "max_attempts", "timeout", "poll")
                         and value <= 0):
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


def causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it was raised from or during, outermost first."""
    out: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and all(e is not seen for seen in out) and len(out) < 20:
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def _class_names(exc: BaseException) -> set[str]:
    return {c.__name__ for c in type(exc).__mro__}


def is_network_os_error(exc: BaseException) -> bool:
    """A socket-level fault (refused, reset, aborted, unreachable, name lookup, timed out),
    not a local one such as a missing file or a permission."""
    if isinstance(exc, LOCAL_ERRORS):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror, socket.herror)):
        return True
    return isinstance(exc, OSError) and exc.errno in NETWORK_ERRNOS


def status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if status is None:
        status = getattr(getattr(exc, "response", None), "status_code", None)
    try:
        return None if status is None else int(status)
    except (TypeError, ValueError):
        return None


def classify(exc: BaseException) -> tuple[bool, float | None, str]:
    """(retry?, Retry-After seconds if the server gave one, a short name for the fault).
    Retried: 408, 409, 429 and 5xx answers, timeouts and network faults; nothing else."""
    if isinstance(exc, MweError):  # already explained (and retried, where it was worth it)
        return False, None, type(exc).__name__
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return True, None, "timeout"
    status = status_of(exc)
    name = type(exc).__name__
    if status is not None:
        after = None
        headers = getattr(getattr(exc, "response", None), "headers", None) or {}
        raw = headers.get("retry-after") if hasattr(headers, "get") else None
        if raw is not None:
            try:
                after = float(raw)
            except ValueError:
                after = None
        return retry_status(status), after, f"http_{status}"
    names = _class_names(exc)
    if names & NETWORK_CLASSES:
        local = next((e for e in causes(exc) if isinstance(e, LOCAL_ERRORS)), None)
        if local is not None:
            return False, None, type(local).__name__
        return True, None, "timeout" if names & TIMEOUT_CLASSES else "connection"
    if isinstance(exc, OSError) and is_network_os_error(exc):
        return True, None, "connection"
    return False, None, name


def never_sent(exc: BaseException) -> bool:
    """The request never reached the server: the connection did not open (refused, no such
    host, a connect timeout)."""
    chain = causes(exc)
    names = set().union(*(_class_names(e) for e in chain))
    return bool(names & {"ConnectError", "ConnectTimeout"}) or any(
        isinstance(e, (ConnectionRefusedError, socket.gaierror)) for e in chain)


def _is_http_fault(exc: BaseException) -> bool:
    """A fault of the server, the network or the local setup, explained in one line (rather
    than a bug, which keeps its traceback)."""
    if status_of(exc) is not None or isinstance(exc, (TimeoutError, OSError)):
        return True
    names = _class_names(exc)
    # the SDKs' own errors: openai.APIError, anthropic.APIError, httpx.HTTPError
    return bool(names & NETWORK_CLASSES or names & {"APIError", "HTTPError", "TransportError"})


def network_reason(chain: Sequence[BaseException]) -> str:
    """The innermost fault in a chain of wrapped network errors, in a few words."""
    for e in reversed(chain):
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        if isinstance(e, ConnectionResetError):
            return "connection reset"
        if isinstance(e, ConnectionAbortedError):
            return "connection aborted"
        if isinstance(e, BrokenPipeError):
            return "connection closed"
        if isinstance(e, socket.gaierror):
            return "host not found" if e.errno == socket.EAI_NONAME else \
                f"name lookup failed: {e.strerror or e}"
        if isinstance(e, ssl.SSLError):
            return f"TLS error: {getattr(e, 'reason', None) or e}"
        if isinstance(e, OSError) and e.errno is not None and e.strerror:
            return e.strerror[:1].lower() + e.strerror[1:]
    generic = {"", "connection error.", "all connection attempts failed"}
    for e in reversed(chain):
        text = str(e).strip()
        if text.lower() not in generic:
            return text
    return type(chain[0]).__name__ if chain else "unknown error"


def _body_of(exc: BaseException) -> Any:
    body = getattr(exc, "body", None)
    if body is not None:
        return body
    response = getattr(exc, "response", None)
    if response is None:
        return None
    try:
        return response.json()
    except Exception:  # noqa: BLE001 - not JSON, or not read
        try:
            return str(response.text)
        except Exception:  # noqa: BLE001
            return None


def message_of(body: Any) -> str:
    """The human part of an error body: OpenAI's and Anthropic's {"error": {"message"}},
    vLLM's {"message"}, FastAPI's {"detail"}, or plain text."""
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        for key in ("message", "detail", "error"):
            if body.get(key):
                value = body[key]
                return value if isinstance(value, str) else json.dumps(value)
        return ""
    return "" if body is None else str(body)


_MODEL_MISSING = re.compile(
    r"(?i)\bmodel\b.{0,120}\b(not found|does not exist|doesn't exist|not exist|unknown|"
    r"no such|not available)|\b(unknown|no such|invalid) model\b|^model: ")


def _model_missing(body: Any, message: str) -> bool:
    """Does a 404 say the model does not exist (rather than the endpoint)?"""
    codes: list[Any] = []
    if isinstance(body, dict):
        codes += [body.get("code"), body.get("type")]
        if isinstance(body.get("error"), dict):
            codes += [body["error"].get("code"), body["error"].get("type")]
    if any(str(c) == "model_not_found" for c in codes if c):
        return True
    return bool(_MODEL_MISSING.search(message))


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
                                 f"{kind}: {exc}", exc, settings.max_attempts) from None
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
    """What the HTTP backends share: settings, counters, the identity, one async client
    per event loop (a client's connection pool belongs to the loop that opened it, so it is
    closed inside that loop when a batch of calls ends), and errors explained in one line."""

    key_env = "API_KEY"  # the environment variable the key comes from, named in a 401's hint

    def __init__(self, spec: str, options: dict[str, str], ident: dict[str, Any],
                 package: str) -> None:
        # the spec is only ever shown: never with the credentials a URL or query may carry
        self.spec = redact(spec)
        try:
            __import__(package)
        except ImportError:
            raise MweError(f"{self.spec} needs the {package} package: pip install 'mwe[http]' "
                           "(or run 'make setup')") from None
        self.settings: HttpSettings = settings_from(options)
        self.stats = HttpStats()
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

    def shown_base(self) -> str:
        """The base URL as shown in errors."""
        raise NotImplementedError

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
        the ones that already succeeded. A request that fails for good raises HttpError."""
        try:
            result = await with_retries(make, self.settings, self.stats)
        except GaveUp as exc:
            if exc.last is None:
                raise
            raise self.failure(exc.last, exc.attempts) from None
        except MweError:
            raise
        except Exception as exc:
            if not _is_http_fault(exc):
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
                if status_of(exc) is not None or never_sent(exc) or not _is_http_fault(exc):
                    raise
                raise HttpError(self.spec, "no answer to a batch submission "
                                f"({self._clean(network_reason(causes(exc)))}); the batch may "
                                "have been created: check the provider's batch list before "
                                "running again") from None

        return await self._request(once)

    # --- one-line explanations ---

    def failure(self, exc: BaseException, attempts: int = 1) -> HttpError:
        """`exc` as an HttpError: `SPEC: the server answered 401 Unauthorized (check ...)`,
        `SPEC: cannot connect to URL (connection refused; tried 8 times)`, ..."""
        tried = f"tried {attempts} times" if attempts > 1 else ""
        status = status_of(exc)
        if status is not None and status >= 400:
            cause, unsupported = self._status_cause(exc, status)
            if tried:
                cause += f" ({tried})"
            return HttpError(self.spec, cause, status, unsupported)
        chain = causes(exc)
        local = next((e for e in chain if isinstance(e, LOCAL_ERRORS)), None)
        if local is not None:
            return HttpError(self.spec, f"{type(local).__name__}: {self._clean(str(local))}")
        base = redact(self.shown_base())
        names = set().union(*(_class_names(e) for e in chain))
        timeout = bool(names & TIMEOUT_CLASSES) or isinstance(exc, TimeoutError)
        if not (timeout or names & NETWORK_CLASSES or any(map(is_network_os_error, chain))):
            return HttpError(self.spec, f"unexpected answer from {base}: "
                                        f"{type(exc).__name__}: {self._clean(str(exc))}")
        reason = (f"no answer within {self.settings.timeout:g} s" if timeout
                  else self._clean(network_reason(chain)))
        reason = "; ".join(x for x in (reason, tried) if x)
        connecting = bool(names & {"ConnectError", "ConnectTimeout"}) or any(
            isinstance(e, (ConnectionRefusedError, socket.gaierror)) for e in chain)
        if connecting:
            return HttpError(self.spec, f"cannot connect to {base} ({reason})")
        if timeout:
            return HttpError(self.spec, f"{base} did not answer ({reason})")
        return HttpError(self.spec, f"the connection to {base} failed ({reason})")

    def _status_cause(self, exc: BaseException, status: int) -> tuple[str, bool]:
        """What an error answer means, and whether it says the server lacks a feature."""
        response = getattr(exc, "response", None)
        phrase = str(getattr(response, "reason_phrase", "") or "")
        if not phrase:
            try:
                phrase = HTTPStatus(status).phrase
            except ValueError:
                phrase = ""
        head = f"the server answered {status} {phrase}".rstrip()
        request = getattr(response, "request", None) or getattr(exc, "request", None)
        method = str(getattr(request, "method", "") or "")
        url = str(getattr(request, "url", "") or "")
        where = f" for {method} {redact(url)}".rstrip() if url else ""
        body = _body_of(exc)
        message = self._clean(message_of(body))
        if status == 401:
            return f"{head} (check {self.key_env})", False
        if status in (403, 407):
            hint = f" (check {self.key_env} and what it may access)"
            return f"{head}{hint}" + (f": {message}" if message else ""), False
        if status == 404 and _model_missing(body, message):
            return f"{head}: model '{self.model}' not found" + (
                f" ({message})" if message else ""), False
        cause = head + where + (f": {message}" if message else "")
        if status == 404 and url.startswith(self.shown_base()):
            cause += " (check the base URL)"  # (not for llama.cpp's /extras/..., say)
        if status == 429:
            cause += " (rate limited: lower concurrency= or set rpm=)"
        return cause, status in UNSUPPORTED_STATUS

    def _clean(self, text: str) -> str:
        """A server's or library's message, fit for one line: short, no key, no credentials."""
        text = " ".join(text.split())
        if len(self._secret) >= 8:
            text = text.replace(self._secret, "***")
        text = redact(text)
        return text if len(text) <= 240 else text[:237] + "..."

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
        from mwe.models.base import cut_at_stop

        self._fan_out(
            [sampling.n] * len(prompts),
            lambda p, k: self._sample_one(prompts[p], sampling, k),
            lambda p: len(prompts[p]) // 4 + sampling.max_tokens,
            lambda p, texts, usage: on_result(p, [cut_at_stop(t, sampling.stop) for t in texts],
                                              usage))

    async def _sample_one(self, prompt: Prompt, sampling: Any, index: int) -> str:
        raise NotImplementedError

    def score_each(self, requests: Sequence[Any],
                   on_result: Callable[[int, list[float], TokenUsage | None], None]) -> None:
        raise NotImplementedError
