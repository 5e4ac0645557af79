"""Evaluation over HTTP at concurrency 1, 4 and 16 against a local OpenAI-compatible server.

    .venv/bin/python benchmarks/bench_http.py [--rows 60] [--out runs/bench/http.json]

Starts llama.cpp's server (llama-cpp-python[server]) with the bundled SmolLM2 on loopback,
then scores the first N rows of a released persona file through `openai:` (forced
one-token completions: 2 per row, plus the tokenizer calls), nothing cached, once per
concurrency level; and the same rows with the local `llamacpp` backend for reference.
llama.cpp's server runs one request at a time, so concurrency here can only hide the HTTP
and tokenizer round trips; against vLLM or a hosted API it multiplies throughput.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

from mwe import prompts  # noqa: E402
from mwe.datasets import load  # noqa: E402
from mwe.io import write_json  # noqa: E402
from mwe.models import open_model  # noqa: E402
from mwe.models.bundled import gguf_path  # noqa: E402
from mwe.store import Store  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=60)
    ap.add_argument("--out", default=str(REPO / "runs" / "bench" / "http.json"))
    args = ap.parse_args()
    datasets, _ = load([str(REPO / "examples" / "data" / "persona" / "agreeableness.jsonl")])
    rows = []
    for item in datasets[0].items[: args.rows]:
        ctx = prompts.context(item, "human-assistant")
        rows.append((ctx, [prompts.continuation(a, ctx) for a in item.answers]))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model",
         str(gguf_path("smollm2-135m-instruct")), "--model_alias", "smollm2", "--host",
         "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--n_threads", "2",
         "--verbose", "False"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results: list[dict[str, Any]] = []
    try:
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)
                break
            except OSError:
                time.sleep(0.3)
        with tempfile.TemporaryDirectory() as tmp:
            for conc in (1, 4, 16):
                model = open_model(f"openai:smollm2@http://127.0.0.1:{port}/v1?concurrency={conc}",
                                   Store(Path(tmp) / f"c{conc}.sqlite"))
                model.backend.resolve_scoring()  # type: ignore[attr-defined]
                t0 = time.perf_counter()
                model.score(rows)
                dt = time.perf_counter() - t0
                stats = model.backend.stats  # type: ignore[attr-defined]
                results.append({"method": f"openai http, concurrency {conc}",
                                "rows_per_s": round(len(rows) / dt, 2),
                                "requests": stats.calls, "seconds": round(dt, 2)})
                print(f"concurrency {conc:2d}: {len(rows) / dt:6.2f} rows/s "
                      f"({stats.calls} requests in {dt:.1f} s)", flush=True)
            server.terminate()
            server.wait()
            local = open_model("llamacpp:smollm2-135m-instruct", Store(Path(tmp) / "l.sqlite"))
            t0 = time.perf_counter()
            local.score(rows)
            dt = time.perf_counter() - t0
            results.append({"method": "local llamacpp", "rows_per_s": round(len(rows) / dt, 2)})
            print(f"local llamacpp: {len(rows) / dt:6.2f} rows/s", flush=True)
    finally:
        if server.poll() is None:
            server.terminate()
    write_json(args.out, {"rows": len(rows), "cpu_count": os.cpu_count(), "results": results})
    print(f"written: {args.out}")


if __name__ == "__main__":
    sys.exit(main())
