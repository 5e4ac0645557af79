"""The scoring methods of the OpenAI-compatible backend, one small class each (`scoring=`):
`echo`, `forced` and `top` (see mwe.models.openai_compat for what each asks the server).

A method scores a request (a context and its continuations) in `calls(conts)` calls, each
retried on its own, so several in flight never repeat one that succeeded; `group` and `read`
are its Batch API form, where it has one. The methods reach the server only through
`Server`, so they know nothing of the backend's client, settings or batches.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, ClassVar, Protocol, TypeVar
from urllib.parse import urlsplit, urlunsplit

from mwe.errors import MweError
from mwe.models.base import Prompt, split_trailing_spaces, text_of
from mwe.models.batch import CHAT, COMPLETIONS, Group

T = TypeVar("T")
TOP_K = 20
FORCE_BIAS = 100


class Server(Protocol):
    """What a method needs of the backend."""

    spec: str
    model: str
    base: str

    def client(self) -> Any: ...

    async def request(self, make: Callable[[], Awaitable[T]]) -> T: ...

    def messages(self, prompt: Prompt) -> list[dict[str, str]]: ...


def echo_total(offsets: Sequence[int] | None, values: Sequence[float | None] | None,
               ctx: str, cont: str, spec: str) -> float:
    """The summed echoed log-probs of the tokens that start inside the continuation."""
    if offsets is None or values is None:
        raise MweError(f"{spec}: the server returned no echoed log-probs")
    total = 0.0
    end = len(ctx) + len(cont)
    for offset, value in zip(offsets, values):
        if len(ctx) <= offset < end:
            if value is None:
                raise MweError(f"{spec}: the server gave no log-prob for a continuation token")
            total += float(value)
    return total


def top_scores(entries: Sequence[tuple[str, float]], conts: Sequence[str]) -> list[float]:
    """Each answer's log-prob from the top_logprobs of the next token; an answer outside them
    gets the lowest one shown (an upper bound)."""
    top: dict[str, float] = {}
    for token, logprob in entries:
        key = token.strip()
        top[key] = max(top.get(key, -math.inf), float(logprob))
    floor = min(top.values())
    return [top.get(c.strip(), floor) for c in conts]


class Method:
    """One way to score continuations. The default: one call per continuation, on the
    completions endpoint, so the context must be text."""

    name: ClassVar[str] = ""
    text_only: ClassVar[bool] = True  # chat turns need the chat endpoint (`top`)
    why_online: ClassVar[str] = ""  # why a method without a batch form has none

    def __init__(self, server: Server) -> None:
        self.server = server

    def calls(self, conts: Sequence[str]) -> int:
        return len(conts)

    async def call(self, ctx: Prompt, conts: Sequence[str], j: int) -> list[float]:
        """The log-probs that call j of a request gives (one continuation's, by default)."""
        return [await self.score(text_of(ctx, self.server.spec), conts[j])]

    async def score(self, ctx: str, cont: str) -> float:
        raise NotImplementedError

    def group(self, ctx: Prompt, conts: Sequence[str]) -> Group | None:
        """The request's batch lines; None: the method has no batch form."""
        return None

    def read(self, ctx: Prompt, conts: Sequence[str], responses: list[Any]) -> list[float]:
        """The log-probs from the batch results of `group`'s lines."""
        raise NotImplementedError


class Echo(Method):
    """The completions endpoint with echo=true: the log-probs of the prompt's own tokens."""

    name = "echo"

    def body(self, ctx: str, cont: str) -> dict[str, Any]:
        """ctx and cont as split_trailing_spaces leaves them."""
        return {"model": self.server.model, "prompt": ctx + cont, "echo": True, "logprobs": 1,
                "max_tokens": 1, "temperature": 0.0}

    async def score(self, ctx: str, cont: str) -> float:
        ctx, cont = split_trailing_spaces(ctx, cont)
        body = self.body(ctx, cont)
        res = await self.server.request(
            lambda: self.server.client().completions.create(**body))
        lp = res.choices[0].logprobs
        if lp is None:
            raise MweError(f"{self.server.spec}: the server returned no echoed log-probs")
        return echo_total(lp.text_offset, lp.token_logprobs, ctx, cont, self.server.spec)

    def _splits(self, ctx: Prompt, conts: Sequence[str]) -> list[tuple[str, str]]:
        text = text_of(ctx, self.server.spec)
        return [split_trailing_spaces(text, c) for c in conts]

    def group(self, ctx: Prompt, conts: Sequence[str]) -> Group:
        return Group(COMPLETIONS, [self.body(c, x) for c, x in self._splits(ctx, conts)])

    def read(self, ctx: Prompt, conts: Sequence[str], responses: list[Any]) -> list[float]:
        out = []
        for response, (text, cont) in zip(responses, self._splits(ctx, conts)):
            try:
                lp = response["choices"][0]["logprobs"] or {}
            except (KeyError, IndexError, TypeError):
                lp = {}
            out.append(echo_total(lp.get("text_offset"), lp.get("token_logprobs"), text, cont,
                                  self.server.spec))
        return out


class Forced(Method):
    """Per continuation token, a one-token completion after the text before it, forced by a
    logit bias; the server reports the token's unbiased log-prob. Needs llama.cpp's
    /extras/tokenize and /extras/detokenize; has no batch form (it needs those calls
    between its completions)."""

    name = "forced"
    why_online = "forced scoring needs tokenizer calls between its completions"

    def __init__(self, server: Server) -> None:
        super().__init__(server)
        self._tok: dict[str, list[int]] = {}
        self._detok: dict[tuple[int, ...], str] = {}

    async def _post_root(self, path: str, body: dict[str, Any]) -> Any:
        """POST to a path at the server's root, through the SDK's public `post` (its
        headers, timeout and errors), for endpoints it has no method for."""
        import httpx2

        parts = urlsplit(self.server.base)
        url = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        response = await self.server.client().post(url, cast_to=httpx2.Response, body=body)
        return response.json()

    async def _tokenize(self, text: str) -> list[int]:
        if text not in self._tok:
            body = await self.server.request(lambda: self._post_root(
                "/extras/tokenize", {"input": text, "model": self.server.model}))
            self._tok[text] = [int(t) for t in body["tokens"]]
        return self._tok[text]

    async def _detokenize(self, tokens: list[int]) -> str:
        key = tuple(tokens)
        if key not in self._detok:
            body = await self.server.request(lambda: self._post_root(
                "/extras/detokenize", {"tokens": tokens, "model": self.server.model}))
            self._detok[key] = str(body["text"])
        return self._detok[key]

    async def score(self, ctx: str, cont: str) -> float:
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
                raise MweError(f"{self.server.spec}: forced scoring needs a non-empty context")
            bias = {str(whole[k]): FORCE_BIAS}
            res = await self.server.request(partial(self._complete, prefix, bias))
            lp = res.choices[0].logprobs
            if lp is None or not lp.token_logprobs or lp.token_logprobs[0] is None:
                raise MweError(
                    f"{self.server.spec}: the server returned no log-prob for a forced token")
            total += float(lp.token_logprobs[0])
        return total

    async def _complete(self, prompt: str, logit_bias: dict[str, int]) -> Any:
        return await self.server.client().completions.create(
            model=self.server.model, prompt=prompt, max_tokens=1, temperature=0.0, logprobs=1,
            logit_bias=logit_bias)


class Top(Method):
    """The chat endpoint's top_logprobs for the next token: one call answers for all of a
    request's continuations; an answer's log-prob is its first token's."""

    name = "top"
    text_only = False

    def body(self, ctx: Prompt) -> dict[str, Any]:
        return {"model": self.server.model, "messages": self.server.messages(ctx),
                "max_tokens": 1, "temperature": 0.0, "logprobs": True, "top_logprobs": TOP_K}

    def calls(self, conts: Sequence[str]) -> int:
        return 1

    async def call(self, ctx: Prompt, conts: Sequence[str], j: int) -> list[float]:
        body = self.body(ctx)
        res = await self.server.request(
            lambda: self.server.client().chat.completions.create(**body))
        content = res.choices[0].logprobs.content if res.choices[0].logprobs else None
        if not content or not content[0].top_logprobs:
            raise MweError(f"{self.server.spec}: the chat endpoint returned no top_logprobs")
        return top_scores([(e.token, e.logprob) for e in content[0].top_logprobs], conts)

    def group(self, ctx: Prompt, conts: Sequence[str]) -> Group:
        return Group(CHAT, [self.body(ctx)])

    def read(self, ctx: Prompt, conts: Sequence[str], responses: list[Any]) -> list[float]:
        try:
            entries = responses[0]["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
            pairs = [(str(e["token"]), float(e["logprob"])) for e in entries]
        except (KeyError, IndexError, TypeError):
            pairs = []
        if not pairs:
            raise MweError(f"{self.server.spec}: the chat endpoint returned no top_logprobs")
        return top_scores(pairs, conts)


METHODS: dict[str, type[Method]] = {m.name: m for m in (Echo, Forced, Top)}
