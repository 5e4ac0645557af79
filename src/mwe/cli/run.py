"""mwe run: generate -> filter -> evaluate one spec's targets, in one folder (and the shared
body of mwe demo)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mwe.cli import args as a
from mwe.errors import MweError
from mwe.io import check_output_dir

if TYPE_CHECKING:
    from mwe.spec import BehaviorSpec

EPILOG = """\
examples:
  mwe run examples/specs/deceive-users.yaml --out runs/deceive
  mwe run examples/specs/power-seeking.yaml --out runs/power --per-label 32

generate -> filter -> evaluate every target model of the spec, into one folder:
dataset.jsonl, card.json/card.md and results/ (rows.jsonl, summary.csv, summary.json).

A suite (a file with `defaults:` and a `behaviors:` list) builds every behavior into
DIR/NAME/ as a spec would be, the calls of all behaviors pooled stage by stage, then writes
suite.csv/suite.json (the index), sweep/ and report.html:
  mwe run examples/suites/small.yaml --out runs/small-suite
  mwe run examples/suites/persona-paper.yaml --out runs/persona --dry-run
"""


def register(sub: Any) -> None:
    p = a.command(sub, "run", run=execute,
                  help="generate -> filter -> evaluate the targets, in one folder",
                  description="The whole pipeline for one behavior spec.", epilog=EPILOG)
    p.add_argument("spec", metavar="SPEC", help="behavior spec (.yaml, .yml or .toml)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="run folder")
    a.add_scale(p)
    p.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                   help="a suite only: build each behavior on a Ray worker (the cluster at "
                   "ADDRESS, else RAY_ADDRESS, else a new local Ray), then write the suite "
                   "here from the calls they sent (the local run's files; needs mwe[ray])")
    a.add_dry_run(p)
    a.add_cache(p)


def execute(args: argparse.Namespace) -> int:
    from mwe.cli import inputs  # imported here, not above: keeps `mwe --help` fast
    from mwe.suite import is_suite

    if is_suite(args.spec):  # a list of behaviors: built and evaluated together
        from mwe.cli.suite import run_suite_command

        return run_suite_command(args.spec, args)
    if getattr(args, "ray", None) is not None:
        raise MweError("--ray takes a suite (a file with a behaviors: list); one spec runs "
                       "here (spread its evaluation with mwe sweep --ray)")
    return run_spec(inputs.spec(args), Path(args.out), args)


def run_spec(spec: BehaviorSpec, out: Path, args: argparse.Namespace) -> int:
    """The whole pipeline into `out`, or with --dry-run its plan."""
    from mwe.cli import inputs  # imported here, not above: keeps `mwe --help` fast
    from mwe.cli.table import print_counts, print_plan, print_summaries
    from mwe.cost import UsageLedger
    from mwe.pipeline.run import check_results, plan, run_all
    from mwe.run_folder import RunFolder

    if getattr(args, "dry_run", False):
        print_plan(*plan(spec, inputs.open_models(args)))
        return 0
    start = time.perf_counter()
    check_output_dir(out)
    check_results(out)
    ledger = UsageLedger()
    card, runs = run_all(spec, out, inputs.open_models(args), not args.no_progress, ledger)
    print(f"tokens and estimated cost (usage.csv; prices: {ledger.prices.source}):\n"
          f"{ledger.summary()}", file=sys.stderr)
    print()
    print_counts(card)
    if runs:
        print()
        print_summaries([s for r in runs for s in r.summaries])
    folder = RunFolder(out)
    print(f"\ndataset: {folder.dataset}\ncard:    {folder.card_md} ({folder.card_json})")
    if runs:
        print(f"results: {folder.results.summary_csv} (per row: {folder.results.rows})")
    print(f"done in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return 0
