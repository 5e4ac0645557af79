"""Output folders (issue 24): mwe replaces or removes only files it wrote there itself (listed in
the folder's manifest), never reads its outputs back as datasets, names a run folder's dataset
after the run, and every command's --help works."""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import DATA, REPO, Mwe

from mwe import cli
from mwe.datasets import dataset_name, expand, load
from mwe.errors import MweError
from mwe.export import export
from mwe.io import MANIFEST, claim_outputs, clear_outputs, read_manifest, write_json
from mwe.pipeline.run import check_results

MODEL = "llamacpp:smollm2-135m-instruct"
WINO = DATA / "released" / "winogenerated_examples.jsonl"
PERSONA = DATA / "released" / "agreeableness.jsonl"
DEMO = DATA / "golden" / "demo"  # a run folder as mwe demo writes it


def legacy_copy(to: Path) -> Path:
    """The demo's run folder as an mwe before manifests left it."""
    shutil.copytree(DEMO, to)
    (to / "results" / MANIFEST).unlink()
    return to


def one_error(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("mwe: error: "), res.stderr
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- item 4: --help of every command, read from the parser itself ---------------------------

def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
              ) -> Iterator[tuple[str, ...]]:
    """Every command path (() for mwe itself), from the parser's subparsers, recursively."""
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))


COMMAND_PATHS = list(_commands(cli.build_parser()))


