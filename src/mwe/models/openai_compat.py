"""OpenAI-compatible servers: OpenAI, vLLM, llama.cpp's server, Ollama, ...

    openai:MODEL                       base URL from $OPENAI_BASE_URL (default: api.openai.com)
    openai:MODEL@http://host:8000/v1   an explicit base URL
    openai:MODEL@URL?endpoint=chat&scoring=forced&concurrency=16&rpm=600

The key is read from $OPENAI_API_KEY only (a local server needs none) and is never part of
the model's identity, the cache, logs or reports.

Scoring (`scoring=`):
- `echo`: the completions endpoint with echo=true returns the log-probs of the prompt's own
  tokens; the continuation's are those at or after the context's end (vLLM, OpenAI legacy
  models, llama.cpp's server for models with a BOS token).
- `forced`: for each continuation token, a one-token completion after the text before it,
  with a logit bias that forces that token; the server reports its unbiased log-prob. Needs
  the server's tokenizer endpoints (llama.cpp's /extras/tokenize and /extras/detokenize).
  Exact where echo is misaligned (llama.cpp's server echoes off by one for models without
  a BOS token, such as SmolLM2).
- `top`: the chat endpoint's top_logprobs for the next token; an answer's log-prob is that
  of its first token, and an answer outside the top 20 gets the 20th's (an upper bound).
- `auto` (default): `top` for endpoint=chat; otherwise `echo` if a probe shows the echoed
  log-probs aligned with a forced completion, else `forced`, else a clear error.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from mwe.errors import MweError
from mwe.models.base import (
    Chat,
    Prompt,
    Sampling,
    ScoreRequest,
    seed_for,
    split_trailing_spaces,
    text_of,
)
from mwe.models.http import HttpBackend, HttpError
from mwe.redact import redact

DEFAULT_BASE = "https://api.openai.com/v1"
SCORING = ("auto", "echo", "forced", "top")
ENDPOINTS = ("completions", "chat")
TOP_K = 20
FORCE_BIAS = 100


class HttpStatusError(Exception):
    """An error status from an endpoint outside the OpenAI client's own methods."""

    def __init__(self, message: str, response: Any) -> None:
        super().__init__(message)
        self.response = response
        self.status_code = int(response.status_code)


def parse_name(name: str) -> tuple[str, str, dict[str, str]]:
    rest, _, query = name.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True))
    model, sep, base = rest.partition("@")
    if not model:
        raise MweError(f"openai: '{redact(name)}' names no model (openai:MODEL[@BASE_URL])")
    base = base if sep else os.environ.get("OPENAI_BASE_URL", DEFAULT_BASE)
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise MweError(f"openai: base URL '{shown_url(base)}' is not an http(s) URL")
    # never keep credentials that someone put in the URL
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    base = urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))
    known = {"endpoint", "scoring", "concurrency", "rpm", "tpm", "timeout", "max_attempts",
             "backoff", "max_backoff"}
    for key in options:
        if key not in known:
            raise MweError(f"openai: unknown option '{key}' (known: {', '.join(sorted(known))})")
    if options.get("endpoint", "completions") not in ENDPOINTS:
        raise MweError(f"openai: endpoint must be one of {', '.join(ENDPOINTS)}")
    if options.get("scoring", "auto") not in SCORING:
        raise MweError(f"openai: scoring must be one of {', '.join(SCORING)}")
    return model, base, options


def shown_url(url: str) -> str:
    """A URL fit to show, even a malformed one: `alice:pw@host` has no scheme for redact()
    to go by, so anything before an '@' is masked."""
    shown = redact(url)
    if "://" not in shown and "@" in shown:
        shown = "***@" + shown.rpartition("@")[2]
    return shown


OUTPUT = "logprobs"  # score() returns log-probabilities


def identity(name: str) -> dict[str, Any]:
    model, base, options = parse_name(name)
    return {"backend": "openai", "model": model, "base_url": base,
            "endpoint": options.get("endpoint", "completions"),
            "scoring": options.get("scoring", "auto")}


def load(spec: str, name: str, ident: dict[str, Any]) -> OpenAIModel:
    model, base, options = parse_name(name)
    return OpenAIModel(spec, model, base, options, ident)


def _is_local(base: str) -> bool:
    host = urlsplit(base).hostname or ""
    return host in ("localhost", "127.0.0.1", "::1") or host.endswith(".local")


