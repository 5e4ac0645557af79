"""What the report's common sections show, worked out from the collected inputs: plain data
for the templates (no HTML here) and the figures, drawn and registered in page order.

The statistics `mwe evaluate` wrote are shown as written (% matching and its Wilson interval,
Pearson r and its Fisher interval, mean valid mass); only what needs more than one input
folder is worked out here: per-family means over datasets and the trends across models.
The dataset cards live beside this module (cards.py); each family's own section is its
Family.report.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from mwe.families import FAMILIES
from mwe.records import given as has
from mwe.report.figures import Figure, Figures
from mwe.report.inputs import AXES, Inputs
from mwe.report.methods_section import ordered
from mwe.trends import strongest

REPORTING = [f for f in FAMILIES if f.section is not None]
# the common sections, each family's own section (its ReportSection), then the cards
SECTIONS = [
    ("overview", "Overview"),
    ("families", "Per-family summary"),
    ("heatmap", "% matching: datasets × models"),
    ("lines", "Each dataset across the series"),
    ("trends", "Trends"),
    ("replies", "Scored by the replies"),
    ("orders", "Answer order"),
    ("methods", "Log-probs vs replies"),
    *((f.name, f.section.title) for f in REPORTING if f.section is not None),
    ("agreement", "Model agreement"),
    ("maps", "Dataset map"),
    ("validation", "Human validation"),
    ("usage", "Tokens and cost"),
    ("cards", "Dataset cards"),
]
# sections of a way of running, not of a kind of input: not named as absent where unused
UNLISTED = frozenset({"replies", "orders", "methods"})
TUNING_ORDER = ("base", "tuned", "rlhf", "pm")
LINE_PAGE = 48  # datasets per line-plot image
AXIS_NAMES = {"params": "parameters (log scale)", "step": "training step", "tuning": "tuning"}


def present(inp: Inputs) -> set[str]:
    """The sections whose input the folders hold: the page shows these and names the others
    once, rather than a section apiece saying it has nothing."""
    families = {r["family"] for r in inp.results}
    have = {"overview": True, "families": bool(inp.results),
            "heatmap": any(has(r.get("pct_matching")) for r in inp.results),
            "lines": bool(inp.results), "trends": bool(inp.results),
            "replies": any(r.get("n_scored") is not None for r in inp.results),
            "orders": any(ordered(r) for r in inp.results), "methods": bool(inp.methods),
            **{f.name: f.name in families for f in REPORTING},
            "agreement": bool(inp.agreement), "maps": bool(inp.maps),
            "validation": any(v["results"] for v in inp.validation),
            "usage": bool(inp.usage), "cards": bool(inp.cards)}
    return {sid for sid, _ in SECTIONS if have[sid]}


def short_name(heading: str) -> str:
    """A section as the list of absent ones names it: its heading up to a colon."""
    return heading.split(":", 1)[0]


# --- overview ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ModelRow:
    model: str
    label: str
    params: float | None
    step: float | None
    tuning: str | None
    family: str | None
    quantization: str | None


@dataclass(frozen=True)
class Overview:
    n_answers: int
    n_datasets: int
    n_cards: int
    families: list[str]
    confounded: list[str]  # what besides the axis differs, over every trend
    models: list[ModelRow]
    sources: list[str]


def overview(inp: Inputs, trends: list[dict[str, Any]]) -> Overview:
    models = [ModelRow(m["model"], m["label"], m.get("params"), m.get("step"), m.get("tuning"),
                       m.get("model_family") or m.get("family"), m.get("quantization"))
              for m in inp.models.values()]
    return Overview(
        n_answers=sum(int(r["n"]) for r in inp.results),
        n_datasets=len({r["dataset"] for r in inp.results}),
        n_cards=len(inp.cards),
        families=sorted({r["family"] for r in inp.results}),
        confounded=sorted({c for t in trends for c in t["confounded"].split("; ") if c}),
        models=models, sources=inp.sources)


# --- per-family summary ----------------------------------------------------------------------

@dataclass(frozen=True)
class FamilyRow:
    family: str
    label: str
    datasets: int
    answers: int
    mean_pct: float | None  # unweighted over datasets
    above: int | None  # datasets whose interval lies above 50%; None without any %
    below: int | None
    r: list[tuple[Any, Any, Any]]  # (pearson_r, r_ci_low, r_ci_high) as evaluate wrote them
    mean_valid_mass: float | None


def families(inp: Inputs) -> list[FamilyRow]:
    by: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in inp.results:
        by[(r["family"], r["label"])].append(r)
    out = []
    for (fam, label), rs in sorted(by.items()):
        pcts = [float(r["pct_matching"]) for r in rs if has(r.get("pct_matching"))]
        above = sum(1 for r in rs if has(r.get("ci_low")) and float(r["ci_low"]) > 50)
        below = sum(1 for r in rs if has(r.get("ci_high")) and float(r["ci_high"]) < 50)
        masses = [float(r["mean_valid_mass"]) for r in rs if has(r.get("mean_valid_mass"))]
        out.append(FamilyRow(
            family=fam, label=label, datasets=len(rs), answers=sum(int(r["n"]) for r in rs),
            mean_pct=sum(pcts) / len(pcts) if pcts else None,
            above=above if pcts else None, below=below if pcts else None,
            r=[(r["pearson_r"], r.get("r_ci_low"), r.get("r_ci_high")) for r in rs
               if has(r.get("pearson_r"))],
            mean_valid_mass=sum(masses) / len(masses) if masses else None))
    return out


# --- heatmap -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Heatmap:
    family: str
    n_datasets: int
    figure: Figure


def matrix(inp: Inputs, family: str) -> tuple[list[str], list[str], list[list[float | None]]]:
    """% matching of one family, datasets (most matching first) by models."""
    labels = list(inp.models)
    rs = [r for r in inp.results if r["family"] == family and has(r.get("pct_matching"))]
    cell = {(r["dataset"], r["label"]): float(r["pct_matching"]) for r in rs}
    datasets = list(dict.fromkeys(r["dataset"] for r in rs))
    labels = [lb for lb in labels if any((d, lb) in cell for d in datasets)]
    mean = {d: sum(cell.get((d, lb), 50.0) for lb in labels) / max(len(labels), 1)
            for d in datasets}
    datasets.sort(key=lambda d: -mean[d])
    return datasets, labels, [[cell.get((d, lb)) for lb in labels] for d in datasets]


def heatmaps(inp: Inputs, figs: Figures) -> list[Heatmap]:
    from mwe import plots

    out = []
    for fam in dict.fromkeys(r["family"] for r in inp.results if has(r.get("pct_matching"))):
        datasets, labels, grid = matrix(inp, fam)
        fig = figs.add(f"heatmap-{fam}", plots.heatmap(datasets, labels, grid, fam),
                       f"% matching the behavior, {fam}")
        out.append(Heatmap(fam, len(datasets), fig))
    return out


# --- lines ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Lines:
    family: str
    axis: str  # as the figure names it: "parameters (log scale)", ...
    n_datasets: int
    figures: list[Figure]  # LINE_PAGE datasets each


def axis_points(inp: Inputs, axis: str) -> dict[str, float] | None:
    """Position of each model on the axis, or None when fewer than two distinct values."""
    pos: dict[str, float] = {}
    for label, m in inp.models.items():
        v = m.get(axis)
        if v in (None, ""):
            continue
        if axis == "tuning":
            if v not in TUNING_ORDER:
                continue
            pos[label] = float(TUNING_ORDER.index(v))
        else:
            pos[label] = float(v)
    return pos if len(set(pos.values())) >= 2 else None


def lines(inp: Inputs, trends: list[dict[str, Any]], figs: Figures) -> list[Lines]:
    from mwe import plots

    out = []
    trend_of = {(t["dataset"], t["axis"]): t["trend"] for t in trends}
    for axis in AXES:
        pos = axis_points(inp, axis)
        if pos is None:
            continue
        cats: list[str] = []
        if axis == "tuning":
            used = sorted(set(pos.values()))
            cats = [TUNING_ORDER[int(u)] for u in used]
            pos = {k: float(used.index(v)) for k, v in pos.items()}
        trend_axis = "tuned - base" if axis == "tuning" else axis
        for fam in dict.fromkeys(r["family"] for r in inp.results):
            panels = []
            by_ds: dict[str, list[tuple[float, float, float, float, str]]] = defaultdict(list)
            for r in inp.results:
                if r["family"] != fam or r["label"] not in pos or not has(r.get("pct_matching")):
                    continue
                by_ds[r["dataset"]].append((pos[r["label"]], float(r["pct_matching"]),
                                            float(r["ci_low"]), float(r["ci_high"]), r["label"]))
            for ds, pts in by_ds.items():
                if len({p[0] for p in pts}) >= 2:
                    panels.append({"dataset": ds, "points": pts,
                                   "trend": trend_of.get((ds, trend_axis))})
            if not panels:
                continue
            name = AXIS_NAMES[axis]
            pages = []
            for page in range(0, len(panels), LINE_PAGE):
                chunk = panels[page: page + LINE_PAGE]
                fig = plots.lines(chunk, name, log_x=axis == "params", categories=cats)
                suffix = f"-{page // LINE_PAGE + 1}" if len(panels) > LINE_PAGE else ""
                pages.append(figs.add(f"lines-{fam}-{axis}{suffix}", fig,
                                      f"{fam}: % matching over {name}, 95% Wilson intervals"))
            out.append(Lines(fam, name, len(panels), pages))
    return out


# --- trends --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Trends:
    all: list[dict[str, Any]]  # trend_rows: one per (dataset, axis)
    rising: list[dict[str, Any]]  # inverse-scaling candidates, by the interval's lower end
    falling: list[dict[str, Any]]
    tuned: list[dict[str, Any]]  # tuned - base, by the size of the difference
    n_significant: int
    n_confounded: int


def trend_view(trends: list[dict[str, Any]]) -> Trends:
    falling = sorted([t for t in trends if t["axis"] in ("params", "step")
                      and t["trend"] == "decreasing"], key=lambda t: float(t["ci_high"]))[:15]
    tuned = [t for t in trends if t["axis"] == "tuned - base" and t["trend"] != "flat"]
    tuned.sort(key=lambda t: -abs(float(t["slope"])))
    return Trends(all=trends, rising=strongest(trends, k=15), falling=falling, tuned=tuned[:15],
                  n_significant=sum(t["trend"] != "flat" for t in trends),
                  n_confounded=sum(1 for t in trends if t["confounded"]))
