"""`mwe run SUITE --ray [ADDRESS]`: the behaviors of a suite built on Ray workers.

A unit is one behavior. Its worker runs the stages `mwe run` runs for its spec (`run_all`)
in a throwaway folder, with its models opened over a throwaway store, and sends back every
call it computed, each with the identity of the model that made it. The driver (the machine
running `mwe run`) commits each behavior's calls to its own cache as they arrive, then runs
the suite as it would without --ray: every call is then read from its cache, so the files are
those of the local run (when a worker's model has the driver's identity; one that does not,
an hf model naming its GPU, say, is computed again by the driver, and the files are still
the driver's own).

A driver killed mid-suite keeps the behaviors already committed; the next run sends only the
others. Every node needs mwe, the models' backends and the suite's input files (banks, gold
questions) at the same paths; the driver sends its MWE_* variables (but its cache folder) and
no API key. Batch mode (`batch=1`) is refused under --ray: its ledger of submitted batches
lives in the driver's cache, and a worker's would be lost with its throwaway store.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mwe.errors import MweError
from mwe.models import Models, SharedModels
from mwe.pipeline.ray_sweep import MAX_RETRIES, cause, connect, forwarded_env
from mwe.pipeline.run import run_all
from mwe.spec import BehaviorSpec
from mwe.store import Store

# (identity of the model, kind, (key, input, output) calls, further put_many arguments)
Recorded = tuple[dict[str, Any], str, list[tuple[str, Any, Any]], tuple[Any, ...],
                 dict[str, Any]]


class IdentityStore(Store):
    """A worker's throwaway store that remembers each write with its model's identity."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self.identities: dict[str, dict[str, Any]] = {}
        self.recorded: list[Recorded] = []

    def register_model(self, identity: dict[str, Any]) -> str:
        model_id = super().register_model(identity)
        self.identities[model_id] = identity
        return model_id

    def put_many(self, model_id: str, kind: str, items: Any, *args: Any, **kwargs: Any) -> None:
        rows = list(items)
        super().put_many(model_id, kind, rows, *args, **kwargs)
        self.recorded.append((self.identities[model_id], kind, rows, args, kwargs))


@dataclass
class BehaviorCalls:
    name: str
    calls: list[Recorded] = field(default_factory=list)
    seconds: float = 0.0
    worker: str = ""
    error: str | None = None  # the behavior failed there: the driver's run says why


def build_unit(spec: BehaviorSpec, env: dict[str, str]) -> BehaviorCalls:
    """A Ray task: one behavior's stages on a throwaway store; the calls they computed."""
    os.environ.update(env)
    start = time.perf_counter()
    out = BehaviorCalls(spec.name, worker=f"{socket.gethostname()}:{os.getpid()}")
    with tempfile.TemporaryDirectory(prefix="mwe-ray-suite-") as tmp:
        store = IdentityStore(Path(tmp) / "calls.sqlite")
        try:
            run_all(spec, Path(tmp) / "run", SharedModels(store), progress=False)
        except MweError as exc:
            out.error = str(exc)
        out.calls = store.recorded
        store.close()
    out.seconds = time.perf_counter() - start
    return out


def refuse_batch(specs: Sequence[BehaviorSpec]) -> None:
    for s in specs:
        for role, m in (("generator", s.generator), ("discriminator", s.discriminator),
                        *(("targets", t) for t in s.targets)):
            if "batch=1" in m:
                raise MweError(f"--ray: {s.name}'s {role} {m} is in batch mode, whose ledger of "
                               "submitted batches lives in this machine's cache; drop --ray "
                               "(a suite already puts many behaviors into the same batches)")


def build_on_ray(specs: Sequence[BehaviorSpec], models: Models, address: str | None,
                 progress: bool = True, ray: Any = None) -> list[BehaviorCalls]:
    """Every spec built on the cluster, its calls committed to `models.store` as it arrives."""
    refuse_batch(specs)
    started = False
    if ray is None:
        ray, started = connect(address)
    try:
        env = forwarded_env()
        remote = ray.remote(build_unit)
        pending = {remote.options(max_retries=MAX_RETRIES, retry_exceptions=False,
                                  name=f"mwe-suite:{s.name}").remote(s, env): s
                   for s in specs}
        done: list[BehaviorCalls] = []
        print(f"ray: {len(pending)} behaviors to build", file=sys.stderr)
        with tqdm(total=len(pending), desc="suite (ray)", unit="behavior",
                  disable=not progress) as bar:
            try:
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=1)
                    for ref in ready:
                        spec = pending.pop(ref)
                        try:
                            result: BehaviorCalls = ray.get(ref)
                        except Exception as exc:
                            raise MweError(f"{spec.name}: {cause(exc)}") from None
                        for identity, kind, calls, args, kwargs in result.calls:
                            model_id = models.store.register_model(identity)
                            models.store.put_many(model_id, kind, calls, *args, **kwargs)
                        done.append(result)
                        bar.update(1)
            except BaseException:
                for ref in pending:
                    ray.cancel(ref)
                raise
        return done
    finally:
        if started:
            ray.shutdown()
