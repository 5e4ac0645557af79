"""mwe rescore: read a finished --score text run's or sweep's stored replies again (other
rules, a judge) without calling the evaluated models."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mwe import __version__
from mwe.cli import args as a
from mwe.io import claim_outputs

EPILOG = """\
examples:
  # the replies the rules could not read, read by the bundled model (its log-probs)
  mwe rescore runs/agree-text --judge llamacpp:smollm2-135m-instruct

  # an API judge asked for one letter; the run itself is left as it was
  mwe rescore runs/agree-text --judge openai:gpt-4o-mini --out runs/agree-text-judged

  # the current rules alone (after an update of mwe's rules)
  mwe rescore runs/agree-text --out runs/agree-text-rules

  # a finished mwe sweep --score text folder: rows, results, trends, agreement made again
  mwe rescore runs/sweep-text --judge llamacpp:smollm2-135m-instruct --out runs/sweep-judged

Reads RUN's rows.jsonl and the dataset files its rows name (run it from where the run was
made: relative paths are relative to there); of a sweep folder also sweep.json (its series,
datasets and settings). The evaluated models are never called; the judge's calls are cached
like every other call.
"""


def register(sub: Any) -> None:
    p = a.command(
        sub, "rescore", run=execute,
        help="read a --score text run's stored replies again (other rules, a judge)",
        description="Re-read every stored reply of a finished mwe evaluate or mwe sweep "
        "--score text run with the current rules and, with --judge, a model for the replies "
        "the rules leave no_answer or several_answers; the rows and summaries (of a sweep also "
        "its trends, agreement and reversals) are made again as evaluate or sweep makes them, "
        "and what changed is printed. The evaluated models are not called.",
        epilog=EPILOG)
    p.add_argument("folder", metavar="RUN",
                   help="the folder of an mwe evaluate or mwe sweep --score text run")
    p.add_argument("--judge", metavar="MODEL",
                   help="a model for the replies the rules cannot read: a local model by its "
                   "log-probs over the answer letters and 'unclear', an API model (openai:, "
                   "anthropic:) asked for one letter (default: the rules alone)")
    p.add_argument("--out", "-o", metavar="DIR",
                   help="where to write (default: RUN itself, replacing only mwe's files)")
    p.add_argument("--unscored-warning", type=a.share, default=0.10, metavar="SHARE",
                   help="warn when more than this share of a dataset's replies is unscored "
                   "(default: 0.10)")
    a.add_no_progress(p, "no progress bar")
    a.add_cache(p)


def execute(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from mwe.cli import inputs  # imported here, not above: keeps `mwe --help` fast
    from mwe.cli.table import print_summaries
    from mwe.cost import write_usage
    from mwe.judge import open_judge
    from mwe.pipeline.evaluate import OUTPUT_FILES
    from mwe.pipeline.replies import unscored_warning
    from mwe.pipeline.rescore import rescore
    from mwe.pipeline.sweep import SWEEP_FILES
    from mwe.run_folder import SWEEP_JSON

    run = Path(args.folder)
    out = Path(args.out) if args.out else run
    # before any work: replaces only mwe's own files
    claim_outputs(out, SWEEP_FILES if (run / SWEEP_JSON).is_file() else OUTPUT_FILES)
    models = inputs.open_models(args)
    judge = None
    if args.judge:
        a.shown_models([args.judge])
        models.check([("--judge", args.judge)])
        judge = open_judge(models, args.judge)
    with tqdm(desc="judge", unit="reply", disable=args.no_progress or judge is None,
              file=sys.stderr) as bar:
        done = rescore(run, out, judge, bar.update, {"mwe_version": __version__})
    print(f"{done.text_rows} rows scored by the replies, {done.replies} replies read again"
          + (f"; {done.judged} judged by {judge.spec}" if judge else "")
          + "; the evaluated model was not called", file=sys.stderr)
    if judge is not None:
        inputs.usage(models, "rescore", out, done.earlier_usage)
    elif done.earlier_usage:  # the evaluation's lines, kept; nothing called now
        write_usage(models, "rescore", out, done.earlier_usage)
    print_summaries(done.summaries)
    for line in unscored_warning([s.to_dict() for s in done.summaries], args.unscored_warning):
        print(f"warning: {line}", file=sys.stderr)
    changed = sum(done.changes.values())
    print(f"\n{changed} of {done.replies} replies read differently" + (":" if changed else ""))
    for (was, now), n in sorted(done.changes.items(), key=lambda x: (-x[1], x[0])):
        print(f"  {was} -> {now}: {n}")
    if done.trends is not None:  # a sweep
        from mwe.cli.sweep import print_trends

        print()
        print_trends(done.trends)
        print(f"\nresults: {done.paths['results']}\ntrends:  {done.paths['trends']}\n"
              f"agreement: {done.paths['agreement']}\nrows:    {done.paths['rows']}")
        return 0
    print(f"\nrows: {done.paths['rows']}\nsummary: {done.paths['summary_csv']}, "
          f"{done.paths['summary_json']}")
    return 0
