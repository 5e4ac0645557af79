"""Two report sections of a way of running `mwe evaluate`, shown only where the runs hold
their data (and otherwise not named at all, as the replies section):

    orders    "Answer order" (`--orders all`): % matching over all orders and in the given
              one, the most chosen position and its share above chance, % Yes for Yes/No
              questions, and a figure of the share answering each letter per model
    methods   "Log-probs vs replies" (`--score logprob,text`, methods.json): per model and
              dataset the share of items both methods answer alike, with the confusion table

The numbers are shown as `mwe evaluate` wrote them (read and checked by methods_input).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mwe.report.figures import Figure, Figures
from mwe.report.inputs import Inputs

POSITIONS_FIGURE = "positions"  # the PNG's name (figures.OWN_PNG knows it)
LETTER_COLOURS = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860",
                  "#da8bc3", "#8c8c8c"]


def ordered(r: Mapping[str, Any]) -> bool:
    """Whether a result holds what the answer-order section shows."""
    return (r.get("position_bias") is not None or r.get("pct_yes") is not None
            or bool(r.get("pct_matching_by_order")) or bool(r.get("chosen_position")))


# --- answer order --------------------------------------------------------------------------

@dataclass(frozen=True)
class OrderRow:
    label: str
    dataset: str
    n: int
    pct_matching: float | None  # over every order asked
    ci_low: float | None
    ci_high: float | None
    pct_given: float | None  # order 0: the options as the file gives them
    by_order: list[tuple[str, float]]
    most_chosen: str | None
    most_chosen_pct: float | None  # % of scored answers choosing it
    bias_points: float | None  # its share above chance, in percentage points
    pct_yes: float | None


@dataclass(frozen=True)
class Orders:
    rows: list[OrderRow]
    figure: Figure | None


def _order_row(r: Mapping[str, Any]) -> OrderRow:
    by = r.get("pct_matching_by_order") or {}
    shares = r.get("chosen_position") or {}
    top = r.get("most_chosen_position")
    bias = r.get("position_bias")
    return OrderRow(
        label=str(r["label"]), dataset=str(r["dataset"]), n=int(r["n"]),
        pct_matching=r.get("pct_matching"), ci_low=r.get("ci_low"), ci_high=r.get("ci_high"),
        pct_given=by.get("0"), by_order=list(by.items()), most_chosen=top,
        most_chosen_pct=100.0 * shares[top] if top in shares else None,
        bias_points=None if bias is None else 100.0 * bias, pct_yes=r.get("pct_yes"))


def mean_shares(results: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Per model label, the share answering each letter, averaged over its datasets with
    lettered options (a letter a dataset has not counts 0 there)."""
    per: dict[str, list[Mapping[str, float]]] = defaultdict(list)
    for r in results:
        if r.get("chosen_position"):
            per[str(r["label"])].append(r["chosen_position"])
    out = {}
    for label, dicts in per.items():
        letters = sorted({k for d in dicts for k in d})
        out[label] = {x: sum(d.get(x, 0.0) for d in dicts) / len(dicts) for x in letters}
    return out


def positions_png(shares: Mapping[str, Mapping[str, float]]) -> bytes:
    """Stacked horizontal bars, one per model: the % answering each letter."""
    from matplotlib.figure import Figure as Canvas  # no pyplot: drawn without a backend

    from mwe import plots

    labels = list(shares)
    letters = sorted({x for d in shares.values() for x in d})
    fig = Canvas(figsize=(8.0, 1.2 + 0.4 * len(labels)))
    ax = fig.subplots()
    left = [0.0] * len(labels)
    for j, x in enumerate(letters):
        vals = [100.0 * shares[lb].get(x, 0.0) for lb in labels]
        ax.barh(range(len(labels)), vals, left=left, height=0.7,
                color=LETTER_COLOURS[j % len(LETTER_COLOURS)], edgecolor="white",
                label=plots.text(f"({x})"))
        for i, v in enumerate(vals):
            if v >= 8:
                ax.text(left[i] + v / 2, i, f"{v:.0f}%", ha="center", va="center",
                        fontsize=7.5, color="white")
        left = [a + b for a, b in zip(left, vals)]
    ax.set_yticks(range(len(labels)), [plots.text(lb) for lb in labels], fontsize=7.5)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of scored answers choosing each position", fontsize=8.5)
    ax.tick_params(axis="x", labelsize=7.5)
    ax.legend(fontsize=7.5, loc="upper left", bbox_to_anchor=(1.0, 1.0), framealpha=0.9)
    fig.tight_layout()
    return plots.png(fig)


def orders(inp: Inputs, figs: Figures) -> Orders:
    """The answer-order table, and the positions figure when any result has lettered
    options; nothing drawn when no result holds answer-order data."""
    results = [r for r in inp.results if ordered(r)]
    shares = mean_shares(results)
    fig = figs.add(POSITIONS_FIGURE, positions_png(shares),
                   "% of answers choosing each position, per model (mean over its datasets)"
                   ) if shares else None
    return Orders([_order_row(r) for r in results], fig)


# --- log-probs vs replies ------------------------------------------------------------------

@dataclass(frozen=True)
class MethodRow:
    label: str
    dataset: str
    n: int
    n_both_scored: int
    n_same: int
    pct_same: float | None
    ci_low: float | None
    ci_high: float | None
    n_text_unscored: int
    columns: list[str]  # the text answers (and unscored reasons) seen
    confusion: list[tuple[str, list[int]]]  # per log-prob answer, a count per column


def _method_row(m: Mapping[str, Any]) -> MethodRow:
    table: Mapping[str, Mapping[str, int]] = m["confusion"]
    cols = sorted({c for row in table.values() for c in row},
                  key=lambda c: (c.startswith("unscored"), c))
    return MethodRow(
        label=str(m["label"]), dataset=str(m["dataset"]), n=m["n"],
        n_both_scored=m["n_both_scored"], n_same=m["n_same"], pct_same=m["pct_same"],
        ci_low=m["ci_low"], ci_high=m["ci_high"], n_text_unscored=m["n_text_unscored"],
        columns=cols,
        confusion=[(lp, [row.get(c, 0) for c in cols]) for lp, row in table.items()])


def methods(inp: Inputs) -> list[MethodRow]:
    """One row per model and dataset (the first input holding it, as for results)."""
    seen: set[tuple[str, str]] = set()
    out = []
    for m in inp.methods:
        key = (str(m["label"]), str(m["dataset"]))
        if key not in seen:
            seen.add(key)
            out.append(_method_row(m))
    return out
