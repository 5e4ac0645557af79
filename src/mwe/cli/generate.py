"""mwe generate: label-conditioned examples for a behavior (p_g)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mwe.cli import args as a
from mwe.errors import MweError
from mwe.io import check_output_dir

EPILOG = """\
examples:
  # sample, parse and deduplicate examples for the behavior in a spec
  mwe generate examples/specs/deceive-users.yaml --out runs/deceive

  # the same spec at another scale, without editing it
  mwe generate examples/specs/deceive-users.yaml --per-label 2000 --out runs/deceive-2k

Writes spec.json, generated.jsonl (every sample, its parse and its status) and generate.json.
Follow with 'mwe filter DIR'. A killed run resumes: every model call is cached.
"""


def register(sub: Any) -> None:
    p = a.command(sub, "generate", run=execute,
                  help="write label-conditioned examples for a behavior (p_g)",
                  description="Sample examples for each label with the spec's generator, parse "
                  "them and drop duplicates.", epilog=EPILOG)
    p.add_argument("spec", metavar="SPEC", help="behavior spec (.yaml, .yml or .toml)")
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="run folder")
    a.add_scale(p)
    a.add_cache(p)


def execute(args: argparse.Namespace) -> int:
    from mwe.card import ModelCalls
    from mwe.cli import inputs  # imported here, not above: keeps `mwe --help` fast
    from mwe.pipeline.generate import generate
    from mwe.pipeline.run import check_spec_models, staged
    from mwe.run_folder import RunFolder

    spec = inputs.spec(args)
    if not staged(spec):
        raise MweError(f"{args.spec}: a {spec.family} dataset is built in one step: "
                       f"mwe run {args.spec} --out {args.out}")
    check_output_dir(args.out)
    models = inputs.open_models(args)
    check_spec_models(spec, models, ("generate",))
    meta = generate(spec, Path(args.out), models, not args.no_progress)
    inputs.usage(models, "generate", Path(args.out))
    for label, c in meta["counts"].items():
        print(f"{label}: {c['sampled']} sampled, {c['parsed']} parsed, {c['unique']} unique")
    calls = ModelCalls.of(models)
    print(f"model calls: {calls.cached} from the cache, {calls.computed} computed",
          file=sys.stderr)
    print(f"\nsamples: {RunFolder(Path(args.out)).generated}\nnext: mwe filter {args.out}")
    return 0
