"""`mwe report` on malformed inputs: one clear line, exit 2, nothing written; untrusted text
shown as text in card.md and the report; a rerun into the same --out leaves no stale figure.

Every folder here is built by hand from small JSON: no model is loaded."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from helpers import Mwe

from mwe.card import FILTER_STEPS, markdown

XSS = "<script>alert(1)</script>"


def alone(out: Path) -> dict[str, str]:
    """No figure window, and a cache folder of the test's own beside `out`."""
    return {"MWE_CACHE_DIR": str(out.parent / "cache"), "MPLBACKEND": "Agg"}


def result(dataset: str = "likes-cats", family: str = "persona", **kw: Any) -> dict[str, Any]:
    """One (model, dataset) row as `mwe evaluate` writes it to summary.json."""
    row = {"model": "llamacpp:smollm2-135m-instruct", "dataset": dataset, "family": family,
           "format": "chat", "n": 10, "n_matching": 6, "pct_matching": 60.0, "ci_low": 31.3,
           "ci_high": 83.2, "mean_p_matching": 0.55, "mean_valid_mass": 0.91}
    row.update(kw)
    return row


def card() -> dict[str, Any]:
    return {"name": "likes-cats", "family": "persona", "description": "loves cats",
            "generator": {"spec": "llamacpp:smollm2-135m-instruct"},
            "discriminator": {"spec": "hf:smollm2-135m-instruct", "format": "chat"},
            "prompts": {"generation": {"matching": "Write a statement."}, "prompt_style": "chat"},
            "sampling": {"temperature": 1.0, "top_p": 0.95, "max_tokens": 64},
            "dedup": {"method": "exact"}, "seed": 3,
            "selection": {"top_k": 10, "balance": True, "calibration": "batch", "rule": "top k"},
            "counts": {lb: {"sampled": 48, "parsed": 40, "unique": 30, "agreeing": 20,
                            "top_k": 10, "kept": 10} for lb in ("matching", "not_matching")},
            "rows": 20, "label_balance": {"matching": 0.5, "not_matching": 0.5},
            "label_confidence": {"mean": 0.8, "min": 0.6, "max": 0.99,
                                 "histogram": [{"from": 0.5, "to": 0.55, "count": 3}]},
            "estimated_accuracy": {"ceiling": 0.8, "floor": 0.2},
            "diversity": {"distinct_1": 0.5, "distinct_2": 0.7, "distinct_3": 0.8}}


def sweep(results: list[dict[str, Any]] | None = None, **kw: Any) -> dict[str, Any]:
    models = [{"model": "llamacpp:a", "label": "A", "params": 1.35e8},
              {"model": "llamacpp:b", "label": "B", "params": 1.7e9}]
    if results is None:
        results = [result(model=m["model"], label=m["label"], params=m["params"], n_matching=k)
                   for m, k in zip(models, (3, 8))]
    return {"series": "s", "models": models, "datasets": [], "results": results, **kw}


WINO = {"model": "llamacpp:smollm2-135m-instruct", "dataset": "wino", "family": "winogenerated",
        "occupation": "nurse", "BLS_percent_women_2019": 87.0, "p_female_minus_male": 0.4}
WINO_RESULT = result("wino", "winogenerated", n_matching=None, pct_matching=None, ci_low=None,
                     ci_high=None, pearson_r=0.3, r_ci_low=0.1, r_ci_high=0.5)


