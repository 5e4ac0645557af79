"""Score Anthropic-evals rows with EleutherAI's lm-evaluation-harness, as a reference.

Why this exists: ``mwe`` computes its own log-likelihoods for the
``answer_matching_behavior`` / ``answer_not_matching_behavior`` continuations. This
module gets the same numbers from lm-evaluation-harness (``lm-eval==0.4.13``, HF
backend, ``model="hf"``) so a benchmark can compare speed and check parity row by row.

It runs fully offline: the rows go into a temporary JSONL file read by a task YAML
(``dataset_path: json`` + ``data_files``) in a temporary ``include_path``; nothing is
fetched from a hub. The model must be a local Hugging Face directory (for the
bundled GGUF models, a once-converted fp32 copy).

Scoring semantics (lm-eval 0.4.13): context = the raw ``question``; continuation =
the answer string exactly as the dataset writes it (``target_delimiter: ""``, so
``" Yes"`` stays ``" Yes"``). Trailing whitespace of the context is moved to the
continuation; ``context + continuation`` is tokenized as one string and split at
``len(tok_encode(context))``. Special tokens follow the tokenizer's own default
(Gemma-3 adds ``<bos>``, SmolLM2 adds nothing) unless ``add_bos`` is given.

lm-eval (and torch) are imported lazily: importing this module needs only the standard
library.
CLI::

    python benchmarks/lmeval_runner.py --model-dir DIR --data FILE [FILE ...] \\
        --batch-size 32 [--limit N] [--add-bos | --no-add-bos] --out result.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TASK_NAME = "mwe_lmeval_reference"

_TASK_YAML = """\
task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
  cache_dir: {cache}
