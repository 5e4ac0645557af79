"""A model wrapped by the store: only inputs never seen before reach the backend."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from mwe import settings
from mwe.models.base import (
    Chat,
    ChatTemplate,
    Finish,
    LanguageModel,
    Prompt,
    Replier,
    Reply,
    Sampling,
    ScoreRequest,
    StreamingReplier,
    StreamingSampler,
    StreamingScorer,
    TokenCounter,
    TokenUsage,
    estimate_tokens,
    prompt_json,
)
from mwe.store import Store, digest

Loader = Callable[[], LanguageModel]
Usage = tuple[int, int, str]  # tokens in, tokens out, how counted


@dataclass
class Tokens:
    computed_in: int = 0
    computed_out: int = 0
    cached_in: int = 0
    cached_out: int = 0
    cached_uncounted: int = 0  # cache hits from before tokens were recorded
    counted: set[str] = field(default_factory=set)  # "tokenizer", "api", "estimate"

    def add(self, usage: Sequence[Usage], cached: bool) -> None:
        for t_in, t_out, how in usage:
            if cached:
                self.cached_in += t_in
                self.cached_out += t_out
            else:
                self.computed_in += t_in
                self.computed_out += t_out
            self.counted.add(how)


class CachedModel:
    """Loads the backend lazily, so a fully cached rerun never loads weights."""

    def __init__(self, spec: str, identity: dict[str, Any], loader: Loader, store: Store,
                 rewards: bool = False, scores_by: str = "logprob") -> None:
        self.spec = spec
        # the backend's scores are a reward model's rewards, not log-probabilities
        self.rewards = rewards
        # "logprob", or "sample": `score` estimates each answer's probability from sampled
        # answers (a backend without log-probs; the `sample` scoring method)
        self.scores_by = scores_by
        self._identity = identity
        self._loader = loader
        self._backend: LanguageModel | None = None
        self.store = store
        self.model_id = store.register_model(identity)
        self.hits = 0
        self.misses = 0
        # tokens of the calls this object served: computed now, or read from the cache (as
        # their first run counted them); for the usage ledger and cost estimates
        self.tokens = Tokens()

    @property
    def backend(self) -> LanguageModel:
        if self._backend is None:
            backend = self._loader()
            if hasattr(backend, "ledger"):
                # batch mode records its batch ids beside the calls (mwe.ledger), so a
                # killed run polls the same batches again instead of submitting them twice
                from mwe.ledger import Ledger

                cast(Any, backend).ledger = Ledger(self.store.path, self.model_id)
            self._backend = backend
        return self._backend

    def identity(self) -> dict[str, Any]:
        return self._identity

    def chat(self, user: str | Sequence[tuple[str, str]]) -> Prompt:
        """One user turn (or a conversation's (role, text) turns ending with the user's),
        ready for the assistant's reply: text from the model's own chat template, or chat
        turns for a server that applies its template itself."""
        turns = [("user", user)] if isinstance(user, str) else list(user)
        backend = self.backend
        if isinstance(backend, ChatTemplate):
            return backend.chat_prompt(turns)
        return Chat(tuple(turns))

    def _count(self, texts: Sequence[str]) -> tuple[list[int], str]:
        backend = self._backend
        if isinstance(backend, TokenCounter):
            return backend.count_tokens(texts), "tokenizer"
        return [estimate_tokens(t) for t in texts], "estimate"

    def _score_usage(self, requests: Sequence[ScoreRequest]) -> list[Usage]:
        """Tokens read per request: the context and every continuation (no output)."""
        texts: list[str] = []
        for ctx, conts in requests:
            texts.append(ctx if isinstance(ctx, str) else json.dumps(prompt_json(ctx)))
            texts.extend(conts)
        counts, how = self._count(texts)
        out, at = [], 0
        for _, conts in requests:
            out.append((sum(counts[at:at + 1 + len(conts)]), 0, how))
            at += 1 + len(conts)
        return out

    def _generate_usage(self, prompts: Sequence[Prompt], outputs: Sequence[list[str]]
                        ) -> list[Usage]:
        """Per prompt: its tokens once per sample drawn (as APIs bill), and the samples'."""
        texts = [p if isinstance(p, str) else json.dumps(prompt_json(p)) for p in prompts]
        counts, how = self._count([*texts, *(s for o in outputs for s in o)])
        out, at = [], len(texts)
        for k, o in enumerate(outputs):
            out.append((counts[k] * max(len(o), 1), sum(counts[at:at + len(o)]), how))
            at += len(o)
        return out

    def _cached_usage(self, kind: str, keys: Sequence[str]) -> None:
        found = self.store.get_usage(self.model_id, kind, keys)
        self.tokens.add([found[k] for k in keys if k in found], cached=True)  # a repeated key
        self.tokens.cached_uncounted += sum(1 for k in keys if k not in found)  # counts twice

    def plan_score(self, requests: Sequence[ScoreRequest]) -> tuple[int, int, int]:
        """(calls, of which cached, estimated input tokens of the rest), calling nothing."""
        inputs = [{"context": prompt_json(c), "continuations": list(conts)}
                  for c, conts in requests]
        keys = [digest(i) for i in inputs]
        found = self.store.get_many(self.model_id, "score", keys)
        todo = [r for r, k in zip(requests, keys) if k not in found]
        tokens = sum(estimate_tokens(c if isinstance(c, str) else json.dumps(prompt_json(c)))
                     + sum(estimate_tokens(x) for x in conts) for c, conts in todo)
        return len(requests), len(requests) - len(todo), tokens

    def plan_generate(self, prompts: Sequence[Prompt], sampling: Sampling, kind: str = "generate"
                      ) -> tuple[int, int, int, int]:
        """(calls, of which cached, estimated input tokens, at most output tokens) of the
        rest, calling nothing (`kind` "reply": of `reply`)."""
        keys = [digest({"prompt": prompt_json(p), "sampling": sampling.to_dict()})
                for p in prompts]
        found = self.store.get_many(self.model_id, kind, keys)
        todo = [p for p, k in zip(prompts, keys) if k not in found]
        t_in = sum(estimate_tokens(p if isinstance(p, str) else json.dumps(prompt_json(p)))
                   for p in todo) * sampling.n
        return len(prompts), len(prompts) - len(todo), t_in, len(todo) * sampling.n * \
            sampling.max_tokens

    def score(
        self,
        requests: Sequence[ScoreRequest],
        chunk_size: int | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> list[list[float]]:
        """Score in fixed chunks; each finished chunk is committed before the next starts.

        Chunks are cut at fixed positions of the request list, so a resumed run recomputes
        exactly the chunks a killed run had not finished, with the same batch composition,
        and writes bit-identical results.
        """
        if chunk_size is None:
            chunk_size = settings.current().score_chunk  # MWE_SCORE_CHUNK
        inputs = [{"context": prompt_json(c), "continuations": list(conts)}
                  for c, conts in requests]
        keys = [digest(i) for i in inputs]
        results: list[list[float] | None] = [None] * len(requests)
        for start in range(0, len(requests), chunk_size):
            idx = range(start, min(start + chunk_size, len(requests)))
            found = self.store.get_many(self.model_id, "score", [keys[i] for i in idx])
            # identical requests in a chunk (e.g. one question without its biography for
            # several rows) are computed once and copied
            first: dict[str, int] = {}
            copies: list[tuple[int, int]] = []
            for i in idx:
                if keys[i] in found:
                    continue
                if keys[i] in first:
                    copies.append((i, first[keys[i]]))
                else:
                    first[keys[i]] = i
            todo = list(first.values())
            for i in idx:
                if keys[i] in found:
                    results[i] = found[keys[i]]
            self._cached_usage("score", [keys[i] for i in idx if keys[i] in found])
            self.hits += len(idx) - len(todo) - len(copies)
            backend = self.backend if todo else None
            streaming = isinstance(backend, StreamingScorer)
            if streaming:
                # an HTTP backend: every finished call is committed at once
                def commit(j: int, o: list[float], billed: TokenUsage | None,
                           todo: list[int] = todo) -> None:
                    i = todo[j]
                    usage = self._score_usage([requests[i]]) if billed is None else \
                        [(*billed, "api")]
                    self.tokens.add(usage, cached=False)
                    self.store.put_many(self.model_id, "score", [(keys[i], inputs[i], o)],
                                        usage)
                    results[i] = o
                    self.misses += 1
                    if on_progress:
                        on_progress(1)

                if on_progress:
                    on_progress(len(idx) - len(todo))
                assert isinstance(backend, StreamingScorer)
                backend.score_each([requests[i] for i in todo], commit)
            elif todo:
                out = self.backend.score([requests[i] for i in todo])
                usage = self._score_usage([requests[i] for i in todo])
                self.tokens.add(usage, cached=False)
                self.store.put_many(
                    self.model_id, "score", [(keys[i], inputs[i], o) for i, o in zip(todo, out)],
                    usage)
                for i, o in zip(todo, out):
                    results[i] = o
                self.misses += len(todo)
            for i, j in copies:
                results[i] = results[j]
                self.misses += 1
            if copies:  # a copy is a call too: a rerun reads it from the cache and counts it
                # as its original was recorded
                known = self.store.get_usage(self.model_id, "score", [keys[j] for _, j in copies])
                self.tokens.add([known[keys[j]] if keys[j] in known else
                                 self._score_usage([requests[j]])[0] for _, j in copies],
                                cached=False)
            if on_progress and not streaming:
                on_progress(len(idx))
        done = [r for r in results if r is not None]
        assert len(done) == len(requests), "every request is scored or read from the cache"
        return done

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[list[str]]:
        inputs = [{"prompt": prompt_json(p), "sampling": sampling.to_dict()} for p in prompts]
        keys = [digest(i) for i in inputs]
        found = self.store.get_many(self.model_id, "generate", keys)
        todo = [i for i, k in enumerate(keys) if k not in found]
        self.hits += len(prompts) - len(todo)
        self._cached_usage("generate", [k for k in keys if k in found])
        backend = self.backend if todo else None
        if isinstance(backend, StreamingSampler):
            def commit(j: int, o: list[str], billed: TokenUsage | None) -> None:
                i = todo[j]
                usage = self._generate_usage([prompts[i]], [o]) if billed is None else \
                    [(*billed, "api")]
                self.tokens.add(usage, cached=False)
                self.store.put_many(self.model_id, "generate", [(keys[i], inputs[i], o)], usage)
                found[keys[i]] = o
                self.misses += 1

            backend.generate_each([prompts[i] for i in todo], sampling, commit)
        elif todo:
            out = self.backend.generate([prompts[i] for i in todo], sampling)
            usage = self._generate_usage([prompts[i] for i in todo], out)
            self.tokens.add(usage, cached=False)
            self.store.put_many(
                self.model_id, "generate", [(keys[i], inputs[i], o) for i, o in zip(todo, out)],
                usage)
            for i, o in zip(todo, out):
                found[keys[i]] = o
            self.misses += len(todo)
        return [found[k] for k in keys]

    def reply(self, prompts: Sequence[Prompt], sampling: Sampling,
              on_progress: Callable[[int], None] | None = None) -> list[list[Reply]]:
        """`sampling.n` free replies per prompt (free-text scoring), cached apart from
        `generate` since they carry reasoning and finish. A backend that is no `Replier`
        replies through `generate`; its finish is 'length' when the reply has max_tokens
        tokens by its own tokenizer, else 'stop' ('' where it has none)."""
        inputs = [{"prompt": prompt_json(p), "sampling": sampling.to_dict()} for p in prompts]
        keys = [digest(i) for i in inputs]
        found = {k: [Reply.from_json(r) for r in v]
                 for k, v in self.store.get_many(self.model_id, "reply", keys).items()}
        todo = [i for i, k in enumerate(keys) if k not in found]
        self.hits += len(prompts) - len(todo)
        self._cached_usage("reply", [k for k in keys if k in found])
        if on_progress:
            on_progress(len(prompts) - len(todo))

        def commit(j: int, replies: list[Reply], billed: TokenUsage | None) -> None:
            i = todo[j]
            usage = self._generate_usage([prompts[i]], [[r.text for r in replies]]) \
                if billed is None else [(*billed, "api")]
            self.tokens.add(usage, cached=False)
            self.store.put_many(self.model_id, "reply",
                                [(keys[i], inputs[i], [r.to_json() for r in replies])], usage)
            found[keys[i]] = replies
            self.misses += 1
            if on_progress:
                on_progress(1)

        backend = self.backend if todo else None
        asked = [prompts[i] for i in todo]
        if isinstance(backend, StreamingReplier):
            backend.reply_each(asked, sampling, commit)
        elif isinstance(backend, Replier):
            for j, replies in enumerate(backend.reply(asked, sampling)):
                commit(j, replies, None)
        elif backend is not None:
            texts = backend.generate(asked, sampling)
            counted = isinstance(backend, TokenCounter)
            counts = self._count([s for o in texts for s in o])[0] if counted else []
            at = 0
            for j, samples in enumerate(texts):
                finishes: list[Finish] = [
                    "length" if n >= sampling.max_tokens else "stop"
                    for n in counts[at:at + len(samples)]] if counted else [""] * len(samples)
                at += len(samples)
                commit(j, [Reply(s, finish=f) for s, f in zip(samples, finishes)], None)
        return [found[k] for k in keys]
