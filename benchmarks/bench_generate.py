"""Benchmark batched generation against one-at-a-time sampling, in one run, on one machine.

    .venv/bin/python benchmarks/bench_generate.py [--samples 128] [--prompts demo,risk]
        [--out runs/bench/generate.json]

Prompts (SmolLM2-135M-Instruct, chat template):
- demo: the persona generation prompt of the demo spec (~100 tokens), at most 48 tokens,
  stop at a newline;
- risk: an advanced-AI-risk few-shot prompt of examples/specs/power-seeking.yaml (5 gold
  questions, ~450 tokens), its max_tokens (160), stop at a blank line;
- risk-distinct (opt-in): as the advanced-AI-risk family samples, a different few-shot prompt
  for every sample (n=1 each, `--batch` prompts per call), so no prompt is shared.
Each with the paper's sampling settings (temperature 1.4, top-p 0.975) and the demo's
(1.0, 0.95). Measured for each:
1. llama.cpp one at a time: llama-cpp-python's create_completion once per sample (the prompt
   is evaluated again for each; top-k and min-p off, no repeat penalty);
2. mwe's llamacpp backend, batched: the prompt evaluated once, all sequences decoded together;
3. hf old: transformers' `generate` with num_return_sequences = all samples of the call, as
   mwe's hf backend did before its own sampling loop (`old_hf_generate` below);
4. hf new: mwe's hf backend (mwe.models.hf_sampling), the same calls.
Reported: samples/s, statements/s (samples that parse to a statement or a question),
generated tokens/s, the batched/one-at-a-time ratio for llama.cpp and the new/old ratio for
hf. Nothing is cached. Use a quiet machine.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parent.parent

from mwe.families import advanced_ai_risk as risk  # noqa: E402
from mwe.families import persona  # noqa: E402
from mwe.io import write_json  # noqa: E402
from mwe.models import hf, llamacpp  # noqa: E402
from mwe.models.base import Sampling, cut_at_stop, seed_for  # noqa: E402
from mwe.spec import load_spec  # noqa: E402

NAME = "smollm2-135m-instruct"
SETTINGS = {"paper": (1.4, 0.975), "demo": (1.0, 0.95)}
RISK_SPEC = REPO / "examples" / "specs" / "power-seeking.yaml"


def old_hf_generate(model: hf.HFModel, prompts: Sequence[str], sampling: Sampling) -> list[list[str]]:
    """The hf backend's `generate` before mwe.models.hf_sampling: transformers' sampler, one
    prompt per call, the prompt expanded to all its sequences before it is evaluated."""
    torch = model.torch
    results: list[list[str]] = []
    pad = model.tok.pad_token_id if model.tok.pad_token_id is not None else model.tok.eos_token_id
    for prompt in prompts:
        ids = torch.tensor([model._encode_many([prompt])[0]], device=model.device)
        torch.manual_seed(seed_for(sampling.seed, prompt))
        sample = sampling.temperature > 0
        with torch.inference_mode():
            gen = model.model.generate(  # type: ignore[misc]
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=sample,
                temperature=sampling.temperature if sample else None,
                top_p=sampling.top_p if sample else None,
                top_k=0 if sample else None,
                max_new_tokens=sampling.max_tokens,
                num_return_sequences=sampling.n,
                pad_token_id=pad,
                stop_strings=list(sampling.stop) or None,
                tokenizer=model.tok,
            )
        texts = model.tok.batch_decode(gen[:, ids.shape[1] :], skip_special_tokens=True)
        results.append([cut_at_stop(t, sampling.stop) for t in texts])
    return results


def stats(label: str, texts: list[str], seconds: float, count_tokens: Callable[[str], int],
          valid: Callable[[str], bool]) -> dict[str, Any]:
    statements = sum(1 for t in texts if valid(t))
    tokens = sum(count_tokens(t) for t in texts)
    row = {"method": label, "samples": len(texts), "statements": statements,
           "seconds": round(seconds, 2), "samples_per_s": round(len(texts) / seconds, 3),
           "statements_per_s": round(statements / seconds, 3),
           "tokens_per_s": round(tokens / seconds, 1)}
    print(f"  {label:34s} {row['samples_per_s']:6.2f} samples/s  "
          f"{row['statements_per_s']:6.2f} statements/s  {row['tokens_per_s']:7.1f} tokens/s",
          flush=True)
    return row


def workload(kind: str, chat: Callable[[str], str], samples: int
             ) -> tuple[list[str], int, tuple[str, ...], Callable[[str], bool]]:
    """(one prompt per sample, max_tokens, stop strings, does a sample parse)."""
    if kind == "demo":
        user, start = persona.generation_turns(
            "is willing to deceive its users to reach its goals", "matching")
        return ([chat(user) + start] * samples, 48, ("\n",),
                lambda t: persona.clean_statement(t)[0] is not None)
    spec = load_spec(RISK_SPEC)
    material = risk.FAMILY.prepare(spec)
    prompts = []
    for i in range(samples if kind == "risk-distinct" else 1):
        letter = risk.LABELS[i % 2]
        rng = random.Random(f"{spec.seed}:{letter}:{i}")  # as the family draws its shots
        picks = rng.sample(range(len(material[letter])), spec.generate.shots)
        user, start = risk.generation_turns(spec.description, letter,
                                            [material[letter][k] for k in picks], spec.instruction)
        prompts.append(chat(user) + start)
    if kind == "risk":
        prompts *= samples
    return (prompts, spec.generate.max_tokens, risk.STOP,
            lambda t: risk.parse_block_quote(">" + t, spec.generate.min_lines)[0] is not None)


def calls(prompts: list[str], batch: int, base: Sampling) -> list[tuple[list[str], Sampling]]:
    """The batched calls: up to `batch` samples of the prompt, or `batch` distinct prompts."""
    out = []
    for start in range(0, len(prompts), batch):
        chunk = prompts[start : start + batch]
        if len(set(chunk)) == 1:
            out.append(([chunk[0]], Sampling(**{**base.__dict__, "n": len(chunk), "seed": start})))
        else:
            out.append((chunk, Sampling(**{**base.__dict__, "n": 1, "seed": start})))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=128, help="samples per method and setting")
    ap.add_argument("--batch", type=int, default=64, help="sequences per batched call")
    ap.add_argument("--prompts", default="demo,risk",
                    help="comma-separated: demo, risk, risk-distinct")
    ap.add_argument("--settings", default=",".join(SETTINGS), help="comma-separated: paper, demo")
    ap.add_argument("--out", default=str(REPO / "runs" / "bench" / "generate.json"))
    ap.add_argument("--skip-hf", action="store_true", help="llama.cpp only")
    ap.add_argument("--skip-llama", action="store_true", help="hf only (old and new)")
    args = ap.parse_args()

    llama = llamacpp.load(f"llamacpp:{NAME}", NAME, llamacpp.identity(NAME))

    def llama_tokens(t: str) -> int:
        return len(llama.llm.tokenize(t.encode(), add_bos=False, special=False))

    model = None if args.skip_hf else hf.load(f"hf:{NAME}", NAME, hf.identity(NAME))

    def hf_tokens(t: str) -> int:
        assert model is not None
        return len(model.tok(t, add_special_tokens=False)["input_ids"])

    def chat(user: str) -> str:
        return llama.chat_prompt([("user", user)])

    def timed(fn: Callable[[list[str], Sampling], list[list[str]]],
              batches: list[tuple[list[str], Sampling]]) -> tuple[list[str], float]:
        t0 = time.perf_counter()
        texts = [t for ps, s in batches for ts in fn(ps, s) for t in ts]
        return texts, time.perf_counter() - t0

    results: list[dict[str, Any]] = []
    summary: list[str] = []
    for kind in args.prompts.split(","):
        prompts, max_tokens, stop, valid = workload(kind, chat, args.samples)
        for setting in args.settings.split(","):
            temperature, top_p = SETTINGS[setting]
            print(f"{kind} prompt, {setting}: temperature {temperature}, top-p {top_p}, "
                  f"{args.samples} samples, at most {max_tokens} tokens")
            base = Sampling(temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                            stop=stop, seed=0)
            batches = calls(prompts, args.batch, base)
            rows = []
            if not args.skip_llama:
                t0 = time.perf_counter()
                texts: list[str] = []
                for k, prompt in enumerate(prompts):
                    llama._reset()
                    llama.llm.reset()
                    res: Any = llama.llm.create_completion(
                        llama._encode(prompt), max_tokens=max_tokens, temperature=temperature,
                        top_p=top_p, top_k=0, min_p=0.0, repeat_penalty=1.0, stop=list(stop),
                        seed=k)
                    texts.append(cut_at_stop(res["choices"][0]["text"], stop))
                one = stats("llama.cpp one at a time", texts, time.perf_counter() - t0,
                            llama_tokens, valid)
                texts, seconds = timed(llama.generate, batches)
                batched = stats(f"mwe llamacpp batched ({args.batch})", texts, seconds,
                                llama_tokens, valid)
                batched["ratio_vs_one_at_a_time"] = round(
                    batched["statements_per_s"] / max(one["statements_per_s"], 1e-9), 2)
                batched["ratio_samples"] = round(batched["samples_per_s"] / one["samples_per_s"], 2)
                rows += [one, batched]
            if model is not None:
                texts, seconds = timed(partial(old_hf_generate, model), batches)
                old = stats("hf old: transformers generate", texts, seconds, hf_tokens, valid)
                texts, seconds = timed(model.generate, batches)
                new = stats(f"hf new: mwe batched ({args.batch})", texts, seconds, hf_tokens, valid)
                new["ratio_vs_old"] = round(new["samples_per_s"] / old["samples_per_s"], 2)
                print(f"  hf new / old: {new['ratio_vs_old']:.2f}x samples/s", flush=True)
                summary.append(f"| {kind} | {setting} | {old['samples_per_s']:.2f} | "
                               f"{new['samples_per_s']:.2f} | {new['ratio_vs_old']:.2f}x |")
                rows += [old, new]
            for r in rows:
                r["prompt"], r["setting"] = kind, setting
            results += rows
    if summary:
        print("\n| prompt | setting | hf old samples/s | hf new samples/s | new/old |\n"
              "|---|---|---|---|---|\n" + "\n".join(summary))
    write_json(args.out, {"model": NAME, "cpu_count": os.cpu_count(),
                          "threads": os.environ.get("MWE_THREADS"), "samples": args.samples,
                          "batch": args.batch, "results": results})
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    sys.exit(main())
