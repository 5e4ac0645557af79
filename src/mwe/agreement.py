"""Model agreement and trend reversals across a series (the paper's section on agreement).

The paper: "A model prefers a behavior if the log-likelihood of the labels that match the
behavior is higher than of those that don't", and it counts over the persona datasets how
often two models (a preference model and an RLHF model, a small and a large one) both prefer
or both disprefer a behavior.

How one model's preference on one dataset is aggregated from its rows (rows.jsonl):

* per row, margin = logsumexp(scores of the matching answers) - logsumexp(scores of the
  other answers). With log-probs this is the log-likelihood of the matching labels against
  that of the others (log P(matching) - log P(other)), so with several answers on a side
  their probabilities add, not only the best one counts. For a reward (preference) model the
  scores are rewards, and the same formula is a soft-max comparison: a smooth maximum of the
  matching rewards against a smooth maximum of the others (with one answer on each side, simply
  the difference of the two rewards). It is computed max-shifted, so large rewards don't
  overflow.
* the dataset-level preference is: mean margin > 0 (prefers), < 0 (disprefers), exactly 0 or
  no usable rows: no preference (None). The mean, not the majority of rows: a few confident
  rows can outweigh many marginal ones, as they do in the summed log-likelihood.
* a row is usable when it has at least one matching and one other answer and every score is
  a finite number; others are skipped (a released rows.jsonl never holds NaN or infinities).

The agreement share of a pair is symmetric: agree(a, b) == agree(b, a). Both orders are still
emitted so a report can show a predictor x target matrix without filling in the mirror
itself. Its Wilson interval treats the datasets as independent draws, which they are not
quite (related behaviors cluster); read it as a descriptive width, not a test.

Trend reversals: for a size series, per dataset, the sign of the change in % matching between
adjacent sizes; zero changes are dropped from the sequence, and a reversal is a sign change
between consecutive non-zero steps (so up, flat, down counts as one reversal).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from mwe.stats import finite, wilson_interval
from mwe.trends import confounds

AGREEMENT_COLUMNS = ["predictor", "target", "datasets", "agree", "share", "ci_low", "ci_high",
                     "both_prefer", "both_disprefer"]
REVERSAL_COLUMNS = ["dataset", "family", "axis", "models", "sizes", "steps", "pairs", "reversals",
                    "share", "ci_low", "ci_high", "confounded"]


def logsumexp(xs: Sequence[float]) -> float:
    """log(sum(exp(x))) shifted by the maximum, so rewards in the hundreds don't overflow."""
    m = max(xs)
    return m + math.log(math.fsum(math.exp(x - m) for x in xs))


# every field of a row that `preferences` reads (its key, and margin's inputs): a caller that
# streams many rows keeps only these
ROW_FIELDS = ("label", "model", "dataset", "answers", "logprobs", "answer_matching_behavior")


def margin(row: dict[str, Any]) -> float | None:
    """How much one row's scores favour the matching answers (see the module docstring);
    None when the row has no answer on one side or a score that is not a finite number."""
    answers = row.get("answers") or []
    scores = row.get("logprobs") or []
    matching = row.get("answer_matching_behavior") or []
    if isinstance(matching, str):
        matching = [matching]
    if len(answers) != len(scores):
        return None
    values = [finite(s) for s in scores]
    if any(v is None for v in values):
        return None
    match_set = set(matching)
    yes = [v for a, v in zip(answers, values) if a in match_set and v is not None]
    no = [v for a, v in zip(answers, values) if a not in match_set and v is not None]
    if not yes or not no:
        return None
    return logsumexp(yes) - logsumexp(no)


def prefers(rows: Iterable[dict[str, Any]]) -> bool | None:
    """Whether one model prefers the behavior on one dataset: mean margin > 0. None when no
    row is usable or the mean is exactly 0 (neither side is preferred)."""
    margins = [m for m in (margin(r) for r in rows) if m is not None]
    if not margins:
        return None
    mean = math.fsum(margins) / len(margins)
    return None if mean == 0 else mean > 0


