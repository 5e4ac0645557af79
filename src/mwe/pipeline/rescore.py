"""`mwe rescore RUN [--judge MODEL]`: read the stored replies of a finished `--score text`
run again, with the current rules and optionally a judge, without asking the evaluated model
anything: the replies come from rows.jsonl, so a change in the scores is the reading's alone.

The questions are read again from each row's `source` (the dataset file the run read, as the
run named it: a relative path is relative to where the run was made), with the run's control
variants and answer orders, so the family's `result` and the summaries are made exactly as
`mwe evaluate` makes them. Log-prob rows and their summaries are kept as they were. The
outputs replace the run's own (or go to another folder); usage.csv keeps the evaluation's
lines and adds the judge's under the stage `rescore`. A sweep folder is read the same way and
written by the sweep's own writer (mwe.pipeline.rescore_sweep).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mwe.checks import At
from mwe.cost import read_usage
from mwe.datasets import load_file
from mwe.errors import DataError, MweError
from mwe.judge import Judge
from mwe.models.base import Reply
from mwe.orders import with_orders
from mwe.pipeline.evaluate import ModelRun, replied_row, summarise, with_variants, write_outputs
from mwe.pipeline.replies import read_all
from mwe.records import Dataset, Item
from mwe.report.jsonfile import load_json
from mwe.results import ScoredRow, SummaryRow
from mwe.run_folder import SWEEP_JSON, ResultsFolder


@dataclass
class Rescored:
    """What a rescore wrote and changed: per (old reading -> new reading) the number of
    replies, a reading being the answer given or 'unscored: REASON'."""

    paths: dict[str, Path]
    summaries: list[SummaryRow]
    text_rows: int = 0
    replies: int = 0
    judged: int = 0
    changes: Counter[tuple[str, str]] = field(default_factory=Counter)
    # usage.csv's lines of the evaluation, to keep before the judge's
    earlier_usage: list[dict[str, Any]] = field(default_factory=list)
    # a sweep's trends made again (None: an evaluate folder)
    trends: list[dict[str, Any]] | None = None


def read_rows(path: Path) -> list[tuple[int, ScoredRow]]:
    """rows.jsonl as (line, row); a malformed line is an error naming file, line and field."""
    if not path.is_file():
        raise MweError(f"{path}: missing (mwe rescore takes the folder of a finished "
                       "mwe evaluate --score text run)")
    out = []
    try:
        with path.open(encoding="utf-8") as fh:
            for line, text in enumerate(fh, 1):
                at = At(str(path), line)
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise at.error(None, f"not valid JSON: {exc.msg} (column {exc.colno})"
                                   ) from None
                out.append((line, ScoredRow.from_dict(obj, at)))
    except UnicodeDecodeError:
        raise DataError(str(path), None, None, "not UTF-8 text") from None
    return out


def stored_replies(row: ScoredRow, at: At) -> list[Reply]:
    """A text row's replies as the model gave them: visible text, reasoning, finish."""
    lists = {}
    for key in ("replies", "reasoning", "finish"):
        value = row.get(key)
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            raise at.expected(key, "a list of strings", value)
        lists[key] = value
    if not len(lists["replies"]) == len(lists["reasoning"]) == len(lists["finish"]):
        raise at.error("reasoning", "expected one entry per reply")
    return [Reply.from_json({"text": t, "reasoning": r, "finish": f})
            for t, r, f in zip(lists["replies"], lists["reasoning"], lists["finish"])]


def load_items(rows: Sequence[tuple[int, ScoredRow]], where: str) -> dict[tuple[Any, ...], Item]:
    """The items of the text rows, read again from their sources (with the run's controls and
    answer orders), by (dataset, line, order)."""
    names: dict[tuple[str, str], set[str]] = defaultdict(set)
    ordered: set[str] = set()
    first: dict[str, int] = {}
    for line, row in rows:
        names[(row.source, row.family)].add(row.dataset)
        first.setdefault(row.source, line)
        if row.get("order") is not None:
            ordered.add(row.source)
    items: dict[tuple[Any, ...], Item] = {}
    for (source, family), wanted in names.items():
        path = Path(source)
        if not path.is_file():
            raise DataError(where, first[source], "source",
                            f"{source}: no such dataset file; rescore reads each question "
                            "again from the file the run read (a relative path is relative to "
                            "where the run was made: run mwe rescore from there)")
        found: set[str] = set()
        for name in sorted(wanted, key=len):  # a variant's name extends its file's
            if name in found:
                continue
            loaded = load_file(path, name, family)
            if not isinstance(loaded, Dataset):
                raise DataError(where, first[source], "source", f"{source}: {loaded.reason}")
            variants = with_variants([loaded])
            if source in ordered:
                variants = with_orders(variants)
            for d in variants:
                found.add(d.name)
                for it in d.items:
                    items.setdefault((d.name, it.line, it.order), it)
    return items


def reading(row: dict[str, Any], k: int) -> str:
    """Reply k of a row as read: the answer it gave, or why it is unscored."""
    extracted = row.get("extracted") or []
    answer = extracted[k] if k < len(extracted) else None
    if answer is not None:
        return str(answer).strip()
    return f"unscored: {dict(_reasons(row)).get(k, '?')}"


def _reasons(row: dict[str, Any]) -> list[tuple[int, str]]:
    """(reply index, reason) of each unscored reply: unscored_reasons lists them in order."""
    missing = [k for k, x in enumerate(row.get("extracted") or []) if x is None]
    return list(zip(missing, [str(r) for r in row.get("unscored_reasons") or []]))


