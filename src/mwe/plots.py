"""Figures for the report, each returned as PNG bytes (no display needed: Agg backend).

Colours follow one rule everywhere: % matching the behavior runs blue (0) - white (50) -
red (100), so "more of the behavior" reads the same in the heatmap, the tables and the lines.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

CMAP = "RdBu_r"
TREND_COLOURS = {"increasing": "#c0392b", "decreasing": "#2471a3", "flat": "#555555"}
MODEL_COLOURS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d",
                 "#666666"]


def png(fig: Figure, dpi: int = 100) -> bytes:
    """PNG bytes without a timestamp or version, so the same data gives the same file."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def si(x: float) -> str:
    """135000000 -> 135M: parameter counts as people write them."""
    for div, unit in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


def text(s: object) -> str:
    """Any text as matplotlib draws it literally: '$' would start mathtext (and an unmatched
    one fails the whole figure), a leading '_' would hide a legend entry."""
    out = str(s).replace("$", r"\$")
    return "\u200b" + out if out.startswith("_") else out


def _short(name: str, width: int = 46) -> str:
    return text(name if len(name) <= width else name[: width - 1] + "…")


def heatmap(datasets: Sequence[str], models: Sequence[str],
            pct: Sequence[Sequence[float | None]], title: str,
            scale: str = "% answers matching the behavior") -> bytes:
    """% matching, datasets down and models across, each cell labelled with its value."""
    import numpy as np

    grid = np.array([[math.nan if v is None else v for v in row] for row in pct], dtype=float)
    height = 1.4 + 0.22 * len(datasets)
    width = 3.6 + 0.95 * len(models)
    fig, ax = plt.subplots(figsize=(width, height))
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=plt.get_cmap(CMAP).with_extremes(
        bad="#dddddd"), vmin=0, vmax=100, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(models)), [_short(m, 22) for m in models], rotation=30, ha="right",
                  fontsize=8)
    ax.set_yticks(range(len(datasets)), [_short(d) for d in datasets], fontsize=7)
    ax.xaxis.tick_top()
    ax.xaxis.set_label_position("top")
    plt.setp(ax.get_xticklabels(), rotation=30, ha="left")
    if len(models) <= 12:
        for i in range(len(datasets)):
            for j in range(len(models)):
                v = grid[i, j]
                if not math.isnan(v):
                    ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=6.5,
                            color="white" if abs(v - 50) > 30 else "black")
    cbar = fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02, shrink=min(1.0, 12 / max(len(datasets), 1)) + 0.2)
    cbar.set_label(text(scale), fontsize=8)
    ax.set_title(text(title), fontsize=10, pad=12)
    return png(fig)


def lines(panels: Sequence[dict[str, Any]], axis: str, log_x: bool, categories: Sequence[str] = (),
          cols: int = 6) -> bytes:
    """Small multiples: one panel per dataset, % matching over the axis with 95% CIs.

    Each panel: {"dataset", "trend", "points": [(x, pct, lo, hi, label)]}; the title is
    coloured by the trend's direction.
    """
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.55 * cols, 2.05 * rows), squeeze=False,
                             sharey=True)
    for k, ax in enumerate(axes.flat):
        if k >= len(panels):
            ax.set_visible(False)
            continue
        p = panels[k]
        pts = sorted(p["points"], key=lambda t: t[0])
        xs = [t[0] for t in pts]
        ys = [t[1] for t in pts]
        err = [[t[1] - t[2] for t in pts], [t[3] - t[1] for t in pts]]
        colour = TREND_COLOURS.get(p.get("trend") or "flat", "#555555")
        ax.axhline(50, color="#bbbbbb", lw=0.8, ls="--", zorder=0)
        ax.errorbar(xs, ys, yerr=err, color=colour, marker="o", ms=3.5, lw=1.3, capsize=2.5)
        if log_x:
            ax.set_xscale("log")
            ax.minorticks_off()
            ticks = sorted(set(xs))
            ax.set_xticks(ticks, [si(t) for t in ticks], fontsize=7)
            ax.set_xlim(min(ticks) / 1.25, max(ticks) * 1.25)
        if categories:
            ax.set_xticks(range(len(categories)), categories, fontsize=7)
            ax.set_xlim(-0.5, len(categories) - 0.5)
        else:
            ax.tick_params(axis="x", labelsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_ylim(0, 100)
        ax.set_title(_short(p["dataset"], 34) + (f"\n{text(p['trend'])}" if p.get("trend") else ""),
                     fontsize=7.5, color=colour)
        ax.grid(alpha=0.25, lw=0.5)
    fig.supxlabel(text(axis), fontsize=9)
    fig.supylabel("% matching the behavior", fontsize=9)
    fig.tight_layout()
    return png(fig, dpi=90)


def scatter(panels: Sequence[dict[str, Any]]) -> bytes:
    """Per point (e.g. an occupation), a model's score against a reference %, per panel.

    Each panel: {"title", "x": [...], "y": [...], "names": [...]}.
    """
    import numpy as np

    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.0 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(panels):
            ax.set_visible(False)
            continue
        p = panels[k]
        x = np.asarray(p["x"], dtype=float)
        y = np.asarray(p["y"], dtype=float)
        ax.axhline(0, color="#bbbbbb", lw=0.8)
        ax.axvline(50, color="#bbbbbb", lw=0.8)
        ax.scatter(x, y, s=14, alpha=0.75, color=MODEL_COLOURS[k % len(MODEL_COLOURS)],
                   edgecolor="none")
        if len(x) >= 2 and np.ptp(x) > 0:
            slope, icept = np.polyfit(x, y, 1)
            xx = np.array([0.0, 100.0])
            ax.plot(xx, icept + slope * xx, color="black", lw=1)
        ax.set_xlim(0, 100)
        ax.set_ylim(-1.05, 1.05)
        ax.set_xlabel("BLS % women (2019)", fontsize=8)
        ax.set_ylabel("P(female) − P(male)", fontsize=8)
        ax.set_title(text(p["title"]), fontsize=8.5)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.25, lw=0.5)
    fig.tight_layout()
    return png(fig)


