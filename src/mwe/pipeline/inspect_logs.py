"""Inspect logs of an evaluation (`--inspect-log DIR` of evaluate and sweep) or of a finished
run folder (`mwe export RUN --to inspect-log`): each row with the item it scored and the
prompt the model saw, handed to mwe.inspect_log.

The prompts are made again exactly as evaluation made them (mwe.prompts, the run's format);
a conversation's earlier model turns (pushback) are asked through the cache, where the
evaluation left them, so a finished run's log never needs the model to compute anything it
did not compute then. The chat format loads the model's tokenizer for its template.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mwe import prompts
from mwe.checks import At
from mwe.datasets import load
from mwe.errors import MweError
from mwe.inspect_log import Logged, LogGroup, needs_inspect, write_logs
from mwe.io import claim_outputs
from mwe.models import CachedModel, Models
from mwe.pipeline.evaluate import ModelRun, select
from mwe.pipeline.replies import TextScoring, text_prompt
from mwe.pipeline.rescore import read_rows, read_summary
from mwe.pipeline.rollout import roll_out
from mwe.records import Dataset
from mwe.report.jsonfile import load_json
from mwe.results import SummaryRow
from mwe.run_folder import SPEC, SWEEP_JSON, ResultsFolder


@dataclass(frozen=True)
class Scored:
    """One run's rows (one model over the datasets) and how they were scored: the model, the
    method ("logprob", "sample" or "text") and the name its log gives the model."""

    run: ModelRun
    model: CachedModel
    method: str
    name: str


def scored_runs(runs: Sequence[ModelRun], models: Sequence[tuple[str, CachedModel]],
                methods: Sequence[str]) -> list[Scored]:
    """evaluate_methods' runs (per method, every model in turn) with what scored them; with
    two methods each name says which ("NAME (text)")."""
    how = [(name, model, m) for m in methods for name, model in models]
    if len(how) != len(runs):
        raise MweError(f"{len(runs)} runs for {len(how)} models and methods")
    return [Scored(run, model, m, f"{name} ({m})" if len(methods) > 1 else name)
            for run, (name, model, m) in zip(runs, how)]


def _prompts(scored: Scored, ds: Dataset, fmt: str, text: TextScoring | None
             ) -> tuple[Dataset, list[prompts.Prompt]]:
    model = scored.model
    by_text = scored.method == "text"
    ds = roll_out(model, ds, fmt, text if by_text else None)
    chat = model.chat if fmt == "chat" else None
    if by_text:
        return ds, [text_prompt(item, fmt, chat) for item in ds.items]
    return ds, [prompts.context(item, fmt, chat) for item in ds.items]


def groups(runs: Sequence[Scored], datasets: Sequence[Dataset], fmt: str,
           text: TextScoring | None = None) -> Iterator[LogGroup]:
    """One log per run and dataset, each row beside its item and prompt."""
    for how in runs:
        rows: dict[str, list[dict[str, Any]]] = {}
        for row in how.run.iter_rows():
            rows.setdefault(row.dataset, []).append(row.to_dict())
        summaries = {s.dataset: s.to_dict() for s in how.run.summaries}
        for ds in datasets:
            mine = rows.get(ds.name, [])
            if not mine:
                continue
            rolled, asked = _prompts(how, ds, fmt, text)
            if len(mine) != len(rolled.items):
                raise MweError(f"{how.name} on {ds.name}: {len(mine)} rows for "
                               f"{len(rolled.items)} questions (the data changed since?)")
            group = LogGroup(how.name, how.model.identity(), ds.name, ds.path, ds.family, fmt,
                             summaries.get(ds.name, {}))
            for got, item, prompt in zip(mine, rolled.items, asked):
                if got.get("line") != item.line or got.get("order") != item.order:
                    raise MweError(f"{how.name} on {ds.name}: a row of line {got.get('line')} "
                                   f"where line {item.line} was asked (the data changed "
                                   "since the run?)")
                group.samples.append(Logged(got, item, prompt))
            yield group


def write_run_logs(out: Path, runs: Sequence[Scored], datasets: Sequence[Dataset], fmt: str,
                   text: TextScoring | None, header: dict[str, Any]) -> list[Path]:
    """What --inspect-log writes once the evaluation is done: the folder is new, empty or
    an earlier one of mwe's (its manifest lists the logs a rerun replaces)."""
    claim = claim_outputs(out, None, "--inspect-log")
    written = write_logs(out, groups(runs, datasets, fmt, text), header)
    claim.finish(written, to="inspect-log")
    return written


# --- a finished run folder ----------------------------------------------------------------

def run_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """What a log's header records of a run: its settings (sweep.json: without the results,
    which the logs' own results give per model and dataset)."""
    return {k: v for k, v in settings.items()
            if k not in ("results", "trends", "agreement", "reversals")}


