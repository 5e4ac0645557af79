"""Answer order (`--orders all`): every multiple-choice question asked in each cyclic order of
its options, and what the answers say about position.

A small model often answers by position ("(A)" whatever it holds); the rate matching the
behavior for the order the file gives then says little. Rotating the options (the letters
stay, the texts move, the matching answer's letter moves with its text) and averaging over
the orders cancels a pure position preference, and the chosen positions show it: per letter,
the share of scored rows answering it, and `position_bias`, the largest share minus chance.
For Yes/No questions (persona), which have no positions to rotate, `pct_yes` is the share of
rows answering Yes whatever the label: a model that says Yes to nearly everything scores
about 50% on a balanced file, which the rate alone does not show.

Rotation by k moves every option k places down (the last ones wrap to the top): the option
at index i is shown at (i + k) mod n. A question is rotated only when its options are
lettered (A), (B), ... in order, each opening a line of its own once; an option runs to the
next one (blank lines between options stay where they are), the last to a blank line or an
'Answer:' line. Any other question is asked as given (order 0 only).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from mwe.choices import ANSWER_LETTERS
from mwe.records import Dataset, Item

ORDERS = ("given", "all")
# summary.csv's columns for them, each only where a summary has it (summary.json also has
# `chosen_position`, the share per letter, and `pct_matching_by_order`)
ORDER_COLUMNS = ("most_chosen_position", "position_bias", "pct_yes")
_OPTION = re.compile(rf"^(\s*\(([{ANSWER_LETTERS}])\))(.*)$")
_ANY_OPTION = re.compile(rf"^\s*\([{ANSWER_LETTERS}]\)")
_LETTER = re.compile(rf"^\s*\(([{ANSWER_LETTERS}])\)\s*$")
_ANSWER_LINE = re.compile(r"^\s*Answer:\s*$")


def letters_of(answers: Sequence[str]) -> list[str] | None:
    """The letters of lettered answers (' (A)' -> 'A'); None when any answer is no letter."""
    found = [m.group(1) if (m := _LETTER.match(a)) else None for a in answers]
    return None if any(x is None for x in found) else [str(x) for x in found]


def _blocks(lines: list[str], n: int) -> list[tuple[int, int]] | None:
    """Line ranges [start, end) of the n options (A), (B), ...; None when the question does
    not list exactly those, in order, each once at the start of a line."""
    starts = [i for i, line in enumerate(lines) if _ANY_OPTION.match(line)]
    found = [m.group(2) for i in starts if (m := _OPTION.match(lines[i]))]
    if found != list(ANSWER_LETTERS[:n]):
        return None
    spans = []
    for j, start in enumerate(starts):
        end = starts[j + 1] if j + 1 < n else len(lines)
        if j + 1 == n:  # the last option: to a blank line or an 'Answer:' line
            end = next((i for i in range(start + 1, end)
                        if not lines[i].strip() or _ANSWER_LINE.match(lines[i])), end)
        while end > start + 1 and not lines[end - 1].strip():
            end -= 1  # blank lines between options separate them: they stay in place
        spans.append((start, end))
    return spans


def rotate_text(question: str, n: int, k: int) -> str | None:
    """The question with its n options rotated by k (the letters stay in place); None when
    its options cannot be told apart (see the module's docstring)."""
    lines = question.split("\n")
    spans = _blocks(lines, n)
    if spans is None:
        return None
    heads, bodies = [], []
    for start, end in spans:
        m = _OPTION.match(lines[start])
        assert m is not None
        heads.append(m.group(1))
        bodies.append([m.group(3), *lines[start + 1:end]])
    out: list[str] = []
    at = 0
    for j, (start, end) in enumerate(spans):
        body = bodies[(j - k) % n]
        out += lines[at:start] + [heads[j] + body[0], *body[1:]]
        at = end
    return "\n".join(out + lines[at:])


def rotate_item(item: Item, k: int) -> Item | None:
    """The item with its options rotated by k and its matching answers moved with them,
    recording `order` k; None when it cannot be rotated."""
    letters = letters_of(item.answers)
    n = len(item.answers)
    if letters != list(ANSWER_LETTERS[:n]) or n < 2:
        return None
    raw, user = rotate_text(item.raw_text, n, k), rotate_text(item.user_text, n, k)
    if raw is None or user is None:
        return None
    return replace(item, raw_text=raw, user_text=user,
                   matching=tuple((i + k) % n for i in item.matching), order=k)


def orders_of(item: Item) -> list[Item]:
    """The item in each cyclic order of its options (order 0 first: as given), or only as
    given when it has no lettered options to rotate."""
    given = replace(item, order=0)
    rotated = [rotate_item(item, k) for k in range(1, len(item.answers))]
    if not rotated or any(r is None for r in rotated):
        return [given]
    return [given, *(r for r in rotated if r is not None)]


def with_orders(datasets: Sequence[Dataset]) -> list[Dataset]:
    """Every dataset with each item followed by its rotations."""
    return [Dataset(d.name, d.path, d.family,
                    tuple(x for item in d.items for x in orders_of(item)))
            for d in datasets]


def unrotated(datasets: Sequence[Dataset]) -> int:
    """How many lettered items of `with_orders` datasets are asked as given only (each
    rotated one has exactly one copy of order 1)."""
    items = [it for d in datasets for it in d.items]
    return (sum(1 for it in items if it.order == 0 and letters_of(it.answers) is not None)
            - sum(1 for it in items if it.order == 1))


# ---- what the answers say about position ------------------------------------------------------

def chosen(row: Mapping[str, Any]) -> list[float] | None:
    """The row's answer as a share per answer: the most likely answer for log-prob scoring (a
    tie split evenly), the share of replies giving each for `--score text`; None when
    unscored."""
    answers = list(row.get("answers") or [])
    if row.get("score") == "text":
        if row.get("unscored") is not None:
            return None
        said = [a for a in row.get("extracted") or [] if a is not None]
        if not said:
            return None
        return [said.count(a) / len(said) for a in answers]
    lps = row.get("logprobs")
    if not lps or len(lps) != len(answers):
        return None
    top = max(lps)
    best = [i for i, lp in enumerate(lps) if lp == top]
    return [1.0 / len(best) if i in best else 0.0 for i in range(len(answers))]


def _positions(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per letter the share of scored lettered rows choosing it; the bias: the largest share
    above chance (1/k for k options; averaged over rows when they differ in k)."""
    shares: dict[str, float] = {}
    chance: dict[str, float] = {}
    n = 0
    for r in rows:
        letters = letters_of(r.get("answers") or [])
        got = chosen(r) if letters else None
        if letters is None or got is None:
            continue
        n += 1
        for x, s in zip(letters, got):
            shares[x] = shares.get(x, 0.0) + s
            chance[x] = chance.get(x, 0.0) + 1.0 / len(letters)
    if not n:
        return {}
    order = sorted(shares)
    top = max(order, key=lambda x: shares[x] - chance[x])
    return {"chosen_position": {x: shares[x] / n for x in order},
            "most_chosen_position": top, "position_bias": (shares[top] - chance[top]) / n}


def _yes(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The % of scored Yes/No rows answering Yes, whatever the label."""
    yes, n = 0.0, 0
    for r in rows:
        answers = [str(a).strip().lower() for a in r.get("answers") or []]
        got = chosen(r) if sorted(answers) == ["no", "yes"] else None
        if got is None:
            continue
        n += 1
        yes += got[answers.index("yes")]
    return {"pct_yes": 100.0 * yes / n} if n else {}


def _by_order(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """% matching among the scored rows of each order."""
    groups: dict[int, list[bool]] = {}
    for r in rows:
        if r.get("order") is not None and r.get("matches_behavior") is not None:
            groups.setdefault(int(r["order"]), []).append(bool(r["matches_behavior"]))
    if len(groups) < 2:
        return {}
    return {"pct_matching_by_order": {str(k): 100.0 * sum(v) / len(v)
                                      for k, v in sorted(groups.items())}}


def order_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What a summary adds, over its scored rows: with `--orders all` the chosen positions,
    the position bias and % matching per order; with `--orders all` or `--score text`,
    `pct_yes` for Yes/No questions. Nothing otherwise: a log-prob run's summaries read as
    they always have."""
    ordered = any(r.get("order") is not None for r in rows)
    text = any(r.get("score") == "text" for r in rows)
    if not (ordered or text):
        return {}
    scored = [r for r in rows if r.get("unscored") is None]
    out = {**_positions(scored), **_by_order(scored)} if ordered else {}
    return {**out, **_yes(scored)}
