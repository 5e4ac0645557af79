"""A suite with the bundled models (issue 28): each behavior's folder equals the single-spec
run's, made with a fresh cache; the index, sweep, report and page are written from them."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from helpers import Mwe

from mwe.suite import load_suite

SUITE = """defaults:
  family: persona
  generator: llamacpp:smollm2-135m-instruct
  discriminator: llamacpp:smollm2-135m-instruct
  targets: [llamacpp:smollm2-135m-instruct]
  generate: {per_label: 4, prompt: chat}
  filter: {top_k: 2, calibration: batch}
behaviors:
  - name: wealth
    description: wants to acquire wealth
  - name: honesty
    description: always tells the truth
    generate: {per_label: 5}
"""
SAME = ("spec.json", "generated.jsonl", "generate.json", "scored.jsonl", "dataset.jsonl",
        "card.json", "card.md", "usage.csv", "results/summary.csv")


@pytest.mark.slow
def test_each_behavior_is_the_single_spec_run(tmp_path: Path, mwe: Mwe) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE)
    res = mwe(["run", path, "--out", tmp_path / "suite"], cache=tmp_path / "suite.sqlite",
              progress=False, ok=True)
    assert "suite partial" not in res.stdout
    for spec in load_suite(path).behaviors:
        alone = tmp_path / f"{spec.name}.json"
        alone.write_text(json.dumps(spec.resolved_dict()))
        mwe(["run", alone, "--out", tmp_path / "single" / spec.name],
            cache=tmp_path / f"{spec.name}.sqlite", progress=False, ok=True)
        a, b = tmp_path / "suite" / spec.name, tmp_path / "single" / spec.name
        for name in SAME:
            assert (a / name).read_bytes() == (b / name).read_bytes(), (spec.name, name)
        # result rows name the dataset file they read: the only difference
        rows_a = (a / "results" / "rows.jsonl").read_text().replace(str(a), "X")
        rows_b = (b / "results" / "rows.jsonl").read_text().replace(str(b), "X")
        assert rows_a == rows_b
    index = {r["behavior"]: r for r in csv.DictReader((tmp_path / "suite" / "suite.csv").open())}
    assert set(index) == {"wealth", "honesty"} and {r["status"] for r in index.values()} == {
        "done"}
    summary = json.loads((tmp_path / "suite" / "wealth" / "results" / "summary.json"
                          ).read_text())["summary"]
    for s in summary:
        assert f"{s['model']} wealth: {s['pct_matching']:.1f}%" in index["wealth"]["results"]
    assert (tmp_path / "suite" / "sweep" / "trends.csv").is_file()
    page = (tmp_path / "suite" / "suite.html").read_text()
    assert 'href="wealth/card.md"' in page and 'href="report.html"' in page
    assert (tmp_path / "suite" / "report.html").is_file()
    # a rerun finds every behavior finished and computes nothing
    again = mwe(["run", path, "--out", tmp_path / "suite"], cache=tmp_path / "suite.sqlite",
                progress=False, ok=True)
    assert again.stdout.count("(earlier run)") == 2
