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

The methods are classes in mwe.models.openai_scoring.

Batch mode (`batch=1`, mwe.models.batch): generation, `echo` and `top` scoring go through
the Batch API (a JSONL file uploaded with purpose "batch", then /v1/batches); `forced`
scoring needs tokenizer calls between its completions, so it stays online, and so does the
`auto` probe (a few requests).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, cast
from urllib.parse import parse_qsl, urlsplit, urlunsplit

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
    seed_for,
    text_of,
    usage_of,
)
from mwe.models.batch import (
    CHAT,
    COMPLETIONS,
    OPTIONS,
    Group,
    Outcome,
    Status,
    batch_flag,
    describe,
    run_batches,
    say,
)
from mwe.models.http import (
    HTTP_MODULES,
    HttpBackend,
    check_server,
    cut_reply,
    field_of,
    prompt_tokens,
    settings_from,
)
from mwe.models.http_errors import HttpError, message_of
from mwe.models.openai_scoring import METHODS, Method
from mwe.models.retry import Faults, retry_status
from mwe.redact import redact

DEFAULT_BASE = "https://api.openai.com/v1"
SCORING = ("auto", "echo", "forced", "top")
ENDPOINTS = ("completions", "chat")


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
             "backoff", "max_backoff"} | OPTIONS
    for key in options:
        if key not in known:
            raise MweError(f"openai: unknown option '{key}' (known: {', '.join(sorted(known))})")
    batch_flag(options, "openai")
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
    ident: dict[str, Any] = {"backend": "openai", "model": model, "base_url": base,
                             "endpoint": options.get("endpoint", "completions"),
                             "scoring": options.get("scoring", "auto")}
    if batch_flag(options, "openai"):
        # the Batch API is another serving path, with no promise of bit-identical outputs:
        # its results are cached apart (and a model without batch=1 keeps its old identity)
        ident["batch"] = True
    return ident


def check(name: str) -> None:
    """Before a command's first call: the options parse, the openai package is installed,
    $OPENAI_API_KEY is set unless the server is local, and a local server is listening."""
    _, base, options = parse_name(name)
    settings_from(options)
    require_modules("openai", ["openai", *HTTP_MODULES],
                    "pip install 'mwe[http]' (or run 'make setup')")
    check_server(base, "OPENAI_API_KEY", key_needed=not _is_local(base))


def faults() -> Faults:
    """The openai SDK's exception types (mwe.models.retry.Faults)."""
    import openai

    return Faults(status=(openai.APIStatusError,), timeout=(openai.APITimeoutError,),
                  network=(openai.APIConnectionError,), library=(openai.APIError,))


def load(spec: str, name: str, ident: dict[str, Any]) -> OpenAIModel:
    model, base, options = parse_name(name)
    return OpenAIModel(spec, model, base, options, ident)


FINISH: dict[str, Finish] = {"stop": "stop", "length": "length", "content_filter": "stop",
                             "tool_calls": "stop", "eos": "stop"}


def reply_of(choice: Any, endpoint: str) -> Reply:
    """A choice (SDK object or JSON) as a reply: the content, the reasoning a server returns
    apart (`reasoning_content`, as vLLM and DeepSeek name it, or `reasoning`), and whether
    it ended or ran out of max_tokens."""
    finish = FINISH.get(str(field_of(choice, "finish_reason") or ""), "")
    if endpoint != CHAT:
        return Reply(str(field_of(choice, "text") or ""), "", finish)
    message = field_of(choice, "message") or {}
    reasoning = field_of(message, "reasoning_content") or field_of(message, "reasoning") or ""
    return Reply(str(field_of(message, "content") or ""), str(reasoning), finish)


def _is_local(base: str) -> bool:
    host = urlsplit(base).hostname or ""
    return host in ("localhost", "127.0.0.1", "::1") or host.endswith(".local")


ENDED = ("completed", "expired", "cancelled", "failed")


