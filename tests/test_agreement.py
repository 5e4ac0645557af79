"""Model agreement and trend reversals against hand-computed values and SciPy."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from scipy import special, stats

from mwe.agreement import (
    AGREEMENT_COLUMNS,
    REVERSAL_COLUMNS,
    agreement_matrix,
    margin,
    preferences,
    prefers,
    trend_reversals,
)

YN = [" Yes", " No"]
ABC = [" A", " B", " C"]


def row(model: str, dataset: str, logprobs: list[float], matching: list[str],
        answers: list[str] = YN, label: bool = True) -> dict[str, Any]:
    r: dict[str, Any] = {"model": f"path/{model}.gguf", "dataset": dataset, "family": "persona",
                         "answers": answers, "logprobs": logprobs,
                         "answer_matching_behavior": matching}
    if label:
        r["label"] = model
    else:
        r["model"] = model
    return r


L = math.log
# Expected preferences (mean margin = mean of logsumexp(matching) - logsumexp(others)):
#
#          d1  d2  d3  d4  d5
#     A    T   T   F   F   T
#     B    T   F   F   F   T
#     C    T   T   T   T   -      (C's rows carry no label: the model name stands in)
ROWS = [
    # A d1: margins -0.2-(-1.2) = +1 and (" No" matches) -0.5-(-2.5) = +2 -> mean 1.5 -> T
    row("A", "d1", [-0.2, -1.2], [" Yes"]), row("A", "d1", [-2.5, -0.5], [" No"]),
    # A d2: -0.1-(-2.4) = +2.3 -> T
    row("A", "d2", [-0.1, -2.4], [" Yes"]),
    # A d3: -1.0-(-0.3) = -0.7 -> F
    row("A", "d3", [-1.0, -0.3], [" Yes"]),
    # A d4: 3 answers, " A" matches at p=.4 against .3 and .3: the best answer matches (the
    # max rule would say "prefers"), but log .4 - log(.3+.3) = log(2/3) < 0 -> F
    row("A", "d4", [L(0.4), L(0.3), L(0.3)], [" A"], ABC),
    # A d5: margins 0 and +0.1 -> mean 0.05 -> T (a zero-margin row still counts in the mean)
    row("A", "d5", [-0.7, -0.7], [" Yes"]), row("A", "d5", [-0.3, -0.4], [" Yes"]),
    # B d1: -0.69-(-0.7) = +0.01 -> T
    row("B", "d1", [-0.69, -0.7], [" Yes"]),
    # B d2: " No" matches: -0.5-(-0.2) = -0.3 -> F
    row("B", "d2", [-0.2, -0.5], [" No"]),
    # B d3: margins +0.1, +0.1, -3.0: two of three rows match the behavior, but the mean is
    # -2.8/3 < 0 -> F
    row("B", "d3", [-0.6, -0.7], [" Yes"]), row("B", "d3", [-0.7, -0.6], [" No"]),
    row("B", "d3", [-3.05, -0.05], [" Yes"]),
    # B d4: -1-(-2)... with " No" matching: -2-(-1) = -1 -> F; the second row has no
    # non-matching answer and is skipped (it would otherwise be a large positive margin)
    row("B", "d4", [-1.0, -2.0], [" No"]), row("B", "d4", [-0.1, -5.0], [" Yes", " No"]),
    # B d5: -0.1-(-3) = +2.9 -> T
    row("B", "d5", [-0.1, -3.0], [" Yes"]),
    # C d1: 3 answers, " A" and " B" match at .3 each against " C" at .4: the best answer does
    # not match (max rule: "disprefers"), but log(.6) - log(.4) = log 1.5 > 0 -> T
    row("C", "d1", [L(0.3), L(0.3), L(0.4)], [" A", " B"], ABC, label=False),
    # C d2: -0.4-(-0.6) = +0.2 -> T
    row("C", "d2", [-0.4, -0.6], [" Yes"], label=False),
    # C d3: " No" matches: -0.8-(-0.9) = +0.1 -> T
    row("C", "d3", [-0.9, -0.8], [" No"], label=False),
    # C d4: -0.3-(-1.3) = +1 -> T
    row("C", "d4", [-0.3, -1.3], [" Yes"], label=False),
    # C d5: margins +1 and -1 -> mean exactly 0 -> no preference (left out)
    row("C", "d5", [-0.5, -1.5], [" Yes"], label=False),
    row("C", "d5", [-1.5, -0.5], [" Yes"], label=False),
]

EXPECTED = {("A", "d1"): True, ("A", "d2"): True, ("A", "d3"): False, ("A", "d4"): False,
            ("A", "d5"): True,
            ("B", "d1"): True, ("B", "d2"): False, ("B", "d3"): False, ("B", "d4"): False,
            ("B", "d5"): True,
            ("C", "d1"): True, ("C", "d2"): True, ("C", "d3"): True, ("C", "d4"): True}


def of(label: str, dataset: str) -> list[dict[str, Any]]:
    return [r for r in ROWS if r.get("label", r["model"]) == label and r["dataset"] == dataset]


def test_margin_is_the_log_likelihood_of_matching_against_other_labels() -> None:
    three = of("A", "d4")[0]
    assert margin(three) == pytest.approx(math.log(0.4 / 0.6), abs=1e-12)
    assert margin(three) == pytest.approx(
        special.logsumexp([L(0.4)]) - special.logsumexp([L(0.3), L(0.3)]), abs=1e-12)
    two_matching = of("C", "d1")[0]
    assert margin(two_matching) == pytest.approx(math.log(1.5), abs=1e-12)
    # the max rule would disagree with both
    assert max(three["logprobs"][:1]) > max(three["logprobs"][1:])
    assert max(two_matching["logprobs"][:2]) < two_matching["logprobs"][2]
    # a row with no answer on one side, or a score that is not a number, is not usable
    assert margin(of("B", "d4")[1]) is None
    assert margin({**of("A", "d2")[0], "logprobs": [float("nan"), -1.0]}) is None
    assert margin({**of("A", "d2")[0], "logprobs": [None, -1.0]}) is None


def test_prefers_uses_the_mean_margin_not_the_majority_of_rows() -> None:
    rows = of("B", "d3")
    margins = [margin(r) for r in rows]
    assert margins == pytest.approx([0.1, 0.1, -3.0], abs=1e-12)
    assert sum(1 for m in margins if m is not None and m > 0) == 2  # the majority match
    assert prefers(rows) is False
    assert prefers(of("A", "d4")) is False
    assert prefers(of("C", "d1")) is True
    assert prefers(of("A", "d5")) is True  # margins 0 and +0.1
    assert prefers(of("C", "d5")) is None  # mean exactly 0
    assert prefers([]) is None
    assert prefers(of("B", "d4")[1:]) is None  # only an unusable row


def test_preferences_by_label_with_the_model_as_fallback() -> None:
    prefs = preferences(ROWS)
    assert prefs == EXPECTED
    assert ("C", "d5") not in prefs
    # generators are accepted (rows.jsonl is streamed)
    assert preferences(r for r in ROWS) == EXPECTED


def wilson(k: int, n: int) -> tuple[float, float]:
    ci = stats.binomtest(k, n).proportion_ci(method="wilson")
    return ci.low, ci.high


def test_agreement_counts_and_wilson_intervals() -> None:
    table = agreement_matrix(preferences(ROWS), ["A", "B", "C"])
    assert len(table) == 6  # 3 x 2 ordered pairs, no diagonal
    got = {(t["predictor"], t["target"]): t for t in table}
    # A-B on d1..d5: agree d1 (T,T), d3 (F,F), d4 (F,F), d5 (T,T); differ on d2
    # A-C on d1..d4 (C has none on d5): agree d1, d2 (both T); differ on d3, d4
    # B-C on d1..d4: agree d1 only
    expected = {("A", "B"): (5, 4, 2, 2), ("A", "C"): (4, 2, 2, 0), ("B", "C"): (4, 1, 1, 0)}
    for (a, b), (n, k, both_prefer, both_disprefer) in expected.items():
        for pair in ((a, b), (b, a)):  # symmetric: both orders carry the same numbers
            t = got[pair]
            assert (t["datasets"], t["agree"], t["both_prefer"], t["both_disprefer"]) == \
                (n, k, both_prefer, both_disprefer)
            assert t["share"] == pytest.approx(k / n)
            lo, hi = wilson(k, n)
            assert t["ci_low"] == pytest.approx(lo, abs=1e-9)
            assert t["ci_high"] == pytest.approx(hi, abs=1e-9)
            assert t["ci_low"] <= t["share"] <= t["ci_high"]
    for t in table:
        assert list(t) == AGREEMENT_COLUMNS
    json.dumps(table, allow_nan=False)


def test_agreement_with_no_shared_dataset_is_valid_json() -> None:
    table = agreement_matrix({("A", "d1"): True, ("B", "d2"): False}, ["A", "B", "Z", "A"])
    assert len(table) == 6  # repeated labels are counted once
    for t in table:
        assert t["datasets"] == 0 and t["agree"] == 0
        assert t["share"] is None and t["ci_low"] is None and t["ci_high"] is None
    json.dumps(table, allow_nan=False)


def test_reward_model_scores_do_not_overflow() -> None:
    rm = [
        # one answer per side: the margin is the difference of rewards, 850 - 849 = 1
        row("PM", "r1", [850.0, 849.0], [" Yes"]),
        # " A" at 1000 against 999 and 998: 1000 - (999 + log(1 + e^-1)) = 1 - log(1 + e^-1)
        row("PM", "r2", [1000.0, 999.0, 998.0], [" A"], ABC),
        # large negative rewards: -1001 - (-1000) = -1
        row("PM", "r3", [-1001.0, -1000.0], [" Yes"]),
    ]
    with pytest.raises(OverflowError):
        math.exp(1000.0)  # what a naive log(sum(exp)) would do
    assert margin(rm[0]) == pytest.approx(1.0, abs=1e-12)
    assert margin(rm[1]) == pytest.approx(1.0 - math.log1p(math.exp(-1.0)), abs=1e-12)
    assert margin(rm[2]) == pytest.approx(-1.0, abs=1e-12)
    prefs = preferences(rm)
    assert prefs == {("PM", "r1"): True, ("PM", "r2"): True, ("PM", "r3"): False}
    table = agreement_matrix({**prefs, ("RLHF", "r1"): True, ("RLHF", "r2"): False,
                              ("RLHF", "r3"): False}, ["PM", "RLHF"])
    assert [(t["datasets"], t["agree"]) for t in table] == [(3, 2), (3, 2)]
    json.dumps(table, allow_nan=False)


def result(label: str, params: float, dataset: str, pct: float, **axes: Any) -> dict[str, Any]:
    return {"label": label, "model": f"{label}.gguf", "dataset": dataset, "family": "persona",
            "n": 200, "n_matching": round(2 * pct), "pct_matching": pct, "params": params,
            "step": None, "tuning": "base", "model_family": "m", **axes}


SIZES = {"s1": 1e6, "s2": 1e7, "s3": 1e8, "s4": 1e9}
SERIES = {
    "dA": [10.0, 20.0, 15.0, 25.0],  # + - +: 3 steps, 2 pairs, 2 reversals
    "dB": [10.0, 20.0, 30.0, 40.0],  # + + +: 3 steps, 2 pairs, 0 reversals
    "dC": [50.0, 50.0, 40.0, 60.0],  # 0 - +: 2 steps, 1 pair, 1 reversal
    "dD": [30.0, 40.0, 40.0, 20.0],  # + 0 -: up, flat, down: 2 steps, 1 pair, 1 reversal
}


def test_trend_reversals_on_a_four_size_series() -> None:
    results = [result(label, SIZES[label], ds, pcts[i])
               for ds, pcts in SERIES.items() for i, label in enumerate(SIZES)]
    results.reverse()  # listed largest first: the axis, not the order, decides
    results.append(result("s1", 1e6, "dE", 33.0))  # one size only: no trend, no row
    rows = trend_reversals(results)
    got = {r["dataset"]: r for r in rows}
    assert set(got) == {"dA", "dB", "dC", "dD", ""}
    assert rows[-1]["dataset"] == ""
    expected = {"dA": (3, 2, 2), "dB": (3, 2, 0), "dC": (2, 1, 1), "dD": (2, 1, 1)}
    for ds, (steps, pairs, reversals) in expected.items():
        r = got[ds]
        assert (r["models"], r["sizes"], r["steps"], r["pairs"], r["reversals"]) == \
            (4, 4, steps, pairs, reversals)
        assert r["confounded"] == ""
    total = got[""]
    # 2 + 0 + 1 + 1 = 4 reversals of 2 + 2 + 1 + 1 = 6 pairs of adjacent steps
    assert (total["steps"], total["pairs"], total["reversals"]) == (10, 6, 4)
    assert total["share"] == pytest.approx(4 / 6)
    lo, hi = wilson(4, 6)
    assert total["ci_low"] == pytest.approx(lo, abs=1e-9)
    assert total["ci_high"] == pytest.approx(hi, abs=1e-9)
    assert total["models"] == 4 and total["confounded"] == ""
    for r in rows:
        assert list(r) == REVERSAL_COLUMNS and r["axis"] == "params"
    json.dumps(rows, allow_nan=False)


def test_shared_axis_values_and_mixed_tuning_are_flagged() -> None:
    # params 1, 2, 2, 3 with % 10, 20, 40, 25: the two at 2 average to 30, so 10 -> 30 -> 25
    # is one reversal (taking 20 alone would give none)
    results = [result("a", 1.0, "d", 10.0), result("b", 2.0, "d", 20.0),
               result("b-rlhf", 2.0, "d", 40.0, tuning="rlhf"), result("c", 3.0, "d", 25.0)]
    rows = trend_reversals(results)
    r = rows[0]
    assert (r["models"], r["sizes"], r["steps"], r["pairs"], r["reversals"]) == (4, 3, 2, 1, 1)
    assert "shared by several models" in r["confounded"]
    assert "tuning (base, rlhf)" in r["confounded"]
    assert "shared by several models" in rows[-1]["confounded"]
    # two sizes: one step, no pair to compare, so no interval (None, not NaN)
    two = trend_reversals([result("a", 1.0, "d", 10.0), result("b", 2.0, "d", 20.0)])
    assert (two[0]["steps"], two[0]["pairs"], two[0]["share"], two[0]["ci_low"]) == (1, 0, None, None)
    json.dumps(rows + two, allow_nan=False)
    assert trend_reversals([]) == []
    assert trend_reversals([result("a", 1.0, "d", 10.0)], axis="step") == []
