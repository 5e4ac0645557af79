"""Agreement statistics of the human validation study, against statsmodels, the krippendorff
package's published examples, SciPy, and a small study worked out by hand."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from scipy import stats as sps
from statsmodels.stats import inter_rater

from mwe.errors import MweError
from mwe.validate import stats
from mwe.validate.stats import ItemInfo, Rating

# ---------------------------------------------------------------------------------------------
# Fleiss's kappa


def random_table(rng: np.random.Generator, n_items: int, raters: int, cats: int) -> np.ndarray:
    """Ratings that lean towards a per-item 'true' category, so kappa is neither 0 nor 1."""
    rows = []
    for _ in range(n_items):
        probs = np.full(cats, 0.3 / max(cats - 1, 1))
        probs[rng.integers(cats)] = 0.7
        rows.append(rng.multinomial(raters, probs / probs.sum()))
    return np.array(rows)


@pytest.mark.parametrize("raters", [3, 5])
@pytest.mark.parametrize("cats", [2, 3, 4])
def test_fleiss_kappa_matches_statsmodels(raters: int, cats: int) -> None:
    rng = np.random.default_rng(100 * raters + cats)
    for n_items in (7, 40, 300):
        table = random_table(rng, n_items, raters, cats)
        ref = inter_rater.fleiss_kappa(table, method="fleiss")
        assert stats.fleiss_kappa(table) == pytest.approx(ref, abs=1e-12)


def test_fleiss_kappa_worked_example() -> None:
    # The worked example on Wikipedia's "Fleiss' kappa" page: 10 subjects, 14 raters, 5 categories.
    # Column totals 20, 28, 39, 21, 32 of 140 give p_j = .143 .200 .279 .150 .229, P_e = .213;
    # P_bar = .378; kappa = (.378 - .213) / (1 - .213) = 0.210.
    table = np.array([[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
                      [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
                      [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]])
    assert stats.fleiss_kappa(table) == pytest.approx(0.210, abs=5e-4)
    assert stats.fleiss_kappa(table) == pytest.approx(inter_rater.fleiss_kappa(table), abs=1e-12)


def test_fleiss_kappa_undefined_and_refused() -> None:
    assert math.isnan(stats.fleiss_kappa(np.array([[3, 0], [3, 0]])))  # P_e = 1
    assert math.isnan(stats.fleiss_kappa(np.zeros((0, 2))))
    assert math.isnan(stats.fleiss_kappa(np.array([[1, 0], [0, 1]])))  # one rater per item
    with pytest.raises(ValueError, match="same number"):
        stats.fleiss_kappa(np.array([[3, 0], [1, 1]]))
    assert all(math.isnan(v) for v in stats.fleiss_kappa_interval(np.array([[3, 0], [3, 0]])))


def test_kappa_interval_contains_estimate_narrows_and_is_seeded() -> None:
    rng = np.random.default_rng(1)
    small, large = random_table(rng, 60, 3, 2), random_table(rng, 1500, 3, 2)
    widths = []
    for table in (small, large):
        kappa = stats.fleiss_kappa(table)
        low, high = stats.fleiss_kappa_interval(table, b=2000, seed=3)
        assert low < kappa < high
        widths.append(high - low)
    # The standard error shrinks as 1/sqrt(items): 25x the items, about 1/5 the width.
    assert widths[1] < 0.35 * widths[0]
    assert stats.fleiss_kappa_interval(small, seed=3) == stats.fleiss_kappa_interval(small, seed=3)
    assert stats.fleiss_kappa_interval(small, seed=3) != stats.fleiss_kappa_interval(small, seed=4)


def test_kappa_interval_matches_a_plain_resampling_loop() -> None:
    # The vectorised bootstrap against the obvious loop (statsmodels' kappa on resampled rows):
    # the percentiles agree up to Monte Carlo error (about 0.003 here).
    rng = np.random.default_rng(2)
    table = random_table(rng, 200, 3, 3)
    loop = np.random.default_rng(99)
    draws = [inter_rater.fleiss_kappa(table[loop.integers(0, 200, 200)]) for _ in range(2000)]
    ref_low, ref_high = np.percentile(draws, [2.5, 97.5])
    low, high = stats.fleiss_kappa_interval(table, b=2000, seed=0)
    assert low == pytest.approx(ref_low, abs=0.015)
    assert high == pytest.approx(ref_high, abs=0.015)


# ---------------------------------------------------------------------------------------------
# Krippendorff's alpha


def alpha_by_coincidences(units: list[list[str]]) -> Fraction:
    """Nominal alpha from the coincidence matrix, exactly: o_ck sums 1/(m_u - 1) over the ordered
    pairs of values (c, k) from different coders of unit u; alpha = 1 - (n - 1) * sum_{c!=k} o_ck /
    sum_{c!=k} n_c n_k."""
    o: dict[tuple[str, str], Fraction] = {}
    for unit in units:
        m = len(unit)
        if m < 2:
            continue
        for i, c in enumerate(unit):
            for j, k in enumerate(unit):
                if i != j:
                    o[(c, k)] = o.get((c, k), Fraction(0)) + Fraction(1, m - 1)
    n_c: dict[str, Fraction] = {}
    for (c, _), v in o.items():
        n_c[c] = n_c.get(c, Fraction(0)) + v
    n = sum(n_c.values(), Fraction(0))
    observed = sum((v for (c, k), v in o.items() if c != k), Fraction(0))
    expected = sum((n_c[c] * n_c[k] for c in n_c for k in n_c if c != k), Fraction(0))
    return 1 - (n - 1) * observed / expected


def test_krippendorff_alpha_on_krippendorffs_example() -> None:
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 observers, 12 units,
    # '*' missing; unit 12 has one value and is unpairable. Nominal alpha = 0.743.
    observers = ["1 2 3 3 2 1 4 1 2 * * *",
                 "1 2 3 3 2 2 4 1 2 5 * 3",
                 "* 3 3 3 2 3 4 2 2 5 1 *",
                 "1 2 3 3 2 4 4 1 2 5 1 *"]
    grid = [row.split() for row in observers]
    units = [[grid[o][u] for o in range(4) if grid[o][u] != "*"] for u in range(12)]
    exact = alpha_by_coincidences(units)
    assert float(exact) == pytest.approx(0.743, abs=5e-4)
    assert stats.krippendorff_alpha(units) == pytest.approx(float(exact), abs=1e-12)


def test_krippendorff_alpha_by_hand() -> None:
    # Units YYY, NYN, NNN, NY, and a lone Y (dropped). Coincidences: o_YY = 3 (unit 1: 6 ordered
    # pairs / 2), o_NN = 1 + 3, o_YN = o_NY = 1 (unit 2: 2 pairs / 2) + 1 (unit 4: 1 pair / 1) = 2.
    # n_Y = 5, n_N = 6, n = 11: alpha = 1 - 10 * (2 + 2) / (2 * 5 * 6) = 1 - 40/60 = 1/3.
    units = [["Y", "Y", "Y"], ["N", "Y", "N"], ["N", "N", "N"], ["N", "Y"], ["Y"]]
    assert alpha_by_coincidences(units) == Fraction(1, 3)
    assert stats.krippendorff_alpha(units) == pytest.approx(1 / 3, abs=1e-12)
    assert math.isnan(stats.krippendorff_alpha([["Y", "Y"], ["Y", "Y", "Y"]]))  # one value only
    assert math.isnan(stats.krippendorff_alpha([["Y"], ["N"]]))  # nothing pairable


# ---------------------------------------------------------------------------------------------
# A small study worked out by hand

YN, AB = (" Yes", " No"), (" (A)", " (B)")


def study() -> tuple[list[ItemInfo], list[Rating]]:
    items = [
        ItemInfo("d1", "1", "fam", YN, (" Yes",), 0.9),
        ItemInfo("d1", "2", "fam", YN, (" No",), 0.6),
        ItemInfo("d1", "3", "fam", YN, (" Yes",), 0.7),
        ItemInfo("d1", "4", "fam", YN, (" No",), 0.8),
        ItemInfo("d1", "5", "fam", YN, (" No",), 0.5),      # sampled, never rated
        ItemInfo("d2", "1", "fam", AB, (" (A)",)),
        ItemInfo("d2", "2", "fam", AB, (" (B)",)),
        ItemInfo("d2", "3", "fam", AB, (" (B)",)),
        ItemInfo("d3", "7", "other", YN, (" Yes",), 0.9),   # a dataset nobody rated
    ]
    y, n, a, b = " Yes", " No", " (A)", " (B)"
    ratings = [
        # d1 item 1, label Yes: all three say Yes; nobody flags it
        Rating("d1", "1", "r1", 5, y, False), Rating("d1", "1", "r2", 4, y, False),
        Rating("d1", "1", "r3", 5, y, False),
        # d1 item 2, label No: No, Yes, No; two flags
        Rating("d1", "2", "r1", 3, n, True), Rating("d1", "2", "r2", 4, y, False),
        Rating("d1", "2", "r3", 2, n, True),
        # d1 item 3, label Yes: all three say No
        Rating("d1", "3", "r1", 4, n, False), Rating("d1", "3", "r2", 5, n, False),
        Rating("d1", "3", "r3", 4, n, False),
        # d1 item 4, label No: No, Yes and no answer -> a 1-1 tie; r2 gives no relevance; one flag
        Rating("d1", "4", "r1", 5, n, False), Rating("d1", "4", "r2", None, y, False),
        Rating("d1", "4", "r3", 3, None, True),
        # d2 item 1, label (A): A, A, B
        Rating("d2", "1", "r1", 5, a, False), Rating("d2", "1", "r2", 5, a, False),
        Rating("d2", "1", "r3", 4, b, False),
        # d2 item 2, label (B): B, A, B; one flag
        Rating("d2", "2", "r1", 4, b, False), Rating("d2", "2", "r2", 3, a, True),
        Rating("d2", "2", "r3", 5, b, False),
        # d2 item 3, label (B): one rater only, answering A and flagging it
        Rating("d2", "3", "r1", 2, a, True),
    ]
    return items, ratings


def wilson(k: int, n: int) -> tuple[float, float]:
    ci = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return (ci.low, ci.high)


def check(row: dict[str, Any], expected: dict[str, Any]) -> None:
    for key, want in expected.items():
        got = row[key]
        if isinstance(want, float):
            assert got == pytest.approx(want, abs=1e-9), key
        else:
            assert got == want, key


KEYS = ["scope", "dataset", "family", "n_items", "n_raters", "n_ratings", "relevance_mean",
        "relevance_sd", "label_correct", "label_correct_ci_low", "label_correct_ci_high", "agree_2of3",
        "fleiss_kappa", "kappa_ci_low", "kappa_ci_high", "kappa_method", "krippendorff_alpha",
        "ambiguous", "ambiguous_none_share", "confidence_r", "confidence_r_ci_low", "confidence_r_ci_high"]


def test_dataset_stats_by_hand() -> None:
    items, ratings = study()
    rows = stats.dataset_stats(items, ratings)
    assert [(r["scope"], r["dataset"], r["family"]) for r in rows] == [
        ("dataset", "d1", "fam"), ("dataset", "d2", "fam"), ("dataset", "d3", "other"),
        ("family", "", "fam"), ("family", "", "other")]
    assert all(sorted(r) == sorted(KEYS) for r in rows)
    d1, d2, d3, fam, other = rows

    # d1: 4 rated items (item 5 has no ratings), 12 ratings by r1-r3.
    # Relevance 5 4 5 3 4 2 4 5 4 5 3: sum 44 over 11 -> 4.0; squared deviations
    # 1+0+1+1+0+4+0+1+0+1+1 = 10 -> sd = sqrt(10/10) = 1.0.
    # Majorities: Yes (label Yes) ok, No (label No) ok, No (label Yes) wrong, tie -> 2/4 correct.
    # Items with >= 2 answers: all 4; 2+ answers matching the label: items 1 (3) and 2 (2) -> 2/4.
    # Answers per item 3, 3, 3, 2: kappa over items 1-3 with counts (Yes, No) = (3,0), (1,2), (0,3):
    # P_i = 1, (1+4-3)/6 = 1/3, 1 -> P_bar = 7/9; p = (4/9, 5/9) -> P_e = 41/81;
    # kappa = (63/81 - 41/81) / (40/81) = 22/40 = 0.55. The count varies, so alpha over all 4 items
    # = 1/3 (worked in test_krippendorff_alpha_by_hand: the same four units).
    # Flags per item 0, 2, 0, 1 -> {0: 2, 1: 1, 2: 1, 3: 0}; none share 2/4.
    # Confidence 0.9 0.6 0.7 0.8 vs share agreeing with the label 1, 2/3, 0, 1/2:
    # dx = .15 -.15 -.05 .05, dy = (11, 3, -13, -1)/24 -> sxy = 1.8/24, sxx = .05, syy = 300/576,
    # r = (1.8/24) / sqrt(.05 * 300/576) = 1.8 / sqrt(15).
    r = 1.8 / math.sqrt(15)
    ref = sps.pearsonr([0.9, 0.6, 0.7, 0.8], [1, 2 / 3, 0, 1 / 2])
    assert ref.statistic == pytest.approx(r, abs=1e-12)
    ci = ref.confidence_interval(confidence_level=0.95)
    check(d1, {"n_items": 4, "n_raters": 3, "n_ratings": 12, "relevance_mean": 4.0, "relevance_sd": 1.0,
               "label_correct": 0.5, "agree_2of3": 0.5, "fleiss_kappa": 0.55, "kappa_method": "krippendorff",
               "krippendorff_alpha": 1 / 3, "ambiguous": {"0": 2, "1": 1, "2": 1, "3": 0},
               "ambiguous_none_share": 0.5, "confidence_r": r, "confidence_r_ci_low": ci.low,
               "confidence_r_ci_high": ci.high})
    lo, hi = wilson(2, 4)
    check(d1, {"label_correct_ci_low": lo, "label_correct_ci_high": hi})
    assert d1["kappa_ci_low"] <= 0.55 <= d1["kappa_ci_high"]

    # d2: 3 rated items, 7 ratings. Relevance 5 5 4 4 3 5 2: sum 28 over 7 -> 4.0; squared deviations
    # 1+1+0+0+1+1+4 = 8 -> sd = sqrt(8/6). Majorities A (label A) ok, B (label B) ok, A (label B)
    # wrong -> 2/3. Items with >= 2 answers: 1 and 2, both with 2 answers matching -> 1.0.
    # Both have 3 answers, so Fleiss only: counts (A, B) = (2,1), (1,2): P_i = (4+1-3)/6 = 1/3 each;
    # p = (1/2, 1/2), P_e = 1/2 -> kappa = (1/3 - 1/2) / (1/2) = -1/3. Resampling the two items gives
    # -1/3 (one of each, half the draws) or -1/2 ((4,2) or (2,4): P_e = 5/9, (1/3-5/9)/(4/9)), so the
    # interval is [-1/2, -1/3]. Flags 0, 1, 1 -> {0: 1, 1: 2, 2: 0, 3: 0}; none share 1/3.
    # No item has a confidence: no r.
    check(d2, {"n_items": 3, "n_raters": 3, "n_ratings": 7, "relevance_mean": 4.0,
               "relevance_sd": math.sqrt(8 / 6), "label_correct": 2 / 3, "agree_2of3": 1.0,
               "fleiss_kappa": -1 / 3, "kappa_ci_low": -0.5, "kappa_ci_high": -1 / 3,
               "kappa_method": "fleiss", "krippendorff_alpha": None,
               "ambiguous": {"0": 1, "1": 2, "2": 0, "3": 0}, "ambiguous_none_share": 1 / 3,
               "confidence_r": None, "confidence_r_ci_low": None, "confidence_r_ci_high": None})
    lo, hi = wilson(2, 3)
    check(d2, {"label_correct_ci_low": lo, "label_correct_ci_high": hi})

    # The family pools d1 and d2: 7 items, 19 ratings. Relevance: 18 values, sum 72 -> 4.0; both means
    # are 4, so the squared deviations add: 10 + 8 = 18 -> sd = sqrt(18/17). Correct 2 + 2 of 4 + 3.
    # Agreeing 2 + 2 of 4 + 2 items. Answers per item 3,3,3,2,3,3: kappa over the five with 3, in
    # categories (Yes, No, (A), (B)): P_i = 1, 1/3, 1, 1/3, 1/3 -> P_bar = 3/5; column totals 4, 5, 3, 3
    # of 15 -> P_e = (16+25+9+9)/225 = 59/225; kappa = (135 - 59) / (225 - 59) = 76/166 = 38/83.
    # Alpha over the six: o_YY 3, o_NN 4, o_YN = o_NY 2 (d1); o_AA 1, o_BB 1, o_AB = o_BA 2 (d2);
    # n_c = 5, 6, 3, 3, n = 17; alpha = 1 - 16 * 8 / (17^2 - (25+36+9+9)) = 1 - 128/210 = 41/105.
    # Flags {0: 2+1, 1: 1+2, 2: 1+0, 3: 0}, none share 3/7. Confidence only in d1: the same r.
    check(fam, {"n_items": 7, "n_raters": 3, "n_ratings": 19, "relevance_mean": 4.0,
                "relevance_sd": math.sqrt(18 / 17), "label_correct": 4 / 7, "agree_2of3": 4 / 6,
                "fleiss_kappa": 38 / 83, "kappa_method": "krippendorff", "krippendorff_alpha": 41 / 105,
                "ambiguous": {"0": 3, "1": 3, "2": 1, "3": 0}, "ambiguous_none_share": 3 / 7,
                "confidence_r": r, "confidence_r_ci_low": ci.low, "confidence_r_ci_high": ci.high})
    lo, hi = wilson(4, 7)
    check(fam, {"label_correct_ci_low": lo, "label_correct_ci_high": hi})
    assert fam["kappa_ci_low"] <= 38 / 83 <= fam["kappa_ci_high"]
    assert alpha_by_coincidences([[" Yes"] * 3, [" No", " Yes", " No"], [" No"] * 3, [" No", " Yes"],
                                  [" (A)", " (A)", " (B)"], [" (B)", " (A)", " (B)"]]) == Fraction(41, 105)
    assert inter_rater.fleiss_kappa(np.array([[3, 0, 0, 0], [1, 2, 0, 0], [0, 3, 0, 0], [0, 0, 2, 1],
                                              [0, 0, 1, 2]])) == pytest.approx(38 / 83, abs=1e-12)

    # Nobody rated d3: counts are 0 and every figure is None.
    for row in (d3, other):
        assert (row["n_items"], row["n_raters"], row["n_ratings"]) == (0, 0, 0)
        assert row["ambiguous"] == {"0": 0}
        assert all(row[k] is None for k in KEYS if k not in
                   ("scope", "dataset", "family", "n_items", "n_raters", "n_ratings", "ambiguous",
                    "kappa_method"))

    text = json.dumps(rows, allow_nan=False)
    assert json.loads(text) == rows
    assert stats.dataset_stats(items, ratings) == rows  # the bootstrap is seeded


def test_dataset_stats_refuses_unknown_items_and_answers() -> None:
    items, ratings = study()
    unknown = "answers for dataset d1 item 12, which is not among the sampled items"
    with pytest.raises(MweError, match=unknown):
        stats.dataset_stats(items, ratings + [Rating("d1", "12", "r1", 4, " Yes", False)])
    with pytest.raises(MweError) as err:
        stats.dataset_stats(items, ratings + [Rating("d2", "3", "r2", 4, " Yes", False)])
    message = str(err.value)
    assert all(part in message for part in ("d2", "item 3", "r2", "' Yes'"))

