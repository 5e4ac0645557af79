"""Suites: many behaviors generated, filtered and evaluated together (`mwe run SUITE`).

Every behavior is built into DIR/NAME/ by exactly the stages `mwe run` runs for a spec
(`run_all`), so a behavior's folder is the single-spec run's. What the suite adds is pooling:
before the behaviors run, the calls they will make are made together, one stage at a time,
through the one cache, and each behavior's run then finds its calls there:

(Pooled are the models behind an API, see `pooled`; a local model's calls are made by each
behavior's run, the model loaded once for the suite.)

1. generation: every staged behavior's draws are known in advance; draws with the same
   generator and sampling settings (the same chunk of different behaviors) go to the model in
   one call: one concurrency window, and with `batch=1` one provider batch for all of them;
2. the staged behaviors' samples are parsed and deduplicated (`generate`, from the cache);
3. filtering: every discriminator request of every staged behavior in one `score` call per
   discriminator; behaviors built in one step (sycophancy, sandbagging, ...) are built here;
4. evaluation: every target scores every behavior's dataset (and its controls) in one call;
5. each behavior's `run_all` writes its folder, every call now read from the cache.

Models are opened once per model string for the whole suite (`SharedModels`), so a local
model is loaded once. A behavior that fails (a description for which no sample parses, a
bank that does not read) is recorded with its reason and the others go on; the exit status
says the suite is partial. Killed at any point, the same command resumes: the calls made are
in the cache, and a behavior whose folder is finished for the same spec is not run again.

Outputs beside the behaviors' folders: suite.json and suite.csv (the index), sweep/ (every
target over every behavior's dataset: trends and agreement) and report.html.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mwe import __version__
from mwe.cost import USAGE_COLUMNS, UsageLedger
from mwe.datasets import Dataset, load_file
from mwe.errors import MweError
from mwe.families import by_name
from mwe.family import StagedBuilder
from mwe.io import write_csv, write_json
from mwe.models import REMOTE_BACKENDS, Models, Sampling, parse_spec
from mwe.models.base import Prompt, ScoreRequest
from mwe.pipeline.evaluate import requests_for, with_variants
from mwe.pipeline.filter import read_generated, run_filter
from mwe.pipeline.generate import generate
from mwe.pipeline.rollout import has_rollout
from mwe.pipeline.run import check_results, run_all
from mwe.run_folder import RunFolder
from mwe.spec import BehaviorSpec

SUITE_JSON, SUITE_CSV = "suite.json", "suite.csv"
SUITE_COLUMNS = ["behavior", "family", "status", "reason", "rows", "kept_per_label",
                 "mean_label_confidence", "seconds", "cost_usd", "results"]


@dataclass
class Behavior:
    """One behavior of the suite and what became of it."""

    spec: BehaviorSpec
    out: Path
    status: str = "pending"  # pending, done, failed
    reason: str = ""
    seconds: float = 0.0
    resumed: bool = False
    index: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.spec.name

    def fail(self, exc: Exception) -> None:
        self.status, self.reason = "failed", str(exc)
        print(f"mwe: {self.name}: {exc} (the other behaviors go on)", file=sys.stderr)


def finished(b: Behavior) -> bool:
    """A folder an earlier run of the suite finished for the same spec: not run again."""
    run = RunFolder(b.out)
    try:
        written = json.loads(run.spec.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if written != json.loads(json.dumps(b.spec.resolved_dict())) or not run.card_json.is_file():
        return False
    return not b.spec.targets or run.results.summary_json.is_file()


# --- pooled calls, one stage at a time ------------------------------------------------------
#
# Only models behind an API are pooled: they have a concurrency window and provider batches to
# share, and their answers do not depend on what else is in a call. A local model has neither
# (it is loaded once for the suite all the same), and its fp32 results move in the last bits
# with the composition of a batch, so its calls are left to each behavior's own run, which
# then makes exactly the calls the single-spec run makes.

def pooled(spec: str) -> bool:
    return parse_spec(spec)[0] in REMOTE_BACKENDS


def pool_failed(what: str, exc: MweError) -> None:
    """A pooled call that fails (one behavior's request refused) does not end the suite:
    each behavior's own run then asks for its calls (those committed are cached) and fails,
    or not, on its own."""
    print(f"mwe: pooled {what} failed ({exc}); each behavior's run retries its own calls",
          file=sys.stderr)


def score_pooled(models: Models, requests: dict[str, list[ScoreRequest]], stage: str,
                 progress: bool) -> None:
    """Each model's requests of every behavior in one `score` call (committed in chunks)."""
    for spec, reqs in requests.items():
        with tqdm(total=len(reqs), desc=f"suite: {stage} ({spec})", unit="request",
                  disable=not progress) as bar:
            try:
                models.open(spec).score(reqs, on_progress=bar.update)
            except MweError as exc:
                pool_failed(f"{stage} ({spec})", exc)


def pool_generation(live: Sequence[Behavior], models: Models, progress: bool) -> None:
    """Every staged behavior's draws, grouped by generator and sampling: one call each."""
    groups: dict[tuple[str, Sampling], list[Prompt]] = {}
    for b in live:
        builder = by_name(b.spec.family).builder
        if not isinstance(builder, StagedBuilder):
            continue
        try:
            chunks, _ = builder.draws(b.spec, models.open(b.spec.generator),
                                      builder.prepare(b.spec))
        except MweError as exc:
            b.fail(exc)
            continue
        for chunk in chunks if pooled(b.spec.generator) else []:
            groups.setdefault((b.spec.generator, chunk[0].sampling), []).extend(
                d.prompt for d in chunk)
    bar = tqdm(total=sum(len(p) for p in groups.values()), desc="suite: generate",
               unit="prompt", disable=not progress)
    for (spec, sampling), prompts in groups.items():
        try:
            models.open(spec).generate(prompts, sampling)
        except MweError as exc:
            pool_failed(f"generation ({spec})", exc)
        bar.update(len(prompts))
    bar.close()


def pool_filter(live: Sequence[Behavior], models: Models, progress: bool) -> None:
    """Every staged behavior's samples (from the cache), then every discriminator request of
    all of them in one call per discriminator."""
    requests: dict[str, list[ScoreRequest]] = {}
    for b in live:
        builder = by_name(b.spec.family).builder
        if b.status != "pending" or not isinstance(builder, StagedBuilder):
            continue
        try:
            generate(b.spec, b.out, models, progress=False)
            written, records, _ = read_generated(b.out)
            disc = models.open(written.discriminator)
            for r in records if pooled(written.discriminator) else []:
                if r["status"] == "ok":
                    requests.setdefault(written.discriminator, []).extend(
                        builder.discriminator_requests(written, disc, r["text"],
                                                       disc.rewards))
        except MweError as exc:
            b.fail(exc)
    score_pooled(models, requests, "filter", progress)
    for b in live:  # each dataset written now (from the cache), for evaluation's pool
        if b.status == "pending" and isinstance(by_name(b.spec.family).builder, StagedBuilder):
            try:
                run_filter(b.out, b.out, models, progress=False)
            except MweError as exc:
                b.fail(exc)


def pool_evaluation(live: Sequence[Behavior], models: Models, progress: bool) -> None:
    """Every target's log-prob requests over every behavior's dataset and controls, in one
    call per target (behaviors scored by their replies, or whose conversations need the
    model's own turns, are scored by their own runs)."""
    per_target: dict[str, list[ScoreRequest]] = {}
    for b in live:
        if b.status != "pending" or b.spec.evaluate_score != "logprob":
            continue
        path = RunFolder(b.out).dataset
        if not path.is_file() or not path.read_text(encoding="utf-8").strip():
            continue
        ds = load_file(path, b.spec.name)
        if not isinstance(ds, Dataset):
            continue
        for d in with_variants([ds]):
            if has_rollout(d):
                continue
            for t in filter(pooled, b.spec.targets):
                per_target.setdefault(t, []).extend(
                    requests_for(models.open(t), d, b.spec.evaluate_format))
    score_pooled(models, per_target, "evaluate", progress)


def build_one_step(live: Sequence[Behavior], models: Models, progress: bool) -> None:
    """Behaviors built in one step have no draws known in advance: their build runs here,
    with the shared models (each later run finds its calls cached)."""
    for b in live:
        builder = by_name(b.spec.family).builder
        if b.status == "pending" and not isinstance(builder, StagedBuilder):
            try:
                builder.build(b.spec, b.out, models, progress)
            except MweError as exc:
                b.fail(exc)


# --- the suite --------------------------------------------------------------------------------

def run_behavior(b: Behavior, models: Models, progress: bool) -> None:
    """`mwe run`'s stages into the behavior's folder; usage.csv counts its own calls."""
    start = time.perf_counter()
    try:
        check_results(b.out)
        ledger = UsageLedger()
        ledger.stage("before", models)  # the counters so far belong to other behaviors
        ledger.rows.clear()
        ledger.computed.clear()
        run_all(b.spec, b.out, models, progress, ledger)
        rows = RunFolder(b.out).dataset.read_text(encoding="utf-8").strip()
        b.status = "done" if rows else "failed"
        if not rows:
            b.reason = ("no rows: no example passed construction and the filter (the card "
                        "says where they were dropped)")
    except MweError as exc:
        b.fail(exc)
    b.seconds = time.perf_counter() - start


def run_suite(specs: Sequence[BehaviorSpec], out: Path, models: Models, progress: bool = True,
              ray: str | None = None) -> list[Behavior]:
    """Every behavior into out/NAME/, the calls pooled stage by stage (see the module); with
    `ray` (an address, or "" for RAY_ADDRESS or a new local Ray), each unfinished behavior is
    first built on a Ray worker and its calls committed here (mwe.pipeline.ray_suite)."""
    behaviors = [Behavior(s, out / s.name) for s in specs]
    for b in behaviors:
        if finished(b):
            b.status, b.resumed = "done", True
    live = [b for b in behaviors if b.status == "pending"]
    if ray is not None and live:
        from mwe.pipeline.ray_suite import build_on_ray

        build_on_ray([b.spec for b in live], models, ray or None, progress)
    for b in live:
        b.out.mkdir(parents=True, exist_ok=True)
    if live:
        pool_generation(live, models, progress)
        pool_filter(live, models, progress)
        build_one_step(live, models, progress)
        pool_evaluation(live, models, progress)
    for b in live:
        if b.status == "pending":
            run_behavior(b, models, progress)
    for b in behaviors:
        b.index = index_row(b)
    return behaviors


def index_row(b: Behavior) -> dict[str, Any]:
    """What suite.csv says of one behavior: its counts, balance, confidence, results, cost."""
    row: dict[str, Any] = {"behavior": b.name, "family": b.spec.family, "status": b.status,
                           "reason": b.reason, "seconds": round(b.seconds, 1)}
    run = RunFolder(b.out)
    if b.status != "done":
        return row
    card = json.loads(run.card_json.read_text(encoding="utf-8"))
    row["rows"] = card.get("rows")
    row["counts"] = card.get("counts")
    kept = {label: c.get("kept") for label, c in (card.get("counts") or {}).items()
            if isinstance(c, dict) and "kept" in c}
    row["kept_per_label"] = "; ".join(f"{k}: {v}" for k, v in kept.items())
    confidences = []
    if run.dataset.is_file():
        for line in run.dataset.read_text(encoding="utf-8").splitlines():
            value = json.loads(line).get("label_confidence") if line.strip() else None
            if isinstance(value, int | float):
                confidences.append(float(value))
    row["mean_label_confidence"] = (round(sum(confidences) / len(confidences), 4)
                                    if confidences else None)
    results = []
    if run.results.summary_json.is_file():
        summary = json.loads(run.results.summary_json.read_text(encoding="utf-8"))
        results = [{k: s.get(k) for k in ("model", "dataset", "n", "pct_matching", "ci_low",
                                          "ci_high")} for s in summary.get("summary", [])]
    row["results_by_target"] = results
    row["results"] = "; ".join(
        f"{r['model']} {r['dataset']}: {r['pct_matching']:.1f}% [{r['ci_low']:.1f}, "
        f"{r['ci_high']:.1f}]" for r in results if isinstance(r.get("pct_matching"), float))
    cost = 0.0
    if run.usage.is_file():
        import csv

        with run.usage.open(encoding="utf-8") as fh:
            for u in csv.DictReader(fh):
                cost += float(u["cost_usd"]) if u.get("cost_usd") else 0.0
    row["cost_usd"] = round(cost, 6)
    return row


def write_index(out: Path, name: str, behaviors: Sequence[Behavior], extra: dict[str, Any]
                ) -> dict[str, Path]:
    paths = {"suite_json": out / SUITE_JSON, "suite_csv": out / SUITE_CSV}
    write_json(paths["suite_json"], {
        "suite": name, "mwe_version": __version__,
        "behaviors": [b.index for b in behaviors],
        "done": sum(b.status == "done" for b in behaviors),
        "failed": [{"behavior": b.name, "reason": b.reason} for b in behaviors
                   if b.status == "failed"], **extra})
    write_csv(paths["suite_csv"], [{k: b.index.get(k) for k in SUITE_COLUMNS}
                                   for b in behaviors], SUITE_COLUMNS)
    paths["suite_html"] = write_page(out, name, behaviors, extra.get("report"),
                                     Path(extra["map"]) if extra.get("map") else None)
    return paths


SUITE_HTML = "suite.html"


def write_page(out: Path, name: str, behaviors: Sequence[Behavior], report: str | None,
               map_page: Path | None = None) -> Path:
    """suite.html: the index as a page, each behavior linking its card, dataset, results and
    map (the files that exist), and the suite's report."""
    from mwe.io import atomic_open
    from mwe.report.render import environment, stylesheet

    lines = []
    for b in behaviors:
        run = RunFolder(b.out)
        files = (("card", run.card_md), ("dataset", run.dataset),
                 ("results", run.results.summary_csv))
        links = [(label, f.relative_to(out).as_posix()) for label, f in files if f.is_file()]
        if b.status == "done" and map_page is not None:
            links.append(("map", map_page.relative_to(out).as_posix()))
        lines.append({**{k: None for k in SUITE_COLUMNS}, "results_by_target": [],
                      **b.index, "links": links})
    page = environment().get_template("suite_page.html.j2").render(
        title=f"mwe suite: {name}", version=__version__, css=stylesheet(), behaviors=lines,
        done=sum(b.status == "done" for b in behaviors),
        failed=sum(b.status == "failed" for b in behaviors),
        report=Path(report).name if report else None)
    path = out / SUITE_HTML
    with atomic_open(path) as fh:
        fh.write(page)
    return path


assert "cost_usd" in USAGE_COLUMNS  # the index sums usage.csv's cost column
