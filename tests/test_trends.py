"""Trend statistics against independent computations, series files, and `mwe sweep`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, Mwe
from scipy import stats

from mwe.errors import DataError
from mwe.series import load_series
from mwe.trends import (
    Point,
    bootstrap_difference,
    bootstrap_slope,
    confounds,
    direction,
    ols_slope,
    trend_rows,
)


def test_ols_slope_matches_scipy() -> None:
    rng = np.random.default_rng(3)
    xs, ys = rng.normal(size=7), rng.normal(size=7)
    assert ols_slope(xs, ys) == pytest.approx(stats.linregress(xs, ys).slope, rel=1e-12)


LADDER = [Point("a", 8.0, 2000, 600), Point("b", 8.5, 2000, 800), Point("c", 9.0, 2000, 1000),
          Point("d", 9.5, 2000, 1200)]


def test_bootstrap_interval_matches_the_delta_method() -> None:
    """For large n the percentile interval is close to slope +- 1.96 analytic SEs."""
    slope, lo, hi = bootstrap_slope(LADDER, b=20000)
    x = np.array([p.x for p in LADDER])
    p = np.array([p.k / p.n for p in LADDER])
    var = 100.0**2 * p * (1 - p) / np.array([q.n for q in LADDER])
    dx = x - x.mean()
    se = math.sqrt(float((dx**2 * var).sum())) / float((dx**2).sum())
    assert slope == pytest.approx(20.0)
    assert lo == pytest.approx(slope - 1.96 * se, abs=0.1 * se)
    assert hi == pytest.approx(slope + 1.96 * se, abs=0.1 * se)
    assert direction(lo, hi) == "increasing"


def test_binomial_draws_equal_resampling_rows() -> None:
    """The fast bootstrap (binomial counts) against a literal resampling of 0/1 rows."""
    points = [Point("a", 1.0, 120, 50), Point("b", 2.0, 90, 55), Point("c", 3.0, 150, 70)]
    rng = np.random.default_rng(11)
    rows = [np.array([1] * p.k + [0] * (p.n - p.k)) for p in points]
    x = np.array([p.x for p in points])
    slopes = []
    for _ in range(4000):
        pct = [100 * rng.choice(r, size=r.size, replace=True).mean() for r in rows]
        slopes.append(stats.linregress(x, pct).slope)
    want_lo, want_hi = np.percentile(slopes, [2.5, 97.5])
    _, lo, hi = bootstrap_slope(points, b=20000)
    assert lo == pytest.approx(want_lo, abs=1.0) and hi == pytest.approx(want_hi, abs=1.0)


def test_difference_and_flat_trends() -> None:
    diff, lo, hi = bootstrap_difference([Point("t", 0, 500, 300)], [Point("b", 0, 500, 200)])
    assert diff == pytest.approx(20.0) and lo > 0 and direction(lo, hi) == "increasing"
    _, lo, hi = bootstrap_slope([Point("a", 1, 30, 15), Point("b", 2, 30, 16)])
    assert direction(lo, hi) == "flat"
    assert direction(-3, -1) == "decreasing"


def test_trend_rows_and_confounds() -> None:
    base = {"dataset": "d", "family": "persona", "n": 400, "step": None,
            "quantization": None, "backend": "hf"}
    results = [
        {**base, "label": "s", "params": 1e8, "n_matching": 100, "tuning": "base",
         "model_family": "x"},
        {**base, "label": "m", "params": 1e9, "n_matching": 200, "tuning": "base",
         "model_family": "x"},
        {**base, "label": "l", "params": 1e10, "n_matching": 300, "tuning": "tuned",
         "model_family": "y"},
        {**base, "dataset": "w", "family": "winogenerated", "label": "s", "params": 1e8,
         "n_matching": None, "tuning": "base", "model_family": "x"},
    ]
    rows = trend_rows(results, b=2000)
    size = next(r for r in rows if r["axis"] == "params")
    assert size["slope"] == pytest.approx(25.0) and size["trend"] == "increasing"
    assert "family (x, y)" in size["confounded"] and "tuning (base, tuned)" in size["confounded"]
    tuned = next(r for r in rows if r["axis"] == "tuned - base")
    assert tuned["slope"] == pytest.approx(75.0 - 37.5)
    assert "tuning" not in tuned["confounded"]
    assert not any(r["dataset"] == "w" for r in rows)  # no % matching: no trend
    assert confounds([{"tuning": "base"}, {"tuning": "base"}]) == []


def test_series_file(tmp_path: Path) -> None:
    series = load_series(REPO / "examples" / "series" / "bundled.yaml")
    assert [m.params for m in series.models] == [135e6, 270e6]
    assert {m.tuning for m in series.models} == {"base", "tuned"}
    bad = tmp_path / "s.yaml"
    bad.write_text("models:\n  - model: hf:x\n    params: -5\n")
    with pytest.raises(DataError, match=r"models\[0\].params"):
        load_series(bad)
    bad.write_text("models:\n  - model: hf:x\n    colour: red\n")
    with pytest.raises(DataError, match="unknown field"):
        load_series(bad)
    bad.write_text("models:\n  - model: hf:x\n  - model: hf:x\n")
    with pytest.raises(DataError, match="used twice"):
        load_series(bad)


@pytest.mark.slow
def test_sweep_command_writes_tidy_results_and_resumes(tmp_path: Path, mwe: Mwe) -> None:
    args: list[str | Path] = [
        "sweep", "--series", REPO / "examples" / "series" / "bundled.yaml",
        "-d", REPO / "examples" / "data" / "persona", "-d", REPO / "examples" / "data" / "few-shot",
        "--limit", "10", "--out", tmp_path / "sw"]
    first = mwe(args, cache=tmp_path / "c.sqlite", progress=False)
    assert first.returncode == 0, first.stderr
    out = tmp_path / "sw"
    import csv

    results = list(csv.DictReader((out / "results.csv").open()))
    assert len(results) == 2 * 5
    assert {r["label"] for r in results} == {"SmolLM2-135M-Instruct", "Gemma-3-270M"}
    for r in results:
        assert float(r["ci_low"]) <= float(r["pct_matching"]) <= float(r["ci_high"])
        assert r["params"] and r["tuning"] and r["backend"] == "hf"
    trends = list(csv.DictReader((out / "trends.csv").open()))
    assert {t["axis"] for t in trends} == {"params", "tuned - base"}
    assert all(t["confounded"] for t in trends)  # the bundled pair differs in everything
    assert len((out / "rows.jsonl").read_text().splitlines()) == 2 * 50
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = mwe(args, cache=tmp_path / "c.sqlite", progress=False)
    assert "100 from the cache, 0 computed" in again.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert json.loads((out / "sweep.json").read_text())["series"] == "bundled"
