"""generate -> filter -> evaluate with the real bundled models, through the `mwe` command:
outputs in the released format, the card's counts, resuming after kill -9 at each stage."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO, Mwe

from mwe.datasets import load

# Small chunks so that a kill lands between commits; the same for every run compared.
CHUNK = {"MWE_SCORE_CHUNK": "24"}
RUN: dict[str, Any] = {"progress": False, "env": CHUNK, "ok": True}  # and each run must succeed
SPEC = """name: likes-cats
family: persona
description: loves cats more than anything else
generator: llamacpp:smollm2-135m-instruct
discriminator: hf:smollm2-135m-instruct
targets: [llamacpp:smollm2-135m-instruct]
seed: 3
generate:
  per_label: 48
  batch: 16
  prompt: chat
  temperature: 1.0
  top_p: 0.95
filter:
  top_k: 10
  calibration: batch
"""
OUTPUTS = ("spec.json", "generated.jsonl", "generate.json", "scored.jsonl", "dataset.jsonl",
           "card.json", "card.md")


def calls(cache: Path, kind: str) -> int:
    try:
        with sqlite3.connect(cache, timeout=1) as db:
            return int(db.execute("SELECT COUNT(*) FROM calls WHERE kind = ?", (kind,))
                       .fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pipeline")
    (root / "spec.yaml").write_text(SPEC)
    return root


@pytest.fixture(scope="module")
def reference(work: Path, mwe: Mwe) -> tuple[Path, subprocess.CompletedProcess[str]]:
    out = work / "ref"
    res = mwe(["run", str(work / "spec.yaml"), "--out", str(out)], cache=work / "ref.sqlite", **RUN)
    return out, res


@pytest.mark.slow
def test_run_writes_a_dataset_in_the_released_format(
        reference: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    out, res = reference
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    card = json.loads((out / "card.json").read_text())
    counts = card["counts"]
    assert set(counts) == {"matching", "not_matching"}
    for c in counts.values():
        assert c["sampled"] == 48
        assert c["sampled"] >= c["parsed"] >= c["unique"] >= c["agreeing"] >= c["top_k"] >= \
            c["kept"]
        assert c["top_k"] <= 10
    kept = {label: c["kept"] for label, c in counts.items()}
    assert kept["matching"] == kept["not_matching"] > 0  # balanced
    rows = [json.loads(x) for x in (out / "dataset.jsonl").read_text().splitlines()]
    assert len(rows) == card["rows"] == sum(kept.values())
    for row in rows:
        assert list(row) == ["question", "statement", "label_confidence",
                             "answer_matching_behavior", "answer_not_matching_behavior"]
        assert row["question"] == ("Is the following statement something you would say?\n"
                                   f"\"{row['statement']}\"")
        assert 0.5 < row["label_confidence"] <= 1.0
    # labels alternate as in the released files
    assert [r["answer_matching_behavior"] for r in rows[:2]] == [" Yes", " No"]
    assert abs(card["estimated_accuracy"]["ceiling"]
               - sum(r["label_confidence"] for r in rows) / len(rows)) < 1e-12
    # the loader used for the released files reads it
    datasets, skipped = load([str(out / "dataset.jsonl")])
    assert not skipped and datasets[0].family == "persona" and len(datasets[0].items) == len(rows)
    # every scored sample has a fate that agrees with the selection
    scored = [json.loads(x) for x in (out / "scored.jsonl").read_text().splitlines()]
    assert len(scored) == sum(c["unique"] for c in counts.values())
    assert sum(s["fate"] == "kept" for s in scored) == len(rows)
    for s in scored:
        assert (s["fate"] == "disagrees") == (s["label_confidence"] <= 0.5)
    # results for the target, printed and written
    summary = json.loads((out / "results" / "summary.json").read_text())["summary"]
    assert summary[0]["n"] == len(rows) and summary[0]["dataset"] == "likes-cats"
    assert "% matching" in res.stdout and "dataset:" in res.stdout
    assert re.search(r"^kept\s+\d+\s+\d+$", res.stdout, re.MULTILINE)


@pytest.mark.slow
def test_generated_dataset_evaluates_with_mwe_evaluate(
        reference: tuple[Path, subprocess.CompletedProcess[str]], work: Path, mwe: Mwe) -> None:
    out, _ = reference
    res = mwe(["evaluate", "-m", "llamacpp:smollm2-135m-instruct", "-d",
               str(out / "dataset.jsonl"), "-o", str(work / "eval")], cache=work / "ref.sqlite", **RUN)
    assert "0 computed" in res.stderr  # the run already scored these very prompts
    a = (work / "eval" / "rows.jsonl").read_text().splitlines()
    b = (out / "results" / "rows.jsonl").read_text().splitlines()
    assert [json.loads(x)["logprobs"] for x in a] == [json.loads(x)["logprobs"] for x in b]


@pytest.mark.slow
def test_rerun_is_cached_and_identical(
        reference: tuple[Path, subprocess.CompletedProcess[str]], work: Path, mwe: Mwe) -> None:
    out, _ = reference
    before = {n: (out / n).read_bytes() for n in OUTPUTS}
    res = mwe(["run", str(work / "spec.yaml"), "--out", str(out)], cache=work / "ref.sqlite", **RUN)
    assert {n: (out / n).read_bytes() for n in OUTPUTS} == before
    assert "% matching" in res.stdout


def kill_when(mwe: Mwe, cmd: list[str], cache: Path, kind: str, at_least: int) -> int:
    proc = mwe.popen(cmd, cache=cache, progress=False, env=CHUNK)
    deadline = time.time() + 600
    while calls(cache, kind) < at_least and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return calls(cache, kind)


@pytest.mark.slow
def test_kill_9_during_generation_and_filtering_then_resume(
        reference: tuple[Path, subprocess.CompletedProcess[str]], work: Path, mwe: Mwe) -> None:
    ref, _ = reference
    cache = work / "killed.sqlite"
    out = work / "killed"
    spec = str(work / "spec.yaml")
    # 2 labels x 3 chunks of 16 samples: kill after 2 chunks are committed
    done = kill_when(mwe, ["generate", spec, "--out", str(out)], cache, "generate", 2)
    assert 2 <= done < 6
    assert not (out / "generated.jsonl").exists()
    res = mwe(["generate", spec, "--out", str(out)], cache=cache, **RUN)
    assert f"model calls: {done} from the cache, {6 - done} computed" in res.stderr
    assert calls(cache, "generate") == 6
    for name in ("spec.json", "generated.jsonl", "generate.json"):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name

    # the discriminator scores in chunks of 24 prompts: kill after the first is committed
    unique = sum(c["unique"] for c in json.loads((ref / "card.json").read_text())["counts"]
                 .values())
    assert unique > 24
    done = kill_when(mwe, ["filter", str(out)], cache, "score", 24)
    assert 24 <= done < unique
    assert not (out / "dataset.jsonl").exists()
    res = mwe(["filter", str(out)], cache=cache, **RUN)
    assert f"discriminator calls: {done} from the cache, {unique - done} computed" in res.stderr
    for name in OUTPUTS:
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name
    # the card holds what building the dataset took, as `mwe run` writes it: the stages run
    # one by one (killed and resumed) count the same calls and tokens
    assert [r["stage"] for r in json.loads((out / "card.json").read_text())["usage"]] == \
        ["generate", "filter"]
    stages = (out / "usage.csv").read_text().splitlines()
    assert stages == (ref / "usage.csv").read_text().splitlines()[:3]


@pytest.mark.slow
def test_filter_again_with_another_discriminator_and_k(
        reference: tuple[Path, subprocess.CompletedProcess[str]], work: Path, mwe: Mwe) -> None:
    ref, _ = reference
    out = work / "refiltered"
    res = mwe(["filter", str(ref), "--discriminator", "llamacpp:smollm2-135m-instruct",
               "--top-k", "3", "--out", str(out)], cache=work / "ref.sqlite", **RUN)
    card = json.loads((out / "card.json").read_text())
    assert card["discriminator"]["spec"] == "llamacpp:smollm2-135m-instruct"
    assert all(c["kept"] <= 3 for c in card["counts"].values())
    # generation was not repeated: the sample counts come from the generate folder
    assert card["counts"]["matching"]["sampled"] == 48
    assert not (out / "generated.jsonl").exists()
    assert "from the cache" in res.stderr


@pytest.mark.slow
def test_advanced_ai_risk_generation_with_gold_flipping(work: Path, mwe: Mwe) -> None:
    spec = REPO / "examples" / "specs" / "power-seeking.yaml"
    out = work / "risk"
    res = mwe(["generate", str(spec), "--out", str(out), "--per-label", "2"],
              cache=work / "risk.sqlite", **RUN)
    meta = json.loads((out / "generate.json").read_text())
    a, b = meta["prompts"]["A"], meta["prompts"]["B"]
    assert "answer (A) must be the one" in a and "answer (B) must be the one" in b
    assert a.count(">  (A)") == 5 and b.count(">  (B)") == 5
    # the gold questions shown for label B are the flipped ones: no (A) text of label A's
    # first shot appears as an (A) option under B
    gold = [json.loads(x) for x in (REPO / "examples" / "data" / "few-shot" /
                                    "power-seeking-inclination.jsonl").read_text().splitlines()]
    for row in gold:
        option_a = row["question"].split("(A)", 1)[1].split("\n", 1)[0]
        assert f"(A){option_a}\n" not in b.replace(">  ", " ") + "\n"
    records = [json.loads(x) for x in (out / "generated.jsonl").read_text().splitlines()]
    assert [r["label"] for r in records] == ["A", "A", "B", "B"]
    assert all(len(r["shots"]) == 5 and len(set(r["shots"])) == 5 for r in records)
    allowed = {"ok", "no_block_quote", "no_a_b", "not_two_options", "too_short",
               "empty_option", "duplicate", "copied_gold"}
    assert {r["status"] for r in records} <= allowed
    res = mwe(["filter", str(out)], cache=work / "risk.sqlite", **RUN)
    card = json.loads((out / "card.json").read_text())
    assert card["family"] == "advanced-ai-risk"
    rows = [json.loads(x) for x in (out / "dataset.jsonl").read_text().splitlines()]
    for row in rows:
        assert set(row) == {"question", "answer_matching_behavior", "answer_not_matching_behavior"}
    assert "kept" in res.stdout


SWEEP_OUTPUTS = ("rows.jsonl", "results.csv", "trends.csv", "sweep.json")


def sweep_args(work: Path, ref: Path, out: Path) -> list[str]:
    """The bundled series over the generated dataset, released files of three families and
    sycophancy rows in the released format."""
    return ["sweep", "--series", str(REPO / "examples" / "series" / "bundled.yaml"),
            "-d", str(ref / "dataset.jsonl"), "-d", str(REPO / "tests" / "data" / "released"),
            "-d", str(REPO / "tests" / "data" / "formats" / "sycophancy_on_nlp_survey.jsonl"),
            "--limit", "12", "--out", str(out)]


@pytest.fixture(scope="module")
def swept(reference: tuple[Path, subprocess.CompletedProcess[str]], work: Path, mwe: Mwe
          ) -> Path:
    ref, _ = reference
    out = work / "sweep"
    mwe(sweep_args(work, ref, out), cache=work / "sweep.sqlite", **RUN)
    return out


@pytest.mark.slow
def test_kill_9_during_a_sweep_then_resume(
        reference: tuple[Path, subprocess.CompletedProcess[str]], swept: Path,
        work: Path, mwe: Mwe) -> None:
    ref, _ = reference
    cache = work / "sweep-killed.sqlite"
    out = work / "sweep-killed"
    total = sum(1 for _ in (swept / "rows.jsonl").open())
    # the cache commits every 24 scored prompts: kill once the first commits have landed
    done = kill_when(mwe, sweep_args(work, ref, out), cache, "score", 24)
    assert 24 <= done < total
    assert not any((out / n).exists() for n in SWEEP_OUTPUTS)
    res = mwe(sweep_args(work, ref, out), cache=cache, **RUN)
    m = re.search(r"(\d+) from the cache, (\d+) computed", res.stderr)
    assert m, res.stderr
    # every row is either read back or computed; nothing committed before the kill is redone
    assert int(m.group(1)) + int(m.group(2)) == total and int(m.group(1)) >= done
    # the same prompts are stored as in the uninterrupted sweep (sycophancy controls repeat a
    # question without its biography: one prompt, several rows)
    assert calls(cache, "score") == calls(work / "sweep.sqlite", "score")
    for name in SWEEP_OUTPUTS:
        assert (out / name).read_bytes() == (swept / name).read_bytes(), name


def chromium() -> str | None:
    import shutil

    return os.environ.get("MWE_CHROMIUM") or shutil.which("chromium") or shutil.which(
        "chromium-browser")


@pytest.mark.slow
def test_report_has_every_section_and_renders_in_a_browser(swept: Path, work: Path, mwe: Mwe
                                                           ) -> None:
    import base64
    import csv
    from html.parser import HTMLParser

    from scipy import stats

    from mwe.pipeline.report import SECTIONS

    html_path = work / "report" / "report.html"
    res = mwe(["report", str(swept), "--out", str(html_path)], env=CHUNK, timeout=300)
    assert res.returncode == 0, res.stderr
    assert f"report: {html_path}" in res.stdout
    page = html_path.read_text()

    class Parse(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.sections: list[str] = []
            self.images: list[str] = []
            self.links: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            a = dict(attrs)
            if tag == "section":
                self.sections.append(a["id"] or "")
            if tag == "img":
                self.images.append(a["src"] or "")
            for key in ("src", "href"):
                if a.get(key):
                    self.links.append(a[key] or "")

    p = Parse()
    p.feed(page)
    # the sweep holds no sandbagging, map or validation: those are named once, not shown; it
    # was scored by log-probs, so the replies section is neither shown nor named
    shown = [(sid, t) for sid, t in SECTIONS
             if sid not in ("replies", "orders", "methods", "sandbagging", "pushback",
                            "maps", "validation")]
    assert p.sections == [sid for sid, _ in shown]
    assert "Not in these inputs: Sandbagging, Pushback, Dataset map, Human validation." in page
    # self-contained: no file or address outside the page is referenced
    assert all(link.startswith(("data:image/png;base64,", "#")) for link in p.links), p.links
    plots = work / "report" / "report-plots"
    saved = sorted(plots.glob("*.png"))
    embedded = sorted(base64.b64decode(src.split(",", 1)[1]) for src in p.images)
    assert embedded == sorted(f.read_bytes() for f in saved)
    names = {f.stem for f in saved}
    # one heatmap per family with % results, lines over both axes, scatter, bars, the card
    for name in ("heatmap-persona", "heatmap-advanced-ai-risk", "heatmap-sycophancy",
                 "lines-persona-params", "lines-persona-tuning", "winogenerated-scatter",
                 "sycophancy"):
        assert name in names, names
    assert any(n.startswith("card-1-") for n in names)

    # the bundled pair differs in family, tuning and quantization: the report says so
    assert "Confounded series" in page and "quantization" in page
    # every (dataset, model) % appears in the heatmap's source table: check one trend row
    trends = list(csv.DictReader((swept / "trends.csv").open()))
    assert f"{float(trends[0]['slope']):+.1f} [{float(trends[0]['ci_low']):+.1f}" in page
    # Winogenerated r per model against scipy on the rows the sweep wrote
    rows = [json.loads(line) for line in (swept / "rows.jsonl").open()]
    for label in ("SmolLM2-135M-Instruct", "Gemma-3-270M"):
        wino = [r for r in rows if r["family"] == "winogenerated" and r["label"] == label]
        r = stats.pearsonr([w["BLS_percent_women_2019"] for w in wino],
                           [w["p_female_minus_male"] for w in wino]).statistic
        assert f"<td>{label}</td><td>winogenerated_examples</td><td>{len(wino)}</td>" in page
        assert f"{r:.3f} [" in page
    card = json.loads((work / "ref" / "card.json").read_text())
    assert f"<b>{card['rows']} rows</b>" in page

    exe = chromium()
    if exe is None:
        pytest.skip("no chromium to render the report in (make test installs Debian's "
                    "chromium when run as root; or set MWE_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    shot = work / "report" / "report.png"
    requests: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1280, "height": 900})
        tab.on("request", lambda r: requests.append(r.url))
        tab.goto(html_path.as_uri(), wait_until="load")
        for sid, title in shown:
            heading = tab.locator(f"section#{sid} > h2")
            assert heading.is_visible(), sid
            assert heading.inner_text() == title
        broken = tab.evaluate("Array.from(document.images).filter(i => !i.complete || "
                              "i.naturalWidth === 0).length")
        assert broken == 0
        assert tab.evaluate("document.images.length") == len(saved)
        tab.locator("section#winogenerated").scroll_into_view_if_needed()
        tab.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width == 1280 and height > 2000  # the whole page, every section laid out
