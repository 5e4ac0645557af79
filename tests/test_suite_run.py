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


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The suite run on this machine, once for the tests below."""
    tmp = tmp_path_factory.mktemp("suite")
    (tmp / "suite.yaml").write_text(SUITE)
    res = Mwe()(["run", tmp / "suite.yaml", "--out", tmp / "suite"],
                cache=tmp / "suite.sqlite", progress=False, ok=True)
    assert "suite partial" not in res.stdout
    return tmp


@pytest.mark.slow
def test_each_behavior_is_the_single_spec_run(local: Path, mwe: Mwe) -> None:
    tmp_path, path = local, local / "suite.yaml"
    # the behavior that overrides a default (a single run of the other costs CI time; the
    # --ray test below compares both behaviors between two suite runs)
    for spec in [s for s in load_suite(path).behaviors if s.name == "honesty"]:
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
    assert 'href="map/map.html"' in page and (tmp_path / "suite" / "map" / "map.json").is_file()
    assert 'id="maps"' in (tmp_path / "suite" / "report.html").read_text()
    assert (tmp_path / "suite" / "report.html").is_file()


@pytest.mark.slow
def test_ray_builds_the_behaviors_and_the_files_are_the_local_runs(local: Path,
                                                                    mwe: Mwe) -> None:
    pytest.importorskip("ray")
    tmp_path, path = local, local / "suite.yaml"
    res = mwe(["run", path, "--out", tmp_path / "ray", "--ray"], cache=tmp_path / "ray.sqlite",
              progress=False, ok=True, env={"RAY_ADDRESS": ""})
    assert "ray: 2 behaviors to build" in res.stderr
    for name in ("wealth", "honesty"):
        a, b = tmp_path / "suite" / name, tmp_path / "ray" / name
        for f in SAME:
            assert (a / f).read_bytes() == (b / f).read_bytes(), (name, f)
        assert (a / "results" / "rows.jsonl").read_text().replace(str(a), "X") == (
            b / "results" / "rows.jsonl").read_text().replace(str(b), "X")
    # a second --ray run finds every behavior finished: nothing is sent, no Ray is started
    again = mwe(["run", path, "--out", tmp_path / "ray", "--ray"], cache=tmp_path / "ray.sqlite",
                progress=False, ok=True, env={"RAY_ADDRESS": ""})
    assert "behaviors to build" not in again.stderr
    assert again.stdout.count("(earlier run)") == 2
