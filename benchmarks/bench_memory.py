"""Peak memory of `mwe evaluate` on one persona file against all of them.

    .venv/bin/python benchmarks/bench_memory.py [--quick] [--model SPEC] [--limit N] [--warm]
        [--out runs/bench/memory.json]

Evaluation should be flat in dataset size: all 123 shipped persona files (~121k rows) in one
command within 1.5x the peak resident memory of one file. Each case is one `mwe evaluate`
process on a fresh cache of its own (every row computed, as on a user's first run), its peak
RSS taken from wait4. The default model is a tiny randomly initialised Llama (one layer,
hidden size 32, SmolLM2's tokenizer) built in a temporary folder: a real model takes hours
over 121k rows here, and a small one leaves what the pipeline itself holds in view. This
process imports neither torch nor transformers (the tiny model is built by a child): a
child's ru_maxrss counts the RSS of the process it was forked from.
`--model hf:smollm2-135m-instruct --limit 20` gives the baseline a user of the real model
sees. `--warm` scores each case once first and measures the second, cached run (no model is
loaded then: the pipeline alone); `--cache DIR` keeps each case's cache in DIR for the next
run (which is then a warm one). `--quick`: the first 12 files, 200 rows each.
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

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parent.parent
PERSONA = REPO.parent / "shared" / "anthropic-evals" / "persona"
MAIN = "import sys; from mwe.cli import main; sys.exit(main(sys.argv[1:]))"


def tiny_model(folder: Path) -> str:
    """A random one-layer Llama with the bundled SmolLM2 tokenizer (fast to score, its
    weights small beside what the pipeline holds), built by a child process."""
    subprocess.run([sys.executable, __file__, "--build-tiny", str(folder)], check=True)
    return f"hf:{folder}"


def build_tiny(folder: Path) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from mwe.models.bundled import hf_dir

    tok = AutoTokenizer.from_pretrained(hf_dir("smollm2-135m-instruct"))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=2048, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)


def seed_cache(cache: Path, model: str) -> None:
    """A bundled hf model's converted folder, linked into a fresh cache: converting it again
    would take a minute and its memory would count in the peak."""
    name = model.removeprefix("hf:").split("?")[0]
    if not model.startswith("hf:") or Path(os.path.expanduser(name)).exists():
        return
    from mwe.models import bundled

    try:
        folder = bundled.hf_dir(name)
    except Exception:  # not a bundled model (a hub id): nothing to seed
        return
    (cache / "hf").mkdir(parents=True, exist_ok=True)
    os.symlink(folder, cache / "hf" / folder.name)


def evaluate(model: str, files: list[str], limit: int | None, cache: Path, out: Path,
             threads: int) -> tuple[float, float]:
    """Peak RSS (MB) and seconds of one `mwe evaluate` process."""
    data = [a for f in files for a in ("-d", f)]
    cmd = [sys.executable, "-c", MAIN, "evaluate", "-m", model, *data, "--out", str(out),
           "--cache", str(cache / "calls.sqlite"), "--no-progress"]
    if limit:
        cmd += ["--limit", str(limit)]
    env = {**os.environ, "MWE_CACHE_DIR": str(cache), "MWE_THREADS": str(threads)}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if proc.returncode:
        sys.exit(f"mwe evaluate failed ({proc.returncode}):\n{err.decode(errors='replace')}")
    return usage.ru_maxrss / 1024, seconds  # ru_maxrss is in KiB on Linux


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a model spec (default: a tiny random Llama)")
    ap.add_argument("--data", default=str(PERSONA), help="folder of .jsonl files")
    ap.add_argument("--files", type=int, help="the first N files as the largest case")
    ap.add_argument("--limit", type=int, help="rows per file (mwe evaluate --limit)")
    ap.add_argument("--threads", type=int, default=1, help="MWE_THREADS (default 1)")
    ap.add_argument("--warm", action="store_true", help="measure a second, cached run")
    ap.add_argument("--cache", metavar="DIR", help="keep the cases' caches here (default: none)")
    ap.add_argument("--quick", action="store_true", help="12 files, 200 rows each")
    ap.add_argument("--out", default=str(REPO / "runs" / "bench" / "memory.json"))
    ap.add_argument("--build-tiny", metavar="FOLDER", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.build_tiny:
        build_tiny(Path(args.build_tiny))
        return
    if args.quick:
        args.files = args.files or 12
        args.limit = args.limit or 200
    files = sorted(str(p) for p in Path(args.data).glob("*.jsonl"))[: args.files]
    if not files:
        sys.exit(f"no .jsonl files in {args.data}")
    with tempfile.TemporaryDirectory(prefix="mwe-bench-memory-") as tmp:
        tiny = Path(args.cache or tmp) / "tiny-llama"  # kept with the caches: the same model
        model = args.model or (f"hf:{tiny}" if (tiny / "config.json").exists()
                               else tiny_model(tiny))
        results: list[dict[str, Any]] = []
        for i, case in enumerate([files[:1], files]):
            out = Path(tmp) / f"out{i}"
            cache = Path(args.cache or tmp) / f"cache-{len(case)}-files-limit-{args.limit}"
            warm = args.warm or (cache / "calls.sqlite").exists()
            if not cache.exists():
                cache.mkdir(parents=True)
                seed_cache(cache, model)
            if args.warm:
                evaluate(model, case, args.limit, cache, out, args.threads)
            rss, seconds = evaluate(model, case, args.limit, cache, out, args.threads)
            summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
            rows = sum(d["n"] for d in summary["settings"]["datasets"])
            results.append({"files": len(case), "rows": rows, "peak_rss_mb": round(rss, 1),
                            "seconds": round(seconds, 1), "cache": "warm" if warm else "cold"})
            shutil.rmtree(out)
            if not args.cache:
                shutil.rmtree(cache)
    for r in results:
        r["ratio"] = round(r["peak_rss_mb"] / results[0]["peak_rss_mb"], 3)
    import resource

    # the children's peaks include this process's RSS at their fork: it must stay below them
    driver = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = {"model": args.model or "tiny random Llama (1 layer, hidden 32)",
              "limit": args.limit, "threads": args.threads,
              "driver_peak_rss_mb": round(driver, 1),
              "cases": results}
    print(f"model {report['model']}, limit {args.limit} "
          f"(this process: {driver:.0f} MB)")
    print(f"{'files':>6} {'rows':>8} {'peak RSS MB':>12} {'ratio':>6} {'seconds':>8}  cache")
    for r in results:
        print(f"{r['files']:>6} {r['rows']:>8} {r['peak_rss_mb']:>12.1f} {r['ratio']:>6.2f} "
              f"{r['seconds']:>8.1f}  {r['cache']}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
