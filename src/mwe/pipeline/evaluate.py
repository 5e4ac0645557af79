"""Evaluate: score every answer of every question, then summarise per model and dataset.

Outputs in the run folder (each written atomically):
    rows.jsonl     one line per (model, question): log-probs of all answers, P(matching), ...
    summary.csv    one line per (model, dataset): % matching with a 95% Wilson CI, ...
    summary.json   the same, plus the run's settings
    .mwe-outputs.json  the files above that mwe wrote (mwe.io.MANIFEST): a rerun replaces or
                   removes only those, and refuses a folder where it would replace others

Memory stays flat in the number of datasets: `evaluate_models` spools each model's rows to an
unnamed temporary file as each dataset is scored (mwe.io.JsonlSpool) and rows.jsonl is copied
from the spools; only per-dataset summaries, and the rows of the families that write their
own tables from them (Family.output_files), stay in memory.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from mwe import prompts
from mwe.errors import MweError
from mwe.families import FAMILIES, Dataset, Item, by_name, output_files
from mwe.io import JsonlSpool, claim_outputs, write_csv, write_json, write_jsonl_parts
from mwe.models import CachedModel
from mwe.orders import ORDER_COLUMNS, order_summary, with_orders
from mwe.pipeline.methods import METHOD_FILES, write_methods
from mwe.pipeline.replies import Replied, TextScoring, ask, log_probs, text_prompt, text_summary
from mwe.pipeline.rollout import earlier, has_rollout, roll_out
from mwe.results import PlanRow, ScoredRow, SummaryRow
from mwe.run_folder import ROWS, SUMMARY_CSV, SUMMARY_JSON, USAGE, ResultsFolder
from mwe.stats import softmax

# every results table's columns; the r columns came before families could add their own
# (Family.summary_columns) and stay, so that files keep their layout
SUMMARY_COLUMNS = [
    "model", "dataset", "family", "format", "n", "n_matching", "pct_matching",
    "ci_low", "ci_high", "mean_p_matching", "mean_valid_mass",
    "pearson_r", "r_ci_low", "r_ci_high", "mean_p_female_minus_male",
]


# a run scored by the replies adds both denominators (its unscored reasons: summary.json)
TEXT_COLUMNS = ["n_scored", "n_unscored", "pct_matching_all", "all_ci_low", "all_ci_high"]


def summary_columns(summaries: Sequence[SummaryRow]) -> list[str]:
    """The common columns, then each family's own where the run holds its datasets, then
    free-text scoring's where it was used."""
    present = {s.family for s in summaries}
    text = TEXT_COLUMNS if any(s.get("n_scored") is not None for s in summaries) else []
    # --orders all and --score text: position and Yes shares (mwe.orders), where present
    order = [c for c in ORDER_COLUMNS if any(s.get(c) is not None for s in summaries)]
    return SUMMARY_COLUMNS + [c for f in FAMILIES if f.name in present
                              for c in f.scorer.summary_columns
                              if c not in SUMMARY_COLUMNS] + text + order


# the families whose `outputs` read rows (each only its own family's): their rows stay in
# memory when a run spools the others
OUTPUT_FAMILIES = frozenset(f.name for f in FAMILIES if f.scorer.output_files)


