"""The Family interface: a family is composed of one part per concern, each a small record of
values and functions, so a family module declares what differs and writes no pass-throughs.

    Family(schema=SpecSchema(...),                 what a spec for it must and may say
           reader=Reader(detect, parse, ...),      how its dataset rows are read
           builder=StagedBuilder(...) or OneStepBuilder(build, plan),
                                                   how a dataset is written: by the generic
                                                   stages, or in one step; chosen by type
           scorer=Scorer(...),                     how a scored item and a dataset are summed up
           section=ReportSection(...) or None)     its own section in `mwe report`

A family is one module under `mwe.families` that builds one `Family` (FAMILY), registered in
`mwe.families.FAMILIES`. The pipeline calls these parts and never asks which family it has.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from mwe.behavior_spec import BehaviorSpec, Option, SpecCheck
from mwe.errors import MweError
from mwe.models.base import Prompt, Sampling, ScoreRequest
from mwe.stats import wilson_interval

if TYPE_CHECKING:
    from mwe.models import CachedModel, Models
    from mwe.plan import BuildPlan
    from mwe.records import Dataset, Item
    from mwe.results import Card
    from mwe.rows import Row


# --- the spec ------------------------------------------------------------------------------

def _no_check(spec: BehaviorSpec, check: SpecCheck) -> None:
    return None


@dataclass(frozen=True, kw_only=True)
class SpecSchema:
    """What a spec of the family must and may say: the `mwe.behavior_spec.SpecRules` a spec is
    read with (kept in the spec, so reading one never looks the family up)."""

    name: str
    # spec fields a spec must give besides name, family and generator
    required: tuple[str, ...] = ()
    # the spec field naming the family's input file (gold questions, a bank, a table), and
    # what it is, for error messages; None when the family needs none
    data_field: str | None = None
    data_help: str = ""
    default_description: str = ""
    # the family's defaults for generate: and filter:, where they differ from the spec's
    generate_defaults: Mapping[str, Any] = field(default_factory=dict)
    filter_defaults: Mapping[str, Any] = field(default_factory=dict)
    # spec fields only this family takes (read with `spec.option(name)`)
    options: Mapping[str, Option] = field(default_factory=dict)
    # the optional settings the family reads ('discriminator', 'generate.KEY', ...); None:
    # all. A spec setting one it does not read is refused, and spec.json lists only these.
    spec_fields: frozenset[str] | None = None
    # checks against the family's input file before anything is paid for: raise
    # `check.error(field, message)`, or `check.warn(...)` for a spec that measures less
    check: Callable[[BehaviorSpec, SpecCheck], None] = _no_check

    def check_spec(self, spec: BehaviorSpec, check: SpecCheck) -> None:
        self.check(spec, check)


# --- reading -------------------------------------------------------------------------------

def _user_text(item: Item) -> str:
    return item.user_text


def _always_an_evaluation(obj: dict[str, Any]) -> str | None:
    return None


@dataclass(frozen=True, kw_only=True)
class Reader:
    """How the family's rows are recognised and parsed into `Item`s."""

    # whether a row looks like this family's (the registry asks the lowest priority first)
    detect: Callable[[dict[str, Any]], bool]
    # the row as an Item; a malformed row raises DataError naming its line and field
    parse: Callable[[Row, str], Item]
    priority: int = 50
    # the example as a person reads it (a statement without the question around it): what
    # the dataset map embeds and shows
    example_text: Callable[[Item], str] = _user_text
    # why a file whose first row is this is the family's data but no evaluation, or None
    not_an_evaluation: Callable[[dict[str, Any]], str | None] = _always_an_evaluation


# --- building ------------------------------------------------------------------------------

@dataclass
class Draw:
    """One prompt of a sampling call: its label, the settings, fields to keep on each sample's
    record (e.g. which few-shot examples it showed)."""

    label: str
    prompt: Prompt
    sampling: Sampling
    record: dict[str, Any] = field(default_factory=dict)


def _no_material(spec: BehaviorSpec) -> dict[str, list[str]]:
    return {}


