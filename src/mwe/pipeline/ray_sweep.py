"""`mwe sweep --ray [ADDRESS]`: the units of a sweep as Ray tasks, the results as a local sweep's.

A unit is one model on one chunk of one dataset: the questions that `CachedModel.score`
scores and commits together (MWE_SCORE_CHUNK, default 256), cut at the same positions (with
--score text, one whole dataset's replies: mwe.pipeline.ray_replies). The driver (the machine
running `mwe sweep`) keeps the one cache; a worker may be anywhere:

1. Identity. Where a model's tasks ask for no GPU and the format is not `chat`, the driver
   computes the model's identity as a local sweep does; otherwise (the identity of an hf model
   names its GPU; chat prompts come from the model's template) one small task per model on
   the cluster, with the model's resource requests, gives the identity (and the chat prompts).
2. Plan. In the local sweep's order (model, dataset, chunk), a unit whose answers are all in
   the driver's store, or computed by an earlier unit of the same identity, is not sent. Each
   unit sent carries the stored answers of its questions and waits for the earlier units it
   shares questions with: its worker then computes exactly the requests the local sweep would
   compute in that chunk, in one batch of the same composition.
3. Work (mwe.pipeline.ray_units). A worker scores its unit with `evaluate_model` on a
   `CachedModel` over a throwaway store of its own, and returns the rows and the (key, input,
   output) calls it computed. Its loaded model stays in the worker process for the next unit
   of that model. Ray reruns a unit whose worker died (`max_retries`).
4. Commit. The driver writes each unit's calls into its store as soon as the unit arrives, so
   a driver killed mid-sweep loses only the units in flight and the next run resumes.
5. Write. The driver reads every answer back from its store with `evaluate_model`, exactly as a
   fully cached local sweep does, checks the rows against the workers', and writes the sweep
   through `write_sweep`: the files are byte for byte those of `mwe sweep` without --ray.

Byte-identity holds when workers and the local sweep use the same backend settings: the
driver sends its MWE_* variables (MWE_THREADS, MWE_DEVICE, ...), HF_HUB_OFFLINE,
TRANSFORMERS_OFFLINE and TOKENIZERS_PARALLELISM with every task (API keys are not sent: set
them on the nodes). Thread counts: torch's fp32 log-probs move in the last bits with the
thread count (llama.cpp's do not), so for hf models give the workers the local sweep's count
(MWE_THREADS, or ?threads=N on the model string); several CPU workers on one node also want
it to match their num_cpus. Every node needs mwe and the models' backends installed; model
files are found on the worker. A worker process loads each model it gets a unit of once and
keeps the last one, so units are sent model by model.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mwe import prompts, settings
from mwe.datasets import Dataset
from mwe.errors import MweError
from mwe.models import CachedModel, LanguageModel, Models
from mwe.models.base import Prompt, prompt_json
from mwe.pipeline.evaluate import evaluate_model
from mwe.pipeline.ray_replies import reply_requests, reply_unit
from mwe.pipeline.ray_units import Call, Probe, UnitResult, probe_model, score_unit
from mwe.pipeline.replies import TextScoring
from mwe.pipeline.sweep import Swept, write_sweep
from mwe.series import Series, SeriesModel
from mwe.store import Store, digest

# environment variables every task gets from the driver (besides every MWE_* but the cache's)
FORWARDED = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM")
# Ray reruns a unit whose worker process or node died this many times (not a unit that
# raised: an error in the data or the model is the same on every try)
MAX_RETRIES = 3


def ray_module() -> Any:
    try:
        import ray
    except ImportError:
        raise MweError("--ray needs Ray: pip install 'mwe[ray]' (or 'ray[default]')") from None
    return ray


def forwarded_env() -> dict[str, str]:
    mine = settings.env_name("cache_dir")  # the driver's cache folder is no worker's
    return {k: v for k, v in os.environ.items()
            if (k.startswith(settings.PREFIX) and k != mine) or k in FORWARDED}


# ---- the driver's side ------------------------------------------------------------------
class StoredModel(CachedModel):
    """A model whose every answer is in the driver's store: no backend, chat prompts as its
    workers gave them."""

    def __init__(self, spec: str, probe: Probe, store: Store) -> None:
        super().__init__(spec, probe.identity, self.missing, store, probe.rewards)
        self.prompts = probe.chat

    def missing(self) -> LanguageModel:
        raise MweError(f"{self.spec}: an answer is missing from the store after the Ray sweep")

    def chat(self, user: str | Sequence[tuple[str, str]]) -> Prompt:
        if not isinstance(user, str):  # a conversation: rollout families run locally only
            raise MweError(f"{self.spec}: a conversation's chat prompt is not sent by the "
                           "workers; run this sweep without --ray")
        if self.prompts is None or user not in self.prompts:
            raise MweError(f"{self.spec}: no chat prompt from the workers for {user[:60]!r}")
        return self.prompts[user]


@dataclass
class Unit:
    """One model on one chunk of one dataset, in the local sweep's order."""

    model: int  # index in series.models
    dataset: int  # index in datasets
    start: int
    stop: int

    def describe(self, series: Series, datasets: list[Dataset]) -> str:
        return (f"{series.models[self.model].label} on {datasets[self.dataset].name} "
                f"(rows {self.start + 1}-{self.stop})")


