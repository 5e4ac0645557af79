"""Interval estimates used in summaries (stdlib only, so the core needs no SciPy)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval: well-behaved near 0% and 100%, where evals often sit."""
    if n <= 0:
        return (float("nan"), float("nan"))
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    # The interval always contains the observed rate; make that exact at 0% and 100%.
    return (min(lo, p), max(hi, p))


def pearson_r(xs: Sequence[float], ys: Sequence[float]) -> float:
    n = len(xs)
    if n != len(ys):
        raise ValueError("pearson_r needs two sequences of the same length")
    if n < 2:
        return float("nan")
    mx = sum(xs) / n
    my = sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return float("nan")
    return max(-1.0, min(1.0, sxy / math.sqrt(sxx * syy)))


def fisher_interval(r: float, n: int, z: float = Z95) -> tuple[float, float]:
    """CI of a Pearson r via the Fisher z-transform (as the paper's occupation plot shows it)."""
    if n <= 3 or math.isnan(r):
        return (float("nan"), float("nan"))
    if abs(r) >= 1.0:
        return (r, r)
    zr = math.atanh(r)
    se = 1.0 / math.sqrt(n - 3)
    return (math.tanh(zr - z * se), math.tanh(zr + z * se))


def sigmoid(x: float) -> float:
    """P(first answer) from the log-odds of two answers (a softmax over the two)."""
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def calibration_shift(log_odds: Sequence[float], method: str) -> float:
    """What to subtract from each log-odds. 'batch' centres them on their mean over all
    candidates (batch calibration, Zhou et al. 2023): a small LM's prior for ' agree' over
    ' disagree' otherwise decides most labels by itself."""
    if method == "batch" and log_odds:
        return sum(log_odds) / len(log_odds)
    return 0.0


def finite(x: Any) -> float | None:
    """A number read from a results file, or None for anything else (null, "", NaN, text)."""
    ok = isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)
    return float(x) if ok else None


def softmax(logprobs: Sequence[float]) -> list[float]:
    top = max(logprobs)
    exps = [math.exp(lp - top) for lp in logprobs]
    total = sum(exps)
    return [e / total for e in exps]
