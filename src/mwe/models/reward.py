"""Reward / preference models (a sequence-classification head with one output) as
discriminators, like the paper's preference model.

`score` returns, for each continuation, the reward of the whole text (context followed by the
continuation). The filter's softmax over two such rewards is the Bradley-Terry probability
that the first reply is preferred, which is how a preference model is read as p_d.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mwe import threads
from mwe.errors import MweError
from mwe.models.base import Prompt, Sampling, ScoreRequest, require_modules, text_of

BATCH = 16


OUTPUT = "rewards"  # score() returns rewards: the reply with the higher one is the answer


def identity(name: str) -> dict[str, Any]:
    """The weights; not the CPU thread count (`?threads=N`, MWE_THREADS), which moves fp32
    rewards only in the last bits, as batching already does (see mwe.threads)."""
    from mwe.models.hf import weights_identity

    name, _ = threads.split_name("hf-rm", name)
    threads.from_env()  # a bad MWE_THREADS fails now, not after the cache was searched
    return {"backend": "hf-rm", "dtype": "float32", "kind": "reward",
            **weights_identity(name, "hf-rm")}


def check(name: str) -> None:
    """Before a command's first call: as hf's check, without bundled models (none is a
    reward model)."""
    from mwe.models.hf import check_weights

    name, _ = threads.split_name("hf-rm", name)
    require_modules("hf-rm", ["torch", "transformers"])
    check_weights(name)


def load(spec: str, name: str, ident: dict[str, Any]) -> RewardModel:
    from mwe.models.hf import hub_snapshot

    name, option = threads.split_name("hf-rm", name)
    path = os.path.expanduser(name)
    return RewardModel(spec, path if Path(path).exists() else hub_snapshot(name), ident,
                       n_threads=threads.resolve(option))


class RewardModel:
    def __init__(self, spec: str, path: str, ident: dict[str, Any],
                 n_threads: int | None = None) -> None:
        threads.quiet_openmp_spin()  # before torch loads its OpenMP runtime
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        threads.set_torch_threads(n_threads or threads.resolve())
        self.spec = spec
        self._identity = ident
        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            path, dtype=torch.float32).eval()
        if self.model.config.num_labels != 1:
            raise MweError(f"{spec}: a reward model has one output (num_labels=1), this one has "
                           f"{self.model.config.num_labels}")
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tok.pad_token_id
        self.tok.padding_side = "right"

    def identity(self) -> dict[str, Any]:
        return self._identity

    def rewards(self, texts: Sequence[str]) -> list[float]:
        torch = self.torch
        out: list[float] = []
        for start in range(0, len(texts), BATCH):
            enc = self.tok(list(texts[start : start + BATCH]), return_tensors="pt", padding=True)
            with torch.inference_mode():
                logits = self.model(**enc).logits
            out.extend(float(x) for x in logits[:, 0])
        return out

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(ids) for ids in self.tok(list(texts), add_special_tokens=False)["input_ids"]]

    def score(self, requests: Sequence[ScoreRequest]) -> list[list[float]]:
        texts = [text_of(ctx, self.spec) + cont for ctx, conts in requests for cont in conts]
        flat = iter(self.rewards(texts))
        return [[next(flat) for _ in conts] for _, conts in requests]

    def generate(self, prompts: Sequence[Prompt], sampling: Sampling) -> list[list[str]]:
        raise MweError(f"{self.spec} is a reward model: it scores replies but cannot generate")

    def chat_prompt(self, messages: Sequence[tuple[str, str]]) -> str:
        if not getattr(self.tok, "chat_template", None):
            raise MweError(f"{self.spec} has no chat template; use the human-assistant format")
        return str(self.tok.apply_chat_template([{"role": r, "content": c} for r, c in messages],
                                                tokenize=False, add_generation_prompt=True))