@dataclass
class Plan:
    """What a Ray sweep sends: the units to compute and how many rows are already stored."""

    units: list[Unit] = field(default_factory=list)
    # rows of the units not sent: every answer is in the store or computed by a unit before
    stored_rows: int = 0
    # per unit sent: the stored answers it needs, and the earlier units (by index in `units`)
    # that compute the others it shares with them
    known: list[list[Call]] = field(default_factory=list)
    after: list[list[int]] = field(default_factory=list)


def requests_of(model: CachedModel, dataset: Dataset, fmt: str
                ) -> tuple[list[str], list[dict[str, Any]]]:
    """The cache keys and inputs of a dataset's questions, as evaluate_model and
    CachedModel.score make them."""
    chat = model.chat if fmt == "chat" else None
    contexts = [prompts.context(item, fmt, chat) for item in dataset.items]
    inputs = [{"context": prompt_json(c),
               "continuations": [prompts.continuation(a, c) for a in item.answers]}
              for item, c in zip(dataset.items, contexts)]
    return [digest(i) for i in inputs], inputs


def plan(series: Series, datasets: list[Dataset], fmt: str, store: Store,
         models: list[StoredModel], chunk: int, kind: str = "score",
         requests: Callable[[CachedModel, Dataset, str], tuple[list[str], list[Any]]]
         = requests_of) -> Plan:
    """The units to send: `requests` gives a dataset's cache keys and inputs of `kind`."""
    out = Plan()
    # per model identity: the key -> the unit (index in out.units) that computes it
    owner: dict[str, dict[str, int]] = {}
    for mi, model in enumerate(models):
        owned = owner.setdefault(model.model_id, {})
        for di, ds in enumerate(datasets):
            keys, inputs = requests(model, ds, fmt)
            stored = store.get_many(model.model_id, kind, keys)
            for start in range(0, len(keys), chunk):
                stop = min(start + chunk, len(keys))
                ks = keys[start:stop]
                if all(k in stored or k in owned for k in ks):
                    # nothing to compute: the local sweep finds every answer in its cache here
                    out.stored_rows += stop - start
                    continue
                index = len(out.units)
                out.units.append(Unit(mi, di, start, stop))
                seen: set[str] = set()
                known: list[Call] = []
                for k, i in zip(ks, inputs[start:stop]):
                    if k in stored and k not in seen:
                        seen.add(k)
                        known.append((k, i, stored[k]))
                out.known.append(known)
                out.after.append(sorted({owned[k] for k in ks if k in owned}))
                for k in ks:
                    if k not in stored:
                        owned.setdefault(k, index)
    return out


