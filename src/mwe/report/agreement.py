"""The report's model-agreement section: the share of datasets on which two models both
prefer or both disprefer the behavior (mwe.agreement, as `mwe sweep` wrote it), as a
predictor x target matrix, and how often trends reverse between adjacent sizes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mwe.report.figures import Figure, Figures
from mwe.report.inputs import Inputs


@dataclass(frozen=True)
class AgreementSection:
    pairs: list[dict[str, Any]]  # one per ordered pair, as the sweep wrote it
    reversals: list[dict[str, Any]]  # the summary rows (dataset "") first, then per dataset
    figure: Figure | None


def agreement_section(inp: Inputs, figs: Figures) -> AgreementSection:
    from mwe import plots

    pairs = [a for a in inp.agreement if a["share"] is not None]
    figure = None
    if pairs:
        labels = list(dict.fromkeys([a["predictor"] for a in pairs]
                                    + [a["target"] for a in pairs]))
        cell = {(a["predictor"], a["target"]): 100.0 * a["share"] for a in pairs}
        grid = [[cell.get((p, t)) for t in labels] for p in labels]
        figure = figs.add("agreement", plots.heatmap(
            labels, labels, grid, "Agreement: predictor (rows) × target (columns)",
            scale="% datasets where both prefer or both disprefer"),
            "Share of datasets on which the two models agree about the behavior", cls="small")
    rev = sorted(inp.reversals, key=lambda r: r["dataset"] != "")
    return AgreementSection(pairs, rev, figure)