@dataclass
class ModelRun:
    """One model's scored rows and per-dataset summaries. Without a spool `held` is every row
    (evaluate_model's default: a Ray worker sends them back); with one, the rows are on disk
    and `held` keeps only those of OUTPUT_FAMILIES, for the families' own files."""

    spec: str
    held: list[ScoredRow] = field(default_factory=list)
    summaries: list[SummaryRow] = field(default_factory=list)
    cached_rows: int = 0
    computed_rows: int = 0
    seconds: float = 0.0
    spool: JsonlSpool | None = None

    @property
    def rows(self) -> list[dict[str, Any]]:
        """Every row in order as rows.jsonl holds it (what a Ray worker sends back, and what
        is compared); from a spool all read back at once (small runs, checks)."""
        return [r.to_dict() for r in self.held] if self.spool is None else list(self.spool)

    def iter_rows(self) -> Iterator[ScoredRow]:
        """Every row in order, one at a time from a spool."""
        if self.spool is None:
            return iter(self.held)
        return (ScoredRow.from_dict(d) for d in self.spool)

    def add(self, rows: list[ScoredRow]) -> None:
        """One dataset's rows: held, or spooled and held where a family's files need them."""
        if self.spool is None:
            self.held.extend(rows)
        else:
            self.spool.extend(r.to_dict() for r in rows)
            self.held.extend(r for r in rows if r.family in OUTPUT_FAMILIES)

    def extra_rows(self) -> list[dict[str, Any]]:
        """The rows the families' extra files are made from, as the families read them."""
        return [r.to_dict() for r in self.held if r.family in OUTPUT_FAMILIES]

    def rows_part(self) -> JsonlSpool | list[dict[str, Any]]:
        """What rows.jsonl is written from (mwe.io.write_jsonl_parts)."""
        return self.rows if self.spool is None else self.spool


def scored_row(model: str, fmt: str, item: Item, logprobs: list[float], conts: list[str],
               reward: bool = False) -> ScoredRow:
    """One scored row: what every family records, then the family's own fields. Rewards are
    not log-probs: they can be large and positive (exp would overflow), and there is no
    probability mass to speak of."""
    own = ordered(item, by_name(item.family).scorer.result(item, softmax(logprobs), logprobs,
                                                           conts))
    return ScoredRow(model, fmt, item.dataset, item.family, item.source, item.line,
                     tuple(conts), tuple(logprobs),
                     None if reward else sum(math.exp(lp) for lp in logprobs), own)


def replied_row(model: str, fmt: str, item: Item, replied: Replied) -> ScoredRow:
    """One question answered freely (`--score text`): the replies as read, then, when any was
    scored, the family's own fields from the share of replies giving each answer. No
    log-probs: the row's are null."""
    scorer = by_name(item.family).scorer
    own = {**scorer.keys(item), **replied.fields}
    if replied.probs is not None:
        own.update(scorer.result(item, replied.probs,
                                                      log_probs(replied.probs),
                                                      list(item.answers)))
    return ScoredRow(model, fmt, item.dataset, item.family, item.source, item.line,
                     tuple(item.answers), None, None, ordered(item, own))


def ordered(item: Item, own: dict[str, Any]) -> dict[str, Any]:
    """A row's own fields, led by its options' `order` under --orders all (mwe.orders)."""
    return own if item.order is None else {"order": item.order, **own}


def summarise(spec: str, fmt: str, dataset: Dataset, rows: Sequence[ScoredRow]) -> SummaryRow:
    """One model on one dataset: the mean valid mass, then the family's measures (over the
    scored rows; with free-text scoring, both denominators after them)."""
    masses = [r.valid_mass for r in rows if r.valid_mass is not None]
    texts = [r.to_dict() for r in rows]
    scored = [r for r in texts if r.get("unscored") is None]
    own = by_name(dataset.family).scorer.summary(scored)
    if any(r.get("score") == "text" for r in texts):
        own = {**own, **text_summary(texts)}
    own = {**own, **order_summary(texts)}  # position and Yes shares (mwe.orders), if asked
    return SummaryRow(spec, dataset.name, dataset.family, fmt, len(rows),
                      sum(masses) / len(masses) if masses else float("nan"), own)


def with_variants(datasets: list[Dataset]) -> list[Dataset]:
    """Every dataset followed by the variants its family scores with it (controls)."""
    return [v for d in datasets for v in by_name(d.family).scorer.variants(d)]


def select(datasets: list[Dataset], limit: int | None = None, control: bool = True,
           orders: str = "given") -> list[Dataset]:
    """What evaluate and sweep score: the first `limit` rows of each dataset, with `control`
    the variants each family scores beside it, and with `orders` "all" every item in each
    cyclic order of its options (mwe.orders; controls too)."""
    if limit:
        datasets = [Dataset(d.name, d.path, d.family, d.items[:limit]) for d in datasets]
    datasets = with_variants(datasets) if control else datasets
    return with_orders(datasets) if orders == "all" else datasets


