"""Anthropic's Messages API, through the official SDK.

    anthropic:MODEL                       base URL from $ANTHROPIC_BASE_URL (SDK default)
    anthropic:MODEL@http://host:port      an explicit base URL
    anthropic:MODEL?samples=20&concurrency=8&rpm=50

The key is read from $ANTHROPIC_API_KEY only and never stored.

The API returns no log-probs, so scoring is an estimate: the model answers `samples` times
(temperature 1, a few tokens) and each answer's probability is its share of the answers
that start with it, smoothed by half a count: p = (count + 0.5) / (samples + 1). A share p
from k samples has a binomial standard error of sqrt(p(1 - p) / k); with 20 samples a
probability near 0.5 is known to about +-0.11. The probability that fell on no valid answer
shows as valid mass below 1.

Dialogue contexts in the paper's format ("\\n\\nHuman: ...\\n\\nAssistant: prefix") become a
user message and, when there is one, a prefilled assistant turn; chat turns (`--format chat`)
are sent as they are, their reply start prefilled.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from mwe.errors import MweError
from mwe.models.base import Chat, Prompt, Sampling, ScoreRequest
from mwe.models.http import HttpBackend
from mwe.models.openai_compat import shown_url
from mwe.redact import redact

DIALOGUE = re.compile(r"^\s*Human:\s*(.*?)\s*Assistant:(.*)$", re.DOTALL)
SCORE_TOKENS = 8
DEFAULT_BASE = "https://api.anthropic.com"  # the SDK's, shown in errors when no URL is given


def _without_userinfo(base: str) -> str:
    parts = urlsplit(base)
    return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}" \
           f"{parts.path.rstrip('/')}"


def parse_name(name: str) -> tuple[str, str | None, dict[str, str]]:
    rest, _, query = name.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True))
    model, sep, base = rest.partition("@")
    if not model:
        raise MweError(f"anthropic: '{redact(name)}' names no model (anthropic:MODEL[@BASE_URL])")
    if sep:
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise MweError(f"anthropic: base URL '{shown_url(base)}' is not an http(s) URL")
        base = _without_userinfo(base)
    known = {"samples", "concurrency", "rpm", "tpm", "timeout", "max_attempts", "backoff",
             "max_backoff"}
    for key in options:
        if key not in known:
            raise MweError(f"anthropic: unknown option '{key}' (known: {', '.join(sorted(known))})")
    if "samples" in options and (not options["samples"].isdigit() or int(options["samples"]) < 1):
        raise MweError("anthropic: samples must be a positive whole number")
    if not sep:
        env = os.environ.get("ANTHROPIC_BASE_URL")
        # never keep credentials in the identity (a URL without any is kept as it was, so
        # that its cache entries stay valid)
        if env and "@" in urlsplit(env).netloc:
            env = _without_userinfo(env)
        return model, env, options
    return model, base, options


OUTPUT = "logprobs"  # score() returns log-probabilities


def identity(name: str) -> dict[str, Any]:
    model, base, options = parse_name(name)
    return {"backend": "anthropic", "model": model, "base_url": base or "default",
            "scoring": "sampled", "samples": int(options.get("samples", "20"))}


def load(spec: str, name: str, ident: dict[str, Any]) -> AnthropicModel:
    model, base, options = parse_name(name)
    return AnthropicModel(spec, model, base, options, ident)


def to_messages(prompt: Prompt) -> list[dict[str, str]]:
    """A prompt as Messages API turns (the last one may be a prefilled reply)."""
    if isinstance(prompt, Chat):
        messages = [{"role": r, "content": c} for r, c in prompt.messages]
        prefix = prompt.reply
    else:
        m = DIALOGUE.match(prompt)
        if m and "Human:" not in m.group(1):
            messages = [{"role": "user", "content": m.group(1)}]
            prefix = m.group(2)
        else:
            messages = [{"role": "user", "content": prompt}]
            prefix = ""
    if prefix.strip():
        messages.append({"role": "assistant", "content": prefix.strip(" ")})
    return messages


class AnthropicModel(HttpBackend):
    key_env = "ANTHROPIC_API_KEY"

    def __init__(self, spec: str, model: str, base: str | None, options: dict[str, str],
                 ident: dict[str, Any]) -> None:
        super().__init__(spec, options, ident, "anthropic")
        self.model = model
        self.base = base
        self.samples = int(options.get("samples", "20"))
        key = os.environ.get("ANTHROPIC_API_KEY")
        if not key:
            raise MweError(f"{self.spec}: set ANTHROPIC_API_KEY in the environment")
        self._key = key
        self._secret = key

    def shown_base(self) -> str:
        return self.base or DEFAULT_BASE

    def _make_client(self) -> Any:
        from anthropic import AsyncAnthropic

        kwargs: dict[str, Any] = {"api_key": self._key, "max_retries": 0,
                                  "timeout": self.settings.timeout}
        if self.base:
            kwargs["base_url"] = self.base
        return AsyncAnthropic(**kwargs)

    async def _message(self, prompt: Prompt, max_tokens: int, temperature: float, top_p: float,
                       stop: Sequence[str]) -> str:
        messages = to_messages(prompt)
        extra: dict[str, Any] = {"temperature": temperature}
        if top_p < 1.0:
            extra["top_p"] = top_p
        kwargs: dict[str, Any] = {"model": self.model, "max_tokens": max_tokens,
                                  "messages": messages, "extra_body": extra}
        stops = [s for s in stop if s.strip()]
        if stops:
            kwargs["stop_sequences"] = stops
        res = await self._request(lambda: self.client().messages.create(**kwargs))
        return "".join(getattr(block, "text", "") for block in res.content)

    async def _sample_one(self, prompt: Prompt, sampling: Sampling, index: int) -> str:
        """The API has no seed: samples are reproducible through the cache only."""
        return await self._message(prompt, sampling.max_tokens, sampling.temperature,
                                   sampling.top_p, sampling.stop)

    def score_each(self, requests: Sequence[ScoreRequest],
                   on_result: Callable[[int, list[float]], None]) -> None:
        self._fan_out([self.samples] * len(requests),
                      lambda r, _: self._message(requests[r][0], SCORE_TOKENS, 1.0, 1.0, ()),
                      lambda r: len(requests[r][0]) // 4 + SCORE_TOKENS,
                      lambda r, answers: on_result(r, estimate(list(requests[r][1]), answers)))


def estimate(continuations: list[str], answers: list[str]) -> list[float]:
    """Log of each continuation's smoothed share of the sampled answers. An answer counts
    for the longest continuation it starts with (so "(A)" is not read as "(A) or (B)")."""
    keys = [c.strip() for c in continuations]
    counts = [0] * len(keys)
    for a in answers:
        text = a.strip()
        best = -1
        for i, key in enumerate(keys):
            at_boundary = text == key or (text.startswith(key) and not text[len(key)].isalnum())
            if key and at_boundary and (best < 0 or len(key) > len(keys[best])):
                best = i
        if best >= 0:
            counts[best] += 1
    k = len(answers)
    return [math.log((c + 0.5) / (k + 1)) for c in counts]
