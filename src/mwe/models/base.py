"""The one interface every backend implements.

`score` mirrors lm-evaluation-harness's loglikelihood(context, continuation): the summed
log-probability of each continuation's tokens after the context. `generate` samples texts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from mwe.errors import MweError


@dataclass(frozen=True)
class Sampling:
    """Sampling settings; defaults are the paper's settings for statements."""

    n: int = 1
    temperature: float = 1.4
    top_p: float = 0.975
    max_tokens: int = 48
    stop: tuple[str, ...] = field(default=("\n",))
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d


@dataclass(frozen=True)
class Chat:
    """Chat turns for a backend whose server applies its own template (an API): the
    messages, then `reply`, the start of the assistant's answer the model continues.

    Backends that hold their template (hf, llama.cpp) render turns to text themselves and
    never receive one of these."""

    messages: tuple[tuple[str, str], ...]  # (role, content)
    reply: str = ""

    def __add__(self, text: str) -> Chat:
        return Chat(self.messages, self.reply + text)

    def to_json(self) -> dict[str, Any]:
        """What the cache keys on: distinct from every plain-text prompt."""
        return {"chat": [{"role": r, "content": c} for r, c in self.messages],
                "reply": self.reply}

    def __len__(self) -> int:  # characters, for token estimates
        return sum(len(c) for _, c in self.messages) + len(self.reply)


# a prompt is text, or chat turns for a server that applies its own template
Prompt = str | Chat
ScoreRequest = tuple[Prompt, Sequence[str]]


def prompt_json(prompt: Prompt) -> str | dict[str, Any]:
    return prompt.to_json() if isinstance(prompt, Chat) else prompt


def text_of(prompt: Prompt, spec: str) -> str:
    """The prompt as text, for backends that take text only."""
    if isinstance(prompt, Chat):
        raise MweError(f"{spec} takes text prompts; its own chat template renders chat turns")
    return prompt
# what a backend's score() returns: log-probabilities, or a reward model's rewards (which are
# no probabilities: no valid mass, and large values)
Output = Literal["logprobs", "rewards"]


@runtime_checkable
class Scorer(Protocol):
    """Log-prob scoring, as lm-evaluation-harness's loglikelihood(context, continuation)."""

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        """For each (context, continuations): log P(continuation | context), one per continuation."""
        ...


@runtime_checkable
class Sampler(Protocol):
    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[list[str]]:
        """For each prompt, `sampling.n` sampled completions (stop strings removed)."""
        ...


Finish = Literal["stop", "length", ""]  # the model ended, hit max_tokens, or not known


@dataclass(frozen=True)
class Reply:
    """What a model said when asked freely (free-text scoring): the visible text, its
    reasoning where the API returns it apart (OpenAI-compatible `reasoning_content`,
    Anthropic thinking blocks), and why it ended. Reasoning is kept, never parsed."""

    text: str
    reasoning: str = ""
    finish: Finish = ""

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "reasoning": self.reasoning, "finish": self.finish}

    @classmethod
    def from_json(cls, obj: Any) -> Reply:
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise MweError(f"a cached reply is not a reply: {str(obj)[:80]}")
        finish = obj.get("finish", "")
        return cls(obj["text"], str(obj.get("reasoning") or ""),
                   finish if finish in ("stop", "length") else "")


