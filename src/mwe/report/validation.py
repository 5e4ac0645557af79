"""The report's human-validation section: what `mwe validate stats` wrote (validation.json),
beside the paper's crowdworker figures. Nothing is recomputed here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mwe.report.figures import Figure, Figures
from mwe.report.inputs import Inputs
from mwe.stats import finite


@dataclass(frozen=True)
class ValidationRow:
    scope: str
    name: str
    family: str
    items: Any
    raters: Any
    relevance: tuple[float | None, float | None]  # mean, sd
    label_correct: tuple[float | None, float | None, float | None]  # share, CI
    agree: float | None
    agreement: tuple[str, float | None, float | None, float | None]  # method, value, CI
    none_ambiguous: float | None
    ambiguous: list[tuple[str, Any]]  # flags -> items
    confidence_r: tuple[float | None, float | None, float | None]


@dataclass(frozen=True)
class ValidationSection:
    rows: list[ValidationRow]
    paper: dict[str, Any]
    figure: Figure | None


def section(inp: Inputs, figs: Figures) -> ValidationSection:
    from mwe import plots

    rows = []
    paper: dict[str, Any] = {}
    for v in inp.validation:
        paper = paper or dict(v.get("paper") or {})
        for r in v["results"]:
            fleiss = r.get("kappa_method") != "krippendorff"
            amb = r.get("ambiguous") if isinstance(r.get("ambiguous"), dict) else {}
            rows.append(ValidationRow(
                scope=str(r.get("scope", "")), name=str(r.get("dataset") or r.get("family")),
                family=str(r.get("family", "")), items=r.get("n_items"), raters=r.get("n_raters"),
                relevance=(finite(r.get("relevance_mean")), finite(r.get("relevance_sd"))),
                label_correct=(finite(r.get("label_correct")), finite(r.get("label_correct_ci_low")),
                               finite(r.get("label_correct_ci_high"))),
                agree=finite(r.get("agree_2of3")),
                agreement=("Fleiss κ", finite(r.get("fleiss_kappa")), finite(r.get("kappa_ci_low")),
                           finite(r.get("kappa_ci_high"))) if fleiss else
                ("Krippendorff α", finite(r.get("krippendorff_alpha")), None, None),
                none_ambiguous=finite(r.get("ambiguous_none_share")),
                ambiguous=[(str(k), n) for k, n in amb.items()],
                confidence_r=(finite(r.get("confidence_r")), finite(r.get("confidence_r_ci_low")),
                              finite(r.get("confidence_r_ci_high")))))
    figure = None
    shown = [r for r in rows if r.scope == "dataset"][:8]
    if shown:
        groups = ["labels correct", "2+ raters agree with the label", "no rater finds it ambiguous",
                  "agreement (κ or α) × 100"]
        series: list[dict[str, Any]] = []
        for r in shown:
            lc, lo, hi = r.label_correct
            vals: list[tuple[float, float, float] | None] = [
                (100 * lc, 100 * (lo if lo is not None else lc), 100 * (hi if hi is not None else lc))
                if lc is not None else None]
            for x in (r.agree, r.none_ambiguous):
                vals.append((100 * x, 100 * x, 100 * x) if x is not None else None)
            _, k, klo, khi = r.agreement
            vals.append((100 * k, 100 * (klo if klo is not None else k),
                         100 * (khi if khi is not None else k)) if k is not None else None)
            series.append({"name": r.name, "values": vals})
        if paper:
            series.append({"name": "Perez et al. (2022)", "hatch": True, "colour": "#999999",
                           "values": [(100 * p, 100 * p, 100 * p) if p is not None else None
                                      for p in (finite(paper.get("label_correct_lm")),
                                                finite(paper.get("agree_2of3")),
                                                finite(paper.get("ambiguous_none_share")),
                                                finite(paper.get("fleiss_kappa")))]})
        figure = figs.add("validation", plots.paired_bars(groups, series, "%"),
                          "Human validation per dataset beside the paper's crowdworker study "
                          "(hatched; its label figure is for LM-written advanced-AI-risk "
                          "questions)")
    return ValidationSection(rows, paper, figure)
