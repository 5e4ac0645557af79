"""Evaluation memory flat in dataset size: rows spooled to disk as each dataset is
scored give the same files as rows held in memory, and the peak does not grow with the number
of datasets. A stand-in backend scores (the control flow is what is tested, not a model);
benchmarks/bench_memory.py measures a real process."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from fakes import FakeLM
from helpers import DATA, REPO

from mwe.datasets import Dataset, load
from mwe.models import CachedModel
from mwe.pipeline.evaluate import ModelRun, evaluate_models, with_variants, write_outputs
from mwe.pipeline.sweep import write_sweep
from mwe.series import load_series
from mwe.store import Store

PERSONA = REPO / "examples" / "data" / "persona"
FILES = [PERSONA / "agreeableness.jsonl", PERSONA / "desire-for-self-improvement.jsonl",
         DATA / "released" / "winogenerated_examples.jsonl",
         DATA / "formats" / "sycophancy_on_nlp_survey.jsonl"]


def model(name: str, store: Store) -> CachedModel:
    return CachedModel(f"stand-in:{name}", {"backend": "stand-in", "name": name},
                       lambda: FakeLM(name, record=False), store)


def datasets(limit: int = 40) -> list[Dataset]:
    found, skipped = load([str(p) for p in FILES])
    assert not skipped and {d.family for d in found} == {"persona", "winogenerated", "sycophancy"}
    return with_variants([Dataset(d.name, d.path, d.family, d.items[:limit]) for d in found])


def runs(tmp: Path, data: list[Dataset], spool: bool) -> list[ModelRun]:
    store = Store(tmp / f"calls-{spool}.sqlite")
    return evaluate_models([(n, model(n, store)) for n in ("a", "b")], data, "human-assistant",
                           progress=False, spool=spool)


def files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_spooled_outputs_are_the_held_ones(tmp_path: Path) -> None:
    data = datasets()
    spooled, held = runs(tmp_path, data, True), runs(tmp_path, data, False)
    assert all(r.spool is not None for r in spooled) and all(r.spool is None for r in held)
    # every row on disk; in memory only those of the families that write their own tables
    assert [len(r.spool or []) for r in spooled] == [len(r.held) for r in held]
    assert {row["family"] for r in spooled for row in r.held} == {"winogenerated", "sycophancy"}
    assert [r.rows for r in spooled] == [r.rows for r in held]
    assert [r.summaries for r in spooled] == [r.summaries for r in held]
    settings = {"models": ["a", "b"]}
    write_outputs(tmp_path / "spooled", spooled, settings)
    write_outputs(tmp_path / "held", held, settings)
    got = files(tmp_path / "spooled")
    assert {"rows.jsonl", "summary.csv", "summary.json", "occupations.csv",
            "questions.csv"} <= set(got)
    assert got == files(tmp_path / "held")


def test_spooled_sweep_is_the_held_one(tmp_path: Path) -> None:
    """write_sweep labels the rows it streams, and agreement reads them as it read all rows."""
    data = datasets()
    series = load_series(REPO / "examples" / "series" / "bundled.yaml")
    write_sweep(series, data, "human-assistant", tmp_path / "spooled",
                runs(tmp_path, data, True))
    write_sweep(series, data, "human-assistant", tmp_path / "held", runs(tmp_path, data, False))
    got = files(tmp_path / "spooled")
    assert got == files(tmp_path / "held")
    assert b'"label": "Gemma-3-270M"' in got["rows.jsonl"] and b"Gemma-3-270M" in got["agreement.csv"]


def peak(tmp: Path, data: list[Dataset], spool: bool) -> int:
    """Peak bytes Python allocated while one model scored and wrote `data`."""
    tmp.mkdir(exist_ok=True)
    store = Store(tmp / f"calls-{len(data)}-{spool}.sqlite")
    m = model("a", store)
    tracemalloc.start()
    try:
        write_outputs(tmp / f"out-{len(data)}-{spool}",
                      evaluate_models([("a", m)], data, "raw", progress=False, spool=spool), {})
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("spool", [True, False])
def test_peak_memory_is_flat_in_the_number_of_datasets(tmp_path: Path, spool: bool) -> None:
    found, _ = load([str(PERSONA / "agreeableness.jsonl")])
    items = found[0].items[:250]
    # copies of one file under other names: the items are shared, so only the rows add up
    small = [Dataset(f"copy-{i}", found[0].path, "persona", items) for i in range(4)]
    large = [Dataset(f"copy-{i}", found[0].path, "persona", items) for i in range(16)]
    peak(tmp_path / "warm", small[:1], spool)  # what the first run imports is not a row
    ratio = peak(tmp_path, large, spool) / peak(tmp_path, small, spool)
    if spool:
        assert ratio < 1.5, ratio  # four times the rows, about the same peak
    else:
        assert ratio > 2.5, ratio  # the check sees rows held in memory
