"""The worker's side of `mwe sweep --ray` (mwe.pipeline.ray_sweep): the Ray tasks and what
a worker process keeps between them. A log-prob unit is scored here (`score_unit`), a reply
unit in mwe.pipeline.ray_replies; both run on a throwaway store (`unit_store`) holding the
answers the local sweep would find in its cache, and send back what they computed. Kept apart
from the driver so that the driver imports both kinds of unit and neither imports it.
"""

from __future__ import annotations

import gc
import os
import socket
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mwe import settings
from mwe.datasets import Dataset
from mwe.errors import MweError
from mwe.models import CachedModel, open_model
from mwe.models.base import Prompt
from mwe.pipeline.evaluate import evaluate_model
from mwe.store import Store

Call = tuple[str, Any, Any]  # key, input, output: what Store.put_many takes


class RecordingStore(Store):
    """A worker's throwaway store that remembers what was written to it, to send back."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self.recorded: list[tuple[str, list[Call], tuple[Any, ...], dict[str, Any]]] = []

    def put_many(self, model_id: str, kind: str, items: Any, *args: Any, **kwargs: Any) -> None:
        rows = list(items)
        super().put_many(model_id, kind, rows, *args, **kwargs)
        self.recorded.append((kind, rows, args, kwargs))

    def preload(self, model_id: str, calls: Sequence[Call], kind: str = "score") -> None:
        """Answers known before the unit (the driver's store, earlier units): not recorded."""
        if calls:
            Store.put_many(self, model_id, kind, calls)


@dataclass
class UnitResult:
    rows: list[dict[str, Any]]
    # (kind, calls, further put_many arguments) in the order the worker committed them
    calls: list[tuple[str, list[Call], tuple[Any, ...], dict[str, Any]]]
    model_id: str
    computed_rows: int
    cached_rows: int
    seconds: float
    worker: str
    tokens: tuple[int, int] = (0, 0)  # input and output tokens of the calls computed here


@dataclass
class Probe:
    identity: dict[str, Any]
    rewards: bool
    chat: dict[str, Prompt] | None


class Worker:
    """What a worker process keeps between tasks: its last model, loaded once."""

    def __init__(self) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="mwe-ray-worker-")
        self.scratch = Store(Path(self.tmp.name) / "scratch.sqlite")
        self.spec: str | None = None
        self.model: CachedModel | None = None

    def open(self, spec: str) -> CachedModel:
        if self.spec != spec or self.model is None:
            self.model = None  # one model at a time: free the last one's memory first
            gc.collect()
            torch = sys.modules.get("torch")
            if torch is not None and torch.cuda.is_available():
                torch.cuda.empty_cache()
            self.model = open_model(spec, self.scratch)
            self.spec = spec
        return self.model


WORKER: Worker | None = None


def worker_model(spec: str, env: dict[str, str]) -> CachedModel:
    global WORKER
    os.environ.update(env)
    if WORKER is None:
        WORKER = Worker()
    return WORKER.open(spec)


def probe_model(spec: str, env: dict[str, str], users: list[str] | None) -> Probe:
    """A Ray task: the model's identity where it runs, and its chat prompts when asked."""
    model = worker_model(spec, env)
    chat = {u: model.chat(u) for u in users} if users is not None else None
    return Probe(model.identity(), model.rewards, chat)


def unit_model(spec: str, env: dict[str, str], identity: dict[str, Any]) -> CachedModel:
    """The worker's model, refused when it is not the model the driver planned for."""
    model = worker_model(spec, env)
    if model.identity() != identity:
        raise MweError(f"{spec}: this worker ({socket.gethostname()}) gives the model another "
                       f"identity than the sweep expects:\n  here:     {model.identity()}\n"
                       f"  expected: {identity}\ninstall the same versions on every node, "
                       "and give a model that runs on GPUs num_gpus in the series file")
    return model


@contextmanager
def unit_store(model: CachedModel, kind: str, known: list[Call],
               earlier: Sequence[UnitResult]) -> Iterator[RecordingStore]:
    """The model on a fresh store holding the answers of `kind` the local sweep would find in
    its cache at this unit; back on the worker's scratch store after."""
    with tempfile.TemporaryDirectory(prefix="mwe-ray-unit-") as tmp:
        store = RecordingStore(Path(tmp) / "calls.sqlite")
        try:
            model.store = store
            model.model_id = store.register_model(model.identity())
            store.preload(model.model_id, known, kind)
            for unit in earlier:
                for k, calls, _, _ in unit.calls:
                    if k == kind:
                        store.preload(model.model_id, calls, kind)
            yield store
        finally:
            assert WORKER is not None
            model.store = WORKER.scratch
            store.close()


def score_unit(spec: str, env: dict[str, str], identity: dict[str, Any], fmt: str,
               dataset: Dataset, known: list[Call], *earlier: UnitResult) -> UnitResult:
    """A Ray task: one chunk of one dataset scored by `evaluate_model` on a fresh store that
    holds the answers the local sweep would find in its cache at this chunk."""
    start = time.perf_counter()
    model = unit_model(spec, env, identity)
    before = (model.tokens.computed_in, model.tokens.computed_out)
    # one chunk: everything the unit scores is one batch, as in the local sweep
    with (settings.overriding(score_chunk=max(1, len(dataset.items))),
          unit_store(model, "score", known, earlier) as store):
        run = evaluate_model(model, [dataset], fmt)
    tokens = (model.tokens.computed_in - before[0], model.tokens.computed_out - before[1])
    return UnitResult(run.rows, store.recorded, model.model_id, run.computed_rows,
                      run.cached_rows, time.perf_counter() - start,
                      f"{socket.gethostname()}:{os.getpid()}", tokens)
