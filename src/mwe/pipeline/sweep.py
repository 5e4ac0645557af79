"""Sweep: every model of a series over every dataset, then trends.

Outputs in the sweep folder (each written atomically):
    rows.jsonl    one line per (model, question), with the model's label
    results.csv   the tidy table: model, label, axes, dataset, family, n, % matching, CI, ...
    trends.csv    per dataset and axis: slope with a bootstrap 95% interval, direction,
                  and what confounds it; base-vs-tuned differences
    agreement.csv for every ordered pair of models: on how many datasets both prefer or both
                  disprefer the behavior (mwe.agreement), with a Wilson interval
    reversals.csv per dataset: how often % matching changes direction between adjacent sizes
    sweep.json    settings, the series, results and trends together
    .mwe-outputs.json  the files mwe wrote (mwe.io.MANIFEST): a rerun replaces or removes only
                  those, and refuses a folder where it would replace others
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mwe import __version__
from mwe.agreement import (
    AGREEMENT_COLUMNS,
    REVERSAL_COLUMNS,
    ROW_FIELDS,
    agreement_matrix,
    preferences,
    trend_reversals,
)
from mwe.datasets import Dataset
from mwe.families import FAMILIES
from mwe.io import atomic_open, claim_outputs, jsonl_line, write_csv, write_json
from mwe.models import Models, parse_spec
from mwe.pipeline.evaluate import (
    EXTRA_FILES,
    ModelRun,
    evaluate_models,
    summary_columns,
    write_extras,
)
from mwe.pipeline.replies import TextScoring
from mwe.run_folder import ROWS, SWEEP_JSON, USAGE
from mwe.series import Series
from mwe.trends import trend_rows

AXES = ["params", "step", "tuning", "model_family", "quantization", "backend"]
# every file a sweep folder may hold (usage.csv: written by the command after the rest)
SWEEP_FILES = (ROWS, "agreement.csv", "reversals.csv", "results.csv", "trends.csv",
               SWEEP_JSON, USAGE, *EXTRA_FILES)
TREND_COLUMNS = ["dataset", "family", "axis", "unit", "models", "slope", "ci_low", "ci_high",
                 "trend", "confounded"]


Swept = tuple[list[dict[str, Any]], list[dict[str, Any]], list[ModelRun]]


def sweep(series: Series, datasets: list[Dataset], fmt: str, out: Path, models: Models,
          progress: bool = True, text: TextScoring | None = None) -> Swept:
    """Every model in turn on this machine (`mwe sweep`; mwe.pipeline.ray_sweep spreads the
    same work over a Ray cluster and writes through `write_sweep` as well)."""
    runs = evaluate_models([(m.label, models.open(m.model)) for m in series.models], datasets,
                           fmt, progress, text=text)
    return write_sweep(series, datasets, fmt, out, runs, text)


def write_sweep(series: Series, datasets: list[Dataset], fmt: str, out: Path,
                runs: list[ModelRun], text: TextScoring | None = None,
                rescore: dict[str, Any] | None = None) -> Swept:
    """The sweep's files from one finished run per series model (in the series' order): rows
    labelled, results with the axes, trends, agreement, reversals, the families' extras;
    `rescore`: what `mwe rescore` records of itself in sweep.json (mwe.pipeline.rescore)."""
    results: list[dict[str, Any]] = []
    for m, run in zip(series.models, runs):
        axes = {**m.axes(), "backend": parse_spec(m.model)[0]}
        run.held = [row.labelled(m.label) for row in run.held]  # for the families' files
        for s in run.summaries:
            results.append({"label": m.label, **axes, **s.to_dict()})
    trends = trend_rows(results, measures={f.name: f.scorer.measures for f in FAMILIES})
    reversals = trend_reversals(results)
    claim = claim_outputs(out, SWEEP_FILES)
    claim.begin()
    # rows.jsonl streamed from the spools, each row labelled; agreement from what it needs
    kept: list[dict[str, Any]] = []
    with atomic_open(out / ROWS, "wb") as fh:
        for m, run in zip(series.models, runs):
            for row in run.iter_rows():
                written = row.labelled(m.label).to_dict()
                fh.write(jsonl_line(written))
                kept.append({k: written[k] for k in ROW_FIELDS if k in written})
    agreement = agreement_matrix(preferences(kept), [m.label for m in series.models])
    del kept
    write_csv(out / "agreement.csv", agreement, AGREEMENT_COLUMNS)
    write_csv(out / "reversals.csv", reversals, REVERSAL_COLUMNS)
    columns = summary_columns([s for run in runs for s in run.summaries])
    write_csv(out / "results.csv", results, ["label", *columns[:1], *AXES, *columns[1:]])
    write_csv(out / "trends.csv", trends, TREND_COLUMNS)
    extras = write_extras(out, [row for r in runs for row in r.extra_rows()], results)
    write_json(out / SWEEP_JSON, {
        "mwe_version": __version__, "format": fmt,
        # only for free-text scoring: a log-prob sweep's file reads as it always has
        **({"score": {"method": "text", **text.to_dict()}} if text is not None else {}),
        **({"rescore": rescore} if rescore is not None else {}),
        "series": series.name,
        "models": [{"model": m.model, "label": m.label, **m.axes()} for m in series.models],
        "datasets": [{"name": d.name, "path": d.path, "family": d.family, "n": len(d.items)}
                     for d in datasets],
        "results": results, "trends": trends, "agreement": agreement, "reversals": reversals})
    claim.finish([out / n for n in (ROWS, "agreement.csv", "reversals.csv",
                                    "results.csv", "trends.csv", SWEEP_JSON)]
                 + list(extras.values()))
    return results, trends, runs


def read_agreement(out: Path) -> list[dict[str, Any]]:
    """The agreement rows (every ordered pair of models) of the finished sweep in `out`."""
    agreement: list[dict[str, Any]] = json.loads(
        (out / SWEEP_JSON).read_text(encoding="utf-8"))["agreement"]
    return agreement