def paired_bars(groups: Sequence[str], series: Sequence[dict[str, Any]], xlabel: str) -> bytes:
    """Horizontal bars per group, one bar per series, with 95% CIs.

    Each series: {"name", "values": [(pct, lo, hi) | None per group], "hatch": bool}.
    """
    n = len(series)
    height = 1.2 + 0.28 * len(groups) * max(n, 1)
    fig, ax = plt.subplots(figsize=(8.0, height))
    bar = 0.8 / max(n, 1)
    for s_i, s in enumerate(series):
        ys, vals, los, his = [], [], [], []
        for g_i, v in enumerate(s["values"]):
            if v is None:
                continue
            ys.append(g_i + (s_i - (n - 1) / 2) * bar)
            vals.append(v[0])
            los.append(v[0] - v[1])
            his.append(v[2] - v[0])
        ax.barh(ys, vals, height=bar * 0.92, xerr=[los, his], capsize=2,
                color=s.get("colour", MODEL_COLOURS[s_i % len(MODEL_COLOURS)]),
                hatch="///" if s.get("hatch") else None, edgecolor="white", label=text(s["name"]),
                error_kw={"lw": 0.8})
    ax.set_yticks(range(len(groups)), [_short(g, 40) for g in groups], fontsize=7.5)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel(text(xlabel), fontsize=8.5)
    ax.tick_params(axis="x", labelsize=7.5)
    ax.grid(axis="x", alpha=0.3, lw=0.5)
    ax.legend(fontsize=7.5, loc="lower right", framealpha=0.9)
    fig.tight_layout()
    return png(fig)


def differences(panels: Sequence[dict[str, Any]], xlabel: str, ylabel: str,
                log_x: bool) -> bytes:
    """A difference in percentage points with its 95% interval, per model: over an axis
    (parameters, steps) or, without one, side by side. One panel per dataset.

    Each panel: {"title", "points": [(x, value, lo, hi, label)]}; x is None for a model
    without a value on the axis (then every point is drawn by label).
    """
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 3.2 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= len(panels):
            ax.set_visible(False)
            continue
        p = panels[k]
        pts = list(p["points"])
        on_axis = bool(pts) and all(t[0] is not None for t in pts)
        if on_axis:
            pts.sort(key=lambda t: t[0])
            xs: list[float] = [float(t[0]) for t in pts]
        else:
            xs = [float(i) for i in range(len(pts))]
        ys = [t[1] for t in pts]
        err = [[t[1] - t[2] for t in pts], [t[3] - t[1] for t in pts]]
        ax.axhline(0, color="#999999", lw=0.8, ls="--", zorder=0)
        ax.errorbar(xs, ys, yerr=err, color=MODEL_COLOURS[0], marker="o", ms=4, lw=1.3,
                    capsize=3, ls="-" if on_axis else "none")
        if on_axis and log_x and min(xs) > 0:
            ax.set_xscale("log")
            ax.minorticks_off()
            ticks = sorted(set(xs))
            ax.set_xticks(ticks, [si(t) for t in ticks], fontsize=7)
            ax.set_xlim(min(ticks) / 1.4, max(ticks) * 1.4)
        elif not on_axis:
            ax.set_xticks(xs, [_short(str(t[4]), 18) for t in pts], fontsize=7, rotation=20)
            ax.set_xlim(-0.6, len(xs) - 0.4)
        ax.tick_params(labelsize=7)
        ax.set_xlabel(text(xlabel if on_axis else "model"), fontsize=8)
        ax.set_ylabel(text(ylabel), fontsize=8)
        ax.set_title(_short(text(p["title"]), 50), fontsize=8.5)
        ax.grid(alpha=0.25, lw=0.5)
    fig.tight_layout()
    return png(fig)


def confidence_histogram(hist: Sequence[dict[str, Any]], title: str) -> bytes:
    """A dataset card's label_confidence histogram."""
    fig, ax = plt.subplots(figsize=(4.2, 2.3))
    lefts = [h["from"] for h in hist]
    widths = [h["to"] - h["from"] for h in hist]
    ax.bar(lefts, [h["count"] for h in hist], width=widths, align="edge", color="#7570b3",
           edgecolor="white")
    ax.set_xlabel("label_confidence", fontsize=8)
    ax.set_ylabel("rows", fontsize=8)
    ax.set_title(text(title), fontsize=8.5)
    ax.tick_params(labelsize=7)
    fig.tight_layout()
    return png(fig)
