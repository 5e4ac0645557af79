"""How well the extractor (the rules) and, for a run read with a judge, the reading with the
judge (the rules, then the judge where they found none) read replies, against people
(`mwe validate stats` on a study made with `--replies RUN`).

Each item's human answer is the raters' majority: the category (an answer, or "None /
unclear") more raters chose than any other. A tie (1-1-1, or 1-1 with two raters) has no
majority and counts as unclear: if people disagree on what a reply says, it is unclear.
A reader's unscored reply is its "unclear". Between a reader and the majority: Cohen's kappa
with a 95% percentile bootstrap over items, the share of items they agree on with a Wilson
interval, the share of human-unclear items the reader left unscored (and of the reader's
unscored items people found unclear), and the confusion table. The raters' agreement among
themselves is Fleiss's kappa, as for a label study (items with the modal number of raters).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from mwe.errors import MweError
from mwe.stats import wilson_interval
from mwe.validate.sample import UNCLEAR, StudyItem
from mwe.validate.stats import Rating, fleiss_kappa, fleiss_kappa_interval

READERS = ("extractor", "judge")
CHUNK_CELLS = 4_000_000  # bootstrap draws x items per chunk: about 32 MB of weights


def majority(answers: Sequence[str]) -> str | None:
    """The category most raters chose; a tie is UNCLEAR; None when nobody answered."""
    if not answers:
        return None
    return UNCLEAR if _tied(answers) else Counter(answers).most_common(1)[0][0]


def _tied(answers: Sequence[str]) -> bool:
    top = Counter(answers).most_common(2)
    return len(top) == 2 and top[0][1] == top[1][1]


def _codes(a: Sequence[str], b: Sequence[str]) -> tuple[np.ndarray, np.ndarray, int]:
    cats = {c: k for k, c in enumerate(sorted(set(a) | set(b)))}
    return (np.array([cats[x] for x in a], dtype=int), np.array([cats[x] for x in b], dtype=int),
            len(cats))


def _kappa(weights: np.ndarray, a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """Cohen's kappa for each row of item weights (m x n): observed agreement against the
    agreement expected from the two marginals; nan where that expectation is 1."""
    total = weights.sum(axis=1)
    p_o = weights @ (a == b).astype(float) / total
    pa = weights @ np.eye(k)[a] / total[:, None]
    pb = weights @ np.eye(k)[b] / total[:, None]
    p_e = np.sum(pa * pb, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p_e < 1.0 - 1e-12, (p_o - p_e) / (1.0 - p_e), np.nan)


def cohen_kappa(a: Sequence[str], b: Sequence[str]) -> float:
    """Cohen's kappa of two raters' categories over the same items; nan when undefined (no
    items, or both put every item in one and the same category)."""
    if len(a) != len(b):
        raise ValueError("Cohen's kappa needs both raters' answers for the same items")
    if not a:
        return float("nan")
    x, y, k = _codes(a, b)
    return float(_kappa(np.ones((1, len(a))), x, y, k)[0])


def cohen_kappa_interval(a: Sequence[str], b: Sequence[str], draws: int = 2000,
                         seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap over items (draws with an undefined kappa left out), as the
    label study's Fleiss interval; (nan, nan) when no draw has one."""
    if not a:
        return (float("nan"), float("nan"))
    x, y, k = _codes(a, b)
    n = len(a)
    rng = np.random.default_rng(seed)
    kappas = np.empty(draws)
    step = max(1, CHUNK_CELLS // n)
    for start in range(0, draws, step):
        m = min(step, draws - start)
        idx = rng.integers(0, n, size=(m, n)) + n * np.arange(m)[:, None]
        weights = np.bincount(idx.ravel(), minlength=m * n).reshape(m, n).astype(float)
        kappas[start:start + m] = _kappa(weights, x, y, k)
    kappas = kappas[~np.isnan(kappas)]
    if kappas.size == 0:
        return (float("nan"), float("nan"))
    low, high = np.percentile(kappas, [2.5, 97.5])
    return (float(low), float(high))


def _num(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def _raters_kappa(votes: list[list[str]], answers: list[tuple[str, ...]]
                  ) -> tuple[float | None, float | None, float | None]:
    """Fleiss's kappa among the raters, over the items with the modal number of answers."""
    sizes = Counter(len(v) for v in votes if len(v) >= 2)
    if not sizes:
        return (None, None, None)
    modal = max(sizes.items(), key=lambda kv: (kv[1], kv[0]))[0]
    cats = sorted({a for ans in answers for a in ans})
    table = np.array([[v.count(c) for c in cats] for v in votes if len(v) == modal], float)
    kappa = fleiss_kappa(table)
    if math.isnan(kappa):
        return (None, None, None)
    low, high = fleiss_kappa_interval(table)
    return (kappa, _num(low), _num(high))


def _reader(got: list[str], human: list[str], scope: dict[str, Any], reader: str
            ) -> dict[str, Any]:
    agree = sum(g == h for g, h in zip(got, human))
    lo, hi = wilson_interval(agree, len(got)) if got else (float("nan"), float("nan"))
    kappa = cohen_kappa(got, human)
    klo, khi = cohen_kappa_interval(got, human) if not math.isnan(kappa) else (None, None)
    unclear = [g for g, h in zip(got, human) if h == UNCLEAR]
    unscored = [h for g, h in zip(got, human) if g == UNCLEAR]
    confusion: dict[str, dict[str, int]] = {}
    for g, h in sorted(zip(got, human), key=lambda gh: (gh[1] == UNCLEAR, gh[1].strip())):
        row = confusion.setdefault(h, {})
        row[g] = row.get(g, 0) + 1
    return {**scope, "reader": reader, "agreement": agree / len(got) if got else None,
            "agreement_ci_low": _num(lo), "agreement_ci_high": _num(hi),
            "cohen_kappa": _num(kappa), "kappa_ci_low": _num(klo), "kappa_ci_high": _num(khi),
            "human_unclear": len(unclear),
            "unclear_unscored_share": (sum(g == UNCLEAR for g in unclear) / len(unclear)
                                       if unclear else None),
            "reader_unscored": len(unscored),
            "unscored_unclear_share": (sum(h == UNCLEAR for h in unscored) / len(unscored)
                                       if unscored else None),
            "confusion": confusion}


def _scope(scope: str, dataset: str, rated: list[tuple[StudyItem, list[Rating]]]
           ) -> list[dict[str, Any]]:
    votes = [[r.answer for r in rs if r.answer is not None] for _, rs in rated]
    answered = [(it, v) for (it, _), v in zip(rated, votes) if v]
    human = [str(majority(v)) for _, v in answered]
    kappa, low, high = _raters_kappa([v for _, v in answered], [it.answers for it, _ in answered])
    base = {"scope": scope, "dataset": dataset, "n_items": len(answered),
            "n_raters": len({r.rater for _, rs in rated for r in rs if r.answer is not None}),
            "n_ratings": sum(len(v) for v in votes),
            "ties": sum(1 for _, v in answered if _tied(v)),
            "raters_kappa": _num(kappa), "raters_kappa_ci_low": low, "raters_kappa_ci_high": high}
    out = []
    for reader in READERS:
        items = [it for it, _ in answered]
        if reader == "judge" and not any(it.reply and it.reply.has_judge for it in items):
            continue
        got = [_read(it, reader) for it in items]
        out.append(_reader(got, human, base, reader))
    return out


def _read(it: StudyItem, reader: str) -> str:
    r = it.reply
    assert r is not None
    answer = r.extracted if reader == "extractor" else r.judge
    return UNCLEAR if answer is None else answer


def reply_stats(items: list[StudyItem], ratings: list[Rating]) -> list[dict[str, Any]]:
    """Per dataset, then over all items (scope "all"): each reader against the raters'
    majority, as JSON-safe dicts (None where a figure is undefined)."""
    index: dict[tuple[str, str], tuple[StudyItem, list[Rating]]] = {}
    for it in items:
        if it.reply is None:
            raise MweError(f"dataset {it.dataset} item {it.line} is not a reply")
        index[(it.dataset, str(it.line))] = (it, [])
    for x in ratings:
        found = index.get((x.dataset, x.item))
        if found is None:
            raise MweError(f"answers for dataset {x.dataset} item {x.item}, which is not "
                           "among the sampled replies")
        if x.answer is not None and x.answer not in found[0].answers:
            raise MweError(f"dataset {x.dataset} item {x.item}, rater {x.rater}: answer "
                           f"{x.answer!r} is not among the item's answers")
        found[1].append(x)
    by_dataset: dict[str, list[tuple[StudyItem, list[Rating]]]] = {}
    for it, rs in index.values():
        by_dataset.setdefault(it.dataset, []).append((it, rs))
    rows = [row for name, rated in by_dataset.items() for row in _scope("dataset", name, rated)]
    return rows + _scope("all", "", list(index.values()))


def confusion_table(confusion: dict[str, dict[str, int]]) -> tuple[list[str], list[list[str]]]:
    """The confusion table as printed: a header, then one row per majority answer."""
    cols = sorted({g for row in confusion.values() for g in row},
                  key=lambda c: (c == UNCLEAR, c.strip()))
    return (["people"] + [c.strip() for c in cols],
            [[h.strip()] + [str(row.get(c, 0)) for c in cols] for h, row in confusion.items()])