def identities(series: Series, fmt: str, models: Models, datasets: list[Dataset],
               env: dict[str, str], ray: Any, retries: int) -> list[StoredModel]:
    """Each series model's identity, from the driver where that is where it would be the same,
    else from a task on the cluster with the model's resources."""
    probes: dict[int, Any] = {}
    found: dict[int, Probe] = {}
    users = sorted({item.user_text for d in datasets for item in d.items}) \
        if fmt == "chat" else None
    remote = ray.remote(probe_model)
    for i, m in enumerate(series.models):
        if fmt != "chat" and not m.num_gpus:
            try:
                local = models.open(m.model)
                found[i] = Probe(local.identity(), local.rewards, None)
                continue
            except MweError:
                pass  # e.g. the backend is installed on the workers only: ask one of them
        probes[i] = remote.options(**task_options(m, "probe", retries)).remote(
            m.model, env, users)
    for i, ref in probes.items():
        try:
            found[i] = ray.get(ref)
        except Exception as exc:
            raise MweError(f"{series.models[i].label}: {cause(exc)}") from None
    # series specs are redacted already, as the local sweep opens them
    return [StoredModel(m.model, found[i], models.store) for i, m in enumerate(series.models)]


def task_options(m: SeriesModel, name: str, retries: int) -> dict[str, Any]:
    return {**m.resources(), "max_retries": retries, "retry_exceptions": False,
            "name": f"mwe-{name}:{m.label}"}


def cause(exc: BaseException) -> str:
    """A failed task's own error, without Ray's wrapping where there is one."""
    inner = getattr(exc, "cause", None)
    err = inner if isinstance(inner, BaseException) else exc
    return str(err) if isinstance(err, MweError) else f"{type(err).__name__}: {err}"


def connect(address: str | None) -> tuple[Any, bool]:
    """Ray, connected: to ADDRESS ("auto", "ray://HOST:10001", "HOST:6379"), or where
    RAY_ADDRESS points, or a new local cluster. True when this call started the connection."""
    ray = ray_module()
    if ray.is_initialized():
        return ray, False
    import logging

    where = address or os.environ.get("RAY_ADDRESS")
    if where:
        answers(where, address)
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except Exception as exc:
        raise MweError(f"--ray {address or ''}: cannot connect to Ray ({exc})") from None
    return ray, True


def answers(where: str, address: str | None) -> None:
    """Fail at once when nothing listens at HOST:PORT (Ray itself would wait for minutes)."""
    host, sep, port = where.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", "local": Ray finds the cluster itself, or says it cannot
    flag = f"--ray {address}" if address else f"RAY_ADDRESS={where}"
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise MweError(f"{flag}: no Ray cluster answers there ({exc.strerror or exc}); start one "
                       "with 'ray start --head', or give the address it printed") from None


def ray_sweep(series: Series, datasets: list[Dataset], fmt: str, out: Path, models: Models,
              address: str | None = None, progress: bool = True,
              max_retries: int = MAX_RETRIES,
              on_unit: Callable[[Unit, UnitResult], None] | None = None,
              text: TextScoring | None = None) -> Swept:
    """`sweep` with its units as Ray tasks; the same return value and the same files.
    `on_unit` is called as each unit's answers are committed (tests, progress elsewhere)."""
    ray, started = connect(address)
    try:
        return run_plan(ray, series, datasets, fmt, out, models, progress, max_retries,
                        on_unit, text)
    finally:
        if started:
            ray.shutdown()


