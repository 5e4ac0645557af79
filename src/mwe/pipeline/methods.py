"""Two scoring methods side by side (`--score logprob,text`): every item scored by its
answers' log-probs and by what the model says, and per model and dataset how often the two
give the same answer, with the confusion table, so a researcher sees what moving from
log-probs to replies changes.

An item's log-prob answer is its most likely answer; its text answer is the answer most of
its replies gave (a tie between answers counts as `several_answers`), or the reason it is
unscored. The share agreeing is over the items both methods scored, with a Wilson interval;
the unscored items are in the table, never dropped silently.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mwe.io import write_csv, write_json
from mwe.stats import wilson_interval

METHOD_FILES = ("methods.csv", "methods.json")
METHOD_COLUMNS = ["model", "dataset", "n", "n_both_scored", "n_same", "pct_same", "ci_low",
                  "ci_high", "n_text_unscored"]


def logprob_answer(row: Mapping[str, Any]) -> str | None:
    """The answer with the highest log-prob (the first of a tie, as argmax takes it)."""
    lps, answers = row.get("logprobs"), row.get("answers") or []
    if not lps or len(lps) != len(answers):
        return None
    return str(answers[max(range(len(lps)), key=lambda i: lps[i])])


def text_answer(row: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(the answer most replies gave, None) or (None, why the item is unscored)."""
    if row.get("unscored") is not None:
        return None, str(row["unscored"])
    counts = Counter(a for a in row.get("extracted") or [] if a is not None)
    if not counts:
        return None, "no_answer"
    top = counts.most_common()
    if len(top) > 1 and top[0][1] == top[1][1]:
        return None, "several_answers"
    return str(top[0][0]), None


def _key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return (row.get("label") or row["model"], row["dataset"], row["source"], row["line"],
            row.get("order", 0))


def compare(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per model and dataset (in the order first seen): the agreement of the two methods and
    the confusion table {log-prob answer: {text answer or 'unscored: reason': count}}."""
    logprob: dict[tuple[Any, ...], str | None] = {}
    text: dict[tuple[Any, ...], tuple[str | None, str | None]] = {}
    for row in rows:
        if row.get("score") == "text":
            text[_key(row)] = text_answer(row)
        else:
            logprob[_key(row)] = logprob_answer(row)
    groups: dict[tuple[str, str], list[tuple[str | None, tuple[str | None, str | None]]]] = \
        defaultdict(list)
    for key, lp in logprob.items():
        if key in text:
            groups[(str(key[0]), str(key[1]))].append((lp, text[key]))
    out = []
    for (model, dataset), pairs in groups.items():
        both = [(lp, tx) for lp, (tx, _) in pairs if lp is not None and tx is not None]
        same = sum(1 for lp, tx in both if lp.strip() == tx.strip())  # a chat answer has no space
        lo, hi = wilson_interval(same, len(both))
        confusion: dict[str, Counter[str]] = defaultdict(Counter)
        for lp, (tx, why) in pairs:
            confusion[str(lp)][tx.strip() if tx is not None else f"unscored: {why}"] += 1
        out.append({"model": model, "dataset": dataset, "n": len(pairs),
                    "n_both_scored": len(both), "n_same": same,
                    "pct_same": 100.0 * same / len(both) if both else float("nan"),
                    "ci_low": 100.0 * lo, "ci_high": 100.0 * hi,
                    "n_text_unscored": sum(1 for _, (tx, _) in pairs if tx is None),
                    "confusion": {k.strip(): dict(sorted(v.items()))
                                  for k, v in sorted(confusion.items())}})
    return out


def write_methods(out: Path, rows: Iterable[Mapping[str, Any]]) -> dict[str, Path]:
    """methods.csv and methods.json when the rows hold both methods; nothing otherwise."""
    table = compare(rows)
    if not table:
        return {}
    paths = {"methods_csv": out / METHOD_FILES[0], "methods_json": out / METHOD_FILES[1]}
    write_csv(paths["methods_csv"], table, METHOD_COLUMNS)
    write_json(paths["methods_json"], {"methods": table})
    return paths


def read_methods(out: Path) -> list[dict[str, Any]]:
    """The comparison a finished run wrote (for the command's printed table)."""
    table: list[dict[str, Any]] = json.loads(
        (out / METHOD_FILES[1]).read_text(encoding="utf-8"))["methods"]
    return table
