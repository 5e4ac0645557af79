"""Trends across a model series: the slope of % matching over an axis, with a bootstrap
interval over rows, and base-vs-tuned differences.

Resampling the rows of a model with replacement is resampling its count of matching answers
from Binomial(n, p): that is how the bootstrap draws them (exactly equivalent, and fast).
A trend is called "increasing" or "decreasing" only when its 95% interval excludes zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mwe.stats import finite

B = 2000


@dataclass(frozen=True)
class Point:
    """One model on one dataset: its position on the axis and its answers."""

    label: str
    x: float
    n: int
    k: int  # answers matching the behavior


def ols_slope(xs: Sequence[float] | np.ndarray, ys: Sequence[float] | np.ndarray) -> float:
    x = np.asarray(xs, dtype=float)
    y = np.asarray(ys, dtype=float)
    dx = x - x.mean()
    return float((dx * (y - y.mean())).sum() / (dx * dx).sum())


def bootstrap_slope(points: Sequence[Point], b: int = B, seed: int = 0
                    ) -> tuple[float, float, float]:
    """Slope of % matching over x, and its 95% percentile interval from resampled rows."""
    xs = np.array([p.x for p in points], dtype=float)
    n = np.array([p.n for p in points])
    pct = np.array([100.0 * p.k / p.n for p in points])
    slope = ols_slope(xs, pct)
    rng = np.random.default_rng(seed)
    draws = 100.0 * rng.binomial(n[None, :], (pct / 100.0)[None, :], size=(b, len(points))) / n
    dx = xs - xs.mean()
    slopes = (draws - draws.mean(axis=1, keepdims=True)) @ dx / (dx * dx).sum()
    lo, hi = np.percentile(slopes, [2.5, 97.5])
    return slope, float(lo), float(hi)


def bootstrap_difference(a: Sequence[Point], b_: Sequence[Point], b: int = B, seed: int = 0
                         ) -> tuple[float, float, float]:
    """Mean % matching of group a minus group b, with a 95% bootstrap interval."""
    rng = np.random.default_rng(seed)

    def draws(group: Sequence[Point]) -> np.ndarray:
        n = np.array([p.n for p in group])
        p = np.array([p.k / p.n for p in group])
        return (100.0 * rng.binomial(n[None, :], p[None, :], size=(b, len(group))) / n).mean(1)

    point = (sum(100.0 * p.k / p.n for p in a) / len(a)
             - sum(100.0 * p.k / p.n for p in b_) / len(b_))
    diff = draws(a) - draws(b_)
    lo, hi = np.percentile(diff, [2.5, 97.5])
    return point, float(lo), float(hi)


def direction(lo: float, hi: float) -> str:
    return "increasing" if lo > 0 else "decreasing" if hi < 0 else "flat"


def confounds(models: Sequence[dict[str, Any]]) -> list[str]:
    """What besides the axis differs between the models of a trend."""
    out = []
    for key, what in (("model_family", "family"), ("tuning", "tuning"),
                      ("quantization", "quantization"), ("backend", "backend")):
        values = {str(m.get(key)) for m in models if m.get(key) is not None}
        if len(values) > 1:
            out.append(f"{what} ({', '.join(sorted(values))})")
    return out


def bootstrap_measure_slope(xs: Sequence[float], values: Sequence[tuple[float, float, float]],
                            b: int = B, seed: int = 0) -> tuple[float, float, float]:
    """Slope of a measure given with a 95% interval per model (e.g. an accuracy gap), and
    the slope's 95% interval from each model's value drawn from a normal of its interval's
    width (the measures' own intervals may come from a bootstrap; this only carries them)."""
    x = np.asarray(xs, dtype=float)
    y = np.array([v[0] for v in values])
    se = np.array([max(v[2] - v[1], 0.0) / (2 * 1.959964) for v in values])
    rng = np.random.default_rng(seed)
    draws = y[None, :] + rng.standard_normal((b, len(y))) * se[None, :]
    dx = x - x.mean()
    slopes = (draws - draws.mean(axis=1, keepdims=True)) @ dx / (dx * dx).sum()
    lo, hi = np.percentile(slopes, [2.5, 97.5])
    return ols_slope(x, y), float(lo), float(hi)



def measure_rows(results: Sequence[dict[str, Any]], measures: Mapping[str, Mapping[str, str]],
                 b: int = B) -> list[dict[str, Any]]:
    """Trends of the families' own measures (their Scorer.measures) over size and steps."""
    out: list[dict[str, Any]] = []
    for ds in dict.fromkeys(r["dataset"] for r in results):
        rs = [r for r in results if r["dataset"] == ds]
        for name, what in measures.get(str(rs[0]["family"]), {}).items():
            for axis, transform, per in (("params", math.log10, "per 10x parameters"),
                                         ("step", float, "per step")):
                usable: list[tuple[dict[str, Any], tuple[float, float, float]]] = []
                for r in rs:
                    v, lo, hi = (finite(r.get(k)) for k in (name, f"{name}_ci_low",
                                                             f"{name}_ci_high"))
                    if r.get(axis) is not None and v is not None and lo is not None \
                            and hi is not None:
                        usable.append((r, (v, lo, hi)))
                if len({r[axis] for r, _ in usable}) < 2:
                    continue
                slope, lo, hi = bootstrap_measure_slope(
                    [transform(r[axis]) for r, _ in usable], [v for _, v in usable], b)
                reasons = confounds([r for r, _ in usable])
                out.append({"dataset": ds, "family": rs[0]["family"], "axis": axis,
                            "unit": f"{name} ({what}): pct points {per}",
                            "models": len(usable), "slope": slope, "ci_low": lo, "ci_high": hi,
                            "trend": direction(lo, hi),
                            "confounded": "; ".join(reasons) if reasons else ""})
    return out


def trend_rows(results: Sequence[dict[str, Any]], b: int = B,
               measures: Mapping[str, Mapping[str, str]] | None = None) -> list[dict[str, Any]]:
    """One row per (dataset, axis) with at least two distinct axis values; then the trends
    of the families' own measures (by family name)."""
    out: list[dict[str, Any]] = []
    datasets = list(dict.fromkeys(r["dataset"] for r in results if r.get("n_matching") is not None))
    for ds in datasets:
        rs = [r for r in results if r["dataset"] == ds and r.get("n_matching") is not None]
        for axis, transform, unit in (("params", math.log10, "pct points per 10x parameters"),
                                      ("step", float, "pct points per step")):
            usable = [r for r in rs if r.get(axis) is not None]
            if len({r[axis] for r in usable}) < 2:
                continue
            points = [Point(r["label"], transform(r[axis]), int(r["n"]), int(r["n_matching"]))
                      for r in usable]
            slope, lo, hi = bootstrap_slope(points, b)
            reasons = confounds(usable)
            out.append({"dataset": ds, "family": rs[0]["family"], "axis": axis, "unit": unit,
                        "models": len(points), "slope": slope, "ci_low": lo, "ci_high": hi,
                        "trend": direction(lo, hi),
                        "confounded": "; ".join(reasons) if reasons else ""})
        base = [r for r in rs if r.get("tuning") == "base"]
        tuned = [r for r in rs if r.get("tuning") in ("tuned", "rlhf")]
        if base and tuned:
            diff, lo, hi = bootstrap_difference(
                [Point(r["label"], 0, int(r["n"]), int(r["n_matching"])) for r in tuned],
                [Point(r["label"], 0, int(r["n"]), int(r["n_matching"])) for r in base], b)
            reasons = [c for c in confounds(rs) if not c.startswith("tuning")]
            out.append({"dataset": ds, "family": rs[0]["family"], "axis": "tuned - base",
                        "unit": "pct points", "models": len(base) + len(tuned), "slope": diff,
                        "ci_low": lo, "ci_high": hi, "trend": direction(lo, hi),
                        "confounded": "; ".join(reasons) if reasons else ""})
    return out + measure_rows(results, measures or {}, b)


def strongest(trends: Sequence[dict[str, Any]], k: int = 10) -> list[dict[str, Any]]:
    """Inverse-scaling candidates: increasing with size or steps, by the interval's lower end."""
    rising = [t for t in trends if t["axis"] in ("params", "step") and t["trend"] == "increasing"]
    return sorted(rising, key=lambda t: -t["ci_low"])[:k]