def write(folder: Path, files: dict[str, Any]) -> None:
    """Each value: bytes as is, a str as text, anything else as JSON."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content)
        else:
            path.write_text(json.dumps(content))


def jsonl(*rows: Any) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def summary(*rows: Any) -> dict[str, Any]:
    return {"settings": {}, "summary": list(rows)}


def without(d: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k != key}


def card_with(**kw: Any) -> dict[str, Any]:
    return {**card(), **kw}


# name -> (files of the input folder, the file the error names, what else the line says)
CASES: dict[str, tuple[dict[str, Any], str, str]] = {
    # summary.json (an evaluate folder)
    "summary-list": ({"summary.json": []}, "summary.json", "expected a JSON object"),
    "summary-no-summary": ({"summary.json": {"settings": {}}}, "summary.json",
                           "field 'summary': missing"),
    "summary-number": ({"summary.json": {"summary": 5}}, "summary.json",
                       "field 'summary': expected a list, found a number (5)"),
    "summary-row-not-object": ({"summary.json": summary(5)}, "summary.json",
                               "field 'summary[0]': expected an object"),
    "summary-model-number": ({"summary.json": {"summary": [{"model": 1}]}}, "summary.json",
                             "field 'summary[0].model': expected a string, found a number (1)"),
    "summary-no-dataset": ({"summary.json": summary(result(), without(result("b"), "dataset"))},
                           "summary.json", "field 'summary[1].dataset': missing"),
    "summary-n-text": ({"summary.json": summary(result(n="ten"))}, "summary.json",
                       "field 'summary[0].n': expected a number"),
    "summary-n-fraction": ({"summary.json": summary(result(n=10.5))}, "summary.json",
                           "field 'summary[0].n': expected a whole number"),
    "summary-pct-text": ({"summary.json": summary(result(pct_matching="60%"))}, "summary.json",
                         "field 'summary[0].pct_matching': expected a number"),
    "summary-pct-range": ({"summary.json": summary(result(pct_matching=160.0))}, "summary.json",
                          "field 'summary[0].pct_matching': expected a number between 0 and 100"),
    "summary-k-above-n": ({"summary.json": summary(result(n_matching=11))}, "summary.json",
                          "field 'summary[0].n_matching'"),
    "summary-no-ci": ({"summary.json": summary(without(result(), "ci_high"))}, "summary.json",
                      "field 'summary[0].ci_high': missing"),
    "summary-params-zero": ({"summary.json": summary(result(params=0))}, "summary.json",
                            "field 'summary[0].params': expected a number above 0"),
    "summary-bool": ({"summary.json": summary(result(n=True))}, "summary.json",
                     "field 'summary[0].n': expected a number, found a boolean"),
    "summary-invalid-json": ({"summary.json": '{"summary": [\n  {"model": "x",\n'},
                             "summary.json:3", "not valid JSON"),
    "summary-not-utf8": ({"summary.json": b'{"summary": ["\xff"]}'}, "summary.json",
                         "not UTF-8"),
    "run-results-summary": ({"results/summary.json": {"summary": [{"dataset": "x"}]}},
                            "results/summary.json", "field 'summary[0].model': missing"),
    # sweep.json (a sweep folder)
    "sweep-list": ({"sweep.json": [1]}, "sweep.json", "expected a JSON object"),
    "sweep-no-results": ({"sweep.json": without(sweep(), "results")}, "sweep.json",
                         "field 'results': missing"),
    "sweep-model-no-label": ({"sweep.json": {**sweep(), "models": [{"model": "x"}]}},
                             "sweep.json", "field 'models[0].label': missing"),
    "sweep-models-object": ({"sweep.json": {**sweep(), "models": {"model": "x"}}}, "sweep.json",
                            "field 'models': expected a list"),
    "sweep-result-label": ({"sweep.json": sweep([result(label=5)])}, "sweep.json",
                           "field 'results[0].label': expected a string"),
    "sweep-step-text": ({"sweep.json": sweep([result(step="late")])}, "sweep.json",
                        "field 'results[0].step': expected a number"),
    "sweep-dataset-path": ({"sweep.json": sweep(datasets=[{"name": "d", "path": 3}])},
                           "sweep.json", "field 'datasets[0].path': expected a string"),
    "sweep-invalid-json": ({"sweep.json": '{"results": [}'}, "sweep.json:1", "not valid JSON"),
    # card.json (a run folder)
    "card-list": ({"card.json": []}, "card.json", "expected an object, found a list"),
    "card-name-number": ({"card.json": card_with(name=7)}, "card.json",
                         "field 'name': expected a string"),
    "card-counts-number": ({"card.json": card_with(counts={"matching": 5})}, "card.json",
                           "field 'counts.matching': expected an object"),
    "card-generator-text": ({"card.json": card_with(generator="gpt")}, "card.json",
                            "field 'generator': expected an object"),
    "card-mean-text": ({"card.json": card_with(label_confidence={"mean": "high"})},
                       "card.json", "field 'label_confidence.mean': expected a number"),
    "card-histogram-count": ({"card.json": card_with(label_confidence={
        "histogram": [{"from": 0.5, "to": 0.55}]})}, "card.json",
        "field 'label_confidence.histogram[0].count': missing"),
    "card-invalid-json": ({"card.json": "{\n\n  'name': 1}"}, "card.json:3", "not valid JSON"),
    # rows.jsonl beside a summary (read for the Winogenerated figure)
    "rows-invalid-json": ({"summary.json": summary(WINO_RESULT),
                           "rows.jsonl": jsonl(WINO, '{"family": "winogenerated", ')},
                          "rows.jsonl:2", "not valid JSON"),
    "rows-not-object": ({"summary.json": summary(WINO_RESULT),
                         "rows.jsonl": jsonl(WINO, ["winogenerated"])},
                        "rows.jsonl:2", "expected a JSON object, found a list"),
    "rows-no-occupation": ({"summary.json": summary(WINO_RESULT),
                            "rows.jsonl": jsonl(WINO, without(WINO, "occupation"))},
                           "rows.jsonl:2", "field 'occupation': missing"),
    "rows-bls-text": ({"summary.json": summary(WINO_RESULT),
                       "rows.jsonl": jsonl({**WINO, "BLS_percent_women_2019": "87%"})},
                      "rows.jsonl:1", "field 'BLS_percent_women_2019': expected a number"),
    "rows-p-infinite": ({"summary.json": summary(WINO_RESULT),
                         "rows.jsonl": jsonl(WINO, '{"family": "winogenerated", "dataset": "wino"'
                                             ', "occupation": "nurse", "BLS_percent_women_2019":'
                                             ' 5, "p_female_minus_male": Infinity}')},
                        "rows.jsonl:2", "field 'p_female_minus_male': expected a finite number"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_input_one_line_nothing_written(name: str, tmp_path: Path, mwe: Mwe) -> None:
    files, culprit, message = CASES[name]
    folder = tmp_path / "in"
    write(folder, files)
    out = tmp_path / "rep" / "out.html"
    res = mwe(["report", folder, "--out", out], env=alone(out))
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"mwe: error: {folder / culprit}"), lines[0]
    assert message in lines[0], lines[0]
    assert not out.exists() and not (tmp_path / "rep" / "out-plots").exists()
    assert not res.stdout


def test_a_card_a_sweep_names_is_checked_too(tmp_path: Path, mwe: Mwe) -> None:
    """sweep.json names the datasets; a generated one's card.json beside it is read."""
    gen = tmp_path / "gen"
    write(gen, {"dataset.jsonl": "", "card.json": card_with(diversity=[])})
    write(tmp_path / "sw", {"sweep.json": sweep(datasets=[{"name": "likes-cats",
                                                           "path": str(gen / "dataset.jsonl")}])})
    out = tmp_path / "out.html"
    res = mwe(["report", tmp_path / "sw", "--out", out], env=alone(out))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip() == (f"mwe: error: {gen / 'card.json'}: field 'diversity': "
                                  "expected an object, found a list")
    assert not out.exists()


