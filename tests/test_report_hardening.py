"""Issue 24, item 8: `mwe report`, `mwe map` and card.md on the inputs they got wrong.

NaN and infinities in the report's JSON inputs are refused like any other malformed value
(and mwe's own JSON outputs never hold them); `mwe map` on fewer distinct rows than clusters
makes no empty cluster and no scikit-learn warning, says nothing of naming under
--no-names, and warns when --results holds no row of the mapped data; card.md shows mwe's
own text as written and only neutralises untrusted text; a report shows the sections its
inputs hold and names the rest once.

The map tests run `mwe map` with the bundled embedder; card.md is rendered by a real
Markdown renderer; the report pages are rendered from their templates."""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import REPO, Mwe
from test_report_errors import card as error_card
from test_report_errors import render, result, summary
from test_report_render import Page, dump, pct, wino

from mwe.card import FILTER_STEPS, markdown, usage_markdown
from mwe.errors import DataError
from mwe.families import by_name
from mwe.io import write_json
from mwe.pipeline.report import SECTIONS, write_report
from mwe.report.inputs import collect

AGG = {"MPLBACKEND": "Agg"}  # no figure window
NAN, INF = float("nan"), float("inf")


# --- NaN and infinities -------------------------------------------------------------------

def validation_json(**paper: Any) -> dict[str, Any]:
    return {"results": [], "paper": paper}


# name -> (file, its content (json.dumps writes NaN, Infinity, -Infinity), the field named)
NON_FINITE: dict[str, tuple[str, Any, str]] = {
    "summary-pct-nan": ("summary.json", summary(result(pct_matching=NAN)),
                        "summary[0].pct_matching"),
    "summary-mass-nan": ("summary.json", summary(result(mean_valid_mass=NAN)),
                         "summary[0].mean_valid_mass"),
    "summary-settings-inf": ("summary.json", {"settings": {"top_p": INF},
                                              "summary": [result()]}, "settings.top_p"),
    "sweep-ci-minus-inf": ("sweep.json", {"series": "s", "models": [],
                                          "results": [result(ci_low=-INF)]},
                           "results[0].ci_low"),
    "card-mean-nan": ("card.json", {**error_card(), "label_confidence": {"mean": NAN}},
                      "label_confidence.mean"),
    "map-settings-nan": ("map.json", {"settings": {"k": NAN}, "maps": []}, "settings.k"),
    "validation-paper-nan": ("validation.json", validation_json(fleiss_kappa=NAN),
                             "paper.fleiss_kappa"),
}


@pytest.mark.parametrize("name", sorted(NON_FINITE))
def test_nan_and_infinity_in_a_json_input_are_refused_with_file_and_field(
        name: str, tmp_path: Path) -> None:
    file, content, fld = NON_FINITE[name]
    text = json.dumps(content, indent=2)
    assert re.search(r"\bNaN\b|Infinity", text)
    (tmp_path / file).write_text(text)
    with pytest.raises(DataError) as err:
        collect([tmp_path])
    e = err.value
    assert (e.path, e.field) == (str(tmp_path / file), fld)
    # the line the value is on, as for invalid JSON
    assert e.line is not None and re.search(r"NaN|Infinity", text.splitlines()[e.line - 1])
    assert re.search(r"NaN|Infinity", e.message) and "null" in e.message


def test_nan_refused_by_mwe_report_in_one_line(tmp_path: Path, mwe: Mwe) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "summary.json").write_text(json.dumps(summary(result(ci_high=NAN))))
    out = tmp_path / "r.html"
    res = mwe(["report", tmp_path / "in", "--out", out], env=AGG, timeout=300)
    assert res.returncode == 2 and "Traceback" not in res.stderr and not out.exists()
    assert res.stderr.startswith(f"mwe: error: {tmp_path / 'in' / 'summary.json'}:")
    assert "field 'summary[0].ci_high'" in res.stderr and len(res.stderr.splitlines()) == 1


@pytest.mark.parametrize("digits, fld, message", [
    (400, "summary[0].n", "expected a finite number"),  # float() of it overflows
    (5000, None, "not valid JSON: Exceeds the limit (4300 digits)")])  # int() refuses it
def test_a_number_too_long_to_read_is_refused(digits: int, fld: str | None, message: str,
                                              tmp_path: Path) -> None:
    (tmp_path / "summary.json").write_text(
        '{"summary": [{"model": "m", "dataset": "d", "family": "persona", "n": 1'
        + "0" * digits + "}]}")
    with pytest.raises(DataError) as err:
        collect([tmp_path])
    assert err.value.field == fld and message in err.value.message


