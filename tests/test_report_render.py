"""The report page as the templates render it: the sections the inputs hold, in order (the
rest named once), the stylesheet inlined,
nothing fetched from outside the page, every untrusted string shown as text, and the
statistics `mwe evaluate` wrote shown as written.

Every folder here is built by hand from small JSON: no model is loaded."""

from __future__ import annotations

import base64
import fnmatch
import json
import re
import tomllib
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO

from mwe.families.sycophancy_analysis import CONTROL_SUFFIX
from mwe.pipeline.report import SECTIONS, write_report
from mwe.report.render import environment, stylesheet
from mwe.stats import fisher_interval, pearson_r, wilson_interval

XSS = "<script>alert(1)</script>"
# breaks out of a double- or single-quoted attribute if either quote is left as is
ATTR = "\"' onmouseover='alert(2)' x=\""
TEMPLATES = REPO / "src" / "mwe" / "templates"
# every element the report is made of: anything else in a page came from the inputs
TAGS = {"html", "head", "meta", "title", "style", "body", "nav", "a", "main", "header", "h1",
        "h2", "h3", "h4", "p", "section", "div", "table", "thead", "tbody", "tr", "th", "td",
        "small", "b", "i", "ul", "li", "code", "pre", "figure", "img", "figcaption", "details",
        "summary"}
EMPTY = {"families": "No results in these inputs.",
         "heatmap": "No % matching results in these inputs.",
         "lines": "Line plots need at least two models",
         "trends": "No trends:",
         "winogenerated": "No Winogenerated results in these inputs.",
         "sycophancy": "No sycophancy results in these inputs.",
         "cards": "No generated datasets among these inputs"}


# --- building inputs -----------------------------------------------------------------------

def dump(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False))


def jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def pct(model: str, dataset: str, family: str, k: int, n: int = 40, **kw: Any) -> dict[str, Any]:
    """A % result row as `mwe evaluate` writes it to summary.json."""
    lo, hi = wilson_interval(k, n)
    return {"model": model, "dataset": dataset, "family": family, "format": "chat", "n": n,
            "n_matching": k, "pct_matching": 100.0 * k / n, "ci_low": 100.0 * lo,
            "ci_high": 100.0 * hi, "mean_p_matching": 0.5, "mean_valid_mass": 0.9, **kw}


