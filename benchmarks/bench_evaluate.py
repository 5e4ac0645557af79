"""Benchmark `mwe evaluate` scoring against lm-evaluation-harness, in one run, on one machine.

    .venv/bin/python benchmarks/bench_evaluate.py [--quick] [--out runs/bench/evaluate.json]
        [--families persona advanced-ai-risk sycophancy winogenerated] [--models smollm2 gemma3]
        [--baseline OLD_HF_PY] [--reps 2] [--evals ../shared/anthropic-evals]

What it measures (raw format: the question as is, as lm-evaluation-harness does), per model
and family:
1. fp32 matmul FLOP/s of this machine (the bound below is computed against it; measured at
   the start and the end, the better one kept: other work on the machine lowers it);
2. lm-evaluation-harness (`--model hf`, the same converted model folder, the same rows and
   answers through a local task YAML), persona at its best batch size from a sweep, the
   other families at that batch size;
3. mwe's hf backend: rows/s, the ratio to lm-eval, the max |difference| of per-answer
   log-probs, and the share of the FLOP bound it reaches (2 x non-embedding parameters x
   tokens it computed, padding included / matmul FLOP/s; the output layer, applied only
   where a token is read, is left out of the bound);
4. with --baseline, an older copy of src/mwe/models/hf.py (e.g. `git show
   HEAD:src/mwe/models/hf.py > /tmp/hf_old.py`), timed in the same run, alternating.
lm-eval and mwe run alternately, --reps times each; times are the best of each tool's runs,
and each rep's ratio (its two runs back to back) is reported too: this machine's speed drifts
by 30% over minutes, and a ratio of runs made minutes apart measures the drift. CPU seconds of
the process are reported as well.
Families: persona (the three shipped files), advanced AI risk (human-written files if the
evals folder has them, else the LM-written ones), sycophancy and Winogenerated from the
released evals folder; a family whose files are absent is skipped with a note.
Needs lm-eval (`make bench` installs it). Use a quiet machine: both tools use every core.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from mwe import threads  # noqa: E402

# As `mwe` itself does before torch loads: without it, each of torch's 2 threads spins ~20 ms
# at every barrier, and on a busy machine a small op took 15 ms instead of 0.2 ms (both tools).
threads.quiet_openmp_spin()

from lmeval_runner import run_lmeval  # noqa: E402

from mwe import prompts  # noqa: E402
from mwe.datasets import load  # noqa: E402
from mwe.io import write_json  # noqa: E402
from mwe.models import bundled, hf, llamacpp  # noqa: E402

PERSONA = sorted(str(p) for p in (REPO / "examples" / "data" / "persona").glob("*.jsonl"))
CHUNK = 256  # the chunk size the evaluate pipeline uses
MODELS = {"smollm2": "smollm2-135m-instruct", "gemma3": "gemma3-270m"}


def family_files(family: str, evals: Path, quick: bool) -> tuple[list[str], str]:
    """The files of a family and a note on what was used (empty list: skipped)."""
    if family == "persona":
        return PERSONA, "examples/data/persona (3 files)"
    if family == "advanced-ai-risk":
        for sub in ("human_generated_evals", "lm_generated_evals"):
            files = sorted(str(p) for p in (evals / "advanced-ai-risk" / sub).glob("*.jsonl"))
            if files:
                picked = files[:3] if quick else files
                note = f"advanced-ai-risk/{sub} ({len(picked)} of {len(files)} files)"
                if sub != "human_generated_evals":
                    note += "; human_generated_evals (up to 8 answers) absent: A/B only"
                return picked, note
        return [], f"no advanced-ai-risk files under {evals}"
    if family == "sycophancy":
        files = sorted(str(p) for p in (evals / "sycophancy").glob("*.jsonl"))
        return files, (f"sycophancy ({len(files)} files)" if files
                       else f"{evals}/sycophancy has no .jsonl files (README only): skipped")
    if family == "winogenerated":
        files = sorted(str(p) for p in (evals / "winogenerated").glob("*examples*.jsonl"))
        return files, ("winogenerated/winogenerated_examples.jsonl (3 pronouns)" if files
                       else f"no winogenerated examples under {evals}: skipped")
    raise SystemExit(f"unknown family {family}")


def matmul_flops(n: int = 4096, reps: int = 5) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def requests(files: list[str], limit: int | None) -> tuple[list[Any], list[Any]]:
    datasets, _ = load(files)
    items = [it for d in datasets for it in (d.items[:limit] if limit else d.items)]
    reqs = []
    for it in items:
        ctx = prompts.context(it, "raw")
        reqs.append((ctx, [prompts.continuation(a, ctx) for a in it.answers]))
    return items, reqs


def computed_tokens(model: Any, reqs: list[Any], chunk: int = CHUNK) -> tuple[int, int]:
    """Tokens mwe's hf backend runs through the body for `reqs` (padding included, and
    without), chunk by chunk as `score` lays them out."""
    padded = real = 0
    for i in range(0, len(reqs), chunk):
        jobs = model._jobs(reqs[i : i + chunk])
        prefix = model._common_prefix([j.tokens for j in jobs])
        prefix = prefix[: min(pos for j in jobs for pos, _, _, _ in j.reads)]
        rows = model._pack(jobs, len(prefix))
        width = max(len(row.tokens) for row in rows)
        per_call = max(1, min(model.max_batch, model.batch_tokens // width))
        for k in range(0, len(rows), per_call):
            call = rows[k : k + per_call]
            padded += len(call) * max(len(row.tokens) for row in call)
        real += sum(len(row.tokens) for row in rows)
        padded += len(prefix)
        real += len(prefix)
    return padded, real


def time_mwe(model: Any, reqs: list[Any]) -> tuple[float, float, list[list[float]]]:
    """Wall and CPU seconds to score all rows in pipeline-sized chunks, and the scores."""
    model._prefix_kv.clear()  # every run computes its shared prefixes, as a fresh process
    scores: list[list[float]] = []
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(reqs), CHUNK):
        scores.extend(model.score(reqs[i : i + CHUNK]))
    return time.perf_counter() - wall, time.process_time() - cpu, scores


def non_embedding_params(model: Any) -> int:
    emb = model.model.get_input_embeddings().weight.numel()
    total = sum(p.numel() for p in model.model.parameters())
    return int(total - emb)


def lm_rows(files: list[str], items: list[Any], reqs: list[Any]) -> list[dict[str, Any]]:
    """The rows as lm-eval's task reads them: mwe's own prompt and answers, in mwe's order."""
    index = {str(Path(f).resolve()): k for k, f in enumerate(files)}
    return [{"question": ctx, "choices": list(conts), "line": it.line,
             "file_index": index[str(Path(it.source).resolve())]}
            for it, (ctx, conts) in zip(items, reqs)]


