"""HTTP faults explained in one line: `SPEC: the server answered 401 Unauthorized (check
OPENAI_API_KEY)`, `SPEC: cannot connect to URL (connection refused; tried 8 times)`. Every
message is cleaned of the key and of credentials in URLs."""

from __future__ import annotations

import json
import re
import socket
import ssl
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from mwe.errors import MweError
from mwe.models.retry import LOCAL_ERRORS, Faults, RetrySettings, causes
from mwe.redact import redact

# what a server answers when it lacks a feature (an endpoint, a parameter): the scoring
# probe takes these as "not supported" and tries another method
UNSUPPORTED_STATUS = {400, 404, 405, 415, 422, 501}


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


class Explains:
    """How a backend turns a fault into an HttpError (mixed into HttpBackend)."""

    spec: str
    model: str
    key_env: str
    faults: Faults
    settings: RetrySettings
    _secret: str  # the API key, scrubbed from any message shown

    def shown_base(self) -> str:
        """The base URL as shown in errors."""
        raise NotImplementedError

    def failure(self, exc: BaseException, attempts: int = 1) -> HttpError:
        """`exc` as an HttpError: `SPEC: the server answered 401 Unauthorized (check ...)`,
        `SPEC: cannot connect to URL (connection refused; tried 8 times)`, ..."""
        tried = f"tried {attempts} times" if attempts > 1 else ""
        status = self.faults.status_of(exc)
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
        timeout = self.faults.timed_out(exc)
        if not (timeout or self.faults.lost(exc)):
            return HttpError(self.spec, f"unexpected answer from {base}: "
                                        f"{type(exc).__name__}: {self._clean(str(exc))}")
        reason = (f"no answer within {self.settings.timeout:g} s" if timeout
                  else self._clean(network_reason(chain)))
        reason = "; ".join(x for x in (reason, tried) if x)
        if self.faults.never_sent(exc):
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