class OpenAIModel(HttpBackend):
    key_env = "OPENAI_API_KEY"
    batch_max_lines = 50_000  # the Batch API's limits: 50,000 requests, 200 MB a file
    batch_max_bytes = 150 * 2**20

    def __init__(self, spec: str, model: str, base: str, options: dict[str, str],
                 ident: dict[str, Any]) -> None:
        super().__init__(spec, options, ident, "openai")
        self.model = model
        self.base = base
        self.endpoint = options.get("endpoint", "completions")
        self.scoring = options.get("scoring", "auto")
        self.batch = batch_flag(options, "openai")
        self._said_online = False
        key = os.environ.get("OPENAI_API_KEY")
        if not key and not _is_local(base):
            raise MweError(f"{self.spec}: set OPENAI_API_KEY in the environment")
        self._key = key or "not-needed"
        self._secret = key or ""
        self._resolved: str | None = None
        self.methods: dict[str, Method] = {name: m(self) for name, m in METHODS.items()}

    def shown_base(self) -> str:
        return self.base

    def _make_client(self) -> Any:
        from openai import AsyncOpenAI

        # max_retries=0: mwe.models.retry's policy retries each request instead
        return AsyncOpenAI(base_url=self.base, api_key=self._key, max_retries=0,
                           timeout=self.settings.timeout)

    def _sdk_faults(self) -> Faults:
        return faults()

    # --- generation ---

    def _sample_body(self, prompt: Prompt, sampling: Sampling, index: int
                     ) -> tuple[str, dict[str, Any]]:
        """The endpoint and request body of one sample, seeded per (seed, prompt) and sample
        index, so a sample does not depend on order."""
        seed = seed_for(sampling.seed, prompt) + index
        common: dict[str, Any] = {"model": self.model, "max_tokens": sampling.max_tokens,
                                  "temperature": sampling.temperature, "top_p": sampling.top_p,
                                  "seed": seed % (2**31)}
        if sampling.stop:
            common["stop"] = list(sampling.stop)[:4]
        if self.endpoint == "chat" or isinstance(prompt, Chat):
            return CHAT, {**common, "messages": self.messages(prompt)}
        return COMPLETIONS, {**common, "prompt": text_of(prompt, self.spec)}

    async def _sample_one(self, prompt: Prompt, sampling: Sampling, index: int) -> str:
        return (await self._reply_one(prompt, sampling, index)).text

    async def _reply_one(self, prompt: Prompt, sampling: Sampling, index: int) -> Reply:
        endpoint, body = self._sample_body(prompt, sampling, index)
        if endpoint == CHAT:
            res = await self.request(lambda: self.client().chat.completions.create(**body))
        else:
            res = await self.request(lambda: self.client().completions.create(**body))
        return reply_of(res.choices[0], endpoint)

    def reply_each(self, prompts: Sequence[Prompt], sampling: Any,
                   on_result: Callable[[int, list[Reply], TokenUsage | None], None]) -> None:
        if not self.batch:
            super().reply_each(prompts, sampling, on_result)
            return
        bodies = [[self._sample_body(p, sampling, k) for k in range(sampling.n)] for p in prompts]
        groups = [Group(b[0][0] if b else COMPLETIONS, [body for _, body in b]) for b in bodies]

        def done(p: int, responses: list[Any]) -> None:
            replies = [self._batch_reply(r, groups[p].endpoint) for r in responses]
            on_result(p, [cut_reply(r, sampling.stop) for r in replies],
                      add_usage([usage_of(r) for r in responses]))

        self._batched(groups, done, lambda p: describe(prompts[p]))

    def _batch_reply(self, body: Any, endpoint: str) -> Reply:
        try:
            choice = body["choices"][0]
        except (KeyError, IndexError, TypeError):
            raise MweError(f"{self.spec}: a batch result has no choices") from None
        return reply_of(choice, endpoint)

    def generate_each(self, prompts: Sequence[Prompt], sampling: Any,
                      on_result: Callable[[int, list[str], TokenUsage | None], None]) -> None:
        if not self.batch:
            super().generate_each(prompts, sampling, on_result)
            return
        bodies = [[self._sample_body(p, sampling, k) for k in range(sampling.n)] for p in prompts]
        groups = [Group(b[0][0] if b else COMPLETIONS, [body for _, body in b]) for b in bodies]

        def done(p: int, responses: list[Any]) -> None:
            texts = [self._choice_text(r, groups[p].endpoint) for r in responses]
            on_result(p, [cut_at_stop(t, sampling.stop) for t in texts],
                      add_usage([usage_of(r) for r in responses]))

        self._batched(groups, done, lambda p: describe(prompts[p]))

    def _choice_text(self, body: Any, endpoint: str) -> str:
        try:
            choice = body["choices"][0]
            text = choice["message"]["content"] if endpoint == CHAT else choice["text"]
        except (KeyError, IndexError, TypeError):
            raise MweError(f"{self.spec}: a batch result has no choices") from None
        return str(text or "")

    def messages(self, prompt: Prompt) -> list[dict[str, str]]:
        """Chat turns as they are (the server applies its own template; a reply start
        becomes a prefilled assistant turn), or a text prompt as one user turn."""
        if isinstance(prompt, Chat):
            messages = [{"role": r, "content": c} for r, c in prompt.messages]
            if prompt.reply.strip():
                messages.append({"role": "assistant", "content": prompt.reply})
            return messages
        return [{"role": "user", "content": prompt}]

    # --- scoring (the methods: mwe.models.openai_scoring) ---

    def score_each(self, requests: Sequence[ScoreRequest],
                   on_result: Callable[[int, list[float], TokenUsage | None], None]) -> None:
        method = self.methods[self.resolve_scoring()]
        if method.text_only and any(isinstance(ctx, Chat) for ctx, _ in requests):
            raise MweError(f"{self.spec}: chat turns (--format chat) are scored through the "
                           "chat endpoint; add ?endpoint=chat to the model")
        if self.batch:
            groups = [method.group(ctx, conts) for ctx, conts in requests]
            if all(g is not None for g in groups):
                self._batched(cast(list[Group], groups), lambda r, responses: on_result(
                    r, method.read(*requests[r], responses),
                    add_usage([usage_of(x) for x in responses])),
                    lambda r: describe(requests[r][0]))
                return
            if not self._said_online:
                say(f"{self.spec}: {method.why_online} and has no batch form: scoring online "
                    "(batch=1 still batches generation)")
                self._said_online = True
        # each call's log-probs, in call order, joined into the request's
        self._fan_out([method.calls(conts) for _, conts in requests],
                      lambda r, j: method.call(*requests[r], j),
                      lambda r: prompt_tokens(requests[r][0]) + 1,
                      lambda r, out, usage: on_result(r, [x for part in out for x in part],
                                                      usage))

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
        forced = await self._if_supported("forced", ctx, cont, why)
        echoed = await self._if_supported("echo", ctx, cont, why)
        if forced is not None and echoed is not None and abs(echoed - forced) < 0.02:
            return "echo"
        if forced is not None:
            return "forced"
        if echoed is not None:
            return "echo"
        raise MweError(f"{self.spec}: the server can score neither by echoing prompt log-probs "
                       f"({why['echo']}) nor by forced one-token completions ({why['forced']}); "
                       "use endpoint=chat (top_logprobs) or another server")

    async def _if_supported(self, method: str, ctx: str, cont: str, why: dict[str, str]
                            ) -> float | None:
        """The method's score, or None when the server answers that it cannot do it (why
        goes into why[method]). Anything else raises: a 401, 403, a missing model or a
        network fault is no missing feature, and transient faults are retried first (a
        probe must not mistake a 429 for a missing feature)."""
        try:
            return float(await self.methods[method].score(ctx, cont))
        except HttpError as exc:
            if not exc.unsupported:
                raise
            why[method] = exc.cause
        except MweError as exc:  # an answer without the log-probs the method needs
            why[method] = str(exc).removeprefix(f"{self.spec}: ")
        return None

    # --- batch mode (mwe.models.batch) ---

    def _batched(self, groups: Sequence[Group], on_group: Callable[[int, list[Any]], None],
                 describe: Callable[[int], str]) -> None:
        run_batches(self, groups, on_group, spec=self.spec, ledger=self.ledger,
                    poll=self.settings.poll, retries=self.settings.batch_retries,
                    finalize=self._close, describe=describe)

    async def batch_submit(self, endpoint: str, lines: Sequence[tuple[str, dict[str, Any]]]
                           ) -> str:
        data = "".join(json.dumps({"custom_id": cid, "method": "POST", "url": endpoint,
                                   "body": body}, ensure_ascii=False) + "\n"
                       for cid, body in lines).encode("utf-8")
        upload = await self.request(lambda: self.client().files.create(
            file=("mwe-batch.jsonl", data, "application/jsonl"), purpose="batch"))
        batch = await self._create(lambda: self.client().batches.create(
            input_file_id=upload.id, endpoint=cast(Any, endpoint), completion_window="24h"))
        return str(batch.id)

    async def batch_status(self, batch_id: str) -> Status:
        b = await self.request(lambda: self.client().batches.retrieve(batch_id))
        counts = b.request_counts
        failure = ""
        if b.status == "failed":
            errors = b.errors.data if b.errors and b.errors.data else []
            failure = self._clean("; ".join(
                str(e.message or e.code) + (f" (line {e.line})" if e.line else "")
                for e in errors) or "the provider refused the batch's input")
        return Status(str(b.status), done=(counts.completed + counts.failed) if counts else 0,
                      total=counts.total if counts else 0, ended=b.status in ENDED,
                      failure=failure, handle=(b.output_file_id, b.error_file_id))

    async def _download(self, file_id: str) -> str:
        res = await self.client().files.content(file_id)
        return str(res.text)

    async def batch_results(self, batch_id: str, status: Status) -> list[tuple[str, Outcome]]:
        out: list[tuple[str, Outcome]] = []
        for file_id in status.handle or ():
            if not file_id:
                continue
            text = await self.request(partial(self._download, file_id))
            for raw in text.splitlines():
                if raw.strip():
                    out.append(self._batch_line(json.loads(raw)))
        return out

    def _batch_line(self, obj: dict[str, Any]) -> tuple[str, Outcome]:
        """One line of an output or error file."""
        cid = str(obj.get("custom_id"))
        response = obj.get("response") or {}
        error = obj.get("error") or {}
        status = response.get("status_code")
        if status == 200 and not error:
            return cid, Outcome(True, response.get("body"))
        if status:
            message = message_of(response.get("body"))
            reason = f"HTTP {status}" + (f": {message}" if message else "")
            return cid, Outcome(False, reason=self._clean(reason), retry=retry_status(int(status)))
        code = str(error.get("code") or "error")
        message = str(error.get("message") or "")
        return cid, Outcome(False, reason=self._clean(f"{code}: {message}" if message else code))
