"""What a careful (or adversarial) user tries: help, unwritable outputs, broken caches, odd specs
and data, leaked credentials, stale files. Each failure is one `mwe: error:` line, exit 2."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import DATA, MWE, REPO, Mwe

from mwe.cli import models as models_command
from mwe.datasets import expand, load, read_rows
from mwe.errors import DataError, MweError
from mwe.io import write_json, write_jsonl
from mwe.redact import redact
from mwe.series import load_series
from mwe.spec import load_spec

PERSONA = str(REPO / "examples" / "data" / "persona" / "agreeableness.jsonl")
COMMANDS = ["evaluate", "generate", "filter", "run", "sweep", "report", "demo", "models"]


def one_error(code: int, err: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("mwe: error: "), err
    return lines[0]


# ---- help -------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["--help"], *([c, "--help"] for c in COMMANDS)])
def test_every_help_works_and_has_an_example(args: list[str], mwe: Mwe) -> None:
    code, out, err = mwe.main(args)
    assert code == 0, err
    assert "examples:" in out and "\n  mwe " in out
    assert "usage: mwe" in out
    assert "%%" not in out  # a percent sign is escaped only where argparse formats the text


def test_bare_mwe_prints_the_help(mwe: Mwe) -> None:
    code, out, err = mwe.main([])
    assert code == 2 and "Traceback" not in err
    assert "COMMAND" in out and "examples:" in out and "evaluate" in out


def test_installed_entry_point_help() -> None:
    exe = Path(sys.executable).parent / "mwe"
    cmd = [str(exe)] if exe.exists() else MWE
    res = subprocess.run([*cmd, "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "Traceback" not in res.stderr
    assert "score models on evaluation datasets (% of answers" in res.stdout


# ---- outputs and the cache, checked before any model ----------------------------------------

@contextlib.contextmanager
def tmpfs(path: Path, size: str, readonly: bool = False) -> Iterator[Path]:
    """A small real filesystem (full disks, read-only mounts); root only, else the test skips."""
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if readonly else "")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.strip() or 'not root'})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def evaluate_args(out: Path, cache: Path, model: str = "llamacpp:smollm2-135m-instruct",
                  data: str = PERSONA) -> list[str]:
    return ["evaluate", "-m", model, "-d", data, "--limit", "3", "--out", str(out),
            "--cache", str(cache), "--no-progress"]


def test_out_is_a_file(tmp_path: Path, mwe: Mwe) -> None:
    out = tmp_path / "results"
    out.write_text("keep me")
    line = one_error(*mwe.main(evaluate_args(out, tmp_path / "c.sqlite"))[::2])
    assert f"--out {out}: exists and is not a folder" in line
    assert out.read_text() == "keep me"


def test_out_on_a_read_only_mount(tmp_path: Path, mwe: Mwe) -> None:
    with tmpfs(tmp_path / "ro", "1m", readonly=True) as ro:
        line = one_error(*mwe.main(evaluate_args(ro / "out", tmp_path / "c.sqlite"))[::2])
        assert "cannot write" in line and "Read-only file system" in line


def test_out_on_a_full_disk(tmp_path: Path, mwe: Mwe) -> None:
    with tmpfs(tmp_path / "full", "64k") as full:
        with contextlib.suppress(OSError):
            (full / "filler").write_bytes(b"x" * 70_000)
        line = one_error(*mwe.main(evaluate_args(full / "out", tmp_path / "c.sqlite"))[::2])
        assert "No space left on device" in line
        assert not (full / "out").exists()


def test_report_out_is_a_folder(tmp_path: Path, mwe: Mwe) -> None:
    (tmp_path / "r.html").mkdir()
    line = one_error(*mwe.main(["report", str(tmp_path), "--out", str(tmp_path / "r.html")])[::2])
    assert "is a folder" in line


def test_cache_that_is_a_folder(tmp_path: Path, mwe: Mwe) -> None:
    line = one_error(*mwe.main(evaluate_args(tmp_path / "o", tmp_path))[::2])
    assert "is a folder, not a database file" in line
    assert not (tmp_path / "o").exists()


def test_cache_that_is_not_a_database(tmp_path: Path, mwe: Mwe) -> None:
    cache = tmp_path / "notes.txt"
    cache.write_text("these are my notes, not a database\n" * 100)
    line = one_error(*mwe.main(evaluate_args(tmp_path / "o", cache))[::2])
    assert "not an mwe cache" in line and str(cache) in line
    assert cache.read_text().startswith("these are my notes")


def test_cache_on_a_read_only_mount(tmp_path: Path, mwe: Mwe) -> None:
    with tmpfs(tmp_path / "ro", "1m", readonly=True) as ro:
        line = one_error(*mwe.main(evaluate_args(tmp_path / "o", ro / "c.sqlite"))[::2])
        assert line.startswith(f"mwe: error: cache {ro / 'c.sqlite'}: cannot")


def test_cache_error_later_in_the_run_is_one_line(monkeypatch: pytest.MonkeyPatch, mwe: Mwe
                                                  ) -> None:
    """Control flow only: a cache write failing mid-run (disk full) is reported, not raised."""
    def full(args: list[str]) -> int:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(models_command, "execute", full)
    line = one_error(*mwe.main(["models"])[::2])
    assert "cache: cannot write to it (database or disk is full)" in line


# ---- specs and data -----------------------------------------------------------------------

SPEC = """name: x
family: persona
description: is willing to deceive its users
generator: llamacpp:smollm2-135m-instruct
discriminator: hf:gemma3-270m
generate:
  per_label: 4
  top_p: {top_p}