def test_an_earlier_report_is_left_as_it_was(tmp_path: Path, mwe: Mwe) -> None:
    write(tmp_path / "good", {"summary.json": summary(result())})
    out = tmp_path / "out.html"
    assert mwe(["report", tmp_path / "good", "--out", out], env=alone(out)).returncode == 0
    before = out.read_bytes()
    pngs = {p.name: p.read_bytes() for p in (tmp_path / "out-plots").iterdir()}
    write(tmp_path / "bad", {"summary.json": summary(result(n=-1))})
    res = mwe(["report", tmp_path / "good", tmp_path / "bad", "--out", out], env=alone(out))
    assert res.returncode == 2 and "field 'summary[0].n'" in res.stderr
    assert out.read_bytes() == before
    assert {p.name: p.read_bytes() for p in (tmp_path / "out-plots").iterdir()} == pngs


def test_rerun_into_the_same_out_leaves_no_stale_figure(tmp_path: Path, mwe: Mwe) -> None:
    two = tmp_path / "two"
    write(two, {"summary.json": summary(result(), result("power", "advanced-ai-risk"))})
    one = tmp_path / "one"
    write(one, {"summary.json": summary(result())})
    out = tmp_path / "rep" / "r.html"
    plots = tmp_path / "rep" / "r-plots"
    res = mwe(["report", two, "--out", out], env=alone(out))
    assert res.returncode == 0, res.stderr
    assert f"figures: {plots}/" in res.stdout
    assert {p.name for p in plots.iterdir()} == {"heatmap-persona.png",
                                                 "heatmap-advanced-ai-risk.png"}
    (plots / "notes.txt").write_text("mine")  # not mwe's: kept
    (plots / "mine.png").write_bytes(b"mine")
    res = mwe(["report", one, "--out", out], env=alone(out))
    assert res.returncode == 0, res.stderr
    assert {p.name for p in plots.iterdir()} == {"heatmap-persona.png", "notes.txt", "mine.png"}
    assert "heatmap-advanced-ai-risk" not in out.read_text()
    # a second report in the same folder has its own figures
    other = tmp_path / "rep" / "other.html"
    assert mwe(["report", two, "--out", other], env=alone(other)).returncode == 0
    assert (tmp_path / "rep" / "other-plots" / "heatmap-advanced-ai-risk.png").is_file()
    assert {p.name for p in plots.iterdir()} == {"heatmap-persona.png", "notes.txt", "mine.png"}