def requests_for(model: CachedModel, ds: Dataset, fmt: str
                 ) -> list[tuple[prompts.Prompt, list[str]]]:
    """What a model scores for one dataset: each question's context and its answers."""
    chat = model.chat if fmt == "chat" else None
    contexts = [prompts.context(item, fmt, chat) for item in ds.items]
    return [(c, [prompts.continuation(a, c) for a in item.answers])
            for item, c in zip(ds.items, contexts)]


def plan(models: Sequence[tuple[str, CachedModel]], datasets: list[Dataset], fmt: str,
         text: TextScoring | None = None) -> list[PlanRow]:
    """Per model, before any call: how many calls evaluation makes, how many the cache holds,
    and the estimated tokens of the rest (what --dry-run prints); replies at most max_tokens
    each."""
    out = []
    for name, model in models:
        calls = cached = tokens = most = 0
        for ds in datasets:
            if has_rollout(ds):  # the earlier turns are asked first; the last turns depend
                ds = Dataset(ds.name, ds.path, ds.family,  # on them: counted as the first
                             tuple(q for _, q in earlier(ds)) + ds.items)
            if text is not None:
                chat = model.chat if fmt == "chat" else None
                n, c, t, m = model.plan_generate(
                    [text_prompt(item, fmt, chat) for item in ds.items], text.sampling(),
                    kind="reply")
            else:
                (n, c, t), m = model.plan_score(requests_for(model, ds, fmt)), 0
            calls, cached, tokens, most = calls + n, cached + c, tokens + t, most + m
        out.append(PlanRow("evaluate", name, model.spec, calls, cached, tokens, most))
    return out


def evaluate_model(
    model: CachedModel,
    datasets: list[Dataset],
    fmt: str,
    on_progress: Callable[[int], None] | None = None,
    spool: bool = False,
    text: TextScoring | None = None,
) -> ModelRun:
    """Score all datasets with one model, one dataset at a time (prompts share templates).
    With `spool`, each dataset's rows go to disk once summarised (see ModelRun); with `text`,
    by what the model says (mwe.pipeline.replies), not by log-probs."""
    run = ModelRun(model.spec, spool=JsonlSpool() if spool else None)
    for ds in datasets:
        ds = roll_out(model, ds, fmt, text)  # a conversation's earlier model turns, if any
        if text is not None:
            before = model.hits
            replied = ask(model, list(ds.items), fmt, text, on_progress)
            run.cached_rows += model.hits - before
            rows = [replied_row(model.spec, fmt, item, r) for item, r in zip(ds.items, replied)]
            run.summaries.append(summarise(model.spec, fmt, ds, rows))
            run.add(rows)
            continue
        requests = requests_for(model, ds, fmt)
        conts = [c for _, c in requests]
        before = model.hits
        scores = model.score(requests, on_progress=on_progress)
        run.cached_rows += model.hits - before
        rows = [scored_row(model.spec, fmt, item, lps, cs, model.rewards)
                for item, lps, cs in zip(ds.items, scores, conts)]
        run.summaries.append(summarise(model.spec, fmt, ds, rows))
        run.add(rows)
    run.computed_rows = sum(len(d.items) for d in datasets) - run.cached_rows
    return run


def evaluate_models(models: Sequence[tuple[str, CachedModel]], datasets: list[Dataset],
                    fmt: str, progress: bool = True,
                    on_done: Callable[[str, ModelRun], None] | None = None,
                    spool: bool = True, text: TextScoring | None = None) -> list[ModelRun]:
    """Every model over every dataset, one progress bar per model, each row labelled with the
    model's name; what `mwe evaluate`, `mwe run` and `mwe sweep` all do. Rows are spooled
    (evaluate_model) unless `spool` is False."""
    n_rows = sum(len(d.items) for d in datasets)
    runs = []
    for name, model in models:
        start = time.perf_counter()
        with tqdm(total=n_rows, desc=name, unit="row", disable=not progress, file=sys.stderr,
                  smoothing=0.1) as bar:
            run = evaluate_model(model, datasets, fmt, on_progress=bar.update, spool=spool,
                                 text=text)
        run.seconds = time.perf_counter() - start
        runs.append(run)
        if on_done is not None:
            on_done(name, run)
    return runs


