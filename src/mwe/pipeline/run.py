"""Run: generate -> filter -> evaluate every target model, all in one run folder.

    DIR/spec.json, generated.jsonl, generate.json   (generate)
    DIR/scored.jsonl, dataset.jsonl, card.json, card.md   (filter)
    DIR/results/rows.jsonl, summary.csv, summary.json   (evaluate)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from mwe import __version__
from mwe.card import add_usage
from mwe.cost import UsageLedger
from mwe.datasets import Dataset, load_file
from mwe.errors import MweError
from mwe.families import by_name
from mwe.family import StagedBuilder
from mwe.io import adopt_outputs, claim_outputs, clear_outputs
from mwe.judge import open_judge
from mwe.models import Models
from mwe.pipeline.evaluate import (
    EXTRA_FILES,
    OUTPUT_FILES,
    ModelRun,
    evaluate_methods,
    select,
    write_outputs,
)
from mwe.pipeline.filter import run_filter
from mwe.pipeline.generate import generate
from mwe.pipeline.generate import plan as plan_generation
from mwe.pipeline.methods import METHOD_FILES
from mwe.pipeline.replies import TextScoring
from mwe.results import Card, PlanRow
from mwe.run_folder import ROWS, SUMMARY_CSV, SUMMARY_JSON, RunFolder
from mwe.spec import BehaviorSpec, load_spec

RESULT_FILES = (ROWS, SUMMARY_CSV, SUMMARY_JSON, *EXTRA_FILES, *METHOD_FILES)


def evaluate_dataset(spec: BehaviorSpec, out: Path, models: Models, progress: bool = True
                     ) -> list[ModelRun]:
    path = RunFolder(out).dataset
    if not path.read_text(encoding="utf-8").strip():
        print(f"{path} has no rows (nothing passed the filter): nothing to evaluate",
              file=sys.stderr)
        return []
    ds = load_file(path, spec.name)
    if not isinstance(ds, Dataset):
        raise MweError(f"{path}: {ds.reason}")
    datasets = select([ds], orders=spec.evaluate_orders)
    text = None
    if "text" in spec.evaluate_score.split(","):
        judge = None if spec.evaluate_judge is None else open_judge(models, spec.evaluate_judge)
        text = TextScoring(**spec.evaluate_text, judge=judge)
    runs = evaluate_methods([(f"evaluate ({t})", models.open(t)) for t in spec.targets],
                            datasets, spec.evaluate_format, spec.evaluate_score, progress,
                            text=text)
    settings: dict[str, Any] = {
        "models": list(spec.targets), "data": [str(path)], "format": spec.evaluate_format,
        "limit": None, "mwe_version": __version__,
        "datasets": [{"name": d.name, "path": str(path), "family": d.family,
                      "n": len(d.items)} for d in datasets]}
    if spec.evaluate_score != "logprob":  # only then, as `mwe evaluate` writes it
        settings["score"] = {"method": spec.evaluate_score,
                             **(text.to_dict() if text else {})}
    if spec.evaluate_orders == "all":
        settings["orders"] = "all"
    write_outputs(RunFolder(out).results.path, runs, settings)
    return runs


def staged(spec: BehaviorSpec) -> bool:
    """Whether the spec's family is built by mwe generate and mwe filter (else in one step)."""
    return isinstance(by_name(spec.family).builder, StagedBuilder)


STAGES = ("generate", "filter", "evaluate")


def model_uses(spec: BehaviorSpec, stages: Sequence[str] = STAGES) -> list[tuple[str, str]]:
    """Every (spec field, model string) the stages will call. A family built in one step
    uses the discriminator only where it requires one."""
    family = by_name(spec.family)
    uses = [("generator", spec.generator)] if "generate" in stages else []
    if "filter" in stages and (isinstance(family.builder, StagedBuilder)
                               or "discriminator" in family.schema.required):
        uses.append(("discriminator", spec.discriminator))
    if "evaluate" in stages:
        uses += [(f"targets[{i}]", t) for i, t in enumerate(spec.targets)]
        if spec.evaluate_judge is not None:
            uses.append(("evaluate.judge", spec.evaluate_judge))
    return uses