@runtime_checkable
class Replier(Protocol):
    """A backend that says more of a reply than its text (reasoning, finish); others reply
    through `Sampler.generate`, their finish told by counting tokens."""

    def reply(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[list[Reply]]: ...


@runtime_checkable
class StreamingReplier(Protocol):
    def reply_each(self, prompts: Sequence[Prompt], sampling: Sampling,
                   on_result: Callable[[int, list[Reply], TokenUsage | None], None]) -> None: ...


@runtime_checkable
class ChatTemplate(Protocol):
    """A backend that holds its chat template (hf, llama.cpp); others receive `Chat` turns."""

    def chat_prompt(self, messages: Sequence[tuple[str, str]]) -> str:
        """The template applied to (role, content) turns, ready for the assistant's reply."""
        ...


@runtime_checkable
class TokenCounter(Protocol):
    """A backend that can count tokens with its own tokenizer (for the usage ledger)."""

    def count_tokens(self, texts: Sequence[str]) -> list[int]: ...


TokenUsage = tuple[int, int]  # input and output tokens, as a provider's usage fields give them


def usage_of(response: Any) -> TokenUsage | None:
    """The tokens an API answer says it billed: OpenAI's prompt/completion tokens or
    Anthropic's input/output tokens, from an SDK object or a JSON body; None without them."""
    usage = response.get("usage") if isinstance(response, dict) else getattr(response, "usage", None)
    if usage is None:
        return None

    def count(*names: str) -> int | None:
        for name in names:
            value = usage.get(name) if isinstance(usage, dict) else getattr(usage, name, None)
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
        return None

    t_in = count("prompt_tokens", "input_tokens")
    t_out = count("completion_tokens", "output_tokens")
    if t_in is None and t_out is None:
        return None
    return (t_in or 0, t_out or 0)


def add_usage(parts: Sequence[TokenUsage | None]) -> TokenUsage | None:
    """The sum of the parts that reported usage; None when none did."""
    known = [u for u in parts if u is not None]
    if not known:
        return None
    return (sum(u[0] for u in known), sum(u[1] for u in known))


def estimate_tokens(text: str) -> int:
    """Tokens where no tokenizer is at hand: about four characters each (English text)."""
    return max(1, (len(text) + 3) // 4) if text else 0


@runtime_checkable
class StreamingScorer(Protocol):
    """A backend whose calls finish one by one (HTTP): each result is handed over as it comes,
    so the cache commits it at once and a crash loses only the calls in flight, together
    with the tokens the provider billed for it (None where the answer did not say)."""

    def score_each(self, requests: Sequence[ScoreRequest],
                   on_result: Callable[[int, list[float], TokenUsage | None], None]) -> None: ...


@runtime_checkable
class StreamingSampler(Protocol):
    def generate_each(self, prompts: Sequence[Prompt], sampling: Sampling,
                      on_result: Callable[[int, list[str], TokenUsage | None], None]) -> None: ...


@runtime_checkable
class LanguageModel(Scorer, Sampler, Protocol):
    """A loaded backend: what every one implements (a reward model's `generate` refuses).
    One that is no `ChatTemplate` receives chat turns as `Chat` values."""

    spec: str

    def identity(self) -> dict[str, Any]:
        """What determines the model's outputs (backend, weights hash, settings): the cache key."""
        ...


class Backend(Protocol):
    """What a backend provides to the registry (a module of mwe.models, or a plugin's object
    named by a `mwe.backends` entry point): its cache identity without loading anything, the
    loaded model, what its scores are, and a cheap check that the model can be used.

    `check` is optional for plugins: one without it is checked by computing its identity.
    So is `SCORES_BY = "sample"`, for a backend whose `score` estimates each answer's
    probability from sampled answers (no log-probs): it is then the `sample` scoring method."""

    OUTPUT: Output

    def identity(self, name: str) -> dict[str, Any]: ...

    def load(self, spec: str, name: str, identity: dict[str, Any]) -> LanguageModel: ...

    def check(self, name: str) -> None:
        """Raise MweError saying why `name` cannot be used (no such file, not in the local
        cache, no key, no server listening), before a command makes its first call. Cheap:
        no weights are read, nothing is downloaded, no request is sent."""
        ...


def require_modules(what: str, modules: Sequence[str], hint: str = "run 'make setup'") -> None:
    """Fail if a package a backend imports only when loading is missing (found, not imported:
    importing torch alone takes seconds)."""
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise MweError(f"{what} needs {' and '.join(missing)}, not installed: {hint}")


def split_trailing_spaces(context: str, continuation: str) -> tuple[str, str]:
    """Move spaces that end the context onto the continuation, as lm-evaluation-harness does.

    Tokenizers attach a leading space to the following word (" Yes"), so "Answer: " + "Yes"
    must be scored as "Answer:" + " Yes". Newlines stay in the context: a chat template's
    final newline belongs to the template, not to the answer.
    """
    stripped = context.rstrip(" \t")
    if len(stripped) == len(context):
        return context, continuation
    return stripped, context[len(stripped) :] + continuation


@dataclass
class Job:
    """One token sequence to run and the next-token log-probs to read from it."""

    tokens: list[int]
    # (position in tokens, target token id, request index, continuation index)
    reads: list[tuple[int, int, int, int]] = field(default_factory=list)


def build_jobs(
    requests: Sequence[ScoreRequest],
    encode_many: Callable[[list[str]], list[list[int]]],
    bos_id: int | None,
    empty_context_token: int | None,
) -> list[Job]:
    """Token sequences for score requests, split as lm-evaluation-harness splits them.

    The continuation's tokens are those of encode(context + continuation) after the first
    len(encode(context)); an empty context becomes one BOS (or EOS) token. When every answer
    of a request is one token after the same context, one sequence scores them all.
    """
    pairs: list[tuple[int, int, str, str]] = []
    for r, (context, conts) in enumerate(requests):
        for c, cont in enumerate(conts):
            ctx, cont2 = split_trailing_spaces(text_of(context, "a local model"), cont)
            pairs.append((r, c, ctx, cont2))
    ctx_texts = sorted({p[2] for p in pairs})
    ctx_ids = dict(zip(ctx_texts, encode_many(ctx_texts)))
    wholes = encode_many([p[2] + p[3] for p in pairs])
    per_request: dict[int, list[tuple[int, list[int], list[int]]]] = {}
    for (r, c, ctx, _), whole in zip(pairs, wholes):
        if ctx:
            cids = ctx_ids[ctx]
            cont_ids = whole[len(cids) :]
        else:
            cids = [empty_context_token] if empty_context_token is not None else []
            cont_ids = whole[1:] if bos_id is not None and whole[:1] == [bos_id] else whole
        per_request.setdefault(r, []).append((c, cids, cont_ids))
    jobs: list[Job] = []
    for r, items in per_request.items():
        if all(it[1] == items[0][1] for it in items) and all(len(it[2]) == 1 for it in items):
            cids = items[0][1]
            jobs.append(Job(list(cids), [(len(cids) - 1, it[2][0], r, it[0]) for it in items]))
            continue
        for c, cids, cont_ids in items:
            if cont_ids:  # an empty continuation has log-prob 0
                reads = [(len(cids) - 1 + k, tok, r, c) for k, tok in enumerate(cont_ids)]
                jobs.append(Job((cids + cont_ids)[:-1], reads))
    return jobs


def seed_for(seed: int, prompt: Prompt) -> int:
    """A per-prompt seed, so a sample does not depend on which batch it was drawn in."""
    text = prompt if isinstance(prompt, str) else json.dumps(prompt.to_json(), sort_keys=True)
    h = hashlib.sha256(f"{seed}\x00{text}".encode()).digest()
    return int.from_bytes(h[:4], "little")


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    cut = len(text)
    for s in stop:
        i = text.find(s)
        if i >= 0:
            cut = min(cut, i)
    return text[:cut]