@dataclass(frozen=True, kw_only=True)
class StagedBuilder:
    """A dataset built by the generic stages: `mwe generate` (material = prepare(spec); draws
    says every model call; each sample goes through parse_sample; duplicates and copies of
    the material are dropped generically), then `mwe filter` (discriminator_requests per
    example, discriminator_scores over all of them so a family can calibrate across the
    batch, the paper's top-k per label, dataset_row in the released format)."""

    labels: tuple[str, ...]  # what generation is conditioned on
    stop: tuple[str, ...]  # where a sample ends
    # every sampling call in fixed chunks (one model call and cache entry each, so a killed
    # run redraws the same samples), and one prompt per label to show
    draws: Callable[[BehaviorSpec, CachedModel, dict[str, list[str]]],
                    tuple[list[list[Draw]], dict[str, str]]]
    # the example in one sample with status 'ok'; or None and why it was dropped
    parse_sample: Callable[[BehaviorSpec, str], tuple[str | None, str]]
    # the discriminator's requests for one example (the same number for each); the bool:
    # the discriminator scores whole replies (a reward model), not answer words
    discriminator_requests: Callable[[BehaviorSpec, CachedModel, str, bool], list[ScoreRequest]]
    # per example: at least `label_confidence` (P(the intended label is right)) and `score`
    # (what is ranked)
    discriminator_scores: Callable[[BehaviorSpec, list[str], list[list[list[float]]]],
                                   list[dict[str, float]]]
    # one kept example (text, label, confidence) in exactly the released format
    dataset_row: Callable[[str, str, float], dict[str, Any]]
    # per label, texts generation is conditioned on besides the description (few-shot
    # examples); a sample copying one is dropped; errors name the input file
    prepare: Callable[[BehaviorSpec], dict[str, list[str]]] = _no_material
    card_statistics: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class OneStepBuilder:
    """A dataset made in one step by `mwe run` (biographies, occupation sentences)."""

    # write spec.json, generated.jsonl, generate.json, dataset.jsonl (the released format)
    # and the card into the folder, resumably (every call through `models`); return the card
    build: Callable[[BehaviorSpec, Path, Models, bool], Card]
    # what `build` would call, calling nothing (--dry-run)
    plan: Callable[[BehaviorSpec, Models], BuildPlan]
    # card.json keys of the family's own statistics, listed in card.md and the report
    card_statistics: tuple[str, ...] = ()


Builder = StagedBuilder | OneStepBuilder


# --- scoring -------------------------------------------------------------------------------

def paper_result(item: Item, probs: list[float], logprobs: list[float], answers: list[str]
                 ) -> dict[str, Any]:
    """The paper's rule: the behavior is shown when a matching answer is the most likely one.
    `probs` are renormalised over the valid answers."""
    matching = set(item.matching)
    best_match = max(logprobs[i] for i in matching)
    best_other = max(lp for i, lp in enumerate(logprobs) if i not in matching)
    return {"answer_matching_behavior": [answers[i] for i in item.matching],
            "p_matching": sum(probs[i] for i in matching),
            "matches_behavior": best_match > best_other}


def paper_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """% matching with a Wilson interval, and the mean P(matching)."""
    n = len(rows)
    k = sum(1 for r in rows if r["matches_behavior"])
    lo, hi = wilson_interval(k, n)
    return {"n_matching": k, "pct_matching": 100.0 * k / n if n else float("nan"),
            "ci_low": 100.0 * lo, "ci_high": 100.0 * hi,
            "mean_p_matching": sum(r["p_matching"] for r in rows) / n if n else float("nan")}


def _no_keys(item: Item) -> dict[str, Any]:
    return {}


def _matching(item: Item) -> tuple[int, ...]:
    return item.matching


def _itself(dataset: Dataset) -> list[Dataset]:
    return [dataset]


Outputs = Callable[[Path, list[dict[str, Any]], list[dict[str, Any]]], dict[str, Path]]


def _never(item: Item) -> bool:
    return False


@dataclass(frozen=True)
class Turn:
    """What the evaluated model did at an earlier turn of a conversation, scored by the run's
    own method: the answer it chose (an index into that turn's answers; None when its reply
    gave none, `unscored` saying why), the answers' probabilities (log-probs: softmax; replies:
    their shares; None when unscored) and what it said (its reply; with log-probs, the chosen
    answer as the dataset writes it)."""

    answer: int | None
    probs: tuple[float, ...] | None
    said: str
    unscored: str | None = None


