"""Which faults of an HTTP call are worth another try, and the one retry policy (tenacity).

Retried: an answer of 408, 409, 429 or 5xx (but 501 and 505), a timeout, and a network
fault (connection refused, reset or aborted), with exponential backoff and full jitter,
waiting at least as long as the server's Retry-After says. Anything else (401, 403, 404, a
local file or permission error) fails at once. Faults are told apart by the exception
*types* each client library declares (`Faults`, one per backend), never by class names: a
type an SDK renames fails at import, not silently.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from functools import cache
from typing import TYPE_CHECKING, Protocol, TypeVar

from mwe.errors import MweError

if TYPE_CHECKING:
    from tenacity import RetryCallState

T = TypeVar("T")
Types = tuple[type[BaseException], ...]
RETRY_STATUS = {408, 409, 429}  # and every 5xx but 501 and 505 (see retry_status)
NETWORK_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE,
                  errno.ETIMEDOUT, errno.ENETDOWN, errno.ENETUNREACH, errno.ENETRESET,
                  errno.EHOSTDOWN, errno.EHOSTUNREACH}
# local faults that no retry will cure, even when an SDK wraps them as a connection error
LOCAL_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError,
                FileExistsError, ssl.SSLCertVerificationError)


def retry_status(status: int) -> bool:
    return status in RETRY_STATUS or (500 <= status < 600 and status not in (501, 505))


def causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it was raised from or during, outermost first."""
    out: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and all(e is not seen for seen in out) and len(out) < 20:
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


def is_network_os_error(exc: BaseException) -> bool:
    """A socket-level fault (refused, reset, aborted, unreachable, name lookup, timed out),
    not a local one such as a missing file or a permission."""
    if isinstance(exc, LOCAL_ERRORS):
        return False
    if isinstance(exc, (ConnectionError, TimeoutError, socket.gaierror, socket.herror)):
        return True
    return isinstance(exc, OSError) and exc.errno in NETWORK_ERRNOS


