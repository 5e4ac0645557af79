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

Batch mode (`batch=1`, mwe.models.batch): generation and the sampled scoring go through
Message Batches (/v1/messages/batches), each request with the same parameters it would have
online.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from mwe.errors import MweError
from mwe.models.base import (
    Chat,
    Finish,
    Prompt,
    Reply,
    Sampling,
    ScoreRequest,
    TokenUsage,
    add_usage,
    cut_at_stop,
    require_modules,
    usage_of,
)
from mwe.models.batch import (
    MESSAGES,
    OPTIONS,
    Group,
    Outcome,
    Status,
    batch_flag,
    describe,
    run_batches,
)
from mwe.models.http import (
    HTTP_MODULES,
    HttpBackend,
    check_server,
    cut_reply,
    prompt_tokens,
    settings_from,
)
from mwe.models.openai_compat import shown_url
from mwe.models.retry import Faults
from mwe.redact import redact

DIALOGUE = re.compile(r"^\s*Human:\s*(.*?)\s*Assistant:(.*)$", re.DOTALL)
SCORE_TOKENS = 8
DEFAULT_BASE = "https://api.anthropic.com"  # the SDK's, shown in errors when no URL is given
# errors of a batch request that a new batch would only repeat
FATAL_ERRORS = {"invalid_request_error", "authentication_error", "permission_error",
                "not_found_error", "request_too_large", "billing_error"}


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
             "max_backoff"} | OPTIONS
    for key in options:
        if key not in known:
            raise MweError(f"anthropic: unknown option '{key}' (known: {', '.join(sorted(known))})")
    batch_flag(options, "anthropic")
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
# ... estimated from sampled answers: the `sample` scoring method (`--score sample`)
SCORES_BY = "sample"


def identity(name: str) -> dict[str, Any]:
    model, base, options = parse_name(name)
    ident: dict[str, Any] = {"backend": "anthropic", "model": model,
                             "base_url": base or "default", "scoring": "sampled",
                             "samples": int(options.get("samples", "20"))}
    if batch_flag(options, "anthropic"):
        ident["batch"] = True  # another serving path: cached apart (see openai_compat)
    return ident


def check(name: str) -> None:
    """Before a command's first call: the options parse, the anthropic package is installed,
    $ANTHROPIC_API_KEY is set, and a local server (a loopback base URL) is listening."""
    _, base, options = parse_name(name)
    settings_from(options)
    require_modules("anthropic", ["anthropic", *HTTP_MODULES],
                    "pip install 'mwe[http]' (or run 'make setup')")
    check_server(base or DEFAULT_BASE, "ANTHROPIC_API_KEY", key_needed=True)


def faults() -> Faults:
    """The anthropic SDK's exception types (mwe.models.retry.Faults)."""
    import anthropic

    return Faults(status=(anthropic.APIStatusError,), timeout=(anthropic.APITimeoutError,),
                  network=(anthropic.APIConnectionError,), library=(anthropic.APIError,))


def load(spec: str, name: str, ident: dict[str, Any]) -> AnthropicModel:
    model, base, options = parse_name(name)
    return AnthropicModel(spec, model, base, options, ident)


_SPEAKER = re.compile(r"(?:\A\s*|\n\n)(Human|Assistant):")


def dialogue_turns(prompt: str) -> list[tuple[str, str]] | None:
    """A conversation in the paper's format ("\\n\\nHuman: ...\\n\\nAssistant: ...", turns
    alternating, ending with the assistant's) as (role, text) turns; None for anything else."""
    marks = list(_SPEAKER.finditer(prompt))
    if not marks or marks[0].start() != 0 or marks[0].group(1) != "Human" \
            or marks[-1].group(1) != "Assistant":
        return None
    ends = [m.start() for m in marks[1:]] + [len(prompt)]
    turns = [("user" if m.group(1) == "Human" else "assistant", prompt[m.end():end])
             for m, end in zip(marks, ends)]
    if any(a[0] == b[0] for a, b in zip(turns, turns[1:])):
        return None
    return turns