def preferences(rows: Iterable[dict[str, Any]]) -> dict[tuple[str, str], bool]:
    """(label, dataset) -> prefers, over the rows of many models and datasets (label falls
    back to model, as rows written outside a sweep have none). Pairs without a preference
    (None) are left out, so they never count as agreeing or disagreeing."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(str(r.get("label") or r["model"]), str(r["dataset"]))].append(r)
    out: dict[tuple[str, str], bool] = {}
    for key, group in groups.items():
        p = prefers(group)
        if p is not None:
            out[key] = p
    return out


def agreement_matrix(prefs: dict[tuple[str, str], bool], labels: Sequence[str]
                     ) -> list[dict[str, Any]]:
    """For every ordered pair of distinct labels, on the datasets where both have a
    preference: how often they agree (both prefer or both disprefer), with a Wilson 95%
    interval as fractions (None when they share no dataset, so the rows stay valid JSON)."""
    by_label: dict[str, dict[str, bool]] = defaultdict(dict)
    for (label, dataset), p in prefs.items():
        by_label[label][dataset] = p
    ordered = list(dict.fromkeys(labels))
    out: list[dict[str, Any]] = []
    for predictor in ordered:
        for target in ordered:
            if predictor == target:
                continue
            a, b = by_label.get(predictor, {}), by_label.get(target, {})
            common = [d for d in a if d in b]
            both_prefer = sum(1 for d in common if a[d] and b[d])
            both_disprefer = sum(1 for d in common if not a[d] and not b[d])
            agree = both_prefer + both_disprefer
            n = len(common)
            lo, hi = wilson_interval(agree, n) if n else (None, None)
            out.append({"predictor": predictor, "target": target, "datasets": n, "agree": agree,
                        "share": agree / n if n else None, "ci_low": lo, "ci_high": hi,
                        "both_prefer": both_prefer, "both_disprefer": both_disprefer})
    return out


def signs(values: Sequence[float]) -> list[int]:
    """Signs of the non-zero changes between consecutive values (zero changes dropped)."""
    out = []
    for before, after in zip(values, values[1:]):
        if after != before:
            out.append(1 if after > before else -1)
    return out


def reversal_row(dataset: str, family: str, axis: str, usable: Sequence[dict[str, Any]],
                 models: int, sizes: int, steps: int, reversals: int, pairs: int,
                 tie_note: str) -> dict[str, Any]:
    """One row of REVERSAL_COLUMNS; the interval is None when there is no pair of steps to
    compare (two sizes only), so the rows stay valid JSON."""
    reasons = ([tie_note] if tie_note else []) + confounds(usable)
    lo, hi = wilson_interval(reversals, pairs) if pairs else (None, None)
    return {"dataset": dataset, "family": family, "axis": axis, "models": models, "sizes": sizes,
            "steps": steps, "pairs": pairs, "reversals": reversals,
            "share": reversals / pairs if pairs else None, "ci_low": lo, "ci_high": hi,
            "confounded": "; ".join(reasons)}


def trend_reversals(results: Sequence[dict[str, Any]], axis: str = "params"
                    ) -> list[dict[str, Any]]:
    """Per dataset with at least two distinct values on `axis`: how often the direction of
    % matching flips between adjacent sizes, then a summary row (dataset "") over all of them.

    `steps` counts adjacent sizes whose % matching differs, `pairs` the consecutive pairs of
    such steps (steps - 1), `reversals` those pairs whose signs differ. Models that share an
    axis value are averaged into one size and the row says so in `confounded`: a flip between
    them would otherwise depend on the order they were listed in.
    """
    out: list[dict[str, Any]] = []
    all_usable: list[dict[str, Any]] = []
    total_steps = total_reversals = total_pairs = tied_datasets = 0
    for ds in dict.fromkeys(r["dataset"] for r in results):
        usable = [r for r in results if r["dataset"] == ds and finite(r.get(axis)) is not None
                  and finite(r.get("pct_matching")) is not None]
        by_x: dict[float, list[float]] = defaultdict(list)
        for r in usable:
            by_x[float(r[axis])].append(float(r["pct_matching"]))
        if len(by_x) < 2:
            continue
        pct = [math.fsum(v) / len(v) for _, v in sorted(by_x.items())]
        s = signs(pct)
        reversals = sum(1 for a, b in zip(s, s[1:]) if a != b)
        pairs = max(len(s) - 1, 0)
        ties = sum(1 for v in by_x.values() if len(v) > 1)
        note = (f"{ties} {axis} value{'s' if ties > 1 else ''} shared by several models "
                "(their % matching averaged)") if ties else ""
        out.append(reversal_row(str(ds), str(usable[0].get("family") or ""), axis, usable,
                                len(usable), len(by_x), len(s), reversals, pairs, note))
        all_usable += usable
        total_steps += len(s)
        total_reversals += reversals
        total_pairs += pairs
        tied_datasets += bool(ties)
    if out:
        labels = {str(r.get("label") or r.get("model")) for r in all_usable}
        sizes = len({float(r[axis]) for r in all_usable})
        note = (f"in {tied_datasets} dataset{'s' if tied_datasets > 1 else ''}, {axis} values "
                "shared by several models (their % matching averaged)") if tied_datasets else ""
        out.append(reversal_row("", "", axis, all_usable, len(labels), sizes, total_steps,
                                total_reversals, total_pairs, note))
    return out
