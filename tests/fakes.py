"""The stand-in language model of every test that needs one without weights (like inspect's
mockllm): deterministic log-probs and samples, and a log of what it was asked. Tests of control
flow (the cache, spooling, Ray) use it; real scoring is tested on the bundled models."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Literal

from mwe.errors import MweError
from mwe.models.base import Prompt, Sampling, ScoreRequest


class FakeLM:
    """`scores`: "hash", awkward floats from a hash of (name, context, answer), the same on
    every run; or "length", minus the answer's length (short answers win).
    `batch_shift`: subtracted once per request in the batch, so that, like torch's, a score
    moves with the size of the batch it is scored in.
    `sample`: every completion ("{k}" in it: the sample's index); None: "PROMPT/SEED/K",
    which names its request. `fail_on`: a generate call with a prompt containing this text
    raises MweError, as a provider refusing one request fails its whole call.
    `batches`: where each score call's sorted requests go (a list shared between instances
    when a backend loads several). `record=False` keeps nothing (a memory test measures the
    pipeline's peak, not the log's)."""

    def __init__(self, name: str = "fake", *, scores: Literal["hash", "length"] = "hash",
                 batch_shift: float = 0.0, sample: str | None = None,
                 batches: list[list[str]] | None = None, record: bool = True,
                 spec: str | None = None, fail_on: str | None = None) -> None:
        self.name = name
        self.fail_on = fail_on
        self.spec = spec or f"fake:{name}"
        self.scores = scores
        self.batch_shift = batch_shift
        self.sample = sample
        self.scored: list[Prompt] = []  # every context scored, in order
        self.generated: list[Prompt] = []  # every prompt sampled, in order
        self.batches = [] if batches is None else batches
        self.record = record

    def identity(self) -> dict[str, Any]:
        return {"backend": "fake", "name": self.name}

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        if self.record:
            self.scored.extend(ctx for ctx, _ in requests)
            self.batches.append(sorted(f"{ctx}|{'|'.join(conts)}" for ctx, conts in requests))
        shift = self.batch_shift * len(requests)
        return [[self.logprob(str(ctx), c) - shift for c in conts] for ctx, conts in requests]

    def logprob(self, context: str, answer: str) -> float:
        if self.scores == "length":
            return -float(len(answer))
        digest = hashlib.sha256(f"{self.name}{context}{answer}".encode()).hexdigest()
        return -int(digest[:8], 16) / 2**32 * 7

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[list[str]]:
        if self.fail_on is not None and any(self.fail_on in str(p) for p in prompts):
            raise MweError(f"the provider refused a request ({self.fail_on})")
        if self.record:
            self.generated.extend(prompts)
        return [[self.sample.replace("{k}", str(k)) if self.sample is not None
                 else f"{p}/{sampling.seed}/{k}"
                 for k in range(sampling.n)] for p in prompts]


class FakeChatLM(FakeLM):
    """A FakeLM that holds its chat template, as hf and llama.cpp do (a plain FakeLM, like an
    API, receives chat turns as `Chat` values): the template is the last turn's text."""

    def chat_prompt(self, messages: Sequence[tuple[str, str]]) -> str:
        return messages[-1][1]


class ReplyLM(FakeLM):
    """Replies "Yes", "No" or words no rule reads (for a judge), by a hash of (name, prompt),
    each with the size of the call it was asked in: a call composed otherwise than the local
    sweep's changes the files (the Ray text sweep's test). `calls`: where each generate call's
    sorted prompts go (a list shared between instances when a backend loads several)."""

    def __init__(self, name: str = "fake", *, calls: list[list[str]] | None = None,
                 **options: Any) -> None:
        super().__init__(name, **options)
        self.calls = [] if calls is None else calls

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[list[str]]:
        self.calls.append(sorted(map(str, prompts)))
        said = []
        for p in prompts:
            pick = int(hashlib.sha256(f"{self.name}{p}".encode()).hexdigest()[:8], 16) % 3
            said.append([f"{('Yes', 'No', 'Hard to tell')[pick]} ({len(prompts)})"] * sampling.n)
        return said


def behavior_answers(samples: Sequence[dict[str, Any]], pattern: str) -> Any:
    """What Inspect's own stand-in, mockllm, answers an exported mwe task
    (`custom_outputs`): for every sample "ANSWER: X", X the letter of an answer showing the
    behavior ("matching") or of one not showing it ("other"); the sample is found by its
    question in the prompt (the longest that fits, as one question may extend another). With
    usage given, mockllm counts no tokens (its count needs a tokenizer download)."""
    from inspect_ai.model import ModelOutput, ModelUsage

    def question(s: dict[str, Any]) -> str:
        return str(s["input"] if isinstance(s["input"], str) else s["input"][-1]["content"])

    def answer(messages: Any, tools: Any, tool_choice: Any, config: Any) -> Any:
        prompt = messages[-1].text
        s = max((s for s in samples if question(s) in prompt), key=lambda s: len(question(s)))
        targets = [s["target"]] if isinstance(s["target"], str) else s["target"]
        letters = [chr(ord("A") + i) for i in range(len(s["choices"]))]
        letter = targets[0] if pattern == "matching" else next(x for x in letters
                                                               if x not in targets)
        out = ModelOutput.from_content(model="mockllm", content=f"ANSWER: {letter}")
        out.usage = ModelUsage(input_tokens=len(prompt) // 4, output_tokens=3,
                               total_tokens=len(prompt) // 4 + 3)
        return out

    return answer
