"""The two CPU levers for `hf` log-prob scoring not yet measured (issue 30, item 6).

    .venv/bin/python benchmarks/bench_cpu_levers.py [--limit 100] [--reps 3]
        [--variants fp32 bf16 compile] [--backend inductor] [--out runs/bench/cpu_levers.json]

Why: eager fp32 spends ~15% of its time in unfused elementwise ops; `torch.compile` with
dynamic shapes compiled for 288 s and was no faster, and bf16 was never tried on a CPU with
AVX-512-BF16/AMX. A lever is kept only if it gains >= 1.2x with decisions unchanged.

Variants, on the bundled SmolLM2 and the persona files in raw format (as bench_evaluate.py):
- fp32: HFModel.score as is (the baseline);
- bf16: `hf:smollm2-135m-instruct?dtype=bf16`;
- bf16-autocast: fp32 weights, the body under `torch.autocast("cpu", bfloat16)` (matmuls in
  bf16, norms and the residual stream in fp32): a smaller Δ, if bf16's comes from the rest;
- compile: an fp32 HFModel whose body (the decoder with the prefix KV cache) is wrapped in
  `torch.compile(dynamic=False)`, each packed call padded up to a static bucket: width to a
  multiple of --width-step tokens, batch to the next of --batch-sizes. Padded tokens see only
  the prefix and themselves, and no real token sees them, so each row's output is unchanged.
Bucket sets are tuned on the first persona file (--candidates) and reported on the other two
(held out). Variants alternate rep by rep (A B C C B A ...). Reported: rows/s per rep, the
ratio to fp32 per rep, compile seconds (the calls that compiled, apart), the max |Δ log-prob|
against fp32 and the number of decisions (a matching answer's log-prob above every other's)
that differ, and the load averages.
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

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

from mwe import threads  # noqa: E402

threads.quiet_openmp_spin()  # before torch loads, as mwe does

from bench_evaluate import CHUNK, PERSONA, requests  # noqa: E402

from mwe.io import write_json  # noqa: E402
from mwe.models import hf  # noqa: E402

NAME = "smollm2-135m-instruct"


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cpu_flags() -> list[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((ln for ln in text.splitlines() if ln.startswith("flags")), "").split()
    return sorted(f for f in flags if "bf16" in f or f.startswith("amx"))


class Bucketed:
    """Stands in for HFModel.decoder: packed calls with a prefix cache go to a compiled body,
    padded to a static (batch, width) bucket; anything else (the prefix itself) runs eager."""

    def __init__(self, decoder: Any, width_step: int, batch_sizes: list[int], backend: str,
                 pad_id: int) -> None:
        import torch

        self.torch = torch
        self.eager = decoder
        self.width_step = width_step
        self.batch_sizes = sorted(batch_sizes)
        self.pad_id = pad_id
        self.compiled = torch.compile(self._body, dynamic=False, backend=backend)
        self.seen: set[tuple[int, ...]] = set()
        self.compile_seconds = 0.0
        self.compiles = 0
        self.padded_tokens = 0
        self.real_tokens = 0

    def _body(self, ids: Any, positions: Any, mask: Any, kv: list[tuple[Any, Any]]) -> Any:
        from transformers.cache_utils import DynamicCache

        cache = DynamicCache(ddp_cache_data=kv)
        return self.eager(input_ids=ids, position_ids=positions, attention_mask=mask,
                          past_key_values=cache, use_cache=True).last_hidden_state

    def bucket(self, b: int, w: int) -> tuple[int, int]:
        bb = next((s for s in self.batch_sizes if s >= b), b)
        ww = -(-w // self.width_step) * self.width_step
        return bb, ww

    def __call__(self, input_ids: Any, position_ids: Any = None, attention_mask: Any = None,
                 past_key_values: Any = None, use_cache: bool = False) -> Any:
        torch = self.torch
        if past_key_values is None or attention_mask is None:
            return self.eager(input_ids=input_ids, position_ids=position_ids,
                              attention_mask=attention_mask, use_cache=use_cache)
        b, w = input_ids.shape
        p = attention_mask.shape[-1] - w
        bb, ww = self.bucket(b, w)
        ids = torch.full((bb, ww), self.pad_id, dtype=input_ids.dtype)
        ids[:b, :w] = input_ids
        pos = torch.full((bb, ww), p, dtype=position_ids.dtype)
        pos[:b, :w] = position_ids
        neg = float("-inf")
        mask = torch.full((bb, 1, ww, p + ww), neg, dtype=attention_mask.dtype)
        mask[:, :, :, :p] = 0  # every position sees the prefix
        mask[:b, :, :w, :] = neg
        mask[:b, :, :w, : p + w] = attention_mask
        pad_q = torch.arange(ww)
        pad_rows = torch.zeros((bb, ww), dtype=torch.bool)
        pad_rows[:, w:] = True
        pad_rows[b:, :] = True
        r_idx, q_idx = pad_rows.nonzero(as_tuple=True)
        mask[r_idx, 0, q_idx, p + pad_q[q_idx]] = 0  # a padded token also sees itself
        kv = []
        for layer in past_key_values.layers:
            k, v = layer.keys, layer.values
            if bb > b:
                k = torch.cat([k, k[:1].expand(bb - b, *k.shape[1:])])
                v = torch.cat([v, v[:1].expand(bb - b, *v.shape[1:])])
            kv.append((k.contiguous(), v.contiguous()))
        key = (bb, ww, p)
        t = time.perf_counter()
        hidden = self.compiled(ids, pos, mask, kv)
        if key not in self.seen:
            self.seen.add(key)
            self.compiles += 1
            self.compile_seconds += time.perf_counter() - t
        self.padded_tokens += bb * ww
        self.real_tokens += b * w

        class Out:
            last_hidden_state = hidden[:b, :w]

        return Out()


class Autocast:
    """Stands in for HFModel.decoder: fp32 weights and residual stream, matmuls in bf16."""

    def __init__(self, decoder: Any) -> None:
        self.eager = decoder

    def __call__(self, **kwargs: Any) -> Any:
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = self.eager(**kwargs)
        out.last_hidden_state = out.last_hidden_state.float()
        return out


def load_variant(variant: str, args: Any) -> Any:
    """An HFModel for the variant (the compile one with its decoder wrapped)."""
    suffix = "?dtype=bf16" if variant == "bf16" else ""
    model: Any = hf.load(f"hf:{NAME}{suffix}", NAME + suffix, hf.identity(NAME + suffix))
    if variant == "bf16-autocast":
        model.decoder = Autocast(model.decoder)
    if variant.startswith("compile"):
        step, sizes = parse_bucket(args.buckets)
        pad = model.tok.pad_token_id if model.tok.pad_token_id is not None else 0
        model.decoder = Bucketed(model.decoder, step, sizes, args.backend, pad)
    return model


def dynamo_counters() -> dict[str, int]:
    """Graphs captured and graph breaks: a break splits the compiled body (less fusion)."""
    from torch._dynamo.utils import counters

    return {"unique_graphs": int(counters["stats"]["unique_graphs"]),
            "graph_breaks": int(sum(counters["graph_break"].values()))}


def parse_bucket(text: str) -> tuple[int, list[int]]:
    """'64:1,2,4,8' -> width step 64, batch sizes [1, 2, 4, 8]."""
    try:
        step, _, sizes = text.partition(":")
        return int(step), [int(s) for s in sizes.split(",")]
    except ValueError:
        raise SystemExit(f"bad bucket set '{text}' (want WIDTH_STEP:B1,B2,...)") from None


def score_all(model: Any, reqs: list[Any]) -> tuple[float, list[list[float]]]:
    model._prefix_kv.clear()
    out: list[list[float]] = []
    t = time.perf_counter()
    for i in range(0, len(reqs), CHUNK):
        out.extend(model.score(reqs[i : i + CHUNK]))
    return time.perf_counter() - t, out


def margins(items: list[Any], scores: list[list[float]]) -> list[float]:
    """Per item: the best matching answer's log-prob minus the best other's (> 0: matching)."""
    out = []
    for it, lps in zip(items, scores):
        match = max(lps[i] for i in it.matching)
        other = max((lp for i, lp in enumerate(lps) if i not in it.matching), default=float("-inf"))
        out.append(match - other)
    return out


def delta(a: list[list[float]], b: list[list[float]]) -> float:
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


def tune(args: Any, reqs: list[Any]) -> tuple[str, dict[str, Any]]:
    """The fastest bucket set on the tuning file (after its compiles), and each one's numbers."""
    found: dict[str, Any] = {}
    for cand in args.candidates:
        args.buckets = cand
        model = load_variant("compile", args)
        first, _ = score_all(model, reqs)
        wall, _ = score_all(model, reqs)
        dec = model.decoder
        found[cand] = {"first_pass_s": first, "rows_per_s": len(reqs) / wall,
                       "compiles": dec.compiles, "compile_seconds": dec.compile_seconds,
                       "padding_share": 1 - dec.real_tokens / max(1, dec.padded_tokens),
                       "load": load_avg()}
        print(f"  tune {cand}: {found[cand]}", flush=True)
    best = max(found, key=lambda c: found[c]["rows_per_s"])
    return best, found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=100, help="rows per persona file")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--variants", nargs="+", default=["fp32", "bf16", "bf16-autocast", "compile"],
                    choices=["fp32", "bf16", "bf16-autocast", "compile"])
    ap.add_argument("--backend", default="inductor", help="torch.compile backend")
    ap.add_argument("--candidates", nargs="+", default=["64:2,4,8", "32:1,2,3,4,5,6,7,8"],
                    help="bucket sets WIDTH_STEP:BATCH,SIZES tuned on the first file")
    ap.add_argument("--out", default=str(REPO / "runs" / "bench" / "cpu_levers.json"))
    args = ap.parse_args()
    import torch

    if args.variants[0] != "fp32":
        args.variants.insert(0, "fp32")
    result: dict[str, Any] = {"torch": torch.__version__, "cpu_flags": cpu_flags(),
                              "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                              "threads": threads.resolve(), "limit": args.limit,
                              "load_start": load_avg()}
    print(f"torch {torch.__version__}, {result['cpu_capability']}, flags {result['cpu_flags']}, "
          f"load {result['load_start']}", flush=True)
    _, tune_reqs = requests(PERSONA[:1], args.limit)
    items, reqs = requests(PERSONA[1:], args.limit)
    result["tune_file"] = Path(PERSONA[0]).name
    result["held_out"] = [Path(f).name for f in PERSONA[1:]]
    if "compile" in args.variants:
        try:
            best, found = tune(args, tune_reqs)
        except Exception as exc:  # report the compiler's own error, then measure the rest
            msg = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            print(f"  compile failed: {msg}", flush=True)
            result["compile_error"] = msg
            args.variants.remove("compile")
        else:
            result["tuning"] = found
            result["buckets"] = args.buckets = best
            print(f"  buckets: {best}", flush=True)
    models = {v: load_variant(v, args) for v in args.variants}
    warm: dict[str, float] = {}
    for v, m in models.items():  # the held-out shapes compile here, not in the timed reps
        warm[v], _ = score_all(m, reqs)
    order = list(models)
    times: dict[str, list[float]] = {v: [] for v in order}
    scores: dict[str, list[list[float]]] = {}
    loads: list[list[float]] = []
    for rep in range(args.reps):
        for v in (order if rep % 2 == 0 else order[::-1]):
            wall, scores[v] = score_all(models[v], reqs)
            times[v].append(wall)
        loads.append(load_avg())
        print(f"  rep {rep + 1}: " + ", ".join(f"{v} {len(reqs) / times[v][-1]:.1f} rows/s"
                                               for v in order) + f"; load {loads[-1]}", flush=True)
    base = margins(items, scores["fp32"])
    table: dict[str, Any] = {}
    for v in order:
        mine = margins(items, scores[v])
        flipped = [abs(a) for a, b in zip(base, mine) if (a > 0) != (b > 0)]
        rates = [len(reqs) / t for t in times[v]]
        ratios = [b / t for b, t in zip(times["fp32"], times[v])]
        row: dict[str, Any] = {
            "rows_per_s": rates, "ratio_per_rep": ratios,
            "ratio_best": max(rates) / (len(reqs) / min(times["fp32"])),
            "max_abs_logprob_delta": delta(scores[v], scores["fp32"]),
            "decisions_changed": len(flipped),
            # how close to a tie the flipped items were in fp32
            "flipped_max_fp32_margin": max(flipped, default=0.0),
            "first_pass_s": warm[v],
        }
        dec = getattr(models[v], "decoder", None)
        if isinstance(dec, Bucketed):
            row.update(compile_seconds=dec.compile_seconds, compiles=dec.compiles,
                       padding_share=1 - dec.real_tokens / max(1, dec.padded_tokens),
                       dynamo=dynamo_counters())
        table[v] = row
        print(f"{v:8s} {', '.join(f'{r:.1f}' for r in rates)} rows/s; ratio "
              f"{', '.join(f'{r:.2f}x' for r in ratios)}; max |Δ| "
              f"{row['max_abs_logprob_delta']:.1e}; decisions changed "
              f"{row['decisions_changed']}/{len(items)}"
              + (f"; compile {row['compile_seconds']:.0f} s ({row['compiles']} shapes)"
                 if "compiles" in row else ""), flush=True)
    result.update(rows=len(reqs), variants=table, load_per_rep=loads, load_end=load_avg())
    write_json(args.out, result)
    print(f"load {result['load_end']}; results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
