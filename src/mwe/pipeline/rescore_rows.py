"""The rows of a rescore read again: what mwe.pipeline.rescore (an evaluate folder) and
mwe.pipeline.rescore_sweep (a sweep folder) share, kept here so that imports go one way.

Each text row's question is read again from its `source` with the run's controls and answer
orders, its stored replies are read with the current rules (and a judge, if any), and the
changes in reading are counted.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mwe.checks import At
from mwe.datasets import load_file
from mwe.errors import DataError
from mwe.families import by_name
from mwe.judge import Judge
from mwe.models.base import Reply
from mwe.orders import with_orders
from mwe.pipeline.evaluate import replied_row, summarise, with_variants
from mwe.pipeline.replies import read_all
from mwe.records import Dataset, Item
from mwe.results import ScoredRow, SummaryRow


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
        if by_name(row.family).scorer.rollout is not None:
            raise DataError(where, line, "family", f"a {row.family} row: its conversation "
                            "holds the evaluated model's own earlier turns, which a rescore "
                            "cannot ask again; run the evaluation again with the new reading "
                            "(its replies come from the cache)")
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