def test_nan_in_usage_csv_is_refused(tmp_path: Path) -> None:
    dump(tmp_path / "summary.json", summary(result()))
    (tmp_path / "usage.csv").write_text("stage,model,calls,tokens_in,tokens_out,counted,"
                                        "cost_usd\nevaluate,m,1,2,3,tokenizer,nan\n")
    with pytest.raises(DataError, match=r"usage\.csv:2: field 'cost_usd': expected a finite"):
        collect([tmp_path])


def test_what_mwe_writes_for_an_undefined_value_is_null_and_reads_back(tmp_path: Path) -> None:
    """Pearson r of a constant is undefined and a reward model has no valid mass: the
    summary the family computes holds NaN, summary.json null, and the report reads it as
    missing."""
    rows = [{"p_female_minus_male": 0.25, "BLS_percent_women_2019": 10.0 * i}
            for i in range(3)]
    row = {"model": "m", "dataset": "wg", "family": "winogenerated", "format": "chat", "n": 3,
           "mean_valid_mass": NAN, **by_name("winogenerated").scorer.summary(rows)}
    assert math.isnan(row["pearson_r"]) and math.isnan(row["r_ci_low"])
    write_json(tmp_path / "in" / "summary.json", {"settings": {}, "summary": [row]})
    text = (tmp_path / "in" / "summary.json").read_text()
    written = json.loads(text)["summary"][0]
    assert "NaN" not in text and written["pearson_r"] is None
    assert written["mean_valid_mass"] is None and written["n"] == 3
    html, _ = write_report([tmp_path / "in"], tmp_path / "r.html")
    assert "<td>winogenerated</td><td>m</td><td>1</td><td>3</td>" in html.read_text()


# --- mwe map ------------------------------------------------------------------------------

def test_kmeans_never_asks_for_more_clusters_than_distinct_points() -> None:
    from mwe.map import cluster

    same = np.tile(np.arange(4.0), (6, 1))
    three = np.vstack([same, same + 1, same + 2])
    for vectors, want in ((same, 1), (three, 3)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a ConvergenceWarning fails the test
            assign, centers = cluster(vectors, 5, 0)
        assert len(centers) == want and sorted(set(assign.tolist())) == list(range(want))


def test_map_of_identical_rows_without_names_and_with_unmatched_results(tmp_path: Path,
                                                                       mwe: Mwe) -> None:
    row = json.loads((REPO / "examples" / "data" / "persona" / "agreeableness.jsonl"
                      ).open().readline())
    data = tmp_path / "same.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for _ in range(6)))
    results = tmp_path / "ev"
    results.mkdir()
    (results / "rows.jsonl").write_text("".join(json.dumps(
        {"model": "hf:a", "dataset": "cats", "family": "persona", "line": i,
         "source": str(tmp_path / "cats.jsonl"), "matches_behavior": True}) + "\n"
        for i in (1, 2)))
    out = tmp_path / "map"
    res = mwe(["map", data, "--out", out, "--clusters", "5", "--no-names", "--results", results],
              cache=tmp_path / "c.sqlite", env=AGG)
    assert res.returncode == 0, res.stderr
    m = json.loads((out / "map.json").read_text())["maps"][0]
    assert [c["size"] for c in m["clusters"]] == [6]  # one cluster, none empty
    assert "Warning" not in res.stderr and "ConvergenceWarning" not in res.stderr
    summary_line = next(x for x in res.stdout.splitlines() if x.startswith("same:"))
    assert "named" not in summary_line and "6 rows, 1 cluster," in summary_line
    # the results hold no row of same.jsonl: a warning names them and what they hold
    warning = [x for x in res.stderr.splitlines() if x.startswith("warning:")]
    assert len(warning) == 1 and str(results) in warning[0] and "cats" in warning[0]
    assert "same" in warning[0] and m["models"] == []


# --- card.md ------------------------------------------------------------------------------

GOLDEN = REPO / "tests" / "data" / "golden"


@pytest.mark.parametrize("name", ["demo", "sycophancy", "winogenerated"])
def test_card_md_shows_mwe_text_as_written(name: str) -> None:
    """The golden cards' card.md as written from their card.json: unchanged, except that the
    selection rule now reads (P > 0.5), as mwe wrote it, instead of (P &gt; 0.5)."""
    c = json.loads((GOLDEN / name / "card.json").read_text())
    steps: list[str] = list(FILTER_STEPS)
    stats: tuple[str, ...] = ()
    if name != "demo":
        steps = list(next(iter(c["counts"].values())))
        stats = by_name(c["family"]).builder.card_statistics
    text = markdown(c, steps, stats) + usage_markdown(c.get("usage"))
    want = (GOLDEN / name / "card.md").read_text().replace("(P &gt; 0.5)", "(P > 0.5)")
    assert text == want
    assert "&gt;" not in text and "&lt;" not in text and "&amp;" not in text
    if name == "demo":
        assert "labels as intended (P > 0.5); then cut to the smallest label" in text


HOSTILE = "I agree <script>alert(1)</script> | `rm -rf /` ``x``\n| injected | row |"


def test_card_md_neutralises_untrusted_text_in_table_cells() -> None:
    """Labels, statistics keys and values, and model names, holding a statement with a
    script tag, a '|', backticks and a line break: each stays text in its own cell."""
    c = json.loads((GOLDEN / "demo" / "card.json").read_text())
    c["counts"] = {HOSTILE: c["counts"]["matching"], "not_matching": c["counts"]["not_matching"]}
    c["label_balance"] = {HOSTILE: 0.5, "not_matching": 0.5}
    c["rebalance"] = {"clusters": 2, "removed": 1, "per_cluster": [
        {"cluster": 0, "before": {HOSTILE: 3, "b": 1}, "after": {HOSTILE: 1, "b": 1}}]}
    c["usage"][0]["model"] = "llamacpp:a|b"
    text = markdown(c, FILTER_STEPS) + usage_markdown(c["usage"])
    assert "(P > 0.5)" in text  # mwe's own text beside it, as written
    html = render(text)
    if html is None:
        pytest.skip("no Markdown renderer (markdown-it-py or markdown) installed")
    assert "<script" not in html and "injected</td>" not in html
    shown = "I agree &lt;script&gt;alert(1)&lt;/script&gt; | `rm -rf /` ``x`` | injected | row |"
    tables = [re.findall(r"<tr>(.*?)</tr>", t, re.S) for t in html.split("</table>")[:-1]]
    cells = [[re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, re.S) for r in t] for t in tables]
    steps, _, rebalance, usage = cells
    assert steps[0] == ["step", shown, "not_matching"] and all(len(r) == 3 for r in steps)
    assert rebalance[0][:3] == ["cluster", f"{shown} before", f"{shown} after"]
    assert all(len(r) == 5 for r in rebalance)
    assert usage[1][1] == "<code>llamacpp:a|b</code>" and all(len(r) == 7 for r in usage)
    assert f"{shown}: 50%" in html