def check_spec_models(spec: BehaviorSpec, models: Models, stages: Sequence[str] = STAGES
                      ) -> None:
    """Fail, naming every model that cannot be used, before the stages call any."""
    embedding = [*(["generate.dedup"] if "generate" in stages
                   and spec.generate.dedup == "embedding" else []),
                 *(["filter.rebalance"] if "filter" in stages
                   and spec.filter.rebalance == "cluster" else [])]
    models.check(model_uses(spec, stages), embedding)


def check_filter_models(folder: Path, discriminator: str | None, models: Models) -> None:
    """`mwe filter`: the discriminator of the generate folder's spec (or the one given)."""
    path = RunFolder(folder).spec
    if not path.is_file():
        return  # run_filter says what is missing
    spec = load_spec(path)
    check_spec_models(replace(spec, discriminator=discriminator) if discriminator else spec,
                      models, ("filter",))


def plan(spec: BehaviorSpec, models: Models) -> tuple[list[PlanRow], list[str]]:
    """What `mwe run` would call (--dry-run), calling nothing: generation exactly (every draw
    is known in advance, and the cache is asked what it holds); filtering and evaluation at
    most, since they depend on how many samples survive. Rows as `print_plan` shows them.
    Every model is checked first: a model that cannot be used fails the dry run."""
    check_spec_models(spec, models)
    builder = by_name(spec.family).builder
    per_example = 60  # tokens of a discriminator or evaluation prompt, about
    if isinstance(builder, StagedBuilder):
        n = spec.generate.per_label * len(builder.labels)  # at most this many reach the filter
        kept = min(n, spec.filter.top_k * len(builder.labels))
        rows = [plan_generation(spec, builder, models.open(spec.generator)),
                PlanRow("filter (at most)", spec.discriminator, spec.discriminator, n, 0,
                        n * per_example, 0)]
        notes = [f"filter and evaluate: at most {n} samples reach the filter and {kept} rows "
                 f"the targets (about {per_example} tokens each)"]
    else:
        built = builder.plan(spec, models)
        rows, notes, kept, per_example = (list(built.calls), built.notes, built.rows,
                                          built.row_tokens)
        notes = [*notes, f"evaluate: at most {kept} rows reach each target (about "
                         f"{per_example} tokens each)"]
    rows += [PlanRow("evaluate (at most)", t, t, kept, 0, kept * per_example, 0)
             for t in spec.targets]
    return rows, notes


def check_results(out: Path) -> None:
    """results/ of a run folder: replaced only where mwe's manifest lists the files. A run
    folder from an mwe before manifests (spec.json written by mwe beside results/) resumes:
    the result files there are listed as mwe's first."""
    run = RunFolder(out)
    try:
        spec = json.loads(run.spec.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        spec = None
    if isinstance(spec, dict) and {"name", "family", "generator"} <= spec.keys():
        adopt_outputs(run.results.path, RESULT_FILES)
    claim_outputs(run.results.path, OUTPUT_FILES)


def run_all(spec: BehaviorSpec, out: Path, models: Models, progress: bool = True,
            ledger: UsageLedger | None = None) -> tuple[Card, list[ModelRun]]:
    """The stages in one folder; `ledger` notes each stage's tokens (written as usage.csv)."""
    check_spec_models(spec, models)  # before the first call: a bad target must not cost a generation
    ledger = ledger or UsageLedger()
    builder = by_name(spec.family).builder
    if isinstance(builder, StagedBuilder):
        generate(spec, out, models, progress)
        ledger.stage("generate", models)
        card = run_filter(out, out, models, progress=progress)
        ledger.stage("filter", models)
    else:
        card = builder.build(spec, out, models, progress)
        ledger.stage("build", models)
    add_usage(out, ledger.rows)  # what building the dataset took, in its card
    card = card.with_usage(ledger.rows)
    runs = evaluate_dataset(spec, out, models, progress) if spec.targets else []
    ledger.stage("evaluate", models)
    if not runs:  # no results now: none from an earlier run in this folder either
        clear_outputs(RunFolder(out).results.path)  # only what the manifest lists as mwe's
    ledger.write(RunFolder(out).usage)
    return card, runs
