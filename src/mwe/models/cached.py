"""A model wrapped by the store: only inputs never seen before reach the backend."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from mwe.errors import MweError
from mwe.models.base import (
    Chat,
    ChatTemplate,
    LanguageModel,
    Prompt,
    Sampling,
    ScoreRequest,
    StreamingSampler,
    StreamingScorer,
    prompt_json,
)
from mwe.store import Store, digest

Loader = Callable[[], LanguageModel]


def score_chunk() -> int:
    """Questions scored and committed together (MWE_SCORE_CHUNK, default 256).

    Smaller chunks lose less work to a kill; larger ones give the backend bigger batches.
    Keep it fixed between a killed run and its resumption for bit-identical results.
    """
    value = os.environ.get("MWE_SCORE_CHUNK", "256")
    if not value.isdigit() or int(value) < 1:
        raise MweError(f"MWE_SCORE_CHUNK must be a positive whole number, got {value!r}")
    return int(value)


class CachedModel:
    """Loads the backend lazily, so a fully cached rerun never loads weights."""

    def __init__(self, spec: str, identity: dict[str, Any], loader: Loader, store: Store,
                 rewards: bool = False) -> None:
        self.spec = spec
        # the backend's scores are a reward model's rewards, not log-probabilities
        self.rewards = rewards
        self._identity = identity
        self._loader = loader
        self._backend: LanguageModel | None = None
        self.store = store
        self.model_id = store.register_model(identity)
        self.hits = 0
        self.misses = 0

    @property
    def backend(self) -> LanguageModel:
        if self._backend is None:
            self._backend = self._loader()
        return self._backend

    def identity(self) -> dict[str, Any]:
        return self._identity

    def chat(self, user: str) -> Prompt:
        """One user turn, ready for the assistant's reply: text from the model's own chat
        template, or chat turns for a server that applies its template itself."""
        backend = self.backend
        if isinstance(backend, ChatTemplate):
            return backend.chat_prompt([("user", user)])
        return Chat((("user", user),))

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
            chunk_size = score_chunk()
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
            self.hits += len(idx) - len(todo) - len(copies)
            backend = self.backend if todo else None
            streaming = isinstance(backend, StreamingScorer)
            if streaming:
                # an HTTP backend: every finished call is committed at once
                def commit(j: int, o: list[float], todo: list[int] = todo) -> None:
                    i = todo[j]
                    self.store.put_many(self.model_id, "score", [(keys[i], inputs[i], o)])
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
                self.store.put_many(
                    self.model_id, "score", [(keys[i], inputs[i], o) for i, o in zip(todo, out)]
                )
                for i, o in zip(todo, out):
                    results[i] = o
                self.misses += len(todo)
            for i, j in copies:
                results[i] = results[j]
                self.misses += 1
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
        backend = self.backend if todo else None
        if isinstance(backend, StreamingSampler):
            def commit(j: int, o: list[str]) -> None:
                i = todo[j]
                self.store.put_many(self.model_id, "generate", [(keys[i], inputs[i], o)])
                found[keys[i]] = o
                self.misses += 1

            backend.generate_each([prompts[i] for i in todo], sampling, commit)
        elif todo:
            out = self.backend.generate([prompts[i] for i in todo], sampling)
            self.store.put_many(
                self.model_id, "generate", [(keys[i], inputs[i], o) for i, o in zip(todo, out)]
            )
            for i, o in zip(todo, out):
                found[keys[i]] = o
            self.misses += len(todo)
        return [found[k] for k in keys]