def test_the_walk_finds_nested_subcommands() -> None:
    assert ("map",) in COMMAND_PATHS and ("validate", "stats") in COMMAND_PATHS
    assert len(COMMAND_PATHS) > 12


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda p: " ".join(p) or "mwe")
def test_every_help_prints_its_usage(path: tuple[str, ...],
                                     capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stop:
        cli.main([*path, "--help"])
    out, err = capsys.readouterr()
    assert stop.value.code == 0, err
    assert out.startswith(f"usage: {' '.join(('mwe', *path))}") and "Traceback" not in err
    assert "%%" not in out  # escaped where argparse formats it, shown as one %


def test_map_help_shows_percent_matching(mwe: Mwe) -> None:
    res = mwe(["map", "--help"], timeout=120)
    assert res.returncode == 0, res.stderr
    assert "% matching per cluster" in res.stdout


# ---- item 1: a folder of the user's own files is never emptied -----------------------------

USER_FILES = {"questions.csv": b"mine,1\n", "occupations.csv": b"mine,2\n",
              "winogenerated.png": b"\x89PNG mine", "summary.json": b'{"mine": true}\n',
              "notes.txt": b"my notes\n"}


def user_folder(path: Path, names: list[str] | None = None) -> Path:
    path.mkdir(parents=True)
    for name in names or list(USER_FILES):
        (path / name).write_bytes(USER_FILES[name])
    return path


def test_evaluate_refuses_a_folder_of_the_users_files(tmp_path: Path, mwe: Mwe) -> None:
    out = user_folder(tmp_path / "mine")
    before = snapshot(out)
    res = mwe(["evaluate", "-m", MODEL, "-d", str(WINO), "--limit", "2", "--out", str(out)],
              cache=tmp_path / "c.sqlite", progress=False)
    line = one_error(res)
    assert f"--out {out}: would replace" in line
    for name in ("questions.csv", "occupations.csv", "winogenerated.png", "summary.json"):
        assert name in line
    assert "notes.txt" not in line  # a name mwe never writes is no conflict
    assert snapshot(out) == before
    assert not (tmp_path / "c.sqlite").exists()  # refused before any model or cache


def test_sweep_and_run_refuse_too(tmp_path: Path, mwe: Mwe) -> None:
    out = user_folder(tmp_path / "mine", ["notes.txt", "summary.json"])
    (out / "results.csv").write_text("mine\n", encoding="utf-8")
    before = snapshot(out)
    line = one_error(mwe(["sweep", "-m", MODEL, "-d", str(PERSONA), "--limit", "2",
                          "--out", str(out)], cache=tmp_path / "c.sqlite", progress=False))
    assert "results.csv" in line and "would replace" in line
    # a run folder's results/ holding a user's file, with no spec of mwe's beside it
    run_out = user_folder(tmp_path / "run" / "results", ["summary.json"]).parent
    line = one_error(mwe(["run", str(REPO / "src" / "mwe" / "data" / "demo.yaml"), "--per-label",
                          "2", "--out", str(run_out)], cache=tmp_path / "c.sqlite", progress=False))
    assert f"{run_out / 'results'}: would replace summary.json" in line
    assert snapshot(out) == before and sorted(os.listdir(run_out)) == ["results"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory, mwe: Mwe) -> tuple[Path, Path]:
    """A folder holding the user's notes and a dataset, evaluated twice into a subfolder
    (`-d nest --out nest/res`) by the bundled model: the second run must not read the
    first's rows.jsonl as a dataset."""
    work = tmp_path_factory.mktemp("evaluated")
    nest = work / "nest"
    nest.mkdir()
    shutil.copy(WINO, nest / "wino.jsonl")
    res_dir = user_folder(nest / "res", ["notes.txt"])
    for _ in range(2):
        res = mwe(["evaluate", "-m", MODEL, "-d", str(nest), "--limit", "3",
                   "--out", str(res_dir)], cache=work / "c.sqlite", progress=False)
        assert res.returncode == 0, res.stderr
    return work, res_dir


def test_second_run_into_a_data_subfolder_reads_no_outputs(evaluated: tuple[Path, Path]) -> None:
    _, res_dir = evaluated
    summary = json.loads((res_dir / "summary.json").read_text(encoding="utf-8"))
    assert [d["name"] for d in summary["settings"]["datasets"]] == ["wino"]
    listed = read_manifest(res_dir)
    assert listed is not None
    assert {"rows.jsonl", "summary.csv", "summary.json", "usage.csv",
            "occupations.csv"} <= set(listed)
    assert "notes.txt" not in listed


def test_rerun_removes_only_its_own_stale_files(evaluated: tuple[Path, Path], mwe: Mwe) -> None:
    work, res_dir = evaluated
    wrote = set(read_manifest(res_dir) or [])
    res = mwe(["evaluate", "-m", MODEL, "-d", str(PERSONA), "--limit", "3",
               "--out", str(res_dir)], cache=work / "c.sqlite", progress=False)
    assert res.returncode == 0, res.stderr
    now = set(read_manifest(res_dir) or [])
    assert now == {"rows.jsonl", "summary.csv", "summary.json", "usage.csv"}
    gone = wrote - now
    assert "occupations.csv" in gone and not any((res_dir / n).exists() for n in gone)
    assert (res_dir / "notes.txt").read_bytes() == USER_FILES["notes.txt"]


def test_a_manifest_never_removes_outside_its_folder(tmp_path: Path) -> None:
    outside = tmp_path / "keep.txt"
    outside.write_text("x", encoding="utf-8")
    out = tmp_path / "out"
    out.mkdir()
    (out / "rows.jsonl").write_text("{}\n", encoding="utf-8")
    write_json(out / MANIFEST, {"files": ["rows.jsonl", "../keep.txt", str(outside)]})
    claim_outputs(out, ["rows.jsonl"]).finish([])
    assert outside.exists() and not (out / "rows.jsonl").exists()
    (out / MANIFEST).write_text("{not json", encoding="utf-8")
    with pytest.raises(MweError, match=rf"{MANIFEST}:1: not mwe's list"):
        claim_outputs(out, ["rows.jsonl"])


# ---- run folders from an mwe before manifests keep resuming ---------------------------------

def test_legacy_run_folder_results_are_adopted(tmp_path: Path) -> None:
    run = legacy_copy(tmp_path / "demo")
    (run / "results" / "notes.txt").write_text("mine", encoding="utf-8")
    assert read_manifest(run / "results") is None
    check_results(run)  # what mwe run does before any work
    assert set(read_manifest(run / "results") or []) == {"rows.jsonl", "summary.csv",
                                                         "summary.json"}
    clear_outputs(run / "results")  # the spec lost its targets: results go, notes stay
    assert sorted(os.listdir(run / "results")) == ["notes.txt"]


# ---- item 5: outputs are never read back as datasets ---------------------------------------

def test_a_run_folder_yields_only_its_dataset(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    legacy_copy(runs / "demo")  # results/ without a manifest (an older mwe)
    datasets, skipped = load([str(runs)])
    assert [(d.name, Path(d.path).name) for d in datasets] == [("deceive-users", "dataset.jsonl")]
    assert [Path(s.path).relative_to(runs).as_posix() for s in skipped] == \
        ["demo/results/rows.jsonl"]
    assert "results" in skipped[0].reason
    write_json(runs / "demo" / "results" / MANIFEST, {"files": ["rows.jsonl"]})
    assert expand([str(runs)]) == [runs / "demo" / "dataset.jsonl"]
    assert expand([f"{runs}/**/*.jsonl"]) == [runs / "demo" / "dataset.jsonl"]
    named = runs / "demo" / "results" / "rows.jsonl"  # named explicitly: read as given
    assert expand([str(named)]) == [named]
    with pytest.raises(MweError, match="no .jsonl files besides mwe's own outputs"):
        expand([str(runs / "demo" / "results")])


def test_an_export_folder_is_not_a_dataset(tmp_path: Path) -> None:
    out = tmp_path / "lm"
    export(str(DEMO / "dataset.jsonl"), "lm-eval", out, "raw", task="t")
    (out / "mine.jsonl").write_bytes(PERSONA.read_bytes())  # the user's own file is still read
    assert expand([str(tmp_path)]) == [out / "mine.jsonl"]


def test_export_replaces_an_export_from_before_manifests(tmp_path: Path) -> None:
    out = tmp_path / "hf"
    export(str(DEMO / "dataset.jsonl"), "lm-eval", out, "raw", task="t")
    (out / MANIFEST).rename(out / ".mwe-export.json")  # as mwe 0.1's export left it
    export(str(DEMO / "dataset.jsonl"), "hf", out)
    assert sorted(snapshot(out)) == [MANIFEST, "README.md", "data/test.parquet"]


# ---- item 8: a run folder's dataset takes the run's name ------------------------------------

def test_run_folders_name_their_datasets(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for folder, name in ((a, "alpha"), (b, "beta"), (c, "alpha")):
        shutil.copytree(DEMO, folder, ignore=shutil.ignore_patterns("results"))
        spec = json.loads((folder / "spec.json").read_text(encoding="utf-8"))
        write_json(folder / "spec.json", {**spec, "name": name})
    assert dataset_name(a / "dataset.jsonl") == "alpha"
    names = sorted(d.name for d in load([str(a), str(b), str(c)])[0])
    assert names == ["a/alpha", "beta", "c/alpha"]  # the same run name twice: by folder
    (c / "spec.json").unlink()  # the card's name, when only a card is beside it
    assert dataset_name(c / "dataset.jsonl") == "deceive-users"
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copy(DEMO / "dataset.jsonl", plain / "dataset.jsonl")
    assert dataset_name(plain / "dataset.jsonl") == "dataset"
    write_json(plain / "card.json", {"name": "evil\n<b>x</b>"})  # not a spec's name: unused
    assert dataset_name(plain / "dataset.jsonl") == "dataset"


def test_rating_items_carry_the_runs_name(tmp_path: Path, mwe: Mwe) -> None:
    items = tmp_path / "items.csv"
    res = mwe(["validate", "export", str(DEMO / "dataset.jsonl"), "--out", str(items)],
              timeout=120)
    if res.returncode != 0 and "install mwe[validate]" in res.stderr:
        pytest.skip("mwe[validate] is not installed")
    assert res.returncode == 0, res.stderr
    with items.open(encoding="utf-8") as fh:
        assert {r["dataset"] for r in csv.DictReader(fh)} == {"deceive-users"}