def wino(model: str, dataset: str, occupations: list[str], slope: float, **kw: Any
         ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Winogenerated rows and their summary row, with the statistics evaluate computes."""
    rows = [{"model": model, "dataset": dataset, "family": "winogenerated", "occupation": occ,
             "BLS_percent_women_2019": 10.0 + 12 * i,
             "p_female_minus_male": max(-1.0, min(1.0, slope * (i - 3) / 4 + 0.1 * (j - 1)))}
            for i, occ in enumerate(occupations) for j in range(3)]
    xs = [r["BLS_percent_women_2019"] for r in rows]
    ys = [r["p_female_minus_male"] for r in rows]
    r = pearson_r(xs, ys)
    lo, hi = fisher_interval(r, len(rows))
    result = {"model": model, "dataset": dataset, "family": "winogenerated", "format": "chat",
              "n": len(rows), "mean_valid_mass": 0.8, "pearson_r": r, "r_ci_low": lo,
              "r_ci_high": hi, "mean_p_female_minus_male": sum(ys) / len(ys), **kw}
    return result, rows


def card(name: str = "power-seeking", **kw: Any) -> dict[str, Any]:
    return {"name": name, "family": "advanced-ai-risk", "description": "seeks power",
            "generator": {"spec": "llamacpp:gen"}, "discriminator": {"spec": "hf:disc"},
            "prompts": {"generation": {"matching": "Write a statement.", "n": [1, 2]}},
            "sampling": {"temperature": 1.0, "top_p": 0.95}, "seed": 3,
            "selection": {"top_k": 10, "calibration": "batch", "rule": "top k"},
            "counts": {lb: {"sampled": 48, "kept": 10} for lb in ("matching", "not_matching")},
            "rows": 20, "label_confidence": {"mean": 0.8, "histogram": [
                {"from": 0.5, "to": 0.75, "count": 4}, {"from": 0.75, "to": 1.0, "count": 6}]},
            "estimated_accuracy": {"ceiling": 0.8, "floor": 0.2},
            "diversity": {"distinct_1": 0.5, "distinct_2": 0.7, "distinct_3": 0.8}, **kw}


def inputs(root: Path, text: str = "") -> list[Path]:
    """A sweep of two models (with a generated dataset's card), an evaluate folder with
    Winogenerated and sycophancy results, and a run folder; `text` is put into every name,
    label, description and card field the page shows."""
    t = text
    gen = root / f"gen{t}"
    dump(gen / "card.json", card(
        f"power{t}", family=f"advanced-ai-risk{t}", description=f"seeks power{t}",
        generator={"spec": f"llamacpp:gen{t}"}, discriminator={"spec": f"hf:disc{t}"},
        prompts={"generation": {f"matching{t}": f"Write{t}", f"n{t}": [t]}},
        sampling={"temperature": f"1.0{t}", "top_p": 0.95}, seed=f"3{t}",
        selection={"top_k": f"10{t}", "calibration": f"batch{t}", "rule": f"top k{t}"},
        counts={f"matching{t}": {f"sampled{t}": f"48{t}"}, "other": {f"sampled{t}": 3}},
        user_view_balance={f"(A){t}": 3, "(B)": 0.25}, drops={f"short{t}": f"1{t}"}))
    (gen / "dataset.jsonl").write_text("")
    models = [{"model": f"hf:small{t}", "label": f"Small{t}", "params": 1e8, "tuning": "base",
               "model_family": f"s{t}", "quantization": f"fp32{t}"},
              {"model": f"hf:large{t}", "label": f"Large{t}", "params": 1e9, "tuning": "tuned",
               "model_family": f"l{t}", "quantization": f"q4{t}"}]
    results = [pct(m["model"], f"{ds}{t}", f"persona{t}", k, label=m["label"],
                   params=m["params"], tuning=m["tuning"])
               for m, ks in zip(models, ((10, 30), (25, 12))) for ds, k in zip(("cats", "dogs"), ks)]
    sweep = root / f"sweep{t}"
    dump(sweep / "sweep.json", {"series": f"s{t}", "models": models, "results": results,
                                "datasets": [{"name": "power", "path": str(gen / "dataset.jsonl")}]})
    ev = root / f"eval{t}"
    w1, rows1 = wino("hf:a", f"winogenerated{t}", [f"nurse{t}", "pilot", "baker", "judge",
                                                     "clerk", "cook", "tailor"], 0.8,
                     label=f"A{t}")
    syc = [pct("hf:a", f"syc{t}", "sycophancy", 30, label=f"A{t}"),
           pct("hf:a", f"syc{t}{CONTROL_SUFFIX}", "sycophancy", 20, label=f"A{t}")]
    dump(ev / "summary.json", {"settings": {}, "summary": [w1, *syc]})
    jsonl(ev / "rows.jsonl", [{**r, "label": f"A{t}"} for r in rows1])
    run = root / f"run{t}"
    dump(run / "card.json", card(f"run-card{t}", description=f"a run{t}"))
    dump(run / "results" / "summary.json",
         {"settings": {}, "summary": [pct("hf:a", f"run-card{t}", "advanced-ai-risk", 22,
                                          label=f"A{t}")]})
    return [sweep, ev, run]


# --- reading the page ----------------------------------------------------------------------

class Page(HTMLParser):
    """The page's elements, attributes, links, images and the text of each section."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str]] = []  # (tag, name, value)
        self.sections: list[str] = []
        self.headings: list[str] = []
        self.text: dict[str, str] = {}
        self.styles: list[str] = []
        self.images: list[str] = []
        self._where = ""
        self._in = ""
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]
        a = dict(attrs)
        if tag == "section":
            self._where = a.get("id") or ""
            self.sections.append(self._where)
        if tag == "img":
            self.images.append(a.get("src") or "")
        self._in = tag

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._where = ""
        self._in = ""

    def handle_data(self, data: str) -> None:
        if self._in == "style":
            self.styles.append(data)
        elif self._in == "h2" and self._where:
            self.headings.append(data)
        self.text[self._where] = self.text.get(self._where, "") + data


def section(html: str, sid: str) -> str:
    return html.split(f'<section id="{sid}">', 1)[1].split("</section>", 1)[0]


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[Path]]:
    root = tmp_path_factory.mktemp("full")
    html, pngs = write_report(inputs(root), root / "rep" / "report.html", title="My evals")
    return html.read_text(encoding="utf-8"), pngs


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Page, Path]:
    root = tmp_path_factory.mktemp("hostile")
    text = f" {XSS} {ATTR} &amp;"
    html, _ = write_report(inputs(root, text), root / "rep" / "r.html", title=f"T {XSS}{ATTR}")
    page = html.read_text(encoding="utf-8")
    return page, Page(page), root


# --- structure -----------------------------------------------------------------------------