def check_methods(models: Sequence[tuple[str, CachedModel]], score: str) -> list[str]:
    """The methods of `score`, refused where a model cannot be scored so; a model without
    log-probs asked for them is scored by sampling, as it always was, and that is said."""
    methods = score.split(",")
    for name, model in models:
        if "sample" in methods and model.scores_by != "sample":
            raise MweError(f"--score sample: {name} gives log-probs (score it with --score "
                           "logprob); sample is the method of a model without them "
                           "(anthropic:), whose answers are sampled")
        if "logprob" in methods and model.scores_by == "sample":
            print(f"{name}: no log-probs; its answers' probabilities are estimated from "
                  "sampled answers (the sample method)", file=sys.stderr)
    return methods


def evaluate_methods(models: Sequence[tuple[str, CachedModel]], datasets: list[Dataset],
                     fmt: str, score: str, progress: bool = True,
                     on_done: Callable[[str, ModelRun], None] | None = None,
                     text: TextScoring | None = None) -> list[ModelRun]:
    """`score` is one method or two ("logprob,text"): with two, every model scores every
    dataset both ways, log-probs first, each labelled "NAME (method)". `sample` is the
    method of a backend that estimates probabilities from sampled answers (anthropic:);
    `logprob` on one still samples, as it always has, and says so."""
    methods = check_methods(models, score)
    if text is None and "text" in methods:
        raise MweError("--score text needs its reply settings")  # a caller's mistake
    runs: list[ModelRun] = []
    for method in methods:
        labelled = [(f"{name} ({method})" if len(methods) > 1 else name, m)
                    for name, m in models]
        runs += evaluate_models(labelled, datasets, fmt, progress, on_done=on_done,
                                text=text if method == "text" else None)
    return runs


# written only when the rows call for them; removed from a reused folder when they do not
EXTRA_FILES = output_files()
# every file an evaluate folder may hold (usage.csv: written by the command after the results)
OUTPUT_FILES = (ROWS, SUMMARY_CSV, SUMMARY_JSON, USAGE, *EXTRA_FILES, *METHOD_FILES)


def write_extras(out: Path, rows: list[dict[str, Any]], summaries: list[dict[str, Any]]
                 ) -> dict[str, Path]:
    """Each family's own tables and figures for its rows."""
    paths: dict[str, Path] = {}
    for family in FAMILIES:
        if family.scorer.outputs is not None:
            paths.update(family.scorer.outputs(out, rows, summaries))
    return paths


def write_outputs(out: Path, runs: list[ModelRun], settings: dict[str, Any]) -> dict[str, Path]:
    """The run's files, replacing only what the folder's manifest lists as mwe's."""
    claim = claim_outputs(out, OUTPUT_FILES)
    claim.begin()
    summaries = [s.to_dict() for r in runs for s in r.summaries]
    folder = ResultsFolder(out)
    paths = {"rows": folder.rows, "summary_csv": folder.summary_csv,
             "summary_json": folder.summary_json}
    write_jsonl_parts(paths["rows"], [r.rows_part() for r in runs])
    write_csv(paths["summary_csv"], summaries,
              summary_columns([s for r in runs for s in r.summaries]))
    write_json(paths["summary_json"], {"settings": settings, "summary": summaries})
    # a family's tables read scored rows: an unscored reply has none of its fields
    extras = [row for r in runs for row in r.extra_rows() if row.get("unscored") is None]
    paths.update(write_extras(out, extras, summaries))
    # both scoring methods in one run (--score logprob,text): how often they agree
    texts = {any(s.get("n_scored") is not None for s in r.summaries) for r in runs}
    if texts == {True, False}:
        paths.update(write_methods(out, (row.to_dict() for r in runs for row in r.iter_rows())))
    claim.finish(paths.values())
    return paths