class OpenAIModel(HttpBackend):
    key_env = "OPENAI_API_KEY"

    def __init__(self, spec: str, model: str, base: str, options: dict[str, str],
                 ident: dict[str, Any]) -> None:
        super().__init__(spec, options, ident, "openai")
        self.model = model
        self.base = base
        self.endpoint = options.get("endpoint", "completions")
        self.scoring = options.get("scoring", "auto")
        key = os.environ.get("OPENAI_API_KEY")
        if not key and not _is_local(base):
            raise MweError(f"{self.spec}: set OPENAI_API_KEY in the environment")
        self._key = key or "not-needed"
        self._secret = key or ""
        self._resolved: str | None = None
        self._tok_cache: dict[str, list[int]] = {}
        self._detok_cache: dict[tuple[int, ...], str] = {}

    def shown_base(self) -> str:
        return self.base

    def _make_client(self) -> Any:
        from openai import AsyncOpenAI

        return AsyncOpenAI(base_url=self.base, api_key=self._key, max_retries=0,
                           timeout=self.settings.timeout)

    async def _post_root(self, path: str, body: dict[str, Any]) -> Any:
        """POST to a path at the server's root (llama.cpp's /extras/... endpoints)."""
        parts = urlsplit(self.base)
        url = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        client = self.client()
        response = await client._client.post(
            url, json=body, headers={"Authorization": f"Bearer {self._key}"},
            timeout=self.settings.timeout)
        if response.status_code >= 400:
            raise HttpStatusError(f"{path}: HTTP {response.status_code}", response)
        return response.json()

    # --- generation ---

    async def _sample_one(self, prompt: Prompt, sampling: Sampling, index: int) -> str:
        """Seeded per (seed, prompt) and sample index, so a sample does not depend on order."""
        seed = seed_for(sampling.seed, prompt) + index
        common: dict[str, Any] = {"model": self.model, "max_tokens": sampling.max_tokens,
                                  "temperature": sampling.temperature, "top_p": sampling.top_p,
                                  "seed": seed % (2**31)}
        if sampling.stop:
            common["stop"] = list(sampling.stop)[:4]
        if self.endpoint == "chat" or isinstance(prompt, Chat):
            res = await self._request(lambda: self.client().chat.completions.create(
                messages=self._messages(prompt), **common))
            return str(res.choices[0].message.content or "")
        text = text_of(prompt, self.spec)
        res = await self._request(
            lambda: self.client().completions.create(prompt=text, **common))
        return str(res.choices[0].text or "")

    def _messages(self, prompt: Prompt) -> list[dict[str, str]]:
        """Chat turns as they are (the server applies its own template; a reply start
        becomes a prefilled assistant turn), or a text prompt as one user turn."""
        if isinstance(prompt, Chat):
            messages = [{"role": r, "content": c} for r, c in prompt.messages]
            if prompt.reply.strip():
                messages.append({"role": "assistant", "content": prompt.reply})
            return messages
        return [{"role": "user", "content": prompt}]

    # --- scoring ---

    def score_each(self, requests: Sequence[ScoreRequest],
                   on_result: Callable[[int, list[float]], None]) -> None:
        method = self.resolve_scoring()
        if method == "top":  # one call answers for all of a request's continuations
            self._fan_out([1] * len(requests),
                          lambda r, _: self._top(requests[r][0], list(requests[r][1])),
                          lambda r: len(requests[r][0]) // 4 + 1,
                          lambda r, out: on_result(r, out[0]))
            return
        if any(isinstance(ctx, Chat) for ctx, _ in requests):
            raise MweError(f"{self.spec}: chat turns (--format chat) are scored through the "
                           "chat endpoint; add ?endpoint=chat to the model")
        texts = [text_of(ctx, self.spec) for ctx, _ in requests]
        scorer = self._echo if method == "echo" else self._forced
        self._fan_out([len(conts) for _, conts in requests],
                      lambda r, c: scorer(texts[r], requests[r][1][c]),
                      lambda r: len(requests[r][0]) // 4 + 1, on_result)

    def resolve_scoring(self) -> str:
        if self._resolved is None:
            if self.scoring != "auto":
                self._resolved = self.scoring
            elif self.endpoint == "chat":
                self._resolved = "top"
            else:
                self._resolved = asyncio.run(self._probe_and_close())
        return self._resolved

    async def _probe_and_close(self) -> str:
        try:
            return await self._probe()
        finally:
            await self._close()

    async def _probe(self) -> str:
        """Is echo aligned? Compare an echoed log-prob with a forced completion's."""
        ctx, cont = "The capital of France is", " Paris"
        why: dict[str, str] = {}
        forced = await self._if_supported("forced", lambda: self._forced(ctx, cont), why)
        echoed = await self._if_supported("echo", lambda: self._echo(ctx, cont), why)
        if forced is not None and echoed is not None and abs(echoed - forced) < 0.02:
            return "echo"
        if forced is not None:
            return "forced"
        if echoed is not None:
            return "echo"
        raise MweError(f"{self.spec}: the server can score neither by echoing prompt log-probs "
                       f"({why['echo']}) nor by forced one-token completions ({why['forced']}); "
                       "use endpoint=chat (top_logprobs) or another server")

    async def _if_supported(self, method: str, make: Callable[[], Awaitable[float]],
                            why: dict[str, str]) -> float | None:
        """The method's result, or None when the server answers that it cannot do it (why
        goes into why[method]). Anything else raises: a 401, 403, a missing model or a
        network fault is no missing feature, and transient faults are retried first (a
        probe must not mistake a 429 for a missing feature)."""
        try:
            return float(await make())
        except HttpError as exc:
            if not exc.unsupported:
                raise
            why[method] = exc.cause
        except MweError as exc:  # an answer without the log-probs the method needs
            why[method] = str(exc).removeprefix(f"{self.spec}: ")
        return None

    async def _echo(self, ctx: str, cont: str) -> float:
        ctx, cont = split_trailing_spaces(ctx, cont)
        res = await self._request(lambda: self.client().completions.create(
            model=self.model, prompt=ctx + cont, echo=True, logprobs=1, max_tokens=1,
            temperature=0.0))
        lp = res.choices[0].logprobs
        if lp is None or lp.token_logprobs is None or lp.text_offset is None:
            raise MweError(f"{self.spec}: the server returned no echoed log-probs")
        total = 0.0
        end = len(ctx) + len(cont)
        for offset, value in zip(lp.text_offset, lp.token_logprobs):
            if len(ctx) <= offset < end:
                if value is None:
                    raise MweError(f"{self.spec}: the server gave no log-prob for a "
                                   "continuation token")
                total += float(value)
        return total

    async def _tokenize(self, text: str) -> list[int]:
        if text not in self._tok_cache:
            body = await self._request(lambda: self._post_root(
                "/extras/tokenize", {"input": text, "model": self.model}))
            self._tok_cache[text] = [int(t) for t in body["tokens"]]
        return self._tok_cache[text]

    async def _detokenize(self, tokens: list[int]) -> str:
        key = tuple(tokens)
        if key not in self._detok_cache:
            body = await self._request(lambda: self._post_root(
                "/extras/detokenize", {"tokens": tokens, "model": self.model}))
            self._detok_cache[key] = str(body["text"])
        return self._detok_cache[key]

    async def _forced(self, ctx: str, cont: str) -> float:
        """Sum over the continuation's tokens of a forced one-token completion's log-prob."""
        ctx, cont = split_trailing_spaces(ctx, cont)
        whole = await self._tokenize(ctx + cont)
        head = await self._tokenize(ctx) if ctx else []
        aligned = whole[: len(head)] == head
        if not aligned:  # a token straddles the boundary: split where the two part
            k = 0
            while k < min(len(head), len(whole)) and head[k] == whole[k]:
                k += 1
            head = whole[:k]
        total = 0.0
        for k in range(len(head), len(whole)):
            first = k == len(head) and aligned and bool(ctx)
            prefix = ctx if first else await self._detokenize(whole[:k])
            if not prefix:
                raise MweError(f"{self.spec}: forced scoring needs a non-empty context")
            target = whole[k]
            res = await self._request(partial(
                self._complete_one, prompt=prefix, logit_bias={str(target): FORCE_BIAS}))
            lp = res.choices[0].logprobs
            if lp is None or not lp.token_logprobs or lp.token_logprobs[0] is None:
                raise MweError(f"{self.spec}: the server returned no log-prob for a forced token")
            total += float(lp.token_logprobs[0])
        return total

    async def _complete_one(self, prompt: str, logit_bias: dict[str, int]) -> Any:
        return await self.client().completions.create(
            model=self.model, prompt=prompt, max_tokens=1, temperature=0.0, logprobs=1,
            logit_bias=logit_bias)

    async def _top(self, ctx: Prompt, conts: list[str]) -> list[float]:
        res = await self._request(lambda: self.client().chat.completions.create(
            model=self.model, messages=self._messages(ctx), max_tokens=1, temperature=0.0,
            logprobs=True, top_logprobs=TOP_K))
        content = res.choices[0].logprobs.content if res.choices[0].logprobs else None
        if not content:
            raise MweError(f"{self.spec}: the chat endpoint returned no top_logprobs")
        top: dict[str, float] = {}
        for entry in content[0].top_logprobs:
            key = entry.token.strip()
            top[key] = max(top.get(key, -math.inf), float(entry.logprob))
        floor = min(top.values())
        return [top.get(c.strip(), floor) for c in conts]
