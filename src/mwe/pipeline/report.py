"""Report: one self-contained HTML file (every image embedded) from sweep, evaluate and run
folders, with every figure also saved as a PNG beside it.

    mwe report runs/sweep runs/demo --out report.html
      -> report.html, report-plots/*.png   (NAME.html -> NAME-plots/: reports never share)

Every input file is checked as it is read; a malformed one is a DataError naming the file,
line and field, and nothing is written. Rerunning into the same --out replaces the figures:
PNGs an earlier run wrote there and this one did not are removed.

Sections, in this order, each shown when the inputs hold what it shows (the others are
named once, under the title): overview, families, heatmap, lines, trends, each family's own
(Family.report), agreement, maps, validation, usage, cards. Three show only for runs made
that way and are otherwise not named: replies (--score text), answer order (--orders all)
and log-probs vs replies (--score logprob,text).

Three steps, each in its own module of mwe.report: inputs (collect and check the folders),
analysis (what each section shows; a family's own section is drawn by its Family.report)
and render (the jinja2 templates in mwe/templates/report/, autoescaped).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mwe import __version__
from mwe.errors import MweError
from mwe.families import FAMILIES
from mwe.io import atomic_open
from mwe.report import analysis, methods_section, validation
from mwe.report.agreement import agreement_section
from mwe.report.analysis import SECTIONS
from mwe.report.cards import cards
from mwe.report.figures import Figures
from mwe.report.inputs import Inputs, collect
from mwe.report.render import render_page, script_json
from mwe.trends import trend_rows

__all__ = ["SECTIONS", "Inputs", "collect", "write_report"]


def sections(inp: Inputs, figs: Figures) -> dict[str, Any]:
    """What each section shows, by section id. Figures are drawn here, in page order, which
    is the order their file names are given out in."""
    trends = trend_rows(inp.results, measures={f.name: f.scorer.measures for f in FAMILIES})
    return {
        "overview": analysis.overview(inp, trends),
        "families": analysis.families(inp),
        "heatmap": analysis.heatmaps(inp, figs),
        "lines": analysis.lines(inp, trends, figs),
        "trends": analysis.trend_view(trends),
        "replies": [r for r in inp.results if r.get("n_scored") is not None],
        "orders": methods_section.orders(inp, figs),
        "methods": methods_section.methods(inp),
        **{f.name: f.section.draw(inp, figs) for f in analysis.REPORTING if f.section},
        "agreement": agreement_section(inp, figs),
        "maps": [(m, script_json(m)) for m in inp.maps],
        "validation": validation.section(inp, figs),
        "usage": inp.usage,
        "cards": cards(inp, figs),
    }


def write_report(paths: Sequence[str | Path], out: Path, title: str | None = None
                 ) -> tuple[Path, list[Path]]:
    """Build the report; returns the HTML path and the PNGs written beside it.

    The inputs are all read and checked, and every figure drawn, before anything is written;
    then the PNGs, then the page (each atomically), then the figures an earlier report into
    the same file left behind are removed."""
    figs = Figures(out.parent / f"{out.stem}-plots")
    if out.is_dir():
        raise MweError(f"--out {out}: is a folder; give an .html file name")
    if figs.folder.exists() and not figs.folder.is_dir():
        raise MweError(f"{figs.folder}: not a folder (the report's figures go there)")
    inp = collect(paths)
    shown = sections(inp, figs)
    have = analysis.present(inp)
    page = render_page(title or "mwe report", __version__, len(inp.sources),
                       [(sid, name, shown[sid]) for sid, name in SECTIONS if sid in have],
                       maps=bool(inp.maps),
                       absent=[analysis.short_name(n) for sid, n in SECTIONS
                               if sid not in have and sid not in analysis.UNLISTED])
    try:
        figs.write()
        with atomic_open(out) as fh:
            fh.write(page)
        figs.prune()
    except OSError as exc:
        raise MweError(f"{exc.filename or out}: cannot write the report: "
                       f"{exc.strerror or exc}") from exc
    return out, figs.paths
