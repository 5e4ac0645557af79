"""mwe filter: score generated examples with a discriminator and keep the best (p_d)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mwe.cli import args as a
from mwe.io import check_output_dir

EPILOG = """\
examples:
  mwe filter runs/deceive                          # the spec's discriminator and k
  mwe filter runs/deceive --discriminator llamacpp:smollm2-135m-instruct \\
      --top-k 50 --out runs/deceive-smollm2        # re-filter without re-generating

Writes scored.jsonl (every unique sample with the discriminator's probabilities),
dataset.jsonl (anthropics/evals format), card.json and card.md.
"""


def register(sub: Any) -> None:
    p = a.command(
        sub, "filter", run=execute,
        help="score generated examples with a discriminator and keep the best (p_d)",
        description="Score every unique generated example with the discriminator, keep the "
        "top k per label that it labels as intended, and write the dataset and its card.",
        epilog=EPILOG)
    p.add_argument("folder", metavar="DIR", help="a folder written by 'mwe generate'")
    p.add_argument("--out", "-o", metavar="DIR", help="output folder (default: DIR)")
    p.add_argument("--discriminator", metavar="M", help="another discriminator model")
    p.add_argument("--top-k", type=a.positive_int, metavar="K", help="keep at most K per label")
    a.add_no_progress(p)
    a.add_cache(p)


def execute(args: argparse.Namespace) -> int:
    from mwe.card import ModelCalls, add_usage  # imported here, not above: keeps `mwe --help` fast
    from mwe.cli import inputs
    from mwe.cli.table import print_counts
    from mwe.cost import read_usage
    from mwe.pipeline.filter import run_filter
    from mwe.pipeline.run import check_filter_models
    from mwe.run_folder import RunFolder

    out = check_output_dir(args.out or args.folder)
    discriminator = a.shown_models([args.discriminator])[0] if args.discriminator else None
    models = inputs.open_models(args)
    check_filter_models(Path(args.folder), args.discriminator, models)
    card = run_filter(Path(args.folder), out, models, discriminator, args.top_k,
                      not args.no_progress)
    # what building the dataset took, in its card as `mwe run` puts it: generation's rows
    # from the generate folder's usage.csv, then this stage's
    add_usage(out, inputs.usage(models, "filter", out,
                                read_usage(RunFolder(Path(args.folder)).usage, "generate")))
    print_counts(card)
    calls = ModelCalls.of(models)
    print(f"discriminator calls: {calls.cached} from the cache, {calls.computed} computed",
          file=sys.stderr)
    run = RunFolder(out)
    print(f"\ndataset: {run.dataset}\ncard: {run.card_md}, {run.card_json}")
    return 0
