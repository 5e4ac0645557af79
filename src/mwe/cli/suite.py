"""`mwe run SUITE`: a suite file (defaults and a list of behaviors) built and evaluated
together; recognised by `mwe run` from its `behaviors:` list."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from mwe.io import check_output_dir

if TYPE_CHECKING:
    from mwe.results import PlanRow
    from mwe.spec import BehaviorSpec


def total_plan(rows: Sequence[PlanRow]) -> list[PlanRow]:
    """The suite's calls per stage and model, summed over its behaviors."""
    from mwe.results import PlanRow

    out: dict[tuple[str, str], PlanRow] = {}
    for r in rows:
        key = (r.stage, r.spec)
        was = out.get(key)
        out[key] = r if was is None else PlanRow(
            r.stage, r.model, r.spec, was.calls + r.calls, was.cached + r.cached,
            was.tokens_in + r.tokens_in, was.tokens_out + r.tokens_out)
    return list(out.values())


def run_suite_command(path: str, args: argparse.Namespace) -> int:
    from mwe.cli import inputs  # imported here, not above: keeps `mwe --help` fast
    from mwe.cli.table import print_plan, print_table
    from mwe.models import SharedModels
    from mwe.pipeline.run import check_spec_models, plan
    from mwe.pipeline.suite import run_suite, write_index
    from mwe.suite import load_suite

    suite = load_suite(path)
    specs: list[BehaviorSpec] = list(suite.behaviors)
    if getattr(args, "per_label", None) is not None:
        specs = [replace(s, generate=replace(s.generate, per_label=args.per_label))
                 for s in specs]
    models = SharedModels(inputs.open_models(args).store)
    for s in specs:  # every model of every behavior checked before anything is called
        check_spec_models(s, models)
    if getattr(args, "dry_run", False):
        rows, notes = [], []
        for s in specs:
            r, n = plan(s, models)
            rows += r
            notes += [f"{s.name}: {x}" for x in n]
        print(f"suite {suite.name}: {len(specs)} behaviors")
        print_plan(total_plan(rows), notes[:6] + ([f"... and {len(notes) - 6} more notes"]
                                                  if len(notes) > 6 else []))
        return 0
    out = Path(args.out)
    check_output_dir(out)
    start = time.perf_counter()
    if getattr(args, "ray", None) is not None:
        from mwe.pipeline.ray_suite import refuse_batch

        refuse_batch(specs)  # before any work
    behaviors = run_suite(specs, out, models, not args.no_progress, getattr(args, "ray", None))
    extra = finish(out, suite.name, behaviors, models, not args.no_progress)
    paths = write_index(out, suite.name, behaviors, extra)
    print_table(["behavior", "family", "status", "rows", "results"],
                [[b.name, b.spec.family, b.status + (" (earlier run)" if b.resumed else ""),
                  str(b.index.get("rows", "")), str(b.index.get("results") or b.reason)]
                 for b in behaviors])
    failed = [b for b in behaviors if b.status != "done"]
    print(f"\nindex: {paths['suite_html']} ({paths['suite_csv']}, {paths['suite_json']})"
          + (f"\nreport: {extra['report']}" if extra.get("report") else ""))
    print(f"done in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    if failed:
        print(f"suite partial: {len(failed)} of {len(behaviors)} behaviors failed "
              f"({', '.join(b.name for b in failed)}); see {paths['suite_csv']}")
        return 1
    return 0


def finish(out: Path, name: str, behaviors: Sequence[object], models: object,
           progress: bool) -> dict[str, str]:
    """The sweep of every target over every finished behavior's dataset, and the report."""
    from mwe.datasets import Dataset, load_file
    from mwe.pipeline.evaluate import with_variants
    from mwe.pipeline.report import write_report
    from mwe.pipeline.suite import Behavior
    from mwe.pipeline.sweep import sweep
    from mwe.run_folder import RunFolder
    from mwe.series import from_specs

    done = [b for b in behaviors if isinstance(b, Behavior) and b.status == "done"]
    extra: dict[str, str] = {}
    logprob = [b for b in done if b.spec.targets and b.spec.evaluate_score == "logprob"]
    if logprob:
        fmt = logprob[0].spec.evaluate_format
        datasets = []
        for b in logprob:
            ds = load_file(RunFolder(b.out).dataset, b.spec.name)
            if isinstance(ds, Dataset) and ds.items and b.spec.evaluate_format == fmt:
                datasets.append(ds)
        targets = list(dict.fromkeys(t for b in logprob for t in b.spec.targets))
        if datasets:
            sweep(from_specs(targets), with_variants(datasets), fmt, out / "sweep",
                  models, progress)  # type: ignore[arg-type]
            extra["sweep"] = str(out / "sweep")
    inputs = [b.out for b in done if RunFolder(b.out).results.summary_json.is_file()]
    maps = suite_maps(out, done, models, inputs)
    if maps:
        extra["map"] = str(maps)
    if extra.get("sweep"):
        inputs.append(out / "sweep")
    if maps:
        inputs.append(maps.parent)
    if inputs:
        write_report(inputs, out / "report.html", title=f"mwe suite: {name}")
        extra["report"] = str(out / "report.html")
    return extra


def suite_maps(out: Path, done: Sequence[object], models: object, results: list[Path]
               ) -> Path | None:
    """One dataset map per finished behavior in out/map/ (clusters named by their words: no
    model is called), with % matching per cluster from the behaviors' results."""
    from mwe.datasets import Dataset, load_file
    from mwe.errors import MweError
    from mwe.pipeline.suite import Behavior
    from mwe.run_folder import RunFolder

    try:
        from mwe import map as dataset_map
    except ImportError:  # an optional extra: the suite is written without maps
        return None
    maps = []
    for b in done:
        if not isinstance(b, Behavior):
            continue
        ds = load_file(RunFolder(b.out).dataset, b.spec.name)
        if not isinstance(ds, Dataset) or len(ds.items) < 2:
            continue
        try:
            maps.append(dataset_map.build_map(ds, models, None, 10, b.spec.seed,  # type: ignore[arg-type]
                                              results))
        except MweError as exc:
            print(f"mwe: {b.name}: no map ({exc})", file=sys.stderr)
    if not maps:
        return None
    paths = dataset_map.write_maps(out / "map", maps, {"clusters": 10, "namer": None,
                                                       "results": [str(r) for r in results]})
    return paths[2]