# --- the report's sections ----------------------------------------------------------------

ABSENT_LINE = re.compile(r"<p class=\"absent\">Not in these inputs: (.*?)\.</p>")


def headings(sids: list[str]) -> dict[str, str]:
    return {sid: name for sid, name in SECTIONS if sid in sids}


def test_persona_results_alone_show_what_they_hold_and_name_the_rest_once(
        tmp_path: Path) -> None:
    dump(tmp_path / "ev" / "summary.json", summary(
        pct("hf:a", "cats", "persona", 30), pct("hf:a", "dogs", "persona", 12)))
    html, _ = write_report([tmp_path / "ev"], tmp_path / "r.html")
    text = html.read_text()
    page = Page(text)
    shown = ["overview", "families", "heatmap", "lines", "trends"]
    assert page.sections == shown
    assert [v for tag, k, v in page.attrs if tag == "a" and k == "href"] == [
        f"#{s}" for s in shown]
    assert "in these inputs" not in " ".join(page.text[s] for s in shown).replace(
        "Not in these inputs", "")
    absent = ABSENT_LINE.findall(text)
    assert absent == ["Winogenerated, Sycophancy, Sandbagging, Pushback, Model agreement, Dataset map, "
                      "Human validation, Tokens and cost, Dataset cards"]


def test_every_section_with_input_is_shown_and_none_named_absent(tmp_path: Path) -> None:
    """Winogenerated and sycophancy results, a card and usage: those sections, in order."""
    w, rows = wino("hf:a", "wg", ["nurse", "pilot", "baker", "judge", "clerk"], 0.5)
    dump(tmp_path / "ev" / "summary.json", summary(
        w, pct("hf:a", "syc", "sycophancy", 30), pct("hf:a", "cats", "persona", 30)))
    (tmp_path / "ev" / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "ev" / "usage.csv").write_text(
        "stage,model,calls,tokens_in,tokens_out,counted,cost_usd\nevaluate,hf:a,1,2,3,x,0\n")
    dump(tmp_path / "run" / "card.json", error_card())
    html, _ = write_report([tmp_path / "ev", tmp_path / "run"], tmp_path / "r.html")
    text = html.read_text()
    page = Page(text)
    want = ["overview", "families", "heatmap", "lines", "trends", "winogenerated",
            "sycophancy", "usage", "cards"]
    assert page.sections == want and page.headings == list(headings(want).values())
    assert ABSENT_LINE.findall(text) == ["Sandbagging, Pushback, Model agreement, Dataset map, "
                                         "Human validation"]
