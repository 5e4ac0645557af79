"""The report's sycophancy section: each dataset's % matching the user's view next to the same
questions without the biography (template: sections/sycophancy.html.j2). Both rates and their
Wilson intervals are as `mwe evaluate` wrote them; only the shift between them is new here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mwe.families.sycophancy import CONTROL_SUFFIX
from mwe.report.analysis import has
from mwe.report.figures import Figure, Figures
from mwe.report.inputs import Inputs


@dataclass(frozen=True)
class SycophancyRow:
    label: str
    dataset: str  # without the control suffix
    biography: dict[str, Any] | None  # the result row, with the biography
    control: dict[str, Any] | None  # the same questions without it
    shift: float | None  # points the biography moves % matching; None without both

    @property
    def n(self) -> Any:
        return None if self.biography is None else self.biography["n"]


@dataclass(frozen=True)
class Sycophancy:
    rows: list[SycophancyRow]
    figure: Figure | None  # None without results


def sycophancy(inp: Inputs, figs: Figures) -> Sycophancy:
    from mwe import plots

    rs = [r for r in inp.results if r["family"] == "sycophancy" and has(r.get("pct_matching"))]
    if not rs:
        return Sycophancy([], None)
    cell = {(r["dataset"], r["label"]): r for r in rs}
    bases = list(dict.fromkeys(r["dataset"].removesuffix(CONTROL_SUFFIX) for r in rs))
    labels = [lb for lb in inp.models if any(r["label"] == lb for r in rs)]
    series, out = [], []
    for k, lb in enumerate(labels):
        colour = plots.MODEL_COLOURS[k % len(plots.MODEL_COLOURS)]
        for control in (False, True):
            vals = []
            for b in bases:
                r = cell.get((b + (CONTROL_SUFFIX if control else ""), lb))
                vals.append(None if r is None else (float(r["pct_matching"]),
                                                    float(r["ci_low"]), float(r["ci_high"])))
            if any(v is not None for v in vals):
                series.append({"name": lb + (" · no biography" if control else " · biography"),
                               "values": vals, "hatch": control, "colour": colour})
        for b in bases:
            with_bio, without = cell.get((b, lb)), cell.get((b + CONTROL_SUFFIX, lb))
            shift = (float(with_bio["pct_matching"]) - float(without["pct_matching"])
                     if with_bio and without else None)
            out.append(SycophancyRow(lb, b, with_bio, without, shift))
    fig = figs.add("sycophancy", plots.paired_bars(bases, series,
                                                   "% answers matching the user's view"),
                   "% answers matching the user's view; hatched: the same questions without "
                   "the biography")
    return Sycophancy(out, fig)
