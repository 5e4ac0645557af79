"""`mwe sweep --ray --score text`: the replies of a sweep asked as Ray tasks, read on the driver.

The log-prob sweep's steps (mwe.pipeline.ray_sweep) with one difference in the unit: a local
sweep asks a dataset's replies in one `CachedModel.reply` call (not in chunks), so a unit is
one model on one whole dataset. The plan sends a unit with the stored replies of its prompts
and after the earlier units it shares prompts with; its worker asks exactly the prompts the
local sweep would ask there, in one call of the same composition, on a throwaway store, and
returns the (key, input, output) calls it computed. The driver commits them to its store, then
reads every reply back with `evaluate_model(..., text=)` as a fully cached local sweep does:
the rules read the replies there, and a `--judge` runs there too, through the driver's cache
(judging is reading, as in the local sweep). Workers never see the judge.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

from mwe.datasets import Dataset
from mwe.models import CachedModel
from mwe.models.base import Sampling, prompt_json
from mwe.pipeline import ray_units
from mwe.pipeline.replies import text_prompt
from mwe.store import digest

Requests = Callable[[CachedModel, Dataset, str], tuple[list[str], list[dict[str, Any]]]]


def reply_requests(sampling: Sampling) -> Requests:
    """The cache keys and inputs of a dataset's reply calls, as `CachedModel.reply` makes
    them for `replies.ask` (what `ray_sweep.plan` looks up in the driver's store)."""

    def requests(model: CachedModel, dataset: Dataset, fmt: str
                 ) -> tuple[list[str], list[dict[str, Any]]]:
        chat = model.chat if fmt == "chat" else None
        inputs = [{"prompt": prompt_json(text_prompt(item, fmt, chat)),
                   "sampling": sampling.to_dict()} for item in dataset.items]
        return [digest(i) for i in inputs], inputs

    return requests


def reply_unit(spec: str, env: dict[str, str], identity: dict[str, Any], fmt: str,
               sampling: Sampling, dataset: Dataset, known: list[ray_units.Call],
               *earlier: ray_units.UnitResult) -> ray_units.UnitResult:
    """A Ray task: one dataset's replies asked on a fresh store that holds the replies the
    local sweep would find in its cache there. Its rows are the replies as stored (the driver
    reads them, and checks nothing against them: a judge may change how they read)."""
    start = time.perf_counter()
    model = ray_units.unit_model(spec, env, identity)
    hits = model.hits
    before = (model.tokens.computed_in, model.tokens.computed_out)
    chat = model.chat if fmt == "chat" else None
    prompts = [text_prompt(item, fmt, chat) for item in dataset.items]
    with ray_units.unit_store(model, "reply", known, earlier) as store:
        replies = model.reply(prompts, sampling)
    cached = model.hits - hits
    tokens = (model.tokens.computed_in - before[0], model.tokens.computed_out - before[1])
    return ray_units.UnitResult(
        [{"replies": [r.to_json() for r in rs]} for rs in replies], store.recorded,
        model.model_id, len(prompts) - cached, cached, time.perf_counter() - start,
        f"{socket.gethostname()}:{os.getpid()}", tokens)
