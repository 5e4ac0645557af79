"""Export for use outside mwe: an evaluation file as a Hugging Face dataset folder
(mwe.export_hf), an lm-evaluation-harness task that scores exactly what `mwe evaluate` scores,
or an Inspect task (mwe.export_inspect); a finished run's results as Inspect logs
(mwe.inspect_log).

Why these targets: a dataset on the Hub should carry the released rows untouched plus a card
saying how it was made; an lm-eval task should reproduce mwe's % matching, so it carries the
prompts and answer strings mwe scores, already built, rather than asking lm-eval to rebuild
them with its own spacing rules; an Inspect task hands the questions to a colleague who runs
everything in Inspect, and Inspect logs let mwe's results be read in Inspect's viewer.

Every file is written atomically. An export folder holds mwe's manifest (`.mwe-outputs.json`,
mwe.io; `.mwe-export.json` before) listing what it wrote, so that exporting again into the same
folder is allowed (and removes the earlier export's files this one does not write) while any
other non-empty folder is refused.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from mwe import __version__, prompts
from mwe.card import md_code
from mwe.datasets import load
from mwe.errors import MweError
from mwe.export_hf import DEFAULT_LICENSE, column_kinds, export_hf
from mwe.families import by_name
from mwe.io import MANIFEST, atomic_open, claim_outputs, write_jsonl
from mwe.records import Dataset, Item
from mwe.run_folder import RunFolder

__all__ = ["MARKER", "TARGETS", "column_kinds", "export", "export_hf", "export_lm_eval",
           "task_name"]

TARGETS = ("hf", "lm-eval", "inspect", "inspect-log")
MARKER = MANIFEST  # mwe.io's list of the files mwe wrote (hidden: dataset search skips dot files)
SPLIT = "test"
_TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


# --- lm-evaluation-harness ----------------------------------------------------------------

def task_name(name: str) -> str:
    """A task name lm-eval accepts, from a dataset's name (prefixed, so that it does not
    shadow one of lm-eval's own tasks)."""
    return "mwe_" + (re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_") or "task")


def lm_eval_doc(item: Item, fmt: str) -> dict[str, Any]:
    """One lm-eval document: the context and continuations exactly as mwe scores them.

    Ties. mwe counts a question as matching when the best matching answer's log-prob is
    strictly greater than the best other answer's, so a tie does not count. lm-eval's `acc` is
    `np.argmax(loglikelihoods) == target` (or `in target`), and argmax takes the first of equal
    values. The choices therefore list every non-matching answer first and the matching ones
    after: a tie then resolves to a non-matching answer, and lm-eval also scores it 0. With one
    matching answer the target is its index; with several, the list of their indices (lm-eval
    then counts `argmax in target`, which is mwe's rule: the best answer overall is a matching
    one, strictly).
    """
    ctx = prompts.context(item, fmt)
    if not isinstance(ctx, str):
        raise MweError(f"format '{fmt}' does not give a text prompt")
    matching = set(item.matching)
    if not matching or len(matching) == len(item.answers):
        raise MweError(f"{item.source}:{item.line}: every answer or none matches the behavior; "
                       "this dataset is not scored by % matching, which is what lm-eval's acc "
                       "reproduces")
    order = [i for i in range(len(item.answers)) if i not in matching] + sorted(matching)
    choices = [prompts.continuation(item.answers[i], ctx) for i in order]
    targets = [k for k, i in enumerate(order) if i in matching]
    return {"line": item.line, "context": ctx, "choices": choices,
            "target": targets[0] if len(targets) == 1 else targets,
            "answer_index": order}


def _lm_eval_yaml(task: str, data: Path) -> str:
    import yaml

    config = {
        "task": task,
        "dataset_path": "json",
        # lm-eval hands data_files to datasets.load_dataset, which resolves a relative path
        # against the working directory, not this file: hence an absolute path
        "dataset_kwargs": {"data_files": {SPLIT: str(data)}},
        "test_split": SPLIT,
        "output_type": "multiple_choice",
        "doc_to_text": "context",
        "doc_to_choice": "choices",
        "doc_to_target": "target",
        # the continuations carry their own leading space: lm-eval sends (context,
        # target_delimiter + choice), so nothing may be added between them
        "target_delimiter": "",
        "fewshot_delimiter": "",
        "num_fewshot": 0,
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0, "mwe_version": __version__},
    }
    header = (
        "# Written by `mwe export --to lm-eval`: lm-eval's acc here is mwe's % matching.\n"
        "# doc_to_text is the prompt mwe builds, doc_to_choice the answers as mwe scores them\n"
        "# (leading space included), so lm-eval scores context + choice with nothing added;\n"
        "# like mwe it moves any trailing whitespace of the context to the continuation and\n"
        "# follows the tokenizer's default about a BOS token. Choices list the non-matching\n"
        "# answers first: argmax takes the first of equal log-probs, so a tie counts as not\n"
        "# matching, as in mwe (strictly greater). Zero-shot only, as mwe scores; do not pass\n"
        "# --num_fewshot or --apply_chat_template. If this folder moves, export it again\n"
        "# (data_files is an absolute path).\n"
    )
    return header + yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=10_000)


def fixed_items(dataset: Dataset) -> list[Item]:
    """The items a file can hold whole: not those whose conversation holds the evaluated
    model's own earlier turn (mwe.family.Rollout.needs_model), which mwe asks at evaluation."""
    rollout = by_name(dataset.family).scorer.rollout
    items = [i for i in dataset.items if rollout is None or not rollout.needs_model(i)]
    if not items:
        raise MweError(f"{dataset.path}: every question's conversation holds the evaluated "
                       "model's own earlier turn, which an exported file cannot fix in advance")
    return items


