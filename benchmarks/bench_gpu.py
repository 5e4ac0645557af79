"""GPU benchmark: mwe's `hf` backend against lm-evaluation-harness's `hf` backend on the same
persona rows, in bf16 and fp32, each tool at its best batch size, in one run.

    python benchmarks/bench_gpu.py --model-dir DIR [--data ../shared/anthropic-evals/persona]
        [--dtypes bfloat16 float32] [--limit N] [--out runs/bench/gpu.json]

DIR is a transformers model folder (the bundled models' converted folders are under the
user cache: `mwe models` prints where; any HF causal LM works). Per dtype it reports:
- the GPU's dense matmul rate in that dtype (8192 x 8192, best of 5), the bound below;
- lm-eval: rows/s at each batch size of a sweep, and the best;
- mwe: rows/s at each token budget per forward call (`batch_tokens`; the rows of a call are
  at most `max_batch`), the best, the ratio to lm-eval, the max |difference| of per-answer
  log-probs, and the share of the matmul rate reached (2 x non-embedding parameters x tokens
  computed, padding included / seconds / matmul rate).
A machine without CUDA stops at once with a note; without lm-eval, mwe's figures are still
measured and the comparison is left out. fp32 runs with TF32 off (mwe's identity keeps fp32
log-probs fp32); bf16 differs from fp32 by ~1e-2 in log-probs, so the parity column is read
against lm-eval in the same dtype.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "src"))

# bench_evaluate sets the offline environment before torch or transformers load
from bench_evaluate import computed_tokens, non_embedding_params, requests  # noqa: E402

from mwe.io import write_json  # noqa: E402

CHUNK = 4096  # requests per mwe score() call: on a GPU the batch is bounded by tokens


def matmul_rate(dtype: Any, n: int = 8192, reps: int = 5) -> float:
    import torch

    a = torch.randn(n, n, device="cuda", dtype=dtype)
    b = torch.randn(n, n, device="cuda", dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def mwe_model(model_dir: str, dtype: str, batch_tokens: int) -> Any:
    from mwe.models import hf

    name = f"{model_dir}?dtype={dtype}" if "?" not in model_dir else model_dir
    ident = hf.identity(name)
    model = hf.load(f"hf:{name}", name, ident)
    model.batch_tokens, model.max_batch = batch_tokens, 1024
    return model


def time_mwe(model: Any, reqs: list[Any]) -> tuple[float, list[list[float]], int]:
    """Seconds to score every request (GPU synchronised), the scores, and the tokens run
    through the model's body (padding included)."""
    import torch

    model._prefix_kv.clear()
    torch.cuda.synchronize()
    start = time.perf_counter()
    scores: list[list[float]] = []
    for i in range(0, len(reqs), CHUNK):
        scores.extend(model.score(reqs[i : i + CHUNK]))
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return seconds, scores, computed_tokens(model, reqs, CHUNK)[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True, help="a transformers model folder")
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "anthropic-evals" / "persona"),
                    help="a folder of persona JSONL files (default: all the released ones)")
    ap.add_argument("--limit", type=int, help="rows per file (default: all)")
    ap.add_argument("--dtypes", nargs="+", default=["bfloat16", "float32"],
                    choices=["bfloat16", "float16", "float32"])
    ap.add_argument("--lmeval-batches", nargs="+", type=int, default=[64, 128, 256, 512])
    ap.add_argument("--mwe-tokens", nargs="+", type=int, default=[16384, 65536, 262144])
    ap.add_argument("--out", default=str(REPO / "runs" / "bench" / "gpu.json"))
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU: this benchmark measures the GPU path only (bench_evaluate.py is "
              "the CPU one)")
        return 1
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    files = sorted(str(p) for p in Path(args.data).glob("*.jsonl"))
    if not files:
        raise SystemExit(f"no .jsonl files in {args.data}")
    items, reqs = requests(files, args.limit)
    have_lmeval = importlib.util.find_spec("lm_eval") is not None
    gpu = torch.cuda.get_device_name(0)
    print(f"{gpu}; {len(files)} files, {len(reqs)} rows; lm-eval "
          f"{'present' if have_lmeval else 'absent: mwe only'}", flush=True)
    report: dict[str, Any] = {"gpu": gpu, "files": len(files), "rows": len(reqs),
                              "model_dir": args.model_dir, "results": []}
    for dtype in args.dtypes:
        rate = matmul_rate(getattr(torch, dtype))
        entry: dict[str, Any] = {"dtype": dtype, "matmul_tflops": rate / 1e12}
        print(f"\n{dtype}: matmul {rate / 1e12:.1f} TFLOP/s", flush=True)
        ref = None
        if have_lmeval:
            from lmeval_runner import run_lmeval

            sweep: dict[int, float] = {}
            for bs in args.lmeval_batches:
                r = run_lmeval(args.model_dir, files, batch_size=bs, limit=args.limit,
                               device="cuda", dtype=dtype)
                sweep[bs] = r["n_rows"] / r["scoring_seconds"]
                print(f"  lm-eval batch {bs}: {sweep[bs]:.0f} rows/s", flush=True)
                if ref is None or sweep[bs] >= max(sweep.values()):
                    ref = r
            entry["lmeval_rows_per_s"] = sweep
            entry["lmeval_best_batch"] = max(sweep, key=sweep.__getitem__)
        best: tuple[float, int, list[list[float]], int] | None = None
        mwe_sweep: dict[int, float] = {}
        for budget in args.mwe_tokens:
            model = mwe_model(args.model_dir, dtype, budget)
            time_mwe(model, reqs[: min(len(reqs), 512)])  # warm-up: kernels, allocator
            seconds, scores, tokens = time_mwe(model, reqs)
            mwe_sweep[budget] = len(reqs) / seconds
            print(f"  mwe batch_tokens {budget}: {mwe_sweep[budget]:.0f} rows/s", flush=True)
            if best is None or seconds < best[0]:
                best = (seconds, budget, scores, tokens)
            params = non_embedding_params(model)
            del model
            torch.cuda.empty_cache()
        assert best is not None
        seconds, budget, scores, tokens = best
        entry.update({"mwe_rows_per_s": mwe_sweep, "mwe_best_batch_tokens": budget,
                      "mwe_tokens_computed": tokens,
                      "mwe_matmul_share": 2 * params * tokens / seconds / rate})
        if ref is not None:
            by_key = {(str(Path(r["file"]).resolve()), r["line"]): r["logprobs"]
                      for r in ref["rows"]}
            worst = max(abs(a - b) for it, lps in zip(items, scores)
                        for a, b in zip(lps, by_key[(str(Path(it.source).resolve()), it.line)]))
            entry["ratio"] = mwe_sweep[budget] / max(entry["lmeval_rows_per_s"].values())
            entry["max_abs_diff"] = worst
        report["results"].append(entry)
        print(json.dumps(entry, indent=2), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_json(Path(args.out), report)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