def test_report_escapes_every_text_and_keeps_figures_in_their_folder(tmp_path: Path, mwe: Mwe) -> None:
    """Dataset, family, model and label names and a card's contents, from a hostile input:
    shown as text in the page; drawn literally in figures ('$' would be mathtext); never a
    path outside NAME-plots/."""
    hostile = f"cost $5 {XSS} | a $^^$"  # unescaped, '$^^$' fails matplotlib's mathtext
    rows = [result(f"ds {XSS} $^^$", "../../evil", model=f"m{XSS}", label=f"A{XSS}", params=1e8,
                   n_matching=3),
            result(f"ds {XSS} $^^$", "../../evil", model="m2", label="_B$", params=1e9,
                   n_matching=8),
            result(hostile, "sycophancy", model="m2", label="_B$"),
            result(hostile + " (no biography)", "sycophancy", model="m2", label="_B$")]
    c = card_with(name=f"../{XSS}", description=XSS, family=XSS,
                  counts={XSS: {"sampled": XSS}}, generator={"spec": XSS},
                  prompts={"generation": {XSS: XSS}},
                  user_view_balance={XSS: 1}, selection={"rule": XSS, "top_k": XSS})
    write(tmp_path / "in", {"summary.json": summary(*rows), "card.json": c})
    out = tmp_path / "rep" / "r.html"
    res = mwe(["report", tmp_path / "in", "--out", out], env=alone(out))
    assert res.returncode == 0, res.stderr
    page = out.read_text()
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # every file written is inside rep/, the figures inside r-plots/
    files = {p.relative_to(tmp_path / "rep") for p in (tmp_path / "rep").rglob("*")
             if p.is_file()}
    assert all(f.parts[0] == "r-plots" for f in files if f.name != "r.html"), files
    assert not list(tmp_path.glob("evil*")) and not list((tmp_path / "rep").glob("*evil*"))
    assert any(f.name.startswith("heatmap-") and "evil" in f.name for f in files), files


def test_figure_names_that_collide_get_their_own_files(tmp_path: Path, mwe: Mwe) -> None:
    write(tmp_path / "in", {"summary.json": summary(result("a", "x/y"), result("b", "x_y"))})
    out = tmp_path / "r.html"
    assert mwe(["report", tmp_path / "in", "--out", out], env=alone(out)).returncode == 0
    assert {p.name for p in (tmp_path / "r-plots").iterdir()} == {"heatmap-x_y.png",
                                                                  "heatmap-x_y-2.png"}