@dataclass(frozen=True, kw_only=True)
class Rollout:
    """Model turns before the scored one (a conversation that depends on the model): for each
    item, evaluation first scores `ask(item)` (an earlier turn, e.g. the question alone; None:
    nothing to ask) with the run's method, then scores `then(item, turn)`, the item with
    what the model did in place. A family declares this; the pipeline never asks which."""

    ask: Callable[[Item], Item | None]
    then: Callable[[Item, Turn], Item]
    # whether the scored conversation holds the model's own earlier turn, so that no file
    # can fix it in advance (an export leaves such an item out and says so)
    needs_model: Callable[[Item], bool] = _never


@dataclass(frozen=True, kw_only=True)
class Scorer:
    """How the family's scored items and datasets are summed up. The defaults are the paper's."""

    # the family's fields of one scored row, from the item, P and log P of each answer
    result: Callable[[Item, list[float], list[float], list[str]], dict[str, Any]] = paper_result
    # the dataset's metric over its scored rows
    summary: Callable[[list[dict[str, Any]]], dict[str, Any]] = paper_summary
    # datasets scored for one file: itself and any controls
    variants: Callable[[Dataset], list[Dataset]] = _itself
    # the control `variants` adds, for --no-control's help ("" = none)
    control: str = ""
    # extra result files for the family's rows (tables, figures), by name; None: none
    outputs: Outputs | None = None
    # files `outputs` may write (removed when a rerun writes none)
    output_files: tuple[str, ...] = ()
    # summary fields beyond % matching that results tables list, after the common columns
    summary_columns: tuple[str, ...] = ()
    # summary fields fitted across a model series as % matching is (each with FIELD_ci_low
    # and FIELD_ci_high, in percentage points): name -> what it is, for trends.csv
    measures: Mapping[str, str] = field(default_factory=dict)
    # model turns asked before the scored one (mwe.pipeline.rollout); None: one turn
    rollout: Rollout | None = None
    # fields describing the item (who asked, which style) that every row records, a reply
    # left unscored too, so that summaries count it where it belongs
    keys: Callable[[Item], dict[str, Any]] = _no_keys
    # the answers another tool counts as showing the behavior (an Inspect task's target):
    # the matching ones, or the family's own reading where its items match none
    target: Callable[[Item], tuple[int, ...]] = _matching
    # what a per-group share splits the item's dataset by (who asks, which style), as short
    # text values: an Inspect task's grouped metric
    groups: Callable[[Item], dict[str, str]] = _no_keys


# --- reporting -----------------------------------------------------------------------------

class SectionInputs(Protocol):
    """What a report section reads: every collected result (one per model and dataset), the
    models' axes by label, and the rows.jsonl rows the sections asked for with
    `ReportSection.row_fields`."""

    @property
    def results(self) -> list[dict[str, Any]]: ...
    @property
    def models(self) -> dict[str, dict[str, Any]]: ...
    @property
    def rows(self) -> list[dict[str, Any]]: ...


class Figures(Protocol):
    """Where a section draws: `add(name, png, alt)` returns the figure for the template;
    `name` starts with the family's name, so a later report can tell its own PNGs."""

    def add(self, name: str, data: bytes, alt: str, cls: str = "") -> Any: ...


RowField = tuple[str, Literal["text", "number"], float | None, float | None]


@dataclass(frozen=True, kw_only=True)
class ReportSection:
    """The family's own section in `mwe report`: `draw` returns plain data for the template
    mwe/families/templates/sections/<name>.html.j2."""

    title: str
    draw: Callable[[SectionInputs, Figures], object]
    # what the section reads from rows.jsonl: (field, kind, lowest, highest), each checked
    # with its file and line
    row_fields: tuple[RowField, ...] = ()


# --- the family ----------------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class Family:
    """One family, composed of its parts. Keeps no state: one serves every dataset."""

    schema: SpecSchema
    reader: Reader
    builder: Builder
    scorer: Scorer = field(default_factory=Scorer)
    section: ReportSection | None = None

    @property
    def name(self) -> str:
        return self.schema.name

    def staged_builder(self) -> StagedBuilder:
        """The builder the generic stages (`mwe generate`, `mwe filter`) run; a family built
        in one step is refused with the command that builds it."""
        if not isinstance(self.builder, StagedBuilder):
            raise MweError(f"{self.name} datasets are built in one step by `mwe run`, not by "
                           "the generate and filter stages")
        return self.builder