def run_plan(ray: Any, series: Series, datasets: list[Dataset], fmt: str, out: Path,
             models: Models, progress: bool, retries: int,
             on_unit: Callable[[Unit, UnitResult], None] | None,
             text: TextScoring | None = None) -> Swept:
    env = forwarded_env()
    chunk = settings.current().score_chunk
    start = time.perf_counter()
    stored = identities(series, fmt, models, datasets, env, ray, retries)
    # the models that read the answers back are the sweep's models for the usage ledger
    # (usage.csv), as the ones `Models.open` gives are in a local sweep
    opened = getattr(models, "opened", None)
    if isinstance(opened, list):
        opened.extend(stored)
    how: tuple[Any, ...] = ()  # what a unit's task takes after the format
    if text is None:
        work = plan(series, datasets, fmt, models.store, stored, chunk)
        remote = ray.remote(score_unit)
    else:  # replies: a unit is a whole dataset, asked in one call (mwe.pipeline.ray_replies)
        work = plan(series, datasets, fmt, models.store, stored, sys.maxsize, "reply",
                    reply_requests(text.sampling()))
        remote, how = ray.remote(reply_unit), (text.sampling(),)
    n_rows = sum(len(d.items) for d in datasets)
    print(f"ray: {len(work.units)} units to score, {work.stored_rows} rows already in the "
          "store", file=sys.stderr)
    refs: list[Any] = []  # per unit; a later unit takes the results of those it waits for
    pending: dict[Any, int] = {}
    for index, unit in enumerate(work.units):
        m = series.models[unit.model]
        ds = datasets[unit.dataset]
        part = Dataset(ds.name, ds.path, ds.family, ds.items[unit.start:unit.stop])
        ref = remote.options(**task_options(m, "score", retries)).remote(
            m.model, env, stored[unit.model].identity(), fmt, *how, part, work.known[index],
            *(refs[j] for j in work.after[index]))
        refs.append(ref)
        pending[ref] = index
    del refs  # a result is kept (by Ray) only while a unit waiting for it is not done
    rows: dict[int, str] = {}  # per unit: the digest of the rows its worker scored
    computed = [0] * len(series.models)
    tokens = [[0, 0] for _ in series.models]  # computed by the workers, per model
    with tqdm(total=n_rows * len(series.models), initial=work.stored_rows, desc="sweep (ray)",
              unit="row", disable=not progress, file=sys.stderr, smoothing=0.1) as bar:
        try:
            while pending:
                ready, rest = ray.wait(list(pending), num_returns=1)
                if rest:  # and whatever else has arrived meanwhile
                    ready += ray.wait(rest, num_returns=len(rest), timeout=0)[0]
                for ref in ready:
                    index = pending.pop(ref)
                    unit = work.units[index]
                    try:
                        result: UnitResult = ray.get(ref)
                    except Exception as exc:
                        raise MweError(f"{unit.describe(series, datasets)}: {cause(exc)}"
                                       ) from None
                    model = stored[unit.model]
                    if result.model_id != model.model_id:
                        raise MweError(f"{unit.describe(series, datasets)}: the worker scored "
                                       "another model identity than the plan's")
                    for kind, calls, args, kwargs in result.calls:
                        models.store.put_many(model.model_id, kind, calls, *args, **kwargs)
                    if text is None:  # replies: read (and judged) by the driver only
                        rows[index] = digest(result.rows)
                    computed[unit.model] += result.computed_rows
                    tokens[unit.model][0] += result.tokens[0]
                    tokens[unit.model][1] += result.tokens[1]
                    bar.update(unit.stop - unit.start)
                    if on_unit is not None:
                        on_unit(unit, result)
        except BaseException:
            for ref in pending:
                ray.cancel(ref)
            raise
    runs = []
    offsets = [sum(len(d.items) for d in datasets[:i]) for i in range(len(datasets))]
    for mi, model in enumerate(stored):
        run = evaluate_model(model, datasets, fmt, text=text)
        # every answer was read back from the store; those the workers computed count as
        # computed, here and in the model's own counts (what the usage ledger prints)
        run.computed_rows = computed[mi]
        run.cached_rows = n_rows - computed[mi]
        model.hits -= computed[mi]
        model.misses += computed[mi]
        # and their tokens are those of calls computed now (priced as such), not read back
        t = model.tokens
        t.cached_in -= tokens[mi][0]
        t.cached_out -= tokens[mi][1]
        t.computed_in += tokens[mi][0]
        t.computed_out += tokens[mi][1]
        run.seconds = time.perf_counter() - start
        runs.append(run)
    for index, scored in rows.items():
        unit = work.units[index]
        at = offsets[unit.dataset] + unit.start
        back = runs[unit.model].held[at:at + unit.stop - unit.start]  # held: not spooled
        if digest([r.to_dict() for r in back]) != scored:
            raise MweError(f"{unit.describe(series, datasets)}: the rows read back from the "
                           "store differ from the worker's")
    return write_sweep(series, datasets, fmt, out, runs, text)