def to_messages(prompt: Prompt) -> list[dict[str, str]]:
    """A prompt as Messages API turns (the last one may be a prefilled reply)."""
    if isinstance(prompt, Chat):
        messages = [{"role": r, "content": c} for r, c in prompt.messages]
        prefix = prompt.reply
    else:
        m = DIALOGUE.match(prompt)
        turns = dialogue_turns(prompt)
        if turns is not None and len(turns) > 2:  # a conversation: its turns, the last
            messages = [{"role": r, "content": c.strip()} for r, c in turns[:-1]]
            prefix = turns[-1][1]                   # prefilled
        elif m and "Human:" not in m.group(1):
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
    batch_max_lines = 100_000  # Message Batches' limits: 100,000 requests, 256 MB
    batch_max_bytes = 200 * 2**20

    def __init__(self, spec: str, model: str, base: str | None, options: dict[str, str],
                 ident: dict[str, Any]) -> None:
        super().__init__(spec, options, ident, "anthropic")
        self.model = model
        self.base = base
        self.samples = int(options.get("samples", "20"))
        self.batch = batch_flag(options, "anthropic")
        key = os.environ.get("ANTHROPIC_API_KEY")
        if not key:
            raise MweError(f"{self.spec}: set ANTHROPIC_API_KEY in the environment")
        self._key = key
        self._secret = key

    def shown_base(self) -> str:
        return self.base or DEFAULT_BASE

    def _make_client(self) -> Any:
        from anthropic import AsyncAnthropic

        # max_retries=0: mwe.models.retry's policy retries each request instead
        kwargs: dict[str, Any] = {"api_key": self._key, "max_retries": 0,
                                  "timeout": self.settings.timeout}
        if self.base:
            kwargs["base_url"] = self.base
        return AsyncAnthropic(**kwargs)

    def _sdk_faults(self) -> Faults:
        return faults()

    def _params(self, prompt: Prompt, max_tokens: int, temperature: float, top_p: float,
                stop: Sequence[str]) -> dict[str, Any]:
        """A request's parameters as a batch line carries them (the same body as online)."""
        params: dict[str, Any] = {"model": self.model, "max_tokens": max_tokens,
                                  "messages": to_messages(prompt), "temperature": temperature}
        if top_p < 1.0:
            params["top_p"] = top_p
        stops = [s for s in stop if s.strip()]
        if stops:
            params["stop_sequences"] = stops
        return params

    async def _reply(self, prompt: Prompt, max_tokens: int, temperature: float, top_p: float,
                     stop: Sequence[str]) -> Reply:
        messages = to_messages(prompt)
        extra: dict[str, Any] = {"temperature": temperature}
        if top_p < 1.0:
            extra["top_p"] = top_p
        kwargs: dict[str, Any] = {"model": self.model, "max_tokens": max_tokens,
                                  "messages": messages, "extra_body": extra}
        stops = [s for s in stop if s.strip()]
        if stops:
            kwargs["stop_sequences"] = stops
        res = await self.request(lambda: self.client().messages.create(**kwargs))
        return reply_of(res)

    async def _message(self, prompt: Prompt, max_tokens: int, temperature: float, top_p: float,
                       stop: Sequence[str]) -> str:
        return (await self._reply(prompt, max_tokens, temperature, top_p, stop)).text

    async def _reply_one(self, prompt: Prompt, sampling: Sampling, index: int) -> Reply:
        return await self._reply(prompt, sampling.max_tokens, sampling.temperature,
                                 sampling.top_p, sampling.stop)

    async def _sample_one(self, prompt: Prompt, sampling: Sampling, index: int) -> str:
        """The API has no seed: samples are reproducible through the cache only."""
        return await self._message(prompt, sampling.max_tokens, sampling.temperature,
                                   sampling.top_p, sampling.stop)

    def score_each(self, requests: Sequence[ScoreRequest],
                   on_result: Callable[[int, list[float], TokenUsage | None], None]) -> None:
        if self.batch:
            groups = [Group(MESSAGES, [self._params(ctx, SCORE_TOKENS, 1.0, 1.0, ())]
                            * self.samples) for ctx, _ in requests]

            def done(r: int, messages: list[Any]) -> None:
                texts, usage = _texts_and_usage(messages)
                on_result(r, estimate(list(requests[r][1]), texts), usage)

            self._batched(groups, done, lambda r: describe(requests[r][0]))
            return
        self._fan_out([self.samples] * len(requests),
                      lambda r, _: self._message(requests[r][0], SCORE_TOKENS, 1.0, 1.0, ()),
                      lambda r: prompt_tokens(requests[r][0]) + SCORE_TOKENS,
                      lambda r, answers, usage: on_result(r, estimate(list(requests[r][1]), answers),
                                                          usage))

    def generate_each(self, prompts: Sequence[Prompt], sampling: Any,
                      on_result: Callable[[int, list[str], TokenUsage | None], None]) -> None:
        if not self.batch:
            super().generate_each(prompts, sampling, on_result)
            return
        groups = [Group(MESSAGES, [self._params(p, sampling.max_tokens, sampling.temperature,
                                                sampling.top_p, sampling.stop)] * sampling.n)
                  for p in prompts]

        def done(p: int, messages: list[Any]) -> None:
            texts, usage = _texts_and_usage(messages)
            on_result(p, [cut_at_stop(t, sampling.stop) for t in texts], usage)

        self._batched(groups, done, lambda p: describe(prompts[p]))

    def reply_each(self, prompts: Sequence[Prompt], sampling: Any,
                   on_result: Callable[[int, list[Reply], TokenUsage | None], None]) -> None:
        if not self.batch:
            super().reply_each(prompts, sampling, on_result)
            return
        groups = [Group(MESSAGES, [self._params(p, sampling.max_tokens, sampling.temperature,
                                                sampling.top_p, sampling.stop)] * sampling.n)
                  for p in prompts]

        def done(p: int, messages: list[Any]) -> None:
            on_result(p, [cut_reply(r, sampling.stop) for r, _ in messages],
                      add_usage([usage for _, usage in messages]))

        self._batched(groups, done, lambda p: describe(prompts[p]))

    # --- batch mode (mwe.models.batch) ---

    def _batched(self, groups: Sequence[Group], on_group: Callable[[int, list[Any]], None],
                 describe: Callable[[int], str]) -> None:
        run_batches(self, groups, on_group, spec=self.spec, ledger=self.ledger,
                    poll=self.settings.poll, retries=self.settings.batch_retries,
                    finalize=self._close, describe=describe)

    async def batch_submit(self, endpoint: str, lines: Sequence[tuple[str, dict[str, Any]]]
                           ) -> str:
        requests: Any = [{"custom_id": cid, "params": params} for cid, params in lines]
        batch = await self._create(lambda: self.client().messages.batches.create(
            requests=requests))
        return str(batch.id)

    async def batch_status(self, batch_id: str) -> Status:
        b = await self.request(lambda: self.client().messages.batches.retrieve(batch_id))
        c = b.request_counts
        total = c.processing + c.succeeded + c.errored + c.canceled + c.expired
        return Status(str(b.processing_status), done=total - c.processing, total=total,
                      ended=b.processing_status == "ended")

    async def _read_results(self, batch_id: str) -> list[Any]:
        decoder = await self.client().messages.batches.results(batch_id)
        return [item async for item in decoder]

    async def batch_results(self, batch_id: str, status: Status) -> list[tuple[str, Outcome]]:
        out: list[tuple[str, Outcome]] = []
        for item in await self.request(lambda: self._read_results(batch_id)):
            result = item.result
            if result.type == "succeeded":
                out.append((item.custom_id, Outcome(True, (reply_of(result.message),
                                                           usage_of(result.message)))))
            elif result.type == "errored":
                error = getattr(result.error, "error", None)
                kind = str(getattr(error, "type", "") or "error")
                message = str(getattr(error, "message", "") or "")
                reason = self._clean(f"{kind}: {message}" if message else kind)
                out.append((item.custom_id, Outcome(False, reason=reason,
                                                    retry=kind not in FATAL_ERRORS)))
            else:  # canceled, expired
                out.append((item.custom_id, Outcome(False, reason=str(result.type))))
        return out


def _texts_and_usage(messages: list[tuple[Reply, TokenUsage | None]]
                     ) -> tuple[list[str], TokenUsage | None]:
    """A batch group's answers (reply, billed tokens) as texts and their summed tokens."""
    return [reply.text for reply, _ in messages], add_usage([usage for _, usage in messages])


STOPS: dict[str, Finish] = {"end_turn": "stop", "stop_sequence": "stop",
                            "max_tokens": "length", "refusal": "stop"}


def reply_of(message: Any) -> Reply:
    """A message's text blocks as the reply, its thinking blocks as the reasoning (kept,
    never parsed), and whether it ended or ran out of max_tokens."""
    blocks = getattr(message, "content", None) or []
    text = "".join(getattr(b, "text", "") or "" for b in blocks
                   if getattr(b, "type", "text") == "text")
    thinking = "\n\n".join(str(getattr(b, "thinking", "") or "") for b in blocks
                            if getattr(b, "type", "") == "thinking")
    return Reply(text, thinking, STOPS.get(str(getattr(message, "stop_reason", "") or ""), ""))


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