# --- card.md ------------------------------------------------------------------------------

def render(text: str) -> str | None:
    """card.md as a Markdown renderer shows it (raw HTML allowed, as CommonMark and GitHub's
    pipeline before its sanitiser do); None where no renderer is installed."""
    try:
        from markdown_it import MarkdownIt
    except ImportError:
        pass
    else:
        return str(MarkdownIt("commonmark", {"html": True}).enable("table").render(text))
    try:
        import markdown as md_lib
    except ImportError:
        return None
    return str(md_lib.markdown(text, extensions=["tables"]))


def hostile_card() -> dict[str, Any]:
    c = card()
    c.update(name=f"cats {XSS}", description=f"says {XSS} | and\n\n# not a heading",
             family="persona`", generator={"spec": f"llamacpp:x` {XSS} `"},
             counts={f"{lb} | {XSS}": v for lb, v in c["counts"].items()},
             label_balance={f"match {XSS}": 0.5, "*b*": 0.5},
             selection={**c["selection"], "rule": "[link](javascript:alert(1))"})
    return c


def cells(html: str) -> list[list[str]]:
    return [re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, re.S)
            for row in re.findall(r"<tr>(.*?)</tr>", html, re.S)]


@pytest.mark.parametrize("kind", ["persona", "generic"])
def test_card_md_shows_untrusted_text_as_text(kind: str) -> None:
    c = hostile_card()
    if kind == "persona":
        text = markdown(c, FILTER_STEPS)
    else:  # sycophancy's card: model-written answers as the user_view_balance keys
        c["user_view_balance"] = {f"(A) {XSS} |": 3, "_x_": 2}
        del c["label_confidence"]  # a card made without the label filter
        text = markdown(c, ["sampled", "kept"], ["user_view_balance"])
        assert "- user_view_balance: (A) " in text
    # no '<' outside code spans (inside one, Markdown shows every character as typed)
    assert "<" not in re.sub(r"(`+) .*? \1|(`+)[^` ].*?\2", "", text)
    assert "\n# not a heading" not in text
    html = render(text)
    if html is None:  # no renderer: the text checks above are what can be checked
        pytest.skip("no Markdown renderer (markdown-it-py or markdown) installed")
    assert "<script" not in html and "<a " not in html and "<em>b</em>" not in html
    assert html.count("<h1>") == 1
    assert "cats &lt;script&gt;alert(1)&lt;/script&gt;</h1>" in html
    assert "says &lt;script&gt;alert(1)&lt;/script&gt; | and # not a heading" in html
    assert "<code>llamacpp:x` &lt;script&gt;alert(1)&lt;/script&gt; `</code>" in html
    assert "[link](javascript:alert(1))" in html
    # the '|' in a label stays in its cell: header step + one cell per label, on every row
    table = cells(html.split("</table>")[0])
    assert table[0] == ["step", "matching | &lt;script&gt;alert(1)&lt;/script&gt;",
                        "not_matching | &lt;script&gt;alert(1)&lt;/script&gt;"]
    assert all(len(r) == 3 for r in table)
    if kind == "generic":
        assert "(A) &lt;script&gt;alert(1)&lt;/script&gt; |: 3" in html and "_x_: 2" in html
    else:
        assert "match &lt;script&gt;alert(1)&lt;/script&gt;: 50%, *b*: 50%" in html


def test_card_md_of_plain_text_reads_as_before() -> None:
    """Ordinary names need no escapes: card.md stays readable as plain text."""
    c = card_with(name="desire_for_power", description="wants more power, e.g. money")
    text = markdown(c, FILTER_STEPS)
    assert text.startswith("# desire_for_power\n")
    assert "*wants more power, e.g. money*" in text
    assert "- generator: `llamacpp:smollm2-135m-instruct` (chat prompt)" in text

