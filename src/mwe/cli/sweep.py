"""mwe sweep: models x datasets in one run, with trends across the series."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from mwe.cli import args as a
from mwe.errors import MweError
from mwe.io import claim_outputs

EPILOG = """\
examples:
  # the bundled size/tuning "ladder" (two models: confounded, and the output says so)
  mwe sweep --series examples/series/bundled.yaml --data examples/data/persona --out runs/sweep

  # models named on the command line, released persona and advanced-AI-risk files
  mwe sweep -m hf:smollm2-135m-instruct -m hf:gemma3-270m \\
      --data ../shared/anthropic-evals/persona --data ../shared/anthropic-evals/advanced-ai-risk \\
      --out runs/sweep-all

Writes rows.jsonl, results.csv (one tidy line per model and dataset), trends.csv (slopes
over parameters and steps with bootstrap 95% intervals, base-vs-tuned differences),
agreement.csv (for each pair of models, the share of datasets on which both prefer or both
disprefer the behavior), reversals.csv (how often a trend flips between adjacent sizes) and
sweep.json. Resumes like evaluate: every model call is cached.
"""


def register(sub: Any) -> None:
    p = a.command(sub, "sweep", run=execute,
                  help="models x datasets in one run, with trends across the series",
                  description="Evaluate every model of a series on every dataset, then fit "
                  "trends of % matching over parameters, steps and tuning.", epilog=EPILOG)
    p.add_argument("--series", "-s", metavar="FILE", help="a model series (.yaml/.toml)")
    p.add_argument("--model", "-m", action="append", default=[], metavar="M",
                   help="a model (repeatable), instead of or besides --series")
    a.add_data(p)
    a.add_scoring(p)
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="sweep folder")
    a.add_no_progress(p, "no progress bar")
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="run the (model x dataset chunk) units as Ray tasks: on the cluster at "
                   "ADDRESS ('auto', HOST:6379, ray://HOST:10001), else where RAY_ADDRESS "
                   "points, else on a new local Ray; each model's tasks ask for the series "
                   "file's num_gpus/num_cpus; the same files as without --ray (needs mwe[ray])")
    a.add_inspect_log(p)
    a.add_dry_run(p)
    a.add_cache(p)


def execute(args: argparse.Namespace) -> int:
    from mwe.cli import inputs  # imported here, not above: keeps `mwe --help` fast
    from mwe.cli.table import print_plan
    from mwe.pipeline.evaluate import check_methods, plan
    from mwe.pipeline.rollout import has_rollout
    from mwe.pipeline.sweep import SWEEP_FILES, read_agreement, sweep
    from mwe.run_folder import ROWS
    from mwe.series import Series, from_specs, load_series

    if not args.series and not args.model:
        raise MweError("name the models: --series FILE and/or --model M")
    series = load_series(args.series) if args.series else Series("models", ())
    if args.model:
        a.shown_models(args.model)
        series = Series(series.name, series.models + from_specs(args.model).models)
    claim_outputs(args.out, SWEEP_FILES)  # before any work: replaces only mwe's own files
    a.check_inspect_log(args)
    if args.ray is not None and not args.dry_run:
        from mwe.pipeline.ray_sweep import ray_module  # lazy: Ray is an optional extra

        ray_module()  # not installed: say so before any data is read
    models = inputs.open_models(args)
    datasets = inputs.datasets(args)
    if args.ray is not None and (rolled := [d.name for d in datasets if has_rollout(d)]):
        raise MweError(f"--ray: {rolled[0]} asks the models' own earlier turns before the "
                       "scored one, which runs on this machine only; drop --ray")
    listed = len(series.models) - len(args.model or [])  # from --series, then --model
    models.check([(f"{args.series} models[{i}]" if i < listed else "--model", m.model)
                  for i, m in enumerate(series.models)]  # after the data's own errors
                 + ([("--judge", args.judge)] if args.judge else []))
    text = inputs.text_scoring(args, models)
    if "," in args.score:
        raise MweError(f"--score {args.score}: a sweep fits trends for one scoring method; run "
                       "one sweep per method (mwe evaluate --score logprob,text writes how "
                       "often the two agree)")
    check_methods([(m.label, models.open(m.model)) for m in series.models], args.score)
    n_rows = sum(len(d.items) for d in datasets)
    print(f"{len(series.models)} models x {len(datasets)} datasets ({n_rows} questions)",
          file=sys.stderr)
    if args.dry_run:
        print_plan(plan([(m.label, models.open(m.model)) for m in series.models], datasets,
                        args.format, text), [])
        return 0
    start = time.perf_counter()
    if args.ray is not None:
        from mwe.pipeline.ray_sweep import ray_sweep

        results, trends, runs = ray_sweep(series, datasets, args.format, Path(args.out), models,
                                          args.ray or None, not args.no_progress,
                                          text=text)
    else:
        results, trends, runs = sweep(series, datasets, args.format, Path(args.out),
                                      models, not args.no_progress, text)
    inputs.usage(models, "evaluate", Path(args.out))
    cached = sum(r.cached_rows for r in runs)
    print(f"{n_rows * len(series.models)} rows in {time.perf_counter() - start:.0f} s; "
          f"{cached} from the cache, {n_rows * len(series.models) - cached} computed",
          file=sys.stderr)
    print_trends(trends)
    out = Path(args.out)
    agreement = read_agreement(out)
    if agreement:
        print("agreement (both prefer or both disprefer the behavior):")
        for p in agreement:
            if p["share"] is not None and p["predictor"] < p["target"]:  # each pair once
                print(f"  {p['predictor']} ~ {p['target']}: {p['agree']}/{p['datasets']} "
                      f"datasets = {p['share']:.1%} [{p['ci_low']:.1%}, {p['ci_high']:.1%}]")
    print(f"\nresults: {out / 'results.csv'}\ntrends:  {out / 'trends.csv'}\n"
          f"agreement: {out / 'agreement.csv'}\nrows:    {out / ROWS}")
    if args.inspect_log:
        from mwe.pipeline.inspect_logs import Scored, sweep_header, write_run_logs

        method = "text" if text is not None else args.score
        scored = [Scored(run, models.open(m.model), method, m.label)
                  for m, run in zip(series.models, runs)]
        logs = write_run_logs(Path(args.inspect_log), scored, datasets, args.format, text,
                              sweep_header(out))
        print(f"inspect logs: {len(logs)} in {args.inspect_log} (inspect view --log-dir "
              f"{args.inspect_log})")
    return 0


def print_trends(trends: list[dict[str, Any]]) -> None:
    """How many trends there are, and the first 15 whose interval excludes zero."""
    shown = [t for t in trends if t["trend"] != "flat"][:15]
    print(f"{len(trends)} trends; {sum(t['trend'] != 'flat' for t in trends)} with an interval "
          "excluding zero" + (":" if shown else ""))
    for t in shown:
        note = f"  [confounded: {t['confounded']}]" if t["confounded"] else ""
        print(f"  {t['dataset']:45s} {t['axis']:12s} {t['trend']:10s} {t['slope']:+7.1f} "
              f"[{t['ci_low']:+.1f}, {t['ci_high']:+.1f}] {t['unit']}{note}")