def test_every_section_in_order_each_with_its_content(full: tuple[str, list[Path]]) -> None:
    """The sections these inputs hold, in order; the others named once, not shown."""
    html, pngs = full
    page = Page(html)
    absent = ("replies", "orders", "methods", "sandbagging", "pushback", "agreement", "maps",
              "validation", "usage")
    shown = [(sid, name) for sid, name in SECTIONS if sid not in absent]
    assert page.sections == [sid for sid, _ in shown]
    assert page.headings == [name for _, name in shown]
    nav = [v for tag, k, v in page.attrs if tag == "a" and k == "href"]
    assert nav == [f"#{sid}" for sid, _ in shown]
    assert ('<p class="absent">Not in these inputs: Sandbagging, Pushback, Model agreement, Dataset map, '
            'Human validation, Tokens and cost.</p>') in html
    for sid, empty in EMPTY.items():  # every section has something to show here
        assert empty not in page.text[sid], sid
    assert html.startswith("<!DOCTYPE html><html lang=\"en\">") and html.endswith("</html>\n")
    # one line, but for the stylesheet and the prompts (<pre>)
    assert re.sub(r"<style>.*?</style>|<pre>.*?</pre>", "", html, flags=re.S).count("\n") == 1
    assert "<title>My evals</title>" in html and "<h1>My evals</h1>" in html
    # the family sections and the cards
    assert "<td>A</td><td>winogenerated</td><td>21</td><td>7</td>" in html
    assert "shift (points)" in section(html, "sycophancy")
    assert "<td>+25.0</td><td>40</td>" in section(html, "sycophancy")
    cards = section(html, "cards")
    assert cards.count('<div class="card">') == 2 and "<b>20 rows</b>" in cards
    # every figure embedded is a PNG saved beside the page, and the other way round
    embedded = sorted(base64.b64decode(src.split(",", 1)[1]) for src in page.images)
    assert embedded == sorted(p.read_bytes() for p in pngs)
    assert {p.stem for p in pngs} >= {"heatmap-persona", "lines-persona-params",
                                      "winogenerated-scatter", "sycophancy", "card-1-power",
                                      "card-2-run-card"}


def test_stylesheet_inlined_and_nothing_fetched(full: tuple[str, list[Path]]) -> None:
    html, _ = full
    page = Page(html)
    css = (TEMPLATES / "report" / "report.css").read_text(encoding="utf-8")
    assert page.styles == ["\n" + css] and css == str(stylesheet())
    assert page.tags.count("style") == 1
    assert not {"link", "script", "iframe", "object", "embed", "base"} & set(page.tags)
    for tag, name, value in page.attrs:
        if name in ("src", "href", "action", "srcset", "poster"):
            assert value.startswith(("data:image/png;base64,", "#")), (tag, name, value[:60])
    assert not re.search(r"url\(|@import|https?:|//[a-z]", css + "".join(page.text.values()))


def test_empty_inputs_show_what_they_hold(tmp_path: Path) -> None:
    """A result without answers: its row, and why there are no lines or trends; the sections
    with no input at all are named once, not shown."""
    dump(tmp_path / "in" / "summary.json", {"settings": {}, "summary": [
        {"model": "m", "dataset": "empty", "family": "persona", "n": 0,
         "mean_valid_mass": None}]})
    html, pngs = write_report([tmp_path / "in"], tmp_path / "r.html")
    page = Page(html.read_text(encoding="utf-8"))
    assert page.sections == ["overview", "families", "lines", "trends"] and pngs == []
    for sid in ("lines", "trends"):
        assert EMPTY[sid] in page.text[sid], sid
    assert "<td>persona</td><td>m</td><td>1</td><td>0</td>" in html.read_text()
    assert ("Not in these inputs: % matching, Winogenerated, Sycophancy, Sandbagging, Pushback, "
            "Model agreement, Dataset map, Human validation, Tokens and cost, Dataset cards."
            ) in page.text[""]


# --- untrusted text ------------------------------------------------------------------------

