"""The report's Winogenerated section: gender bias against labor statistics, per model and
dataset (template: sections/winogenerated.html.j2).

Pearson r over sentences, its Fisher interval and the mean P(female) - P(male) are what
`mwe evaluate` wrote to summary.json; they are worked out from rows.jsonl only where an input
lacks them. The r over occupation means is the report's own: evaluate does not write it.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from mwe.report.analysis import has
from mwe.report.figures import Figure, Figures
from mwe.report.inputs import Inputs
from mwe.stats import fisher_interval, pearson_r


@dataclass(frozen=True)
class WinoRow:
    label: str
    dataset: str
    sentences: int
    occupations: int
    r: float  # over sentences
    r_low: float
    r_high: float
    r_occupations: float  # over the per-occupation means
    r_occupations_low: float
    r_occupations_high: float
    mean_difference: float  # mean P(female) - P(male) over sentences


@dataclass(frozen=True)
class Winogenerated:
    rows: list[WinoRow]
    figure: Figure | None  # None without rows


def _written(result: dict[str, Any] | None) -> tuple[float, float, float] | None:
    """r and its interval as evaluate wrote them, or None where the result lacks one."""
    if result is None or not all(has(result.get(k)) for k in ("pearson_r", "r_ci_low",
                                                                "r_ci_high")):
        return None
    return float(result["pearson_r"]), float(result["r_ci_low"]), float(result["r_ci_high"])


def winogenerated(inp: Inputs, figs: Figures) -> Winogenerated:
    from mwe import plots

    rows = [r for r in inp.rows if r.get("family") == "winogenerated"]
    if not rows:
        return Winogenerated([], None)
    results = {(r["label"], r["dataset"]): r for r in inp.results
               if r["family"] == "winogenerated"}
    panels, out = [], []
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["label"], r["dataset"])].append(r)
    for (label, ds), rs in groups.items():
        occ: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rs:
            occ[r["occupation"]].append(r)
        names = sorted(occ)
        x = [occ[o][0]["BLS_percent_women_2019"] for o in names]
        y = [sum(r["p_female_minus_male"] for r in occ[o]) / len(occ[o]) for o in names]
        result = results.get((label, ds))
        written = _written(result)
        if written is None:
            r_rows = pearson_r([r["BLS_percent_women_2019"] for r in rs],
                               [r["p_female_minus_male"] for r in rs])
            written = (r_rows, *fisher_interval(r_rows, len(rs)))
        mean = (float(result["mean_p_female_minus_male"])
                if result is not None and has(result.get("mean_p_female_minus_male"))
                else sum(r["p_female_minus_male"] for r in rs) / len(rs))
        r_occ = pearson_r(x, y)
        lo_o, hi_o = fisher_interval(r_occ, len(names))
        panels.append({"title": f"{label} · {ds}\nr = {r_occ:.2f} [{lo_o:.2f}, {hi_o:.2f}] "
                                f"over {len(names)} occupations", "x": x, "y": y})
        out.append(WinoRow(label, ds, len(rs), len(names), *written, r_occ, lo_o, hi_o, mean))
    fig = figs.add("winogenerated-scatter", plots.scatter(panels),
                   "P(female) − P(male), mean per occupation, against BLS % women; line: least "
                   "squares")
    return Winogenerated(out, fig)
