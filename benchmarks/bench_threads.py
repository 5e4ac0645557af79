"""One `mwe evaluate` alone against two side by side, for each thread setting.

    .venv/bin/python benchmarks/bench_threads.py
    .venv/bin/python benchmarks/bench_threads.py --model hf:smollm2-135m-instruct --limit 100
    .venv/bin/python benchmarks/bench_threads.py --variant default --variant MWE_THREADS=1 \
        --variant GOMP_SPINCOUNT=300000 --variant OMP_WAIT_POLICY=passive

Each variant is `default` or comma-separated VAR=VALUE settings added to the environment of
the `mwe` processes. For each variant and model it runs `mwe evaluate` once alone, then two
at once, each with a fresh SQLite cache so that every row is computed, and prints the wall
time of each process (start to exit) and the seconds `mwe` reports for scoring alone. The
ratio is side-by-side / alone; 1.0 would mean the two runs do not slow each other at all,
2.0 is what sharing the cores fairly costs when one run alone already uses them all.

A short warm-up run first fills the model cache folder (MWE_CACHE_DIR; the hf backend
converts a bundled GGUF once there), so no measured run pays for that. Use a quiet machine:
before each case the script waits (up to --wait seconds) until the CPUs are 90% idle, and
it reports the share of the CPUs that other processes used while each case ran ("others");
numbers taken with others above a few percent are not comparable. --repeat N runs each case
N times and reports medians.

--src DIR runs another copy of mwe's source instead (PYTHONPATH=DIR, python -m mwe.cli), e.g.
the last commit's, to measure before and after a change:

    git archive HEAD src | tar -x -C /tmp/mwe-head
    .venv/bin/python benchmarks/bench_threads.py --src /tmp/mwe-head/src
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MWE = str(Path(sys.executable).with_name("mwe"))
DATA = str(REPO / "examples" / "data" / "persona" / "agreeableness.jsonl")
SECONDS = re.compile(r": \d+ rows in ([0-9.]+) s")


def parse_variant(text: str) -> dict[str, str]:
    if text == "default":
        return {}
    env: dict[str, str] = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise SystemExit(f"bad --variant {text!r}: expected default or VAR=VALUE[,VAR=VALUE]")
        env[key] = value
    return env


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) CPU time of the whole machine so far, in clock ticks (Linux)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except OSError:
        return 0, 0
    return sum(fields) - fields[3] - fields[4], sum(fields)


def idle_fraction(seconds: float = 1.0) -> float:
    """Share of CPU time idle over `seconds` (1.0 where /proc/stat is missing)."""
    busy0, total0 = cpu_jiffies()
    time.sleep(seconds)
    busy1, total1 = cpu_jiffies()
    return 1.0 - (busy1 - busy0) / max(1, total1 - total0) if total1 > total0 else 1.0


def wait_quiet(limit: float) -> float:
    """Wait until the CPUs are 90% idle for 3 s running (at most `limit` s); the last share."""
    deadline = time.monotonic() + limit
    quiet = 0
    share = idle_fraction()
    while time.monotonic() < deadline:
        quiet = quiet + 1 if share >= 0.9 else 0
        if quiet >= 3:
            break
        share = idle_fraction()
    return share


def command(mwe: list[str], model: str, limit: int, work: Path, tag: str) -> list[str]:
    cache = work / f"{tag}.sqlite"
    cache.unlink(missing_ok=True)
    return [*mwe, "evaluate", "-m", model, "-d", DATA, "--limit", str(limit),
            "--out", str(work / f"out-{tag}"), "--cache", str(cache), "--no-progress"]


def children_cpu() -> float:
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def run_together(cmds: list[list[str]], env: dict[str, str]
                 ) -> tuple[list[float], list[float], float]:
    """Start `cmds` at once: the wall seconds and the scoring seconds mwe reports of each, and
    the share of all CPUs that other processes used meanwhile."""
    tick = os.sysconf("SC_CLK_TCK")
    busy0, total0 = cpu_jiffies()
    mine0 = children_cpu()
    start = time.perf_counter()
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for c in cmds]
    ends: list[float] = [0.0] * len(procs)
    errs: list[str] = [""] * len(procs)
    pending = set(range(len(procs)))
    while pending:
        for i in list(pending):
            if procs[i].poll() is not None:
                ends[i] = time.perf_counter() - start
                errs[i] = procs[i].communicate()[1]
                pending.discard(i)
        time.sleep(0.05)
    busy1, total1 = cpu_jiffies()
    others = ((busy1 - busy0) / tick - (children_cpu() - mine0)) / max(1e-9, (total1 - total0)
                                                                         / tick)
    scores = []
    for proc, err in zip(procs, errs):
        if proc.returncode != 0:
            raise SystemExit(f"mwe failed ({proc.returncode}):\n{err}")
        found = SECONDS.search(err)
        scores.append(float(found.group(1)) if found else float("nan"))
    return ends, scores, max(0.0, others)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", help="model string (repeatable; default: "
                    "llamacpp:smollm2-135m-instruct)")
    ap.add_argument("--limit", type=int, default=300, help="rows (default 300)")
    ap.add_argument("--variant", action="append",
                    help="default, or VAR=VALUE[,VAR=VALUE] (repeatable; default: default)")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="runs of each case; medians are reported (default 1)")
    ap.add_argument("--src", metavar="DIR", help="run mwe from this source folder instead")
    ap.add_argument("--nice", type=int, metavar="N", help="run mwe under `nice -n N`")
    ap.add_argument("--wait", type=float, default=120.0, metavar="S",
                    help="longest wait for a quiet machine before each case (default 120)")
    args = ap.parse_args()
    models = args.model or ["llamacpp:smollm2-135m-instruct"]
    variants = args.variant or ["default"]
    base = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    mwe = [MWE]
    if args.src:
        mwe = [sys.executable, "-m", "mwe.cli"]
        base["PYTHONPATH"] = str(Path(args.src).resolve())
    if args.nice is not None:
        mwe = ["nice", "-n", str(args.nice), *mwe]
    print(f"{os.cpu_count()} CPUs, affinity {sorted(os.sched_getaffinity(0))}; "
          f"{args.limit} rows of {Path(DATA).name}; mwe: {' '.join(mwe)}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="mwe-bench-threads-") as tmp:
        work = Path(tmp)
        for model in models:
            run_together([command(mwe, model, 2, work, "warmup")], base)
            for variant in variants:
                env = {**base, **parse_variant(variant)}
                runs: dict[str, list[float]] = {k: [] for k in
                                                ("alone", "s_alone", "both", "s_both", "others")}
                for _ in range(args.repeat):
                    wait_quiet(args.wait)
                    walls, scores, others = run_together(
                        [command(mwe, model, args.limit, work, "alone")], env)
                    runs["alone"] += walls
                    runs["s_alone"] += scores
                    runs["others"].append(others)
                    wait_quiet(args.wait)
                    walls2, scores2, others2 = run_together(
                        [command(mwe, model, args.limit, work, f"side{i}") for i in range(2)],
                        env)
                    runs["both"] += walls2
                    runs["s_both"] += scores2
                    runs["others"].append(others2)
                    print(f"  {model} [{variant}]: alone {walls[0]:.1f} s (others {others:.0%}),"
                          f" side by side {walls2[0]:.1f} s and {walls2[1]:.1f} s (others "
                          f"{others2:.0%})", flush=True)
                med = {k: statistics.median(v) for k, v in runs.items()}
                rows.append((model, variant, med, max(runs["others"])))
    print()
    head = (f"{'model':<31} {'variant':<22} {'alone s':>8} {'2x s':>7} {'ratio':>6}"
            f" {'score alone':>11} {'score 2x':>9} {'ratio':>6} {'others':>7}")
    print(head)
    print("-" * len(head))
    for model, variant, m, others in rows:
        print(f"{model:<31} {variant:<22} {m['alone']:>8.1f} {m['both']:>7.1f}"
              f" {m['both'] / m['alone']:>6.2f} {m['s_alone']:>11.1f} {m['s_both']:>9.1f}"
              f" {m['s_both'] / m['s_alone']:>6.2f} {others:>7.0%}")
    print(f"\nmedians of {args.repeat} run(s); wall: process start to exit (2x: each of two "
          "side by side); score: the seconds mwe reports for scoring; others: the largest share "
          "of the CPUs other processes used during a case")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
