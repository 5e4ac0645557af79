"""`mwe rescore RUN [--judge MODEL]`: read the stored replies of a finished `--score text`
run again, with the current rules and optionally a judge, without asking the evaluated model
anything: the replies come from rows.jsonl, so a change in the scores is the reading's alone.

The questions are read again from each row's `source` (the dataset file the run read, as the
run named it: a relative path is relative to where the run was made), with the run's control
variants and answer orders, so the family's `result` and the summaries are made exactly as
`mwe evaluate` makes them. Log-prob rows and their summaries are kept as they were. The
outputs replace the run's own (or go to another folder); usage.csv keeps the evaluation's
lines and adds the judge's under the stage `rescore`. A sweep folder is read the same way and
written by the sweep's own writer (mwe.pipeline.rescore_sweep).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mwe.checks import At
from mwe.cost import read_usage
from mwe.errors import DataError, MweError
from mwe.judge import Judge
from mwe.pipeline.evaluate import ModelRun, write_outputs
from mwe.pipeline.rescore_rows import Rescored, note, reread, summary_again
from mwe.pipeline.rescore_sweep import rescore_sweep
from mwe.report.jsonfile import load_json
from mwe.results import ScoredRow, SummaryRow
from mwe.run_folder import SWEEP_JSON, ResultsFolder


def read_rows(path: Path) -> list[tuple[int, ScoredRow]]:
    """rows.jsonl as (line, row); a malformed line is an error naming file, line and field."""
    if not path.is_file():
        raise MweError(f"{path}: missing (mwe rescore takes the folder of a finished "
                       "mwe evaluate --score text run)")
    out = []
    try:
        with path.open(encoding="utf-8") as fh:
            for line, text in enumerate(fh, 1):
                at = At(str(path), line)
                try:
                    obj = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise at.error(None, f"not valid JSON: {exc.msg} (column {exc.colno})"
                                   ) from None
                out.append((line, ScoredRow.from_dict(obj, at)))
    except UnicodeDecodeError:
        raise DataError(str(path), None, None, "not UTF-8 text") from None
    return out


def read_summary(folder: ResultsFolder, command: str
                 ) -> tuple[dict[str, Any], list[Any], At]:
    """summary.json of a finished evaluate folder: its settings ({} when it has none), its
    summaries, and where they were read (for located errors)."""
    if not folder.summary_json.is_file():
        raise MweError(f"{folder.summary_json}: missing ({command} takes the folder of a "
                       "finished mwe evaluate or mwe sweep run)")
    at = At(str(folder.summary_json), word="found", show="kind")
    summary = at.mapping(load_json(folder.summary_json), None)
    summaries = summary.get("summary")
    if not isinstance(summaries, list):
        raise at.expected("summary", "a list of summaries", summaries)
    settings = summary.get("settings")
    return (dict(settings) if isinstance(settings, dict) else {}), summaries, at


def rescore(run: Path, out: Path, judge: Judge | None = None,
            on_progress: Callable[[int], None] | None = None,
            settings_note: dict[str, Any] | None = None) -> Rescored:
    """Re-read every stored reply of `run` and write the outputs to `out` (see the module); a
    sweep folder is rescored as one (mwe.pipeline.rescore_sweep)."""
    folder = ResultsFolder(run)
    rows = read_rows(folder.rows)
    if not any(r.get("score") == "text" for _, r in rows):
        raise MweError(f"{folder.rows}: no rows scored by the replies; mwe rescore re-reads the "
                       "replies of an mwe evaluate or mwe sweep --score text run, and this run "
                       "has none")
    if (run / SWEEP_JSON).is_file():
        return rescore_sweep(run, out, rows, judge, on_progress, settings_note)
    settings, old_summaries, shown = read_summary(folder, "mwe rescore")

    result = Rescored({}, [], earlier_usage=read_usage(folder.usage, "evaluate"))
    new_rows, _ = reread(rows, str(folder.rows), judge, on_progress, result)
    runs = _runs(new_rows, old_summaries, shown)
    result.summaries = [s for r in runs for s in r.summaries]
    score = dict(settings.get("score") or {"method": "text"})
    score.pop("judge", None)
    if judge is not None:
        score["judge"] = judge.spec
    settings["score"] = score
    settings["rescore"] = note(run, judge, settings_note)
    result.paths = write_outputs(out, runs, settings)
    return result


def _runs(rows: Sequence[ScoredRow], summaries: list[Any], at: At) -> list[ModelRun]:
    """The rows and summaries per model, in the run's order (as evaluate hands them to
    write_outputs); a summary of text rows made again from the new rows, others kept."""
    runs: dict[str, ModelRun] = {}
    for row in rows:
        runs.setdefault(row.model, ModelRun(row.model)).held.append(row)
    for i, obj in enumerate(summaries):
        s = SummaryRow.from_dict(obj, at.on(None))
        run = runs.setdefault(s.model, ModelRun(s.model))
        run.summaries.append(summary_again(s, run.held, at, f"summary[{i}]"))
    return list(runs.values())
