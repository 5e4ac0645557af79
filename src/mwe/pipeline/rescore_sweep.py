"""`mwe rescore SWEEP`: a finished `mwe sweep --score text` folder read again as
mwe.pipeline.rescore reads an evaluate folder, then written by the sweep's own writer.

The series, the datasets, the format and the text settings come back from sweep.json (what
`write_sweep` recorded of them); the rows from rows.jsonl, each with its model's label. The
text rows and each (model, dataset) summary are made again exactly as the sweep makes them,
and `write_sweep` makes results, trends, agreement and reversals from them, so a rescore that
reads every reply as before writes rows.jsonl and results.csv byte for byte as they were.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mwe.checks import At
from mwe.cost import read_usage
from mwe.errors import DataError
from mwe.judge import Judge
from mwe.pipeline.evaluate import ModelRun
from mwe.pipeline.replies import TextScoring
from mwe.pipeline.rescore_rows import Rescored, note, reread, summary_again
from mwe.pipeline.sweep import AXES, write_sweep
from mwe.records import Dataset, Item
from mwe.report.jsonfile import load_json
from mwe.results import ScoredRow, SummaryRow
from mwe.run_folder import SWEEP_JSON, ResultsFolder
from mwe.series import Series, SeriesModel


def rescore_sweep(run: Path, out: Path, rows: Sequence[tuple[int, ScoredRow]],
                  judge: Judge | None = None,
                  on_progress: Callable[[int], None] | None = None,
                  settings_note: dict[str, Any] | None = None) -> Rescored:
    """Re-read the sweep in `run` (its `rows`, read by mwe.pipeline.rescore.read_rows) and
    write the sweep's files to `out`."""
    folder = ResultsFolder(run)
    at = At(str(run / SWEEP_JSON), word="found", show="kind")
    sweep = at.mapping(load_json(run / SWEEP_JSON), None)
    fmt = at.string(sweep.get("format"), "format")
    text = scoring(at, sweep.get("score"), judge)
    series = series_of(at, sweep)
    results = at.listing(sweep.get("results"), "results")

    result = Rescored({}, [], earlier_usage=read_usage(folder.usage, "evaluate"))
    new_rows, asked = reread(rows, str(folder.rows), judge, on_progress, result)
    labels = [m.label for m in series.models]
    runs = {label: ModelRun(m.model) for label, m in zip(labels, series.models)}
    for (line, _), row in zip(rows, new_rows):
        if row.label not in runs:
            raise DataError(str(folder.rows), line, "label",
                            f"{row.label!r} is none of the sweep's models ({', '.join(labels)}; "
                            f"{at.path})")
        runs[row.label].held.append(row)
    for i, obj in enumerate(results):
        where = f"results[{i}]"
        obj = at.mapping(obj, where)
        label = obj.get("label")
        if label not in runs:
            raise at.error(f"{where}.label", f"{label!r} is none of the sweep's models")
        s = SummaryRow.from_dict({k: v for k, v in obj.items() if k not in ("label", *AXES)},
                                 at)
        runs[label].summaries.append(summary_again(s, runs[label].held, at, where))

    datasets = datasets_of(at, sweep, [r for _, r in rows if r.get("score") == "text"], asked)
    _, trends, done = write_sweep(series, datasets, fmt, out, list(runs.values()), text,
                                  rescore=note(run, judge, settings_note))
    result.summaries = [s for r in done for s in r.summaries]
    result.trends = trends
    result.paths = {"rows": ResultsFolder(out).rows, "results": out / "results.csv",
                    "trends": out / "trends.csv", "agreement": out / "agreement.csv",
                    "reversals": out / "reversals.csv", "sweep_json": out / SWEEP_JSON}
    return result


def scoring(at: At, score: Any, judge: Judge | None) -> TextScoring:
    """The sweep's text settings (sweep.json `score`), with the rescore's judge (or none)."""
    score = at.mapping(score, "score", "an object (a --score text sweep's settings)")
    if score.get("method") != "text":
        raise at.expected("score.method", "'text' (a --score text sweep)", score.get("method"))
    return TextScoring(max_tokens=at.integer(score.get("max_tokens"), "score.max_tokens", low=1),
                       temperature=float(at.number(score.get("temperature"),
                                                   "score.temperature", low=0)),
                       samples=at.integer(score.get("samples"), "score.samples", low=1),
                       judge=judge)


def series_of(at: At, sweep: dict[str, Any]) -> Series:
    """The series as write_sweep recorded it: each model's string, label and axes."""
    models = []
    for i, obj in enumerate(at.listing(sweep.get("models"), "models")):
        where = f"models[{i}]"
        m = at.mapping(obj, where)
        nums = {k: None if m.get(k) is None else float(at.number(m[k], f"{where}.{k}"))
                for k in ("params", "step")}
        texts = {k: None if m.get(k) is None else at.string(m[k], f"{where}.{k}")
                 for k in ("tuning", "model_family", "quantization")}
        models.append(SeriesModel(at.string(m.get("model"), f"{where}.model"),
                                  at.string(m.get("label"), f"{where}.label"),
                                  nums["params"], nums["step"], texts["tuning"],
                                  texts["model_family"], texts["quantization"]))
    if not models:
        raise at.error("models", "expected the sweep's models, found none")
    return Series(at.string(sweep.get("series"), "series"), tuple(models))


def datasets_of(at: At, sweep: dict[str, Any], text: Sequence[ScoredRow],
                asked: Sequence[Item]) -> list[Dataset]:
    """The sweep's datasets (name, path, family) with the questions its rows asked, which
    must be as many as it recorded."""
    items: dict[str, dict[tuple[int, Any], Item]] = {}
    for row, item in zip(text, asked):
        items.setdefault(row.dataset, {}).setdefault((item.line, item.order), item)
    out = []
    for i, obj in enumerate(at.listing(sweep.get("datasets"), "datasets")):
        where = f"datasets[{i}]"
        d = at.mapping(obj, where)
        name = at.string(d.get("name"), f"{where}.name")
        n = at.integer(d.get("n"), f"{where}.n", low=0)
        mine = tuple(items.get(name, {}).values())
        if len(mine) != n:
            raise at.error(f"{where}.n", f"{n} questions of {name}, but rows.jsonl holds "
                           f"{len(mine)} (not the rows this sweep wrote?)")
        out.append(Dataset(name, at.string(d.get("path"), f"{where}.path"),
                           at.string(d.get("family"), f"{where}.family"), mine))
    return out