def parse_retry_after(headers: object) -> float | None:
    """Seconds from `Retry-After` (seconds or an HTTP date) or OpenAI's `retry-after-ms`."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    millis = get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    raw = get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(str(raw)).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class Faults:
    """A client library's exception types, by what they mean for a retry. An SDK wraps
    httpx's transport errors in its own, but a streamed read can raise httpx's directly, so
    a backend's faults are its SDK's plus `transport_faults()`."""

    status: Types = ()  # the server answered with an error; `.response` is its answer
    timeout: Types = ()  # no answer in time (also listed under network)
    network: Types = ()  # the request or its answer was lost on the way
    connect: Types = ()  # the connection never opened: the request was never sent
    library: Types = ()  # any other error of the library: a fault, not a bug of mwe

    def __add__(self, other: Faults) -> Faults:
        return Faults(*(a + b for a, b in zip(self.astuple(), other.astuple())))

    def astuple(self) -> tuple[Types, Types, Types, Types, Types]:
        return self.status, self.timeout, self.network, self.connect, self.library

    def status_of(self, exc: BaseException) -> int | None:
        """The HTTP status of an error answer."""
        if not isinstance(exc, self.status):
            return None
        status = getattr(getattr(exc, "response", None), "status_code", None)
        return status if isinstance(status, int) else None

    def retry_after(self, exc: BaseException | None) -> float | None:
        if exc is None or not isinstance(exc, self.status):
            return None
        return parse_retry_after(getattr(getattr(exc, "response", None), "headers", None))

    def classify(self, exc: BaseException) -> tuple[bool, float | None, str]:
        """(retry?, Retry-After seconds if the server gave one, a short name for the fault)."""
        if isinstance(exc, MweError):  # already explained (and retried, where worth it)
            return False, None, type(exc).__name__
        if isinstance(exc, TimeoutError):
            return True, None, "timeout"
        status = self.status_of(exc)
        if status is not None:
            return retry_status(status), self.retry_after(exc), f"http_{status}"
        if isinstance(exc, self.network):
            local = next((e for e in causes(exc) if isinstance(e, LOCAL_ERRORS)), None)
            if local is not None:
                return False, None, type(local).__name__
            return True, None, "timeout" if isinstance(exc, self.timeout) else "connection"
        if isinstance(exc, OSError) and is_network_os_error(exc):
            return True, None, "connection"
        return False, None, type(exc).__name__

    def should_retry(self, exc: BaseException) -> bool:
        return self.classify(exc)[0]

    def is_fault(self, exc: BaseException) -> bool:
        """A fault of the server, the network or the local setup, explained in one line
        (rather than a bug, which keeps its traceback)."""
        return self.status_of(exc) is not None or isinstance(
            exc, (TimeoutError, OSError, *self.network, *self.library))

    def timed_out(self, exc: BaseException) -> bool:
        return isinstance(exc, TimeoutError) or any(isinstance(e, self.timeout)
                                                    for e in causes(exc))

    def lost(self, exc: BaseException) -> bool:
        """A network fault anywhere in the chain."""
        return any(isinstance(e, self.network) or is_network_os_error(e) for e in causes(exc))

    def never_sent(self, exc: BaseException) -> bool:
        """The request never reached the server: the connection did not open (refused, no
        such host, a connect timeout)."""
        return any(isinstance(e, (*self.connect, ConnectionRefusedError, socket.gaierror))
                   for e in causes(exc))


@cache
def transport_faults() -> Faults:
    """httpx's own errors (the SDKs' transport; httpx2 is the fork they ship with)."""
    import httpx2

    return Faults(status=(httpx2.HTTPStatusError,), timeout=(httpx2.TimeoutException,),
                  network=(httpx2.NetworkError, httpx2.TimeoutException,
                           httpx2.RemoteProtocolError),
                  connect=(httpx2.ConnectError, httpx2.ConnectTimeout),
                  library=(httpx2.HTTPError,))


class GaveUp(MweError):
    """A call that kept failing with faults worth retrying; `last` is the last fault."""

    def __init__(self, message: str, last: BaseException | None = None, attempts: int = 0) -> None:
        super().__init__(message)
        self.last = last
        self.attempts = attempts


class RetrySettings(Protocol):
    max_attempts: int
    backoff: float  # the first backoff window in seconds, doubled per attempt
    max_backoff: float
    timeout: float  # seconds per attempt


@dataclass
class HttpStats:
    calls: int = 0
    retries: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    def note(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def with_retries(call: Callable[[], Awaitable[T]], settings: RetrySettings,
                       stats: HttpStats, faults: Faults) -> T:
    """`call` until it succeeds, fails with a fault not worth retrying (raised as it is), or
    has failed `max_attempts` times (GaveUp). Waits Retry-After, if the server gave one, plus
    full jitter (the jitter keeps clients out of lockstep)."""
    from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt
    from tenacity.wait import wait_random_exponential

    jitter = wait_random_exponential(multiplier=settings.backoff, max=settings.max_backoff)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return (faults.retry_after(exc) or 0.0) + jitter(state)

    def counted(state: RetryCallState) -> None:
        stats.retries += 1

    def gave_up(state: RetryCallState) -> T:
        exc = state.outcome.exception() if state.outcome else None
        kind = faults.classify(exc)[2] if exc else "unknown"
        raise GaveUp(f"gave up after {settings.max_attempts} attempts; last error: {kind}: "
                     f"{exc}", exc, settings.max_attempts) from None

    async def attempt() -> T:
        stats.calls += 1
        try:
            # the client enforces `timeout` itself (cancelling a request mid-flight can leave
            # its connection pool stuck); this outer limit only catches a hung call
            return await asyncio.wait_for(call(), 2 * settings.timeout + 5)
        except Exception as exc:
            stats.note(faults.classify(exc)[2])
            raise

    policy = AsyncRetrying(stop=stop_after_attempt(settings.max_attempts), wait=wait,
                           retry=retry_if_exception(faults.should_retry), before_sleep=counted,
                           retry_error_callback=gave_up)
    return await policy(attempt)