def sweep_header(out: Path) -> dict[str, Any]:
    """The header of a finished sweep's logs, from its sweep.json."""
    return {"settings": run_settings(load_json(out / SWEEP_JSON))}


def _settings(folder: ResultsFolder) -> tuple[dict[str, Any], list[Any], At]:
    if (folder.path / SWEEP_JSON).is_file():
        at = At(str(folder.path / SWEEP_JSON), word="found", show="kind")
        sweep = at.mapping(load_json(folder.path / SWEEP_JSON), None)
        return sweep, [], at
    return read_summary(folder, "--to inspect-log")


def _datasets(settings: dict[str, Any], at: At) -> list[Dataset]:
    """The datasets the run scored, read again as it read them: the selection (row limit,
    controls, answer orders) whose names and question counts are the ones it recorded (a
    sweep's settings record no limit: it is found from the counts)."""
    recorded = [d for d in settings.get("datasets") or [] if isinstance(d, dict)]
    if not recorded:
        raise at.expected("datasets", "the run's datasets", settings.get("datasets"))
    paths = list(dict.fromkeys(str(d.get("path")) for d in recorded))
    found, skipped = load(paths)
    if skipped:
        raise MweError(f"{skipped[0].path}: {skipped[0].reason} (a run's dataset paths are "
                       "relative to where it was made: run this from there)")
    wanted = [(str(d.get("name")), d.get("n")) for d in recorded]
    given = settings.get("limit")
    limits = list(dict.fromkeys([given if isinstance(given, int) else None,
                                 *(n for _, n in wanted if isinstance(n, int)), None]))
    for limit in limits:
        for orders in ("given", "all"):
            for control in (True, False):
                chosen = select(found, limit, control=control, orders=orders)
                if [(d.name, len(d.items)) for d in chosen] == wanted:
                    return chosen
    raise MweError(f"{at.path}: the run's datasets ({', '.join(n for n, _ in wanted)}) are "
                   "not what their files give now (the data changed since the run?)")


def export_run_logs(run: Path, out: Path, store_path: Path) -> list[Path]:
    """Inspect logs of the finished evaluate or sweep folder `run`, in `out` (whose manifest
    the caller keeps): its rows, the prompts made again, its models opened over the cache
    (loaded only for the chat format or a conversation's earlier turns)."""
    from mwe.store import Store

    needs_inspect()
    folder = ResultsFolder(run)
    settings, summaries, at = _settings(folder)
    rows = read_rows(folder.rows)
    datasets = _datasets(settings, at)
    score = settings.get("score")
    score = score if isinstance(score, dict) else {}
    methods = str(score.get("method") or "logprob").split(",")
    text = None
    if "text" in methods:
        text = TextScoring(max_tokens=int(score.get("max_tokens", 256)),
                           temperature=float(score.get("temperature", 0.0)),
                           samples=int(score.get("samples", 1)))
    fmt = str(settings.get("format") or "human-assistant")
    sweep = "series" in settings
    if sweep:  # rows name a series' model by its label
        specs = {str(m.get("label")): str(m.get("model")) for m in settings.get("models") or []
                 if isinstance(m, dict)}
        results = [r for r in settings.get("results") or [] if isinstance(r, dict)]
    else:
        specs = {str(s): str(s) for s in settings.get("models") or []}
        results = summaries
    if any("***" in s for s in specs.values()):
        raise MweError(f"{at.path}: a model was recorded with its credentials redacted; it "
                       "cannot be opened again")
    other = next((m for m in methods if m != "text"), "text")
    runs: dict[tuple[str, str], ModelRun] = {}
    for _, row in rows:
        name = row.label if sweep and row.label is not None else row.model
        method = "text" if row.get("score") == "text" else other
        runs.setdefault((name, method), ModelRun(name)).held.append(row)
    for i, obj in enumerate(results):
        summary = SummaryRow.from_dict({k: v for k, v in obj.items() if k != "label"},
                                       at.on(None))
        name = str(obj.get("label")) if sweep else summary.model
        method = "text" if summary.get("n_scored") is not None else other
        if (name, method) not in runs:
            raise at.error(f"summary[{i}]", f"no rows of {name} in {folder.rows}")
        runs[(name, method)].summaries.append(summary)
    models = Models(Store(store_path))
    opened: dict[str, CachedModel] = {}
    scored = []
    for (name, method), r in runs.items():
        if name not in specs:
            raise MweError(f"{folder.rows}: rows of {name!r}, which the run's settings do not "
                           "list as a model")
        if name not in opened:
            opened[name] = models.open(specs[name])
        model = opened[name]
        shown = f"{name} ({method})" if len(methods) > 1 else name
        scored.append(Scored(r, model, method, shown))
    header: dict[str, Any] = {"settings": run_settings(settings)}
    spec_path = run.parent / SPEC
    if spec_path.is_file():
        header["spec"] = load_json(spec_path)
    return write_logs(out, groups(scored, datasets, fmt, text), header)