def compare(items: list[Any], mwe_scores: list[list[float]], ref: dict[str, Any]) -> float:
    by_key = {(str(Path(r["file"]).resolve()), r["line"]): r["logprobs"] for r in ref["rows"]}
    worst = 0.0
    for it, lps in zip(items, mwe_scores):
        theirs = by_key[(str(Path(it.source).resolve()), it.line)]
        assert len(theirs) == len(lps)
        worst = max(worst, *(abs(a - b) for a, b in zip(lps, theirs)))
    return worst


def load_baseline(path: str, name: str, ident: dict[str, Any]) -> Any:
    """HFModel of an older copy of hf.py, loaded as its own module."""
    spec = importlib.util.spec_from_file_location("mwe_hf_baseline", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.HFModel(f"hf:{name}", str(bundled.hf_dir(name)), ident)


def lmeval_sweep(model_dir: str, files: list[str], rows: list[dict[str, Any]], sizes: list[int],
                 sweep_rows: int) -> tuple[int, dict[int, float]]:
    """lm-eval's best batch size on the first `sweep_rows` rows, and the sweep."""
    sweep = {}
    for bs in sizes:
        r = run_lmeval(model_dir, files, batch_size=bs, rows=rows[:sweep_rows])
        sweep[bs] = r["n_rows"] / r["scoring_seconds"]
        print(f"  lm-eval batch {bs}: {sweep[bs]:.1f} rows/s ({r['n_rows']} rows)", flush=True)
    return max(sweep, key=sweep.__getitem__), sweep


def bench_family(key: str, family: str, files: list[str], limit: int | None, args: Any,
                 flops: float, batch: int | None) -> dict[str, Any]:
    name = MODELS[key]
    items, reqs = requests(files, limit)
    model_dir = str(bundled.hf_dir(name))
    print(f"{name}, {family}: {len(reqs)} rows, raw format", flush=True)
    rows = lm_rows(files, items, reqs)
    sweep: dict[int, float] = {}
    if batch is None:
        sizes = [8, 16, 32, 64] if key == "smollm2" else [8, 32]
        batch, sweep = lmeval_sweep(model_dir, files, rows, sizes, 90 if args.quick else 300)
    ident = hf.identity(name)
    models = {"mwe": hf.load(f"hf:{name}", name, ident)}
    if args.baseline:
        models["baseline"] = load_baseline(args.baseline, name, ident)
    for m in models.values():
        m.score(reqs[:4])  # warm-up
    # lm-eval and mwe alternate, rep by rep: the machine's speed drifts over minutes, and a
    # ratio should compare runs made at the same time
    best: dict[str, tuple[float, float]] = {}
    scores: dict[str, list[list[float]]] = {}
    lm_runs: list[dict[str, Any]] = []
    pairs: list[float] = []
    for _ in range(args.reps):
        lm_runs.append(run_lmeval(model_dir, files, batch_size=batch, rows=rows))
        for label, m in models.items():
            wall, cpu, scores[label] = time_mwe(m, reqs)
            if label not in best or wall < best[label][0]:
                best[label] = (wall, cpu)
            if label == "mwe":
                pairs.append(lm_runs[-1]["scoring_seconds"] / wall)
    ref = min(lm_runs, key=lambda r: r["scoring_seconds"])  # every run's scores are the same
    lm_rate = ref["n_rows"] / ref["scoring_seconds"]
    print(f"  lm-eval batch {batch}: {lm_rate:.2f} rows/s", flush=True)
    model = models["mwe"]
    params = non_embedding_params(model)
    padded, real = computed_tokens(model, reqs)
    wall, cpu = best["mwe"]
    out: dict[str, Any] = {
        "rows": len(reqs), "files": [Path(f).name for f in files],
        "lmeval_batch": batch, "lmeval_sweep_rows_per_s": sweep, "lmeval_rows_per_s": lm_rate,
        "lmeval_cpu_seconds": ref.get("scoring_cpu_seconds"),
        "mwe_hf_rows_per_s": len(reqs) / wall, "mwe_hf_cpu_seconds": cpu,
        "ratio": len(reqs) / wall / lm_rate,
        "ratio_per_rep": pairs,  # lm-eval's time / mwe's, each rep's runs back to back
        "max_abs_logprob_diff": compare(items, scores["mwe"], ref),
        "tokens_computed": padded, "tokens_without_padding": real,
        "non_embedding_params": params,
        "fraction_of_flop_bound": 2 * params * padded / wall / flops,
    }
    if "baseline" in best:
        bwall, bcpu = best["baseline"]
        out.update({
            "baseline_rows_per_s": len(reqs) / bwall, "baseline_cpu_seconds": bcpu,
            "baseline_ratio": len(reqs) / bwall / lm_rate,
            "baseline_fraction_of_flop_bound": 2 * params * padded / bwall / flops,
            "baseline_bitwise_equal": scores["baseline"] == scores["mwe"],
        })
    print(f"  mwe hf: {out['mwe_hf_rows_per_s']:.2f} rows/s ({cpu:.1f} CPU s); ratio "
          f"{out['ratio']:.2f}x (per rep: {', '.join(f'{x:.2f}x' for x in pairs)}); "
          f"{padded} tokens ({real} without padding), "
          f"{100 * out['fraction_of_flop_bound']:.0f}% of the matmul bound; max |mwe - lm-eval| "
          f"{out['max_abs_logprob_diff']:.1e}", flush=True)
    if "baseline" in best:
        print(f"  baseline hf: {out['baseline_rows_per_s']:.2f} rows/s ({bcpu:.1f} CPU s); "
              f"ratio {out['baseline_ratio']:.2f}x; bitwise equal: "
              f"{out['baseline_bitwise_equal']}", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100 rows per file (40 for advanced AI "
                    "risk, 3 of its files), smaller sweeps")
    ap.add_argument("--out", default=str(REPO / "runs" / "bench" / "evaluate.json"))
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--families", nargs="+", default=["persona", "advanced-ai-risk", "sycophancy",
                                                      "winogenerated"])
    ap.add_argument("--evals", default=str(REPO.parent / "shared" / "anthropic-evals"),
                    help="the released anthropics/evals folder")
    ap.add_argument("--baseline", help="an older hf.py to time in the same run")
    ap.add_argument("--reps", type=int, default=2, help="runs of each tool, alternating; the "
                    "fastest counts, and each rep's ratio is reported too")
    ap.add_argument("--llamacpp", action="store_true", help="also time mwe's llamacpp backend")
    args = ap.parse_args()
    result: dict[str, Any] = {"quick": args.quick, "threads": threads.resolve(),
                              "gomp_spincount": os.environ.get("GOMP_SPINCOUNT"), "notes": []}
    flops = matmul_flops()
    print(f"fp32 matmul: {flops / 1e9:.1f} GFLOP/s", flush=True)
    evals = Path(args.evals)
    for key in args.models:
        batch = None  # persona sweeps lm-eval's batch size; the other families use it
        for family in args.families:
            files, note = family_files(family, evals, args.quick)
            if key == "gemma3" and family == "persona":
                files = files[:1]
            print(f"{family}: {note}", flush=True)
            if not files:
                result["notes"].append(note)
                continue
            limit = (40 if family == "advanced-ai-risk" else 100) if args.quick else None
            if key == "gemma3" and family != "persona" and args.quick:
                limit = 20 if family == "advanced-ai-risk" else 50
            r = bench_family(key, family, files, limit, args, flops, batch)
            r["note"] = note
            batch = batch or r["lmeval_batch"]
            result.setdefault(key, {})[family] = r
            if args.llamacpp and family == "persona" and key == "smollm2":
                lc = llamacpp.load(f"llamacpp:{MODELS[key]}", MODELS[key],
                                   llamacpp.identity(MODELS[key]))
                _, reqs = requests(files, 100 if args.quick else None)
                t = time.perf_counter()
                for i in range(0, len(reqs), CHUNK):
                    lc.score(reqs[i : i + CHUNK])
                r["mwe_llamacpp_rows_per_s"] = len(reqs) / (time.perf_counter() - t)
                print(f"  mwe llamacpp: {r['mwe_llamacpp_rows_per_s']:.1f} rows/s", flush=True)
                del lc
    flops_end = matmul_flops()
    result["matmul_gflops"] = max(flops, flops_end) / 1e9
    result["matmul_gflops_start_end"] = [flops / 1e9, flops_end / 1e9]
    if flops_end > flops:  # the bound against the better measurement
        for fams in (v for k, v in result.items() if k in MODELS):
            for r in fams.values():
                for k in ("fraction_of_flop_bound", "baseline_fraction_of_flop_bound"):
                    if k in r:
                        r[k] *= flops / flops_end
    write_json(args.out, result)
    print(f"fp32 matmul at the end: {flops_end / 1e9:.1f} GFLOP/s; results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
