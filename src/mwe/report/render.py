"""Rendering the report page from its templates (mwe/templates/report/).

Autoescaping is on: dataset names, model labels and card fields are model-written or
user-given, so every value a template prints is escaped unless it is markup a template or
macro made. The stylesheet (report.css) is inlined, so the page stays one file that opens
offline.

Two settings keep the page byte-identical to the one mwe wrote before it had templates:
values are escaped as html.escape escapes them ("&#x27;", "&quot;", where markupsafe writes
"&#39;", "&#34;"), and a line break in a template, with the indentation around it, is
removed (the markup is one line; templates are written one element a line to be readable).
"""

from __future__ import annotations

import html
import json
import math
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
from markupsafe import Markup

TEMPLATES = "templates/report"
FAMILY_TEMPLATES = "families/templates"


class JoinLines(jinja2.ext.Extension):
    """Drop each line break of a template's source and the whitespace around it: the page
    is one line, whatever the templates' layout. Text that runs over a line break in a
    template would lose its space, so template text is kept on one line."""

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        return re.sub(r"[ \t]*\n\s*", "", source)


def finalize(x: Any) -> Any:
    """Every printed value, escaped as html.escape does; markup from macros passes as is."""
    if hasattr(x, "__html__"):
        return x
    return Markup(html.escape(str(x)))


def num(x: Any, spec: str = ".1f") -> str:
    """A number as the tables show it; '–' where it is missing or NaN."""
    if x is None or x == "" or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return format(float(x), spec)


def cell_colour(pct: Any) -> str:
    """Background of a % cell: blue (0) - white (50) - red (100), as in the heatmap."""
    v = None if pct in (None, "") else float(pct)
    if v is None or math.isnan(v):
        return "#eeeeee"
    t = max(-1.0, min(1.0, (v - 50.0) / 50.0))
    r, g, b = (255, 255 - int(150 * t), 255 - int(150 * t)) if t > 0 else \
        (255 + int(150 * t), 255 + int(120 * t), 255)
    return f"#{r:02x}{g:02x}{b:02x}"


def si(x: Any) -> str:
    """Parameters as people write them (135M)."""
    from mwe.plots import si as plots_si

    return plots_si(float(x))


def blank(x: Any) -> bool:
    """Missing: null in summary.json, "" in a CSV-era input."""
    return x is None or x == ""


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        # a family's section template lives beside the family modules
        loader=jinja2.ChoiceLoader([jinja2.PackageLoader("mwe", TEMPLATES),
                                    jinja2.PackageLoader("mwe", FAMILY_TEMPLATES)]),
        autoescape=True,
        finalize=finalize,
        undefined=jinja2.StrictUndefined,
        extensions=[JoinLines],
        keep_trailing_newline=False,
    )
    env.filters.update(num=num, fmt=format, cell_colour=cell_colour, si=si)
    env.tests["blank"] = blank
    return env


def stylesheet() -> Markup:
    """report.css, to inline: our own file, so markup, not text to escape."""
    return Markup((resources.files("mwe") / TEMPLATES / "report.css").read_text("utf-8"))


def script_json(obj: Any) -> Markup:
    """JSON to put inside a <script type="application/json"> element: '<', '>' and '&' as
    \\u escapes, so no text in it (model-written or not) can end the element."""
    text = json.dumps(obj, ensure_ascii=False, allow_nan=False)
    return Markup(text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e"))


@cache
def plotly_js() -> Markup:
    """The plotting library's JavaScript, to inline once per page (nothing fetched)."""
    from importlib import resources as res

    try:
        text = (res.files("plotly") / "package_data" / "plotly.min.js").read_text("utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        from mwe.errors import MweError

        raise MweError(f"the dataset map needs plotly ({exc}); install mwe[map]") from exc
    if "</script" in text.lower():
        raise RuntimeError("plotly.min.js cannot be inlined")
    return Markup(text)


def map_js() -> Markup:
    return Markup((resources.files("mwe") / TEMPLATES / "map.js").read_text("utf-8"))


def render_map_page(path: Path, maps: list[dict[str, Any]]) -> None:
    from mwe.io import atomic_open

    page = environment().get_template("map_page.html.j2").render(
        maps=[(m, script_json(m)) for m in maps], css=stylesheet(), plotly=plotly_js(),
        mapjs=map_js())
    with atomic_open(path) as fh:
        fh.write(page)


def render_page(title: str, version: str, sources: int, sections: list[tuple[str, str, Any]],
                maps: bool = False, absent: list[str] | None = None) -> str:
    """The page: sections as (id, heading, what the section's template shows), and one line
    naming the `absent` ones (not in the inputs); with dataset maps, the plotting library
    and map.js once at the end."""
    return environment().get_template("page.html.j2").render(
        title=title, version=version, sources=sources, sections=sections, css=stylesheet(),
        absent=absent or [], plotly=plotly_js() if maps else None,
        mapjs=map_js() if maps else None)