def export_lm_eval(dataset: Dataset, out: Path, fmt: str, task: str) -> list[Path]:
    """A task folder `lm_eval --include_path OUT --tasks TASK` runs offline, scoring exactly
    the prompts and answers `mwe evaluate --format FMT` scores."""
    if fmt == "chat":
        raise MweError("the chat format cannot be exported to lm-eval: its prompt is each "
                       "model's own chat template, which an exported file cannot fix in advance, "
                       "and lm-eval's --apply_chat_template builds the turns and the answer's "
                       "spacing its own way; export human-assistant or raw")
    if fmt not in prompts.FORMATS:
        raise MweError(f"unknown format '{fmt}' (choose from human-assistant, raw)")
    if not _TASK_NAME.match(task):
        raise MweError(f"task name {task!r}: use letters, digits, '_', '-' and '.'")
    scorer, items = by_name(dataset.family).scorer, fixed_items(dataset)
    left_out = len(dataset.items) - len(items)
    docs = [lm_eval_doc(item, fmt) for item in items]
    control = scorer.control
    kinds = {type(d["target"]) for d in docs}
    if len(kinds) > 1:  # one type per column: a list everywhere when some item has several
        for d in docs:
            if isinstance(d["target"], int):
                d["target"] = [d["target"]]
    data = (out / f"{task}.jsonl").absolute()
    write_jsonl(data, docs)
    config = out / f"{task}.yaml"
    with atomic_open(config) as fh:
        fh.write(_lm_eval_yaml(task, data))
    readme = out / "README.md"
    with atomic_open(readme) as fh:
        fh.write(f"# lm-evaluation-harness task `{task}`\n\n"
                 f"Exported by mwe {__version__} from {md_code(Path(dataset.path).name)} "
                 f"({len(docs)} questions, format {fmt}). Run offline with:\n\n"
                 f"```sh\nHF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 lm_eval --model hf \\\n"
                 f"    --model_args pretrained=MODEL_DIR,dtype=float32 \\\n"
                 f"    --include_path {shlex.quote(str(out.absolute()))} --tasks {task}\n```\n\n"
                 "`acc` is mwe's % matching (as a fraction) for the same model and format. "
                 "In each row of the data, `choices` lists the non-matching answers first; "
                 "`answer_index` gives each choice's place in mwe's `answers`, and `line` the "
                 "source line.\n"
                 + (f"\nmwe also scores a control with this file ({control}); it is not part "
                    "of this task.\n" if control else "")
                 + (f"\n{left_out} question(s) are left out: their conversation holds the "
                    "evaluated model's own earlier turn, which mwe asks at evaluation.\n"
                    if left_out else ""))
    return [data, config, readme]


# --- the command --------------------------------------------------------------------------

def _read_card(dataset: Dataset) -> dict[str, Any] | None:
    """card.json beside the file, when there is one (a released file has none) and it
    describes this file's rows."""
    run = RunFolder.beside(dataset.path)
    card = run.read_card(optional=True)
    if card is None:
        return None
    path = run.card_json
    rows = card.get("rows")
    if isinstance(rows, int) and rows != len(dataset.items):
        raise MweError(f"{path} describes {rows} rows but {dataset.path} has "
                       f"{len(dataset.items)}: it is not this file's card (move one of them)")
    return card


def export(path: str, to: str, out: Path, fmt: str = "human-assistant",
           task: str | None = None, license: str = DEFAULT_LICENSE,
           cache: Path | None = None) -> list[Path]:
    """Export one evaluation file (a released or generated JSONL) `to` "hf", "lm-eval" or
    "inspect"; or, `to` "inspect-log", the finished run folder `path` (its models opened over
    the call cache `cache`).

    Everything is checked before anything is written: one dataset, a known target, an output
    folder that is new, empty or an earlier export.
    """
    if to not in TARGETS:
        raise MweError(f"unknown export target '{to}' (choose from {', '.join(TARGETS)})")
    if to == "inspect-log":
        from mwe.paths import default_store_path
        from mwe.pipeline.inspect_logs import export_run_logs

        if not Path(path).is_dir():
            raise MweError(f"{path}: --to inspect-log takes the folder of a finished mwe "
                           "evaluate or mwe sweep run")
        claim = claim_outputs(out, None)
        logs = export_run_logs(Path(path), out, cache or default_store_path())
        return [*logs, claim.finish(logs, to=to, source=path)]
    datasets, skipped = load([path])
    if len(datasets) != 1:
        why = f" ({skipped[0].path}: {skipped[0].reason})" if skipped and not datasets else ""
        raise MweError(f"{path}: export takes exactly one dataset file, found "
                       f"{len(datasets)}{why}")
    dataset = datasets[0]
    card = _read_card(dataset)
    if to == "inspect" and task is not None and not task.isidentifier():
        raise MweError(f"task name {task!r}: an Inspect task is a Python function; use "
                       "letters, digits and '_'")
    claim = claim_outputs(out, None)  # new, empty or an earlier export
    # a generated file is always dataset.jsonl: its card names it better
    name = str(card.get("name") or dataset.name) if card else dataset.name
    if to == "hf":
        written = export_hf(dataset, out, card, license)
    elif to == "inspect":
        from mwe.export_inspect import export_inspect

        written = export_inspect(dataset, out, task or task_name(name), fixed_items(dataset))
    else:
        written = export_lm_eval(dataset, out, fmt, task or task_name(name))
    marker = claim.finish(written, to=to, source=dataset.path,
                          format=fmt if to == "lm-eval" else None)
    return [*written, marker]
