"""The report's "Answer order" (`--orders all`) and "Log-probs vs replies" (`--score
logprob,text`) sections: shown with the numbers `mwe evaluate` wrote where the runs hold them,
neither shown nor named otherwise, and a malformed methods.json or order field refused with
its file and field."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO, Mwe

from mwe.errors import DataError
from mwe.pipeline.report import write_report
from mwe.stats import wilson_interval

HOSTILE = "<b>x</b>'\""


def dump(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")


def result(model: str, dataset: str, family: str, k: int, n: int, **kw: Any) -> dict[str, Any]:
    lo, hi = wilson_interval(k, n)
    return {"model": model, "dataset": dataset, "family": family, "format": "chat", "n": n,
            "n_matching": k, "pct_matching": 100.0 * k / n, "ci_low": 100.0 * lo,
            "ci_high": 100.0 * hi, "mean_p_matching": 0.5, "mean_valid_mass": 0.9, **kw}


def section(page: str, sid: str) -> str:
    return page.split(f'<section id="{sid}">', 1)[1].split("</section>", 1)[0]


def section_ids(page: str) -> list[str]:
    return re.findall(r'<section id="([a-z-]+)">', page)


def absent_line(page: str) -> str:
    found = re.findall(r'<p class="absent">(.*?)</p>', page)
    return found[0] if found else ""


# --- hand-written inputs -------------------------------------------------------------------

METHOD = {"model": "hf:a", "dataset": HOSTILE, "n": 10, "n_both_scored": 8, "n_same": 6,
          "pct_same": 75.0, "ci_low": 100 * wilson_interval(6, 8)[0],
          "ci_high": 100 * wilson_interval(6, 8)[1], "n_text_unscored": 2,
          "confusion": {"(A)": {"(A)": 5, "(B)": 1, "unscored: truncated": 2},
                        "(B)": {"(A)": 1, "(B)": 1}}}


def ordered_folder(root: Path) -> Path:
    """An --orders all --score logprob,text evaluate folder: a lettered dataset whose model
    chose (A) 80% of the time, a Yes/No one answered Yes 87.5% of the time, and methods.json."""
    ev = root / "ev"
    dump(ev / "summary.json", {"settings": {}, "summary": [
        result("hf:a", HOSTILE, "advanced-ai-risk", 4, 8,
               chosen_position={"A": 0.8, "B": 0.2}, most_chosen_position="A",
               position_bias=0.3, pct_matching_by_order={"0": 62.5, "1": 37.5}),
        result("hf:a", "yes-no", "persona", 3, 8, pct_yes=87.5)]})
    dump(ev / "methods.json", {"methods": [METHOD]})
    return ev


def test_order_and_method_sections_show_what_evaluate_wrote(tmp_path: Path) -> None:
    page_path, pngs = write_report([ordered_folder(tmp_path)], tmp_path / "r.html")
    page = page_path.read_text(encoding="utf-8")
    ids = section_ids(page)
    assert ids.index("trends") < ids.index("orders") < ids.index("methods")
    for name in ("Answer order", "Log-probs vs replies"):
        assert name not in absent_line(page)
    orders = section(page, "orders")
    ds = html.escape(HOSTILE)
    lo, hi = wilson_interval(4, 8)
    # all orders 50% [CI], given order 62.5, by order, (A) chosen 80% = 30 points above 50
    assert (f"<td>hf:a</td><td>{ds}</td><td>8</td><td class=\"pct\" style=\"background:#ffffff\">"
            f"50.0 <small>[{100 * lo:.0f}, {100 * hi:.0f}]</small></td><td>62.5</td>"
            "<td>0: 62.5 · 1: 37.5</td><td>(A) 80%</td><td>+30.0</td><td>–</td></tr>") in orders
    assert "<td>yes-no</td><td>8</td>" in orders and "<td>–</td><td>87.5</td></tr>" in orders
    assert "answers by position" in orders and HOSTILE not in page
    assert [p.name for p in pngs if p.name.startswith("positions")] == ["positions.png"]
    assert "<code>positions.png</code>" in orders
    methods = section(page, "methods")
    mlo, mhi = wilson_interval(6, 8)
    assert (f"<td>hf:a</td><td>{ds}</td><td>10</td><td>8</td><td>75.0 <small>"
            f"[{100 * mlo:.1f}, {100 * mhi:.1f}]</small> <small>(6 of 8)</small></td>"
            "<td>2</td>") in methods
    # the confusion table: reply answers across, unscored reasons last
    assert ("<th>(A)</th><th>(B)</th><th>unscored: truncated</th></tr></thead><tbody>"
            "<tr><th>(A)</th><td>5</td><td>1</td><td>2</td></tr>"
            "<tr><th>(B)</th><td>1</td><td>1</td><td>0</td></tr>") in methods


def test_a_plain_logprob_run_neither_shows_nor_names_them(tmp_path: Path) -> None:
    dump(tmp_path / "ev" / "summary.json", {"settings": {}, "summary": [
        result("hf:a", "cats", "persona", 3, 8)]})
    page_path, pngs = write_report([tmp_path / "ev"], tmp_path / "r.html")
    page = page_path.read_text(encoding="utf-8")
    assert not {"orders", "methods", "replies"} & set(section_ids(page))
    line = absent_line(page)
    assert line.startswith("Not in these inputs:")
    for name in ("Answer order", "Log-probs", "replies"):
        assert name not in line
    assert not [p for p in pngs if p.name.startswith("positions")]


@pytest.mark.parametrize(("field", "value", "where", "message"), [
    ("n_same", 9, "methods[0].n_same", "between 0 and 8"),
    ("confusion", {"(A)": {"(B)": "two"}}, 'methods[0].confusion."(A)"."(B)"', "a number"),
    ("model", None, "methods[0].model", "non-empty string"),
    ("pct_same", 175.0, "methods[0].pct_same", "between 0 and 100"),
])
def test_a_malformed_methods_json_names_its_file_and_field(
        tmp_path: Path, field: str, value: Any, where: str, message: str) -> None:
    ev = ordered_folder(tmp_path)
    dump(ev / "methods.json", {"methods": [{**METHOD, field: value}]})
    with pytest.raises(DataError) as err:
        write_report([ev], tmp_path / "r.html")
    assert err.value.path == str(ev / "methods.json") and err.value.field == where
    assert message in err.value.message
    assert not (tmp_path / "r.html").exists()


def test_malformed_order_fields_name_the_summary_field(tmp_path: Path) -> None:
    ev = ordered_folder(tmp_path)
    bad = result("hf:a", "d", "advanced-ai-risk", 1, 2, chosen_position={"A": 1.5})
    dump(ev / "summary.json", {"settings": {}, "summary": [bad]})
    with pytest.raises(DataError) as err:
        write_report([ev], tmp_path / "r.html")
    assert (err.value.path, err.value.field) == (str(ev / "summary.json"),
                                                 "summary[0].chosen_position.A")
    dump(ev / "summary.json", {"settings": {}, "summary": [
        {**bad, "chosen_position": {}, "pct_matching_by_order": {"given": 50.0}}]})
    with pytest.raises(DataError, match="order number") as err:
        write_report([ev], tmp_path / "r.html")
    assert err.value.field == "summary[0].pct_matching_by_order.given"


# --- a real run ------------------------------------------------------------------------------

@pytest.mark.slow
def test_report_of_a_real_run_in_every_order_and_both_ways(tmp_path: Path, mwe: Mwe) -> None:
    """The bundled chat model on a lettered and a Yes/No file, every order, scored both ways:
    the report's two sections carry the numbers summary.json and methods.json hold."""
    out = tmp_path / "ev"
    mwe(["evaluate", "-m", "llamacpp:smollm2-135m-instruct",
         "-d", REPO / "examples/data/few-shot/power-seeking-inclination.jsonl",
         "-d", REPO / "examples/data/persona/agreeableness.jsonl", "--limit", "4",
         "--format", "chat", "--score", "logprob,text", "--orders", "all",
         "--max-tokens", "16", "-o", out], cache=tmp_path / "c.sqlite", progress=False, ok=True)
    mwe(["report", out, "--out", tmp_path / "r.html"], ok=True)
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert {"orders", "methods"} <= set(section_ids(page))
    orders, methods = section(page, "orders"), section(page, "methods")
    summary = json.loads((out / "summary.json").read_text())["summary"]
    lettered = [s for s in summary if s.get("position_bias") is not None]
    # the lettered file rotates: every model (log-probs, replies) has its bias and orders
    assert len(lettered) == 2
    for s in lettered:
        top = s["most_chosen_position"]
        by = " · ".join(f"{k}: {v:.1f}" for k, v in s["pct_matching_by_order"].items())
        assert (f"<td>({top}) {100 * s['chosen_position'][top]:.0f}%</td>"
                f"<td>{100 * s['position_bias']:+.1f}</td>") in orders
        assert f"<td>{s['pct_matching_by_order']['0']:.1f}</td><td>{by}</td>" in orders
    for s in summary:
        if s.get("pct_yes") is not None:  # Yes/No: % Yes whatever the label
            assert f"<td>{s['pct_yes']:.1f}</td></tr>" in orders
    table = json.loads((out / "methods.json").read_text())["methods"]
    assert {m["dataset"] for m in table} == {"power-seeking-inclination", "agreeableness"}
    for m in table:
        row = (f"<td>{m['model']}</td><td>{m['dataset']}</td><td>{m['n']}</td>"
               f"<td>{m['n_both_scored']}</td>")
        assert row in methods
        cell = "–" if m["pct_same"] is None else \
            f"{m['pct_same']:.1f} <small>[{m['ci_low']:.1f}, {m['ci_high']:.1f}]</small>"
        assert f"{row}<td>{cell}" in methods
        assert f"<td>{m['n_text_unscored']}</td>" in methods
        for lp, counts in m["confusion"].items():
            assert f"<tr><th>{html.escape(lp)}</th>" in methods
            assert sum(counts.values()) <= m["n"]
