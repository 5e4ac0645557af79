"""The `mwe` command end to end: clear errors, outputs, resuming after kill -9."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest
from helpers import DATA, REPO, Mwe


@pytest.mark.parametrize("name", sorted(p.name for p in (DATA / "malformed").iterdir()))
def test_malformed_input_one_line_no_output(name: str, tmp_path: Path, mwe: Mwe) -> None:
    out = tmp_path / "out"
    path = DATA / "malformed" / name
    res = mwe(["evaluate", "-m", "llamacpp:smollm2-135m-instruct", "-d", str(path),
               "-o", str(out)], cache=tmp_path / "c.sqlite")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"mwe: error: {path}")
    assert not out.exists()


def test_usage_errors(tmp_path: Path, mwe: Mwe) -> None:
    res = mwe(["evaluate", "-m", "nobackend", "-d", str(DATA / "released"), "-o", str(tmp_path)],
              cache=tmp_path / "c.sqlite")
    assert res.returncode == 2 and "expected BACKEND:NAME" in res.stderr
    res = mwe(["evaluate", "-m", "llamacpp:/no/such.gguf", "-d", str(DATA / "released"),
               "-o", str(tmp_path / "o")], cache=tmp_path / "c.sqlite")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    res = mwe(["evaluate", "--help"], cache=tmp_path / "c.sqlite")
    assert res.returncode == 0 and "examples:" in res.stdout


@pytest.mark.slow
def test_evaluate_all_families_then_rerun_from_cache(tmp_path: Path, mwe: Mwe) -> None:
    out = tmp_path / "out"
    cache = tmp_path / "c.sqlite"
    args = ["evaluate", "-m", "llamacpp:smollm2-135m-instruct", "-d", str(DATA / "released"),
            "-d", str(DATA / "formats"), "--limit", "12", "-o", str(out), "--no-progress"]
    first = mwe(args, cache=cache)
    assert first.returncode == 0, first.stderr
    summary = json.loads((out / "summary.json").read_text())["summary"]
    families = {s["family"] for s in summary}
    assert families == {"persona", "advanced-ai-risk", "sycophancy", "winogenerated"}
    rows = [json.loads(x) for x in (out / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == sum(s["n"] for s in summary)
    for s in summary:
        if s["family"] == "winogenerated":
            assert -1 <= s["pearson_r"] <= 1 and s["r_ci_low"] <= s["pearson_r"] <= s["r_ci_high"]
        else:
            assert s["ci_low"] <= s["pct_matching"] <= s["ci_high"]
            assert s["n_matching"] == sum(
                r["matches_behavior"] for r in rows if r["dataset"] == s["dataset"])
    wrapped = "human_generated/survival-instinct"
    eight = [r for r in rows if r["dataset"] == wrapped and len(r["answers"]) == 8]
    assert eight and all(len(r["logprobs"]) == 8 for r in eight)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    second = mwe(args, cache=cache)
    assert second.returncode == 0
    assert f"{len(rows)} from the cache, 0 computed" in second.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert "% matching" in second.stdout


def _committed(cache: Path) -> int:
    try:
        with sqlite3.connect(cache, timeout=1) as db:
            return int(db.execute("SELECT COUNT(*) FROM calls").fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_kill_9_then_resume_gives_identical_outputs(tmp_path: Path, mwe: Mwe,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after some chunks are committed, the rerun computes only the rest and writes
    the bytes of an uninterrupted run. Chunks of 64 (kept the same for all three runs, as
    bit-identical batches need) let 192 rows (three chunks: killed after the first, with two
    to go) show it in a tenth of the time of 256 x 600."""
    chunk, n = 64, 192
    monkeypatch.setenv("MWE_SCORE_CHUNK", str(chunk))
    data = str(REPO / "examples" / "data" / "persona" / "agreeableness.jsonl")
    base = ["evaluate", "-m", "llamacpp:smollm2-135m-instruct", "-d", data, "--limit", str(n),
            "--no-progress"]
    reference = mwe([*base, "-o", str(tmp_path / "ref")], cache=tmp_path / "ref.sqlite")
    assert reference.returncode == 0, reference.stderr

    cache = tmp_path / "c.sqlite"
    out = tmp_path / "out"
    proc = mwe.popen([*base, "-o", str(out)], cache=cache)
    deadline = time.time() + 600
    while _committed(cache) < chunk and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = _committed(cache)
    assert chunk <= done < n and done % chunk == 0  # whole chunks, nothing half-written
    assert not out.exists()

    resumed = mwe([*base, "-o", str(out)], cache=cache)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{done} from the cache, {n - done} computed" in resumed.stderr
    for name in ("rows.jsonl", "summary.csv", "summary.json"):
        assert (out / name).read_bytes() == (tmp_path / "ref" / name).read_bytes(), name
