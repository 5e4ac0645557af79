"""Benchmark free-text scoring (`mwe evaluate --score text`) against Inspect's Hugging Face
provider with its `multiple_choice` solver, in one run, on one machine.

    .venv/bin/python benchmarks/bench_text.py [--data FILE] [--rows 60] [--reps 2]
        [--max-tokens 64] [--out runs/bench/text.json]

The same items (the first --rows questions of --data, exported with `mwe export --to
inspect`), the same bundled model (SmolLM2-135M-Instruct: mwe's converted hf folder for both
hf runs, its GGUF for llamacpp), greedy, replies up to --max-tokens tokens. Whole commands, as a
user runs them, each in a fresh process with nothing cached:
1. mwe hf:       mwe evaluate -m hf:smollm2-135m-instruct --format chat --score text
2. mwe llamacpp: mwe evaluate -m llamacpp:smollm2-135m-instruct --format chat --score text
3. Inspect hf:   inspect eval TASK.py --model hf/... -M model_path=DIR -M do_sample=false
                 (its default batch size)
4. mwe hf, Inspect's prompt: as 1, each question replaced by the prompt Inspect's
                 multiple_choice solver sends (its template, lettered options): the same work
                 as 3, so the same replies and tokens
The tools run alternately, rep by rep (this machine's speed drifts over minutes); times are
the best of each tool's runs, each rep's ratio (its runs back to back) is reported too.
Reported: wall seconds, rows/s, tokens generated (mwe: usage.csv; Inspect: its log's usage),
the ratio mwe/Inspect. The prompts differ (Inspect's template asks for 'ANSWER: X'; mwe asks
the question in the chat template), so the replies' lengths differ: compare tokens/s too.
Use a quiet machine: every tool uses every core.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parent.parent
MWE = [sys.executable, "-m", "mwe.cli"]
NAME = "smollm2-135m-instruct"


def run(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - start
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])} ...: exit {res.returncode}\n{res.stderr[-3000:]}")
    return took


def mwe_tokens(out: Path) -> int:
    with (out / "usage.csv").open(encoding="utf-8") as fh:
        return sum(int(r.get("tokens_out") or 0) for r in csv.DictReader(fh))


def inspect_tokens(logs: Path) -> tuple[int, list[str]]:
    from inspect_ai.log import read_eval_log

    (path,) = logs.glob("*.eval")
    log = read_eval_log(str(path))
    usage = sum(u.output_tokens for u in log.stats.model_usage.values())
    return usage, [s.output.completion for s in log.samples or []]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(REPO / "examples/data/persona/agreeableness.jsonl"))
    ap.add_argument("--rows", type=int, default=60)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--out", default=str(REPO / "runs/bench/text.json"))
    args = ap.parse_args()

    from mwe.models import bundled

    model_dir = str(bundled.hf_dir(NAME))
    work = Path(tempfile.mkdtemp(prefix="mwe-bench-text-"))
    data = work / "items.jsonl"
    lines = Path(args.data).read_text(encoding="utf-8").splitlines()[: args.rows]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    task = work / "task"
    subprocess.run([*MWE, "export", str(data), "--to", "inspect", "--out", str(task),
                    "--task", "items"], check=True, capture_output=True, cwd=REPO)
    n = len(lines)
    # the same work for both: each question in Inspect's own multiple_choice prompt, asked by
    # mwe (a persona row whose question is that prompt), so both generate the same replies
    from inspect_ai.solver import MultipleChoiceTemplate

    same = work / "same-prompt.jsonl"
    with same.open("w", encoding="utf-8") as fh:
        for line, sample in zip(lines, map(json.loads, (task / "items.jsonl").read_text(
                encoding="utf-8").splitlines())):
            row = json.loads(line)
            options = "\n".join(f"{chr(65 + i)}) {c}" for i, c in enumerate(sample["choices"]))
            letters = ",".join(chr(65 + i) for i in range(len(sample["choices"])))
            row["question"] = MultipleChoiceTemplate.SINGLE_ANSWER.value.format(
                question=sample["input"], choices=options, letters=letters)
            fh.write(json.dumps(row) + "\n")
    tools: dict[str, Any] = {
        "mwe hf": lambda out: [*MWE, "evaluate", "-m", f"hf:{NAME}", "-d", str(data),
                               "--format", "chat", "--score", "text", "--max-tokens",
                               str(args.max_tokens), "--no-progress", "-o", str(out),
                               "--cache", str(out.parent / f"{out.name}.sqlite")],
        "mwe hf, Inspect's prompt": lambda out: [
            *MWE, "evaluate", "-m", f"hf:{NAME}", "-d", str(same), "--format", "chat",
            "--score", "text", "--max-tokens", str(args.max_tokens), "--no-progress", "-o",
            str(out), "--cache", str(out.parent / f"{out.name}.sqlite")],
        "mwe llamacpp": lambda out: [*MWE, "evaluate", "-m", f"llamacpp:{NAME}", "-d",
                                     str(data), "--format", "chat", "--score", "text",
                                     "--max-tokens", str(args.max_tokens), "--no-progress",
                                     "-o", str(out), "--cache",
                                     str(out.parent / f"{out.name}.sqlite")],
        "inspect hf": lambda out: [sys.executable, "-m", "inspect_ai", "eval", "items.py",
                                   "--model", "hf/smollm2", "-M", f"model_path={model_dir}",
                                   "-M", "device=cpu", "-M", "do_sample=false",
                                   "--max-tokens", str(args.max_tokens), "--log-dir", str(out),
                                   "--display", "none"],
    }
    results: dict[str, list[dict[str, Any]]] = {k: [] for k in tools}
    for rep in range(args.reps):
        order = list(tools) if rep % 2 == 0 else list(reversed(tools))
        for name in order:
            out = work / f"{''.join(c if c.isalnum() else '-' for c in name)}-{rep}"
            cwd = task if name.startswith("inspect") else REPO
            took = run(tools[name](out), cwd)
            tokens = inspect_tokens(out)[0] if name.startswith("inspect") else mwe_tokens(out)
            results[name].append({"seconds": took, "rows_per_s": n / took,
                                  "tokens": tokens, "tokens_per_s": tokens / took})
            print(f"rep {rep + 1} {name:25s} {took:7.1f} s  {n / took:6.2f} rows/s  "
                  f"{tokens} tokens ({tokens / took:.0f}/s)", flush=True)
    best = {k: min(v, key=lambda r: r["seconds"]) for k, v in results.items()}
    print(f"\n{n} rows, greedy, replies up to {args.max_tokens} tokens; best of {args.reps}:")
    print(f"{'tool':25s} {'rows/s':>8s} {'tokens/s':>9s} {'vs inspect hf':>14s}  per rep")
    for k, b in best.items():
        ratio = b["rows_per_s"] / best["inspect hf"]["rows_per_s"]
        per_rep = [r["rows_per_s"] / i["rows_per_s"]
                   for r, i in zip(results[k], results["inspect hf"])]
        print(f"{k:25s} {b['rows_per_s']:8.2f} {b['tokens_per_s']:9.0f} {ratio:13.2f}x  "
              + ", ".join(f"{x:.2f}x" for x in per_rep))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": n, "max_tokens": args.max_tokens,
                                          "runs": results}, indent=1), encoding="utf-8")
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
