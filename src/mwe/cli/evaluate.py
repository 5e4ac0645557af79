"""mwe evaluate: score models on evaluation datasets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mwe import __version__
from mwe.cli import args as a
from mwe.io import claim_outputs

if TYPE_CHECKING:
    from mwe.pipeline.evaluate import ModelRun

EPILOG = """\
examples:
  # three released persona datasets, the bundled chat model, the paper's dialogue format
  mwe evaluate --model llamacpp:smollm2-135m-instruct \\
      --data ../shared/anthropic-evals/persona/agreeableness.jsonl --out runs/agree

  # every released dataset in a folder, two models, first 100 rows of each file
  mwe evaluate --model llamacpp:smollm2-135m-instruct --model hf:gemma3-270m \\
      --data ../shared/anthropic-evals --limit 100 --out runs/all

  # a chat API without log-probs: score what it says; every unscored reply counted
  mwe evaluate --model openai:gpt-4o-mini --format chat --score text \
      --data ../shared/anthropic-evals/persona/agreeableness.jsonl --out runs/agree-text

  # a glob, raw format (the question as is), a transformers model folder
  mwe evaluate --model hf:/models/my-llama --data 'evals/persona/believes-*.jsonl' \\
      --format raw --out runs/beliefs

A killed run resumes where it stopped: run the same command again. Every model call is
cached in one SQLite file (--cache, default: the user cache folder).
"""


def register(sub: Any) -> None:
    p = a.command(
        sub, "evaluate", run=execute,
        help="score models on evaluation datasets (%% of answers matching the behavior)",
        description="Score each model on each dataset: for every question, the log-probability "
        "of each answer after the question; per dataset, the % of questions where the most "
        "likely answer matches the behavior, with a 95% Wilson interval.", epilog=EPILOG)
    p.add_argument("--model", "-m", action="append", required=True, metavar="M",
                   help="BACKEND:NAME, e.g. llamacpp:smollm2-135m-instruct, hf:gemma3-270m, "
                   "hf:/path/to/dir, llamacpp:/path/model.gguf (repeatable)")
    a.add_data(p)
    a.add_scoring(p)
    p.add_argument("--out", "-o", required=True, metavar="DIR",
                   help="run folder for rows.jsonl, summary.csv, summary.json")
    a.add_inspect_log(p)
    a.add_no_progress(p, "no progress bar")
    a.add_cache(p)


def rate(computed: int, seconds: float) -> str:
    if not computed:
        return "all from the cache"
    return f"{computed / seconds:.1f} rows/s" if seconds else "-"


def execute(args: argparse.Namespace) -> int:
    from mwe.cli import inputs  # imported here, not above: keeps `mwe --help` fast
    from mwe.cli.table import print_methods, print_summaries
    from mwe.pipeline.evaluate import OUTPUT_FILES, evaluate_methods, write_outputs
    from mwe.pipeline.methods import read_methods
    from mwe.pipeline.replies import unscored_warning

    specs = a.shown_models(args.model)
    claim_outputs(args.out, OUTPUT_FILES)  # before any work: replaces only mwe's own files
    a.check_inspect_log(args)
    models = inputs.open_models(args)
    datasets = inputs.datasets(args)
    models.check([("--model", m) for m in args.model]  # after the data's own errors
                 + ([("--judge", args.judge)] if args.judge else []))
    n_rows = sum(len(d.items) for d in datasets)
    text = inputs.text_scoring(args, models)
    print(f"{len(datasets)} datasets, {n_rows} questions, {len(specs)} model(s), "
          f"format {args.format}" + (", scored by the replies" if text else ""),
          file=sys.stderr)

    def done(name: str, run: ModelRun) -> None:
        print(f"{name}: {n_rows} rows in {run.seconds:.1f} s; {run.cached_rows} from the "
              f"cache, {run.computed_rows} computed ({rate(run.computed_rows, run.seconds)})",
              file=sys.stderr)

    opened = [(shown, models.open(given)) for given, shown in zip(args.model, specs)]
    runs = evaluate_methods(opened, datasets, args.format, args.score, not args.no_progress,
                            on_done=done, text=text)
    settings = {"models": specs, "data": args.data, "format": args.format,
                "limit": args.limit, "mwe_version": __version__,
                "datasets": [{"name": d.name, "path": d.path, "family": d.family,
                              "n": len(d.items)} for d in datasets]}
    if args.score != "logprob":  # only then: a log-prob run's settings read as they always have
        settings["score"] = {"method": args.score, **(text.to_dict() if text else {})}
    if args.orders == "all":  # likewise: only when asked
        settings["orders"] = "all"
    paths = write_outputs(Path(args.out), runs, settings)
    inputs.usage(models, "evaluate", Path(args.out))
    summaries = [s for r in runs for s in r.summaries]
    print_summaries(summaries)
    for line in unscored_warning([s.to_dict() for s in summaries], args.unscored_warning):
        print(f"warning: {line}", file=sys.stderr)
    if "methods_csv" in paths:
        print_methods(read_methods(Path(args.out)))
    print(f"\nrows: {paths['rows']}\nsummary: {paths['summary_csv']}, {paths['summary_json']}"
          + (f"\nmethods: {paths['methods_csv']}" if "methods_csv" in paths else ""))
    if args.inspect_log:
        from mwe.pipeline.inspect_logs import scored_runs, write_run_logs

        logs = write_run_logs(Path(args.inspect_log), scored_runs(runs, opened,
                              args.score.split(",")), datasets, args.format, text,
                              {"settings": settings})
        print(f"inspect logs: {len(logs)} in {args.inspect_log} (inspect view --log-dir "
              f"{args.inspect_log})")
    return 0
