"""mwe map: the dataset map (embeddings, UMAP, named k-means clusters)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from mwe.cli import args as a
from mwe.errors import MweError
from mwe.io import check_output_dir

EPILOG = """\
examples:
  mwe map runs/demo/dataset.jsonl --out runs/demo-map             # named by the card's generator
  mwe map examples/data/persona/agreeableness.jsonl --results runs/sweep --out runs/agree-map
  mwe report runs/sweep runs/demo runs/demo-map --out runs/report.html   # maps in the report

Each row is embedded (the bundled all-MiniLM-L6-v2, cached), projected to 2-D with UMAP and
clustered with k-means; each cluster is named by a model with the paper's prompt (or by its
most distinctive words when the model writes no JSON list). Writes map.html (interactive,
offline), map.json and clusters.csv (size, label balance, mean label_confidence, % matching).
"""


def register(sub: Any) -> None:
    p = a.command(
        sub, "map", run=execute,
        help="the dataset map: embeddings, UMAP, named k-means clusters",
        description="Map datasets as the paper's explorer did: where the examples lie, "
        "which topics they cluster into, and how labels and results split by cluster.",
        epilog=EPILOG)
    p.add_argument("data", nargs="+", metavar="DATASET", help="files, folders or globs")
    p.add_argument("--out", "-o", required=True, metavar="DIR",
                   help="folder for map.html, map.json, clusters.csv")
    p.add_argument("--clusters", type=a.positive_int, default=10, metavar="K",
                   help="k-means clusters per dataset (default 10, as the paper)")
    p.add_argument("--namer", metavar="MODEL", help="the model that names clusters "
                   "(default: the card's generator, else llamacpp:smollm2-135m-instruct)")
    p.add_argument("--no-names", action="store_true",
                   help="name clusters by their distinctive words only (no model)")
    p.add_argument("--results", action="append", default=[], metavar="FOLDER",
                   help="evaluate, run or sweep folders: %% matching per cluster (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    a.add_cache(p)


def execute(args: argparse.Namespace) -> int:
    from mwe.cli import inputs  # imported here, not above: keeps `mwe --help` fast
    from mwe.datasets import load

    out = Path(args.out)
    check_output_dir(out)
    datasets, skipped = load(args.data)
    for sk in skipped:
        print(f"skipped {sk.path}: {sk.reason}", file=sys.stderr)
    if not datasets:
        raise MweError(f"no dataset to map in {', '.join(args.data)}")
    for folder in args.results:
        if not Path(folder).is_dir():
            raise MweError(f"--results {folder}: not a folder")
    try:  # lazy: an optional extra
        from mwe import map as dataset_map
    except ImportError as exc:
        raise MweError(f"mwe map needs umap-learn, scikit-learn and plotly ({exc}); "
                       "install mwe[map]") from exc
    models = inputs.open_models(args)
    results = [Path(r) for r in args.results]
    maps = []
    for ds in datasets:
        namer = dataset_map.namer_for(ds, args.namer)
        a.shown_models([namer])
        start = time.perf_counter()
        m = dataset_map.build_map(ds, models, None if args.no_names else namer, args.clusters,
                                  args.seed, results)
        maps.append(m)
        k = len(m["clusters"])
        named = sum(c["named_by"] != "words" for c in m["clusters"])
        naming = "" if args.no_names else f" ({named} named by {namer})"
        print(f"{ds.name}: {len(m['points'])} rows, {k} cluster{'s' * (k != 1)}{naming}, "
              f"{time.perf_counter() - start:.0f} s")
        for c in m["clusters"]:
            labels = ", ".join(f"{k} {v}" for k, v in c["labels"].items())
            print(f"  {c['cluster']:>2}  {c['size']:>4} rows  {labels:<20}  {c['name']}"
                  + ("  (distinctive words)" if c["named_by"] == "words" else ""))
    for warning in dataset_map.unmatched_results(results, maps):
        print(warning, file=sys.stderr)
    paths = dataset_map.write_maps(out, maps, {"clusters": args.clusters, "seed": args.seed,
                                               "namer": args.namer, "results": args.results})
    print(f"map: {paths[2]} (and {paths[0].name}, {paths[1].name})")
    return 0
