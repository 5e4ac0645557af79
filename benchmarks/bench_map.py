"""Benchmark `mwe map`'s start-up: UMAP's numba code compiled in the run (an empty numba cache,
as every run paid before mwe cached it) against loaded from the cache a first run left.

    .venv/bin/python benchmarks/bench_map.py [--reps 3] [--dataset tests/data/golden/demo/dataset.jsonl]
        [--out runs/bench/map.json]

A first, untimed run fills a call cache (embeddings, cluster names), so the timed runs load no
model and differ only in the numba cache. Each timed run is the whole command in a fresh
process (`mwe map DATASET --out DIR`, through mwe.cli.main with `project` wrapped to time it),
in a copy of that mwe cache folder: "cold" without its numba/ folder, "warm" with it. The
variants alternate rep by rep (cold warm warm cold ...) so that the machine's drift cancels.
Reported per run: wall seconds, seconds inside `project`, the load average; and whether every
run's map.json is the same (the coordinates must not depend on the cache).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "tests" / "data" / "golden" / "demo" / "dataset.jsonl"


def child(dataset: str, out: str, timing: str) -> int:
    """One `mwe map` run with the time inside `project` written to `timing`."""
    from mwe import map as dataset_map
    from mwe.cli import main

    spent: list[float] = []
    project = dataset_map.project

    def timed(*args: Any, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return project(*args, **kw)
        finally:
            spent.append(time.perf_counter() - t)

    dataset_map.project = timed
    rc = main(["map", dataset, "--out", out])
    Path(timing).write_text(json.dumps({"project_s": sum(spent)}))
    return rc


def run(dataset: Path, mwe_cache: Path, out: Path) -> dict[str, Any]:
    """The whole command in a fresh process; wall and `project` seconds, map.json."""
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env.update(MWE_CACHE_DIR=str(mwe_cache), HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    timing = out.with_suffix(".timing.json")
    t = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--child", str(dataset), str(out), str(timing)],
                   env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    maps = json.loads((out / "map.json").read_text())["maps"]
    return {"wall_s": round(wall, 2), "project_s": round(json.loads(timing.read_text())
                                                          ["project_s"], 2),
            "load": [round(x, 2) for x in os.getloadavg()], "maps": maps}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dataset", type=Path, default=DEMO)
    ap.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(*args.child)
    with tempfile.TemporaryDirectory(prefix="bench-map-") as tmp:
        root = Path(tmp)
        base = root / "base"
        print(f"warm-up (fills the call cache and the numba cache), load {os.getloadavg()}")
        first = run(args.dataset, base, root / "warmup")
        print(f"  {first['wall_s']} s, project {first['project_s']} s")
        order = [("cold", "warm"), ("warm", "cold")] * ((args.reps + 1) // 2)
        runs: list[dict[str, Any]] = []
        for rep, pair in enumerate(order[: args.reps]):
            for variant in pair:
                folder = root / f"{variant}{rep}"
                shutil.copytree(base, folder, ignore=None if variant == "warm" else
                                shutil.ignore_patterns("numba"))
                r = run(args.dataset, folder, root / f"out-{variant}{rep}")
                r.update(variant=variant, rep=rep)
                runs.append(r)
                print(f"  rep {rep} {variant:4}: {r['wall_s']:6.2f} s, project "
                      f"{r['project_s']:6.2f} s, load {r['load']}", flush=True)
        same = all(r["maps"] == first["maps"] for r in runs)
        summary: dict[str, Any] = {"dataset": str(args.dataset), "map_json_identical": same}
        for variant in ("cold", "warm"):
            mine = [r for r in runs if r["variant"] == variant]
            summary[variant] = {"wall_s": [r["wall_s"] for r in mine],
                                "project_s": [r["project_s"] for r in mine],
                                "best_wall_s": min(r["wall_s"] for r in mine),
                                "best_project_s": min(r["project_s"] for r in mine)}
        print(f"cold best {summary['cold']['best_wall_s']} s (project "
              f"{summary['cold']['best_project_s']} s); warm best "
              f"{summary['warm']['best_wall_s']} s (project "
              f"{summary['warm']['best_project_s']} s); map.json identical in every run: {same}")
        if args.out:
            from mwe.io import write_json

            args.out.parent.mkdir(parents=True, exist_ok=True)
            write_json(args.out, {**summary, "runs": [{k: v for k, v in r.items()
                                                       if k != "maps"} for r in runs]})
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
