"""Benchmark batched generation against one-at-a-time sampling, in one run, on one machine.

    .venv/bin/python benchmarks/bench_generate.py [--samples 128] [--out runs/bench/generate.json]

The persona generation prompt of the demo spec (SmolLM2-135M-Instruct, chat template), with
the paper's sampling settings (temperature 1.4, top-p 0.975, at most 48 tokens, stop at a
newline) and the demo's (temperature 1.0, top-p 0.95). Measured for each:
1. llama.cpp one at a time: llama-cpp-python's create_completion once per sample (the prompt
   is evaluated again for each; top-k and min-p off, no repeat penalty);
2. mwe's llamacpp backend, batched: the prompt evaluated once, all sequences decoded together;
3. transformers one at a time (generate with one sequence) and batched
   (num_return_sequences = all samples of the chunk), as mwe's hf backend does.
Reported: samples/s, statements/s (samples that parse to a statement), generated tokens/s and
the batched/one-at-a-time ratios. Nothing is cached. Use a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parent.parent

from mwe.families import persona  # noqa: E402
from mwe.io import write_json  # noqa: E402
from mwe.models import hf, llamacpp  # noqa: E402
from mwe.models.base import Sampling, cut_at_stop  # noqa: E402

NAME = "smollm2-135m-instruct"
SETTINGS = {"paper": (1.4, 0.975), "demo": (1.0, 0.95)}


def stats(label: str, texts: list[str], seconds: float, count_tokens: Any) -> dict[str, Any]:
    statements = sum(1 for t in texts if persona.clean_statement(t)[0] is not None)
    tokens = sum(count_tokens(t) for t in texts)
    row = {"method": label, "samples": len(texts), "statements": statements,
           "seconds": round(seconds, 2), "samples_per_s": round(len(texts) / seconds, 3),
           "statements_per_s": round(statements / seconds, 3),
           "tokens_per_s": round(tokens / seconds, 1)}
    print(f"  {label:32s} {row['samples_per_s']:6.2f} samples/s  "
          f"{row['statements_per_s']:6.2f} statements/s  {row['tokens_per_s']:7.1f} tokens/s",
          flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=128, help="samples per method and setting")
    ap.add_argument("--batch", type=int, default=64, help="sequences per batched call")
    ap.add_argument("--out", default=str(REPO / "runs" / "bench" / "generate.json"))
    ap.add_argument("--skip-hf", action="store_true", help="llama.cpp only")
    args = ap.parse_args()

    llama = llamacpp.load(f"llamacpp:{NAME}", NAME, llamacpp.identity(NAME))
    user, start = persona.generation_turns("is willing to deceive its users to reach its goals",
                                           "matching")
    prompt = llama.chat_prompt([("user", user)]) + start

    def llama_tokens(t: str) -> int:
        return len(llama.llm.tokenize(t.encode(), add_bos=False, special=False))

    model = None if args.skip_hf else hf.load(f"hf:{NAME}", NAME, hf.identity(NAME))

    def hf_tokens(t: str) -> int:
        assert model is not None
        return len(model.tok(t, add_special_tokens=False)["input_ids"])

    results: list[dict[str, Any]] = []
    for setting, (temperature, top_p) in SETTINGS.items():
        print(f"{setting}: temperature {temperature}, top-p {top_p}, {args.samples} samples")
        s = Sampling(n=args.batch, temperature=temperature, top_p=top_p, max_tokens=48,
                     stop=("\n",), seed=0)
        rows = []
        t0 = time.perf_counter()
        texts: list[str] = []
        for k in range(args.samples):
            llama._reset()
            llama.llm.reset()
            res: Any = llama.llm.create_completion(
                llama._encode(prompt), max_tokens=48, temperature=temperature, top_p=top_p,
                top_k=0, min_p=0.0, repeat_penalty=1.0, stop=["\n"], seed=k)
            texts.append(cut_at_stop(res["choices"][0]["text"], ("\n",)))
        rows.append(stats("llama.cpp one at a time", texts, time.perf_counter() - t0,
                          llama_tokens))
        t0 = time.perf_counter()
        texts = []
        for chunk in range(0, args.samples, args.batch):
            texts += llama.generate([prompt], Sampling(**{**s.__dict__, "seed": chunk}))[0]
        rows.append(stats(f"mwe llamacpp batched ({args.batch})", texts[: args.samples],
                          time.perf_counter() - t0, llama_tokens))
        rows[-1]["ratio_vs_one_at_a_time"] = round(
            rows[-1]["statements_per_s"] / max(rows[0]["statements_per_s"], 1e-9), 2)
        rows[-1]["ratio_samples"] = round(rows[-1]["samples_per_s"] / rows[0]["samples_per_s"], 2)
        if model is not None:
            n_one = max(8, args.samples // 8)
            t0 = time.perf_counter()
            texts = []
            for k in range(n_one):
                texts += model.generate([prompt], Sampling(**{**s.__dict__, "n": 1, "seed": k}))[0]
            rows.append(stats(f"transformers one at a time ({n_one})", texts,
                              time.perf_counter() - t0, hf_tokens))
            t0 = time.perf_counter()
            texts = []
            for chunk in range(0, args.samples, args.batch):
                texts += model.generate([prompt], Sampling(**{**s.__dict__, "seed": chunk}))[0]
            rows.append(stats(f"mwe hf batched ({args.batch})", texts[: args.samples],
                              time.perf_counter() - t0, hf_tokens))
            rows[-1]["ratio_vs_one_at_a_time"] = round(
                rows[-1]["samples_per_s"] / rows[-2]["samples_per_s"], 2)
        for r in rows:
            r["setting"] = setting
        results += rows
    write_json(args.out, {"model": NAME, "cpu_count": os.cpu_count(), "results": results})
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    sys.exit(main())