def rescore(run: Path, out: Path, judge: Judge | None = None,
            on_progress: Callable[[int], None] | None = None,
            settings_note: dict[str, Any] | None = None) -> Rescored:
    """Re-read every stored reply of `run` and write the outputs to `out` (see the module); a
    sweep folder is rescored as one (mwe.pipeline.rescore_sweep)."""
    folder = ResultsFolder(run)
    rows = read_rows(folder.rows)
    if not any(r.get("score") == "text" for _, r in rows):
        raise MweError(f"{folder.rows}: no rows scored by the replies; mwe rescore re-reads the "
                       "replies of an mwe evaluate or mwe sweep --score text run, and this run "
                       "has none")
    if (run / SWEEP_JSON).is_file():
        from mwe.pipeline.rescore_sweep import rescore_sweep  # it builds on this module

        return rescore_sweep(run, out, rows, judge, on_progress, settings_note)
    if not folder.summary_json.is_file():
        raise MweError(f"{folder.summary_json}: missing (mwe rescore takes the folder of a "
                       "finished mwe evaluate or mwe sweep run)")
    shown = At(str(folder.summary_json), word="found", show="kind")
    summary = shown.mapping(load_json(folder.summary_json), None)
    old_summaries = summary.get("summary")
    if not isinstance(old_summaries, list):
        raise shown.expected("summary", "a list of summaries", old_summaries)
    settings = summary.get("settings")
    settings = dict(settings) if isinstance(settings, dict) else {}

    result = Rescored({}, [], earlier_usage=read_usage(folder.usage, "evaluate"))
    new_rows, _ = reread(rows, str(folder.rows), judge, on_progress, result)
    runs = _runs(new_rows, old_summaries, shown)
    result.summaries = [s for r in runs for s in r.summaries]
    score = dict(settings.get("score") or {"method": "text"})
    score.pop("judge", None)
    if judge is not None:
        score["judge"] = judge.spec
    settings["score"] = score
    settings["rescore"] = note(run, judge, settings_note)
    result.paths = write_outputs(out, runs, settings)
    return result


def note(run: Path, judge: Judge | None, settings_note: dict[str, Any] | None
         ) -> dict[str, Any]:
    """What the outputs record of the rescore that made them."""
    return {"from": str(run), "judge": None if judge is None else judge.spec,
            **(settings_note or {})}


def reread(rows: Sequence[tuple[int, ScoredRow]], where: str, judge: Judge | None,
           on_progress: Callable[[int], None] | None, result: Rescored
           ) -> tuple[list[ScoredRow], list[Item]]:
    """Every row in order, each text row made again from its stored replies (the others as
    they were), and the item of each text row; the counts and changes go to `result`."""
    text = [(line, r) for line, r in rows if r.get("score") == "text"]
    items = load_items(text, where)
    asked: list[Item] = []
    replies: list[list[Reply]] = []
    for line, row in text:
        at = At(where, line)
        item = items.get((row.dataset, row.line, row.get("order")))
        if item is None or tuple(item.answers) != row.answers:
            raise at.error("line", f"{row.source} line {row.line} is not the question the run "
                           "asked (the dataset file changed since the run?)")
        asked.append(item)
        replies.append(stored_replies(row, at))
    read = read_all(asked, replies, judge, on_progress)
    new_text = []
    for (_, row), item, r in zip(text, asked, read):
        new = replied_row(row.model, row.format, item, r)
        new_text.append(new if row.label is None else new.labelled(row.label))

    result.text_rows, result.replies = len(text), sum(len(r) for r in replies)
    by_line = dict(zip((line for line, _ in text), new_text))
    for (_, old), new in zip(text, new_text):
        before, after = old.to_dict(), new.to_dict()
        for k in range(len(after["replies"])):
            was, now = reading(before, k), reading(after, k)
            if was != now:
                result.changes[(was, now)] += 1
        decisions = (after.get("judge") or {}).get("decisions") or []
        result.judged += sum(1 for d in decisions if d is not None)
    return [by_line.get(line, row) for line, row in rows], asked


def summary_again(s: SummaryRow, rows: Sequence[ScoredRow], at: At, where: str) -> SummaryRow:
    """A summary of text rows made again from its model's new `rows`, as evaluate makes it;
    any other kept as it was."""
    if s.get("n_scored") is None:
        return s
    mine = [r for r in rows if r.dataset == s.dataset and r.get("score") == "text"]
    if not mine:
        raise at.error(where, f"no rows of {s.model} on {s.dataset} in rows.jsonl")
    return summarise(s.model, s.format, Dataset(s.dataset, "", s.family, ()), mine)


def _runs(rows: Sequence[ScoredRow], summaries: list[Any], at: At) -> list[ModelRun]:
    """The rows and summaries per model, in the run's order (as evaluate hands them to
    write_outputs); a summary of text rows made again from the new rows, others kept."""
    runs: dict[str, ModelRun] = {}
    for row in rows:
        runs.setdefault(row.model, ModelRun(row.model)).held.append(row)
    for i, obj in enumerate(summaries):
        s = SummaryRow.from_dict(obj, at.on(None))
        run = runs.setdefault(s.model, ModelRun(s.model))
        run.summaries.append(summary_again(s, run.held, at, f"summary[{i}]"))
    return list(runs.values())