def test_untrusted_text_is_never_markup(hostile: tuple[str, Page, Path]) -> None:
    """Dataset and family names, model specs and labels, card fields, the title and the
    folder names, each holding a script tag and attribute-breaking quotes: all text."""
    html, page, _ = hostile
    assert "<script" not in html.lower()
    assert XSS not in html and ATTR not in html
    assert set(page.tags) <= TAGS, set(page.tags) - TAGS
    assert not [a for a in page.attrs if a[1] not in ("href", "id", "class", "style", "src",
                                                       "alt", "lang", "charset", "name",
                                                       "content")]
    # each shows as the very text the input gave: escaped once, not twice, not dropped
    want = {"overview": ["hf:small", "Small", "fp32", "sweep", "eval", "run"],
            "families": ["persona", "Small", "Large", "A"],
            "heatmap": ["persona"],
            "lines": ["persona"],
            "trends": ["cats", "persona"],
            "winogenerated": ["A", "winogenerated"],
            "sycophancy": ["A", "syc"],
            "cards": ["power", "advanced-ai-risk", "seeks power", "llamacpp:gen", "hf:disc",
                      "matching", "Write", "1.0", "top k", "batch", "10", "sampled", "48",
                      "(A)", "short", "run-card", "a run", "gen"]}
    text = f" {XSS} {ATTR} &amp;"
    for sid, names in want.items():
        for name in names:
            assert name + text in page.text[sid], (sid, name)
    assert page.text[""].count(f"T {XSS}{ATTR}") == 2  # <title> and <h1>
    # in attributes (a figure's alt text) too, whole
    alts = [v for tag, k, v in page.attrs if k == "alt"]
    assert f"% matching the behavior, persona{text}" in alts


def test_untrusted_text_cannot_reach_a_file_outside_the_figures(
        hostile: tuple[str, Page, Path]) -> None:
    _, _, root = hostile
    written = [p.relative_to(root / "rep") for p in (root / "rep").rglob("*") if p.is_file()]
    assert all(p == Path("r.html") or p.parts[0] == "r-plots" for p in written), written
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+\.png", p.name) for p in written
               if p.suffix == ".png"), written


def test_the_environment_escapes_whatever_a_template_prints() -> None:
    env = environment()
    assert env.autoescape is True
    out = env.from_string("<p title='{{ x }}'>{{ x }}</p>").render(x=f"{XSS}'\"&")
    assert out == ("<p title='&lt;script&gt;alert(1)&lt;/script&gt;&#x27;&quot;&amp;'>"
                   "&lt;script&gt;alert(1)&lt;/script&gt;&#x27;&quot;&amp;</p>")
    with pytest.raises(Exception, match="undefined"):  # a misspelt field fails, not blank
        env.from_string("{{ nothing.here }}").render()


# --- statistics as evaluate wrote them -----------------------------------------------------

def test_winogenerated_r_is_the_one_evaluate_wrote(tmp_path: Path) -> None:
    """summary.json's Pearson r, Fisher interval and mean are shown, not recomputed; an input
    without them has them worked out from rows.jsonl."""
    written, rows = wino("hf:a", "wg", ["nurse", "pilot", "baker", "judge", "clerk"], 0.5)
    dump(tmp_path / "a" / "summary.json", {"summary": [
        {**written, "pearson_r": 0.123, "r_ci_low": -0.2, "r_ci_high": 0.4,
         "mean_p_female_minus_male": 0.321}]})
    jsonl(tmp_path / "a" / "rows.jsonl", rows)
    dump(tmp_path / "b" / "summary.json", {"summary": [
        {k: v for k, v in written.items() if k not in ("pearson_r", "r_ci_low", "r_ci_high",
                                                       "mean_p_female_minus_male")}]})
    jsonl(tmp_path / "b" / "rows.jsonl", rows)
    a, _ = write_report([tmp_path / "a"], tmp_path / "a.html")
    shown = section(a.read_text(), "winogenerated")
    assert "<td>0.123 [-0.200, 0.400]</td>" in shown and "<td>+0.321</td>" in shown
    assert "<td>0.12 [-0.20, 0.40]</td>" in section(a.read_text(), "families")
    b, _ = write_report([tmp_path / "b"], tmp_path / "b.html")
    r = written["pearson_r"]
    lo, hi = written["r_ci_low"], written["r_ci_high"]
    assert f"<td>{r:.3f} [{lo:.3f}, {hi:.3f}]</td>" in section(b.read_text(), "winogenerated")
    assert f"<td>{written['mean_p_female_minus_male']:+.3f}</td>" in b.read_text()


# --- the templates ship --------------------------------------------------------------------

def test_each_section_has_its_template_and_every_template_ships() -> None:
    env = environment()
    for sid, _ in SECTIONS:
        env.get_template(f"sections/{sid}.html.j2")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    patterns = project["tool"]["setuptools"]["package-data"]["mwe"]
    files = [p.relative_to(REPO / "src" / "mwe").as_posix() for p in TEMPLATES.rglob("*")
             if p.is_file()]
    assert files
    for f in files:
        assert any(fnmatch.fnmatch(f, pat) and f.count("/") == pat.count("/")
                   for pat in patterns), f
    assert "jinja2" in " ".join(project["project"]["optional-dependencies"]["report"])