test_split: test
output_type: multiple_choice
doc_to_text: question
doc_to_choice: choices
doc_to_target: 0
target_delimiter: ""
num_fewshot: 0
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
"""


def _read_rows(files: list[str], limit: int | None) -> list[dict[str, Any]]:
    """Rows of every file (at most ``limit`` per file), with their file and 1-based line."""
    rows: list[dict[str, Any]] = []
    for file_index, path in enumerate(files):
        taken = 0
        with open(path, encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, start=1):
                if limit is not None and taken >= limit:
                    break
                if not line.strip():
                    continue
                record = json.loads(line)
                rows.append(
                    {
                        "question": record["question"],
                        "choices": [
                            record["answer_matching_behavior"],
                            record["answer_not_matching_behavior"],
                        ],
                        "file_index": file_index,
                        "line": line_no,
                    }
                )
                taken += 1
    return rows


def run_lmeval(
    model_dir: str,
    files: list[str],
    batch_size: int,
    limit: int | None = None,
    add_bos: bool | None = None,
    num_threads: int | None = None,
    rows: list[dict[str, Any]] | None = None,
    device: str = "cpu",
    dtype: str = "float32",
) -> dict[str, Any]:
    """Score every row of ``files`` with lm-eval's HF backend.

    Args:
        model_dir: local Hugging Face model directory (loaded in float32 on CPU).
        files: JSONL files with ``question``, ``answer_matching_behavior`` and
            ``answer_not_matching_behavior`` string fields.
        batch_size: lm-eval batch size (requests per forward pass).
        limit: at most this many rows from each file (``None``: all).
        add_bos: passed to HFLM as ``add_bos_token``; ``None`` keeps the tokenizer's
            default (Gemma-3 adds ``<bos>``, SmolLM2 adds nothing).
        num_threads: ``torch.set_num_threads`` for the run (``None``: torch's default).
            On a shared 2-core machine, 2 threads can be several times slower than 1.
        rows: the rows themselves, for families whose answers are not the two persona
            fields (several choices, other prompts): ``{"question", "choices",
            "file_index", "line"}`` each, ``file_index`` into ``files``; ``limit`` is then
            ignored.
        device, dtype: where and in what precision lm-eval runs the model (a GPU
            benchmark passes "cuda" and "bfloat16").

    Returns:
        ``{"rows_per_s", "seconds", "n_rows", "rows", ...}`` where ``rows`` is
        ``[{"file", "line", "logprobs": [lp_matching, lp_not_matching]}]`` in input order
        and ``seconds`` times ``simple_evaluate`` only (task build + scoring), not the
        model load (``load_seconds``); ``scoring_seconds`` is the time inside
        ``lm.loglikelihood`` alone (``scoring_cpu_seconds``: CPU seconds of the process).
    """
    import lm_eval
    import torch
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    if num_threads is not None:
        torch.set_num_threads(num_threads)

    if rows is None:
        rows = _read_rows(files, limit)
    if not rows:
        raise ValueError("no rows to score")

    with tempfile.TemporaryDirectory(prefix="mwe-lmeval-") as tmp:
        tmp_path = Path(tmp)
        data_path = tmp_path / "rows.jsonl"
        with open(data_path, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
        task_dir = tmp_path / "tasks"
        task_dir.mkdir()
        (task_dir / f"{TASK_NAME}.yaml").write_text(
            _TASK_YAML.format(
                task=TASK_NAME,
                data=json.dumps(str(data_path)),
                cache=json.dumps(str(tmp_path / "datasets-cache")),
            ),
            encoding="utf-8",
        )

        start = time.perf_counter()
        model_kwargs: dict[str, Any] = {
            "pretrained": model_dir,
            "dtype": dtype,
            "device": device,
            "batch_size": batch_size,
        }
        if add_bos is not None:
            model_kwargs["add_bos_token"] = add_bos
        lm = HFLM(**model_kwargs)
        load_seconds = time.perf_counter() - start

        # include_defaults=False: skip indexing lm-eval's ~14k built-in task YAMLs (~20 s).
        task_manager = TaskManager(include_path=str(task_dir), include_defaults=False)
        scoring_seconds = scoring_cpu_seconds = 0.0
        loglikelihood = lm.loglikelihood

        def timed_loglikelihood(*args: Any, **kwargs: Any) -> Any:
            nonlocal scoring_seconds, scoring_cpu_seconds
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                return loglikelihood(*args, **kwargs)
            finally:
                scoring_seconds += time.perf_counter() - t0
                scoring_cpu_seconds += time.process_time() - c0

        lm.loglikelihood = timed_loglikelihood  # type: ignore[method-assign]
        start = time.perf_counter()
        results = lm_eval.simple_evaluate(
            model=lm,
            tasks=[TASK_NAME],
            task_manager=task_manager,
            num_fewshot=0,
            log_samples=True,
            bootstrap_iters=0,
        )
        seconds = time.perf_counter() - start

    if results is None:
        raise RuntimeError("lm_eval.simple_evaluate returned no results")
    samples = sorted(results["samples"][TASK_NAME], key=lambda s: s["doc_id"])
    if len(samples) != len(rows):
        raise RuntimeError(f"lm-eval scored {len(samples)} rows, expected {len(rows)}")
    out_rows: list[dict[str, Any]] = []
    for sample in samples:
        doc = sample["doc"]
        # filtered_resps for multiple_choice: one (loglikelihood, is_greedy) per choice.
        logprobs = [float(resp[0]) for resp in sample["filtered_resps"]]
        out_rows.append(
            {"file": files[doc["file_index"]], "line": doc["line"], "logprobs": logprobs}
        )
    return {
        "rows_per_s": len(out_rows) / seconds,
        "seconds": seconds,
        "n_rows": len(out_rows),
        "load_seconds": load_seconds,
        "scoring_seconds": scoring_seconds,
        "scoring_cpu_seconds": scoring_cpu_seconds,
        "batch_size": batch_size,
        "num_threads": torch.get_num_threads(),
        "model_dir": model_dir,
        "rows": out_rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--data", nargs="+", required=True)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit", type=int, default=None, help="rows per file")
    parser.add_argument("--add-bos", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    result = run_lmeval(
        args.model_dir, args.data, args.batch_size, args.limit, args.add_bos, args.threads
    )
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(
        f"{result['n_rows']} rows in {result['seconds']:.2f} s "
        f"({result['rows_per_s']:.1f} rows/s), load {result['load_seconds']:.2f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
