"""Parsed options turned into what the pipeline takes (models over the call cache, datasets,
specs) and usage.csv written after a stage: shared by the commands, imported when one runs."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from mwe.cost import write_usage
from mwe.datasets import Dataset, load
from mwe.errors import MweError
from mwe.models import Models
from mwe.orders import unrotated
from mwe.paths import default_store_path
from mwe.pipeline.evaluate import select
from mwe.pipeline.replies import TextScoring
from mwe.run_folder import USAGE
from mwe.spec import BehaviorSpec, load_spec
from mwe.store import Store


def text_scoring(args: argparse.Namespace, models: Models | None = None
                 ) -> TextScoring | None:
    """--score text's settings, or None for log-prob scoring; a --judge is opened among
    `models` (the caller checks it with its other models first)."""
    judge_spec = getattr(args, "judge", None)
    if "text" not in args.score.split(","):
        if judge_spec:
            raise MweError("--judge reads free-text replies: add --score text")
        return None
    judge = None
    if judge_spec:
        if models is None:
            raise MweError("--judge is not taken here")
        from mwe.judge import open_judge

        judge = open_judge(models, judge_spec)
    return TextScoring(max_tokens=args.max_tokens, temperature=args.temperature,
                       samples=args.samples, judge=judge)


def open_models(args: argparse.Namespace) -> Models:
    """The models of a command, over the --cache (or the default) call cache."""
    return Models(Store(args.cache or default_store_path()))


def datasets(args: argparse.Namespace) -> list[Dataset]:
    """--data, --limit and --no-control, read before any model loads."""
    found, skipped = load(args.data, skip_unreadable=args.skip_unreadable)
    for sk in skipped:
        print(f"skipped {sk.path}: {sk.reason}", file=sys.stderr)
    if not found:
        raise MweError("no evaluation datasets found in --data")
    chosen = select(found, args.limit, control=not args.no_control, orders=args.orders)
    if args.orders == "all" and (n := unrotated(chosen)):
        print(f"--orders all: {n} multiple-choice question(s) whose options could not be told "
              "apart are asked as given only", file=sys.stderr)
    return chosen


def spec(args: argparse.Namespace, path: str | Path | None = None) -> BehaviorSpec:
    """The spec at `path` (else SPEC), with --per-label applied."""
    loaded = load_spec(path or args.spec)
    if getattr(args, "per_label", None) is not None:
        loaded = replace(loaded, generate=replace(loaded.generate, per_label=args.per_label))
    return loaded


def usage(models: Models, stage: str, out: Path, earlier: list[dict[str, Any]] | None = None
          ) -> list[dict[str, Any]]:
    """usage.csv written in `out` (after the `earlier` stages' rows); what this run computed
    said on stderr. Returns the rows written."""
    rows, ledger = write_usage(models, stage, out, earlier)
    print(f"tokens and estimated cost ({out / USAGE}; prices: {ledger.prices.source}):\n"
          f"{ledger.summary()}", file=sys.stderr)
    return rows
