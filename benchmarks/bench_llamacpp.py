"""Where `llamacpp` scoring spends its time, and what batching rows could gain at most.

    .venv/bin/python benchmarks/bench_llamacpp.py [--models smollm2 gemma3] [--rows 100]
        [--sizes 1 4 12 32 64 128 256 512] [--out runs/bench/llamacpp.json]

Per bundled GGUF model:
1. mwe's `llamacpp` backend on the shipped persona rows (raw format, `--rows` per file, in
   the pipeline's chunks): rows/s, the tokens it decodes per row, and the share of the wall
   time spent inside llama.cpp's `decode` (the rest is tokenizing, the log-softmax, Python);
2. llama.cpp's own decode throughput (tokens/s) for one batch of n new tokens after a
   30-token prefix, for each n in `--sizes`, best of several runs.
Scoring decodes each row's new tokens as one batch (about 12 for a persona row, after the
prefix it shares with the row before). Putting several rows into one llama.cpp batch can at
most raise the throughput from that size's tokens/s to the best tokens/s of any size: the
ratio printed as "batching bound". Threads: MWE_THREADS, else the machine's cores, as the CLI.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from mwe import threads  # noqa: E402

threads.quiet_openmp_spin()  # as the CLI does, before llama.cpp loads libgomp

from bench_evaluate import CHUNK, MODELS, PERSONA, requests  # noqa: E402

from mwe.io import write_json  # noqa: E402
from mwe.models import llamacpp  # noqa: E402


def decode_rate(model: Any, n: int, reps: int, prefix: int = 30) -> float:
    """Tokens/s of one llama.cpp batch of `n` new tokens after a cached `prefix`."""
    from llama_cpp._internals import LlamaBatch

    batch = LlamaBatch(n_tokens=max(n, prefix), embd=0, n_seq_max=1, verbose=False)
    b, ctx = batch.batch, model.llm._ctx
    vocab = model.n_vocab

    def fill(tokens: list[int], start: int) -> None:
        b.n_tokens = len(tokens)
        for i, tok in enumerate(tokens):
            b.token[i], b.pos[i], b.n_seq_id[i] = tok, start + i, 1
            b.seq_id[i][0] = 0
            b.logits[i] = i == len(tokens) - 1

    ctx.kv_cache_seq_rm(-1, 0, -1)
    fill([(1000 + i) % vocab for i in range(prefix)], 0)
    ctx.decode(batch)
    best = float("inf")
    for _ in range(reps):
        ctx.kv_cache_seq_rm(0, prefix, -1)
        fill([(2000 + i) % vocab for i in range(n)], prefix)
        t = time.perf_counter()
        ctx.decode(batch)
        best = min(best, time.perf_counter() - t)
    model._reset()  # leave the scoring cache empty, as `score` expects
    return n / best


def score_rows(model: Any, reqs: list[Any]) -> dict[str, float]:
    """Rows/s of `score` in pipeline-sized chunks, with the time inside llama.cpp's decode."""
    ctx = model.llm._ctx
    inner = ctx.decode
    spent, tokens = [0.0], [0]

    def timed(batch: Any) -> Any:
        t = time.perf_counter()
        try:
            return inner(batch)
        finally:
            spent[0] += time.perf_counter() - t
            tokens[0] += batch.batch.n_tokens

    ctx.decode = timed
    try:
        wall = time.perf_counter()
        for i in range(0, len(reqs), CHUNK):
            model.score(reqs[i : i + CHUNK])
        wall = time.perf_counter() - wall
    finally:
        ctx.decode = inner
    return {"rows_per_s": len(reqs) / wall, "decode_share": spent[0] / wall,
            "tokens_per_row": tokens[0] / len(reqs), "decode_tokens_per_s": tokens[0] / spent[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    ap.add_argument("--rows", type=int, default=100, help="persona rows per file (3 files)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 12, 32, 64, 128, 256, 512])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default="runs/bench/llamacpp.json")
    args = ap.parse_args()
    _, reqs = requests(PERSONA, args.rows)
    results: dict[str, Any] = {"threads": threads.resolve(), "rows": len(reqs)}
    for key in args.models:
        name = MODELS[key]
        model = llamacpp.load(f"llamacpp:{name}", name, llamacpp.identity(name))
        model.score(reqs[:4])  # warm-up
        scored = score_rows(model, reqs)
        rates = {n: decode_rate(model, n, args.reps if n <= 128 else 2) for n in args.sizes}
        per_row = round(scored["tokens_per_row"])
        near = min(rates, key=lambda n: abs(n - per_row))
        bound = max(rates.values()) / rates[near]
        results[key] = {**scored, "decode_tokens_per_s_by_batch": rates,
                        "batching_bound": bound}
        print(f"{name}: {scored['rows_per_s']:.1f} rows/s, {scored['tokens_per_row']:.1f} "
              f"tokens decoded per row, {100 * scored['decode_share']:.0f}% of the time in "
              f"llama.cpp's decode ({scored['decode_tokens_per_s']:.0f} tokens/s)", flush=True)
        for n, r in rates.items():
            print(f"  batch of {n:4d} new tokens: {r:7.0f} tokens/s", flush=True)
        print(f"  batching bound (best size / size {near}): {bound:.2f}x", flush=True)
        del model
    write_json(Path(args.out), results)
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
