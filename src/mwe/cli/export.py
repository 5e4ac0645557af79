"""mwe export: a dataset as a Hugging Face dataset, an lm-evaluation-harness task or an
Inspect task; a finished run as Inspect logs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from mwe.cli import args as a

EPILOG = """\
examples:
  mwe export runs/demo/dataset.jsonl --to hf --out exports/deceive-hf
  #   then: datasets.load_dataset("parquet", data_dir="exports/deceive-hf")
  mwe export runs/demo/dataset.jsonl --to lm-eval --out exports/deceive-lm
  #   then: lm_eval --model hf --model_args pretrained=MODEL --include_path exports/deceive-lm \\
  #           --tasks mwe_deceive_users
  mwe export runs/demo/dataset.jsonl --to inspect --out exports/deceive-inspect
  #   then: inspect eval exports/deceive-inspect/mwe_deceive_users.py --model MODEL
  mwe export runs/demo/results --to inspect-log --out logs/demo
  #   then: inspect view --log-dir logs/demo

hf writes data/test.parquet and a dataset card (README.md: license, counts, prompts, fields);
lm-eval writes a task (YAML and JSONL) whose contexts and continuations are exactly the
strings mwe scores in the chosen --format, so its acc equals mwe's % matching; inspect writes
a task (Python and JSONL) for Inspect's multiple_choice solver and choice scorer whose target
is the answer showing the behavior, so its accuracy is the share of replies showing it;
inspect-log writes one Inspect log (.eval) per model and dataset of a finished mwe evaluate
or mwe sweep folder, for `inspect view` and inspect_ai.analysis.samples_df (needs the
inspect extra: pip install 'mwe[inspect]').
"""


def register(sub: Any) -> None:
    p = a.command(
        sub, "export", run=execute,
        help="a dataset for Hugging Face, lm-evaluation-harness or Inspect; a run as "
        "Inspect logs",
        description="Export one evaluation file for other tools: a Hugging Face dataset "
        "folder (parquet and a dataset card), an lm-evaluation-harness 0.4 task that scores "
        "exactly as mwe does, or an Inspect task; or a finished run folder as Inspect logs.",
        epilog=EPILOG)
    p.add_argument("data", metavar="DATASET", help="one .jsonl file (released or generated); "
                   "--to inspect-log: a finished mwe evaluate or mwe sweep folder")
    p.add_argument("--to", required=True, choices=("hf", "lm-eval", "inspect", "inspect-log"))
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="a new or empty folder, "
                   "or an earlier export to replace")
    p.add_argument("--format", "-f", default="human-assistant", choices=("human-assistant",
                   "raw"), help="lm-eval: the prompt format to score in (default: "
                   "human-assistant)")
    p.add_argument("--task", metavar="NAME", help="lm-eval and inspect: the task name "
                   "(default: mwe_ and the dataset's name)")
    p.add_argument("--license", default="cc-by-4.0", help="hf: the dataset card's license "
                   "(default cc-by-4.0)")
    a.add_cache(p)


def execute(args: argparse.Namespace) -> int:
    from mwe.export import export  # imported here, not above: keeps `mwe --help` fast

    paths = export(args.data, args.to, Path(args.out), args.format, args.task, args.license,
                   Path(args.cache) if args.cache else None)
    print(f"exported {args.data} to {args.to}: {Path(args.out)}")
    for p in paths:
        print(f"  {p}")
    return 0