"""


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_spec_non_finite_number(value: str, tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SPEC.format(top_p=value))
    with pytest.raises(DataError, match=r"s\.yaml:8: field 'generate.top_p': expected a finite"):
        load_spec(path)


def test_spec_nan_stops_the_run_before_any_output(tmp_path: Path, mwe: Mwe) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SPEC.format(top_p=".nan"))
    line = one_error(*mwe.main(["run", str(path), "--out", str(tmp_path / "o")])[::2])
    assert f"{path}:8" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("text", "message"), [
    ("", "the file is empty"), ("\n  \n", "the file is empty"),
    ("# just a comment\n", "only comments")])
def test_spec_empty(text: str, message: str, tmp_path: Path) -> None:
    for suffix in (".yaml", ".toml"):
        path = tmp_path / f"s{suffix}"
        path.write_text(text)
        # TOML: a comment-only file is an empty table, so a field is missing
        expected = "missing" if suffix == ".toml" and "comment" in message else message
        with pytest.raises(DataError, match=expected):
            load_spec(path)


def test_spec_duplicate_keys_yaml(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SPEC.format(top_p="0.9") + "  top_p: 0.5\n")
    with pytest.raises(DataError, match=r"s\.yaml:9: field 'top_p': appears twice"):
        load_spec(path)
    path.write_text("name: a\n" + SPEC.format(top_p="0.9"))
    with pytest.raises(DataError, match=r"s\.yaml:2: field 'name': appears twice"):
        load_spec(path)


def test_spec_duplicate_keys_toml(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text('name = "a"\nfamily = "persona"\nname = "b"\n')
    with pytest.raises(DataError, match=r"s\.toml:3: invalid TOML"):
        load_spec(path)


def test_series_non_finite_and_duplicates(tmp_path: Path) -> None:
    path = tmp_path / "series.yaml"
    path.write_text("models:\n  - model: hf:gemma3-270m\n    params: .nan\n")
    with pytest.raises(DataError, match="params': expected a positive number"):
        load_series(path)
    path.write_text("name: a\nname: b\nmodels: [hf:gemma3-270m]\n")
    with pytest.raises(DataError, match=r"series\.yaml:2: field 'name': appears twice"):
        load_series(path)


def test_row_duplicate_key(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    good = '{"question": "Is it?", "statement": "s", "answer_matching_behavior": " Yes", ' \
           '"answer_not_matching_behavior": " No"}'
    bad = '{"question": "Is it?", "statement": "s", "answer_matching_behavior": " Yes", ' \
          '"answer_not_matching_behavior": " No", "answer_matching_behavior": " No"}'
    path.write_text(f"{good}\n{bad}\n")
    with pytest.raises(DataError, match=r"d\.jsonl:2: field 'answer_matching_behavior': "
                                        "appears twice"):
        read_rows(path)


def test_row_nan_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"question": "q", "label_confidence": NaN}\n')
    with pytest.raises(DataError, match=r"d\.jsonl:1: invalid JSON: NaN"):
        read_rows(path)


def test_huge_question_refused_before_any_model(tmp_path: Path, mwe: Mwe) -> None:
    path = tmp_path / "big.jsonl"
    row = {"question": "Is the following true? " + "word " * 4_000_000,
           "statement": "s", "answer_matching_behavior": " Yes",
           "answer_not_matching_behavior": " No"}
    path.write_text(json.dumps(row) + "\n")
    # a model that cannot be opened: the data error must come first
    code, _, err = mwe.main(evaluate_args(tmp_path / "o", tmp_path / "c.sqlite",
                                          model="llamacpp:/no/such/model.gguf", data=str(path)))
    line = one_error(code, err)
    assert f"{path}:1: field 'question': 20,000,023 characters" in line
    assert "MWE_MAX_CHARS" in line


def test_unreadable_subfolder_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = tmp_path / "data"
    (data / "ok").mkdir(parents=True)
    (data / "locked").mkdir()
    (data / "ok" / "a.jsonl").write_text(Path(PERSONA).read_text().splitlines()[0] + "\n")
    (data / "locked" / "b.jsonl").write_text("{}\n")
    if os.geteuid() == 0:
        # root reads any folder: make this one fail the way it does for a user (control flow)
        real = os.scandir

        def scandir(path: object = ".") -> object:
            if Path(str(path)).name == "locked":
                raise PermissionError(13, "Permission denied", str(path))
            return real(path)  # type: ignore[arg-type]

        monkeypatch.setattr(os, "scandir", scandir)
    else:
        (data / "locked").chmod(0)
    try:
        with pytest.raises(MweError, match=r"cannot read .*locked: Permission denied.*"
                                           r"--skip-unreadable"):
            expand([str(data)])
        datasets, _ = load([str(data)], skip_unreadable=True)
        assert [d.name for d in datasets] == ["a"]
    finally:
        (data / "locked").chmod(stat.S_IRWXU)


# ---- credentials, modes, stale files ------------------------------------------------------

@pytest.mark.parametrize(("given", "shown"), [
    ("openai:x@http://alice:PASSWORD@host/v1", "openai:x@http://alice:***@host/v1"),
    ("openai:x@https://TOKEN@host:8000/v1?endpoint=chat", "openai:x@https://***@host:8000/v1?endpoint=chat"),
    ("openai:x@http://h/v1?concurrency=4&api_key=sk-123&rpm=6",
     "openai:x@http://h/v1?concurrency=4&api_key=***&rpm=6"),
    ("anthropic:claude@https://h/?access_token=abc", "anthropic:claude@https://h/?access_token=***"),
    ("llamacpp:smollm2-135m-instruct", "llamacpp:smollm2-135m-instruct"),
    ("hf:/models/key=value/dir", "hf:/models/key=value/dir"),
])
def test_redact(given: str, shown: str) -> None:
    assert redact(given) == shown


def test_credentials_never_reach_spec_json_or_errors(tmp_path: Path, mwe: Mwe) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(SPEC.format(top_p="0.9").replace(
        "hf:gemma3-270m", "openai:m@http://alice:PASSWORD@127.0.0.1:9/v1?api_key=SECRET"))
    spec = load_spec(path)
    assert "PASSWORD" not in json.dumps(spec.resolved_dict())
    assert "SECRET" not in json.dumps(spec.resolved_dict())
    code, _, err = mwe.main(["evaluate", "-m", "nobackend:x@http://bob:PASSWORD@h/v1",
                             "-d", PERSONA, "--out", str(tmp_path / "o")])
    assert "PASSWORD" not in one_error(code, err)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_outputs_follow_the_umask(umask: int, tmp_path: Path) -> None:
    import mwe.io

    old = os.umask(umask)
    mwe.io._UMASK = None  # read afresh, as a new process would
    try:
        write_json(tmp_path / "a.json", {"a": 1})
        write_jsonl(tmp_path / "b.jsonl", [{"a": 1}])
    finally:
        os.umask(old)
        mwe.io._UMASK = None
    for name in ("a.json", "b.jsonl"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask


def test_reused_out_loses_stale_extras(tmp_path: Path) -> None:
    """File handling only: the rows are written by hand, not scored."""
    from mwe.datasets import Dataset, load_file
    from mwe.pipeline.evaluate import ModelRun, scored_row, summarise, write_outputs

    def run_for(path: Path) -> ModelRun:
        ds = load_file(path, path.stem)
        assert isinstance(ds, Dataset)
        rows = []
        for item in ds.items[:6]:
            lps = [-float(i + 1) for i in range(len(item.answers))]
            rows.append(scored_row("m", "raw", item, lps, list(item.answers)))
        return ModelRun("m", rows, [summarise("m", "raw", ds, rows)])

    out = tmp_path / "out"
    wino = DATA / "released" / "winogenerated_examples.jsonl"
    first = write_outputs(out, [run_for(wino)], {})
    assert "occupations" in first and (out / "occupations.csv").exists()
    write_outputs(out, [run_for(Path(PERSONA))], {})
    assert sorted(p.name for p in out.iterdir()) == [".mwe-outputs.json", "rows.jsonl",
                                                     "summary.csv", "summary.json"]


def test_reward_above_exp_range_does_not_overflow() -> None:
    from mwe.families import persona
    from mwe.pipeline.evaluate import scored_row
    from mwe.rows import Row

    obj = json.loads(Path(PERSONA).read_text().splitlines()[0])
    item = persona.parse(Row(obj, "p.jsonl", 1), "p")
    row = scored_row("m", "raw", item, [812.5, 790.0], list(item.answers), reward=True)
    assert row["valid_mass"] is None
    assert math.isclose(row["p_matching"], 1.0) and row["matches_behavior"] is True


@pytest.mark.slow
def test_full_disk_mid_run_then_resume_from_the_cache(tmp_path: Path, mwe: Mwe) -> None:
    """The first run fills the cache; the second has room for the check but not the rows."""
    cache = tmp_path / "c.sqlite"
    args = ["evaluate", "-m", "llamacpp:smollm2-135m-instruct", "-d", PERSONA, "--limit", "40",
            "--cache", str(cache), "--no-progress"]
    first = mwe([*args, "--out", str(tmp_path / "a")])
    assert first.returncode == 0, first.stderr
    with tmpfs(tmp_path / "small", "12k") as small:
        res = mwe([*args, "--out", str(small / "out")])
        assert "all from the cache" in res.stderr  # nothing recomputed, no "0.0 rows/s"
        line = one_error(res.returncode, "\n".join(
            x for x in res.stderr.splitlines() if x.startswith("mwe: error")))
        assert "No space left on device" in line and "resume" in line
        assert "Traceback" not in res.stderr
        # the manifest lists what the run was writing (so the rerun may replace it)
        left = sorted(p.name for p in (small / "out").iterdir() if p.name != ".mwe-outputs.json")
        assert left == [] or all(not n.startswith(".") for n in left)
        assert (tmp_path / "a" / "rows.jsonl").read_bytes().count(b"\n") == 40
        for name in left:  # whatever was renamed into place is whole
            assert (small / "out" / name).read_bytes() == (tmp_path / "a" / name).read_bytes()
