"""Run: generate -> filter -> evaluate every target model, all in one run folder.

    DIR/spec.json, generated.jsonl, generate.json   (generate)
    DIR/scored.jsonl, dataset.jsonl, card.json, card.md   (filter)
    DIR/results/rows.jsonl, summary.csv, summary.json   (evaluate)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mwe import __version__
from mwe.datasets import Dataset, load_file
from mwe.errors import MweError
from mwe.io import remove_stale
from mwe.models import open_model
from mwe.pipeline.evaluate import EXTRA_FILES, ModelRun, evaluate_model, write_outputs
from mwe.pipeline.filter import run_filter
from mwe.pipeline.generate import generate
from mwe.spec import BehaviorSpec
from mwe.store import Store

RESULT_FILES = ("rows.jsonl", "summary.csv", "summary.json", *EXTRA_FILES)


def evaluate_dataset(spec: BehaviorSpec, out: Path, store: Store, progress: bool = True
                     ) -> list[ModelRun]:
    path = out / "dataset.jsonl"
    if not path.read_text(encoding="utf-8").strip():
        print(f"{path} has no rows (nothing passed the filter): nothing to evaluate",
              file=sys.stderr)
        return []
    ds = load_file(path, spec.name)
    if not isinstance(ds, Dataset):
        raise MweError(f"{path}: {ds.reason}")
    from mwe.families.sycophancy import with_controls

    datasets = with_controls([ds])
    n_items = sum(len(d.items) for d in datasets)
    runs = []
    for target in spec.targets:
        model = open_model(target, store)
        start = time.perf_counter()
        with tqdm(total=n_items, desc=f"evaluate ({target})", unit="row",
                  disable=not progress) as bar:
            run = evaluate_model(model, datasets, spec.evaluate_format, on_progress=bar.update)
        run.seconds = time.perf_counter() - start
        runs.append(run)
    settings = {"models": list(spec.targets), "data": [str(path)], "format": spec.evaluate_format,
                "limit": None, "mwe_version": __version__,
                "datasets": [{"name": d.name, "path": str(path), "family": d.family,
                              "n": len(d.items)} for d in datasets]}
    write_outputs(out / "results", runs, settings)
    return runs


def run_all(spec: BehaviorSpec, out: Path, store: Store, progress: bool = True
            ) -> tuple[dict[str, Any], list[ModelRun]]:
    if spec.family == "sycophancy":
        from mwe.pipeline import sycophancy

        card = sycophancy.build(spec, out, store, progress)
    elif spec.family == "winogenerated":
        from mwe.pipeline import winogenerated

        card = winogenerated.build(spec, out, store, progress)
    else:
        generate(spec, out, store, progress)
        card = run_filter(out, out, store, progress=progress)
    runs = evaluate_dataset(spec, out, store, progress) if spec.targets else []
    if not runs:  # no results now: none from an earlier run in this folder either
        remove_stale(out / "results", RESULT_FILES, [])
    return card, runs
