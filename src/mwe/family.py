"""The Family interface, the record every family turns a dataset row into, and checks shared
by the families.

A family is one module under `mwe.families` with one `Family` subclass, registered in
`mwe.families.FAMILIES`. Everything that differs between families lives there; the pipeline
calls these methods and never asks which family it has.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from mwe.behavior_spec import BehaviorSpec, Option, SpecCheck
from mwe.errors import DataError
from mwe.models.base import Prompt, Sampling, ScoreRequest
from mwe.stats import wilson_interval

if TYPE_CHECKING:
    from mwe.models import CachedModel, Models


@dataclass(frozen=True)
class Item:
    """One evaluation question, family-neutral, ready to be put in a prompt format."""

    dataset: str
    family: str
    source: str
    line: int
    raw_text: str  # the prompt for the `raw` format: the dataset's text as is
    user_text: str  # the user's turn for `human-assistant` and `chat`
    answers: tuple[str, ...]  # every valid answer, spelled as the dataset writes them
    matching: tuple[int, ...]  # indices of answers that match the behavior
    assistant_prefix: str = ""  # words the assistant's turn starts with, if any
    meta: Mapping[str, Any] = field(default_factory=dict)


class Row:
    """A parsed JSON object with its location, for field access with located errors."""

    def __init__(self, obj: Any, path: str, line: int) -> None:
        if not isinstance(obj, dict):
            raise DataError(path, line, None, f"expected a JSON object, got {type(obj).__name__}")
        self.obj: dict[str, Any] = obj
        self.path = path
        self.line = line

    def error(self, field_name: str | None, message: str) -> DataError:
        return DataError(self.path, self.line, field_name, message)

    def has(self, name: str) -> bool:
        return name in self.obj

    def string(self, name: str, required: bool = True, nonempty: bool = True) -> str:
        if name not in self.obj:
            if required:
                raise self.error(name, "missing")
            return ""
        value = self.obj[name]
        if not isinstance(value, str):
            raise self.error(name, f"expected a string, got {_kind(value)}")
        if nonempty and not value.strip():
            raise self.error(name, "is empty")
        return value

    def number(self, name: str, required: bool = True) -> float | None:
        if name not in self.obj:
            if required:
                raise self.error(name, "missing")
            return None
        value = self.obj[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(name, f"expected a number, got {_kind(value)}")
        return float(value)

    def str_or_list(self, name: str) -> list[str]:
        if name not in self.obj:
            raise self.error(name, "missing")
        value = self.obj[name]
        if isinstance(value, str):
            values = [value]
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            values = list(value)
        else:
            raise self.error(name, f"expected a string or a list of strings, got {_kind(value)}")
        if any(not v.strip() for v in values):
            raise self.error(name, "is empty")
        return values


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", bool: "a boolean", str: "a string"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )


# the letters an answer may have, ' (A)' to ' (Z)': a family that letters its own choices
# must stop there (its datasets would not read back)
ANSWER_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_CHOICE = re.compile(rf"^\s*\(([{ANSWER_LETTERS}])\)", re.MULTILINE)
_LETTER = re.compile(rf"^\s*\(([{ANSWER_LETTERS}])\)\s*$")


def choice_letters(question: str) -> list[str]:
    """Letters of the '(A) ...' options listed in a multiple-choice question, in order."""
    return list(dict.fromkeys(_CHOICE.findall(question)))


def letter_of(row: Row, field_name: str, answer: str) -> str:
    m = _LETTER.match(answer)
    if not m:
        raise row.error(field_name, f"expected an answer letter such as ' (A)', got {answer!r}")
    return m.group(1)


def multiple_choice(
    row: Row, question: str, matching: list[str], not_matching: list[str]
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """All options of the question as answers, styled like the dataset's own answers."""
    letters = choice_letters(question)
    style = matching[0]
    lead = style[: len(style) - len(style.lstrip())]
    answers = tuple(f"{lead}({x})" for x in letters)
    seen = set()
    for field_name, values in (
        ("answer_matching_behavior", matching),
        ("answer_not_matching_behavior", not_matching),
    ):
        for v in values:
            letter = letter_of(row, field_name, v)
            if letter not in letters:
                raise row.error(
                    field_name,
                    f"answer {v.strip()} is not among the question's choices "
                    f"({', '.join('(' + x + ')' for x in letters) or 'none found'})",
                )
            if letter in seen:
                raise row.error(field_name, f"answer {v.strip()} is both matching and not matching")
            seen.add(letter)
    match_idx = tuple(letters.index(letter_of(row, "answer_matching_behavior", v)) for v in matching)
    return answers, match_idx


@dataclass
class Draw:
    """One prompt of a sampling call: its label, the settings, fields to keep on each sample's
    record (e.g. which few-shot examples it showed)."""

    label: str
    prompt: Prompt
    sampling: Sampling
    record: dict[str, Any] = field(default_factory=dict)


@dataclass
class BuildPlan:
    """What building a one-step family's dataset would call, worked out before any call (what
    --dry-run prints): the sampling calls exactly, later stages at most, since they depend on
    how many samples survive."""

    calls: list[dict[str, Any]]  # stage, model, spec, calls, cached, tokens_in, tokens_out
    rows: int  # at most this many rows reach each target model (controls included)
    row_tokens: int  # about this many tokens in one evaluation prompt
    notes: list[str] = field(default_factory=list)


def sampling_plan(stage: str, model: CachedModel,
                  calls: Sequence[tuple[Sequence[Prompt], Sampling]]) -> dict[str, Any]:
    """A --dry-run row for sampling calls: how many, how many the cache holds, the estimated
    input tokens and at most max_tokens out per sample of the rest."""
    n = cached = t_in = t_out = 0
    for prompts, sampling in calls:
        a, b, c, d = model.plan_generate(prompts, sampling)
        n, cached, t_in, t_out = n + a, cached + b, t_in + c, t_out + d
    return {"stage": stage, "model": model.spec, "spec": model.spec, "calls": n,
            "cached": cached, "tokens_in": t_in, "tokens_out": t_out}


@dataclass(frozen=True)
class Dataset:
    """One evaluation file (or a variant of it, such as a control), parsed."""

    name: str
    path: str
    family: str
    items: tuple[Item, ...]


def given(x: Any) -> bool:
    """A value a results file gives: summary.csv-era inputs write "" where JSON writes null."""
    return x not in (None, "")


def softmax(logprobs: Sequence[float]) -> list[float]:
    top = max(logprobs)
    exps = [math.exp(lp - top) for lp in logprobs]
    total = sum(exps)
    return [e / total for e in exps]


class Family(ABC):
    """What a family must say about itself: how its rows are read, how its datasets are
    scored and summarised, and what a spec for it needs (the `mwe.behavior_spec.SpecRules`
    a spec is read with).

    Implementations keep no state: one instance serves every dataset of the family.
    """

    name: ClassVar[str]
    # the spec field naming the family's input file (gold questions, a bank, a table), and
    # what it is, for error messages; None when the family needs none
    data_field: ClassVar[str | None] = None
    data_help: ClassVar[str] = ""
    # spec fields a spec of this family must give besides name, family and generator
    required: ClassVar[tuple[str, ...]] = ()
    default_description: ClassVar[str] = ""
    # the family's defaults for a spec's generate: and filter: settings, where they differ
    # from the spec's defaults (the paper's statement settings)
    generate_defaults: ClassVar[dict[str, Any]] = {}
    filter_defaults: ClassVar[dict[str, Any]] = {}
    # rows are offered to the families in this order: lower first, the most specific
    detect_priority: ClassVar[int] = 50
    # True: built by the generic stages (mwe generate, then mwe filter) from the steps below;
    # False: `build` makes the dataset in one step (mwe run)
    staged: ClassVar[bool] = True
    # files `outputs` may write into a results folder (removed when a rerun writes none)
    output_files: ClassVar[tuple[str, ...]] = ()
    # card.json keys of the family's own statistics, listed in card.md and the report's card
    card_statistics: ClassVar[tuple[str, ...]] = ()
    # the control condition `variants` adds to each file, for --no-control's help ("" = none)
    control: ClassVar[str] = ""
    # spec fields only this family takes, by name (read with `spec.option(name)`)
    options: ClassVar[dict[str, Option]] = {}
    # the optional spec settings the family reads: 'discriminator', 'instruction',
    # 'generate.KEY', 'filter.KEY'; None: all of them. A spec that sets one it does not read
    # is refused (a setting silently ignored runs another experiment than the one asked for),
    # and spec.json lists only these.
    spec_fields: ClassVar[frozenset[str] | None] = None
    # summary fields beyond % matching that results tables list (summary.csv, results.csv),
    # as columns after the common ones, in runs that hold this family's datasets
    summary_columns: ClassVar[tuple[str, ...]] = ()
    # summary fields fitted across a model series as % matching is (each with FIELD_ci_low
    # and FIELD_ci_high, in percentage points): name -> what it is, for trends.csv
    measures: ClassVar[dict[str, str]] = {}

    # --- reading ---------------------------------------------------------------------------

    @abstractmethod
    def detect(self, obj: dict[str, Any]) -> bool:
        """Whether a row looks like this family's (the registry asks the most specific first)."""

    def not_an_evaluation(self, obj: dict[str, Any]) -> str | None:
        """Why a file whose first row is `obj` is this family's data but no evaluation (it is
        skipped with that reason), or None."""
        return None

    @abstractmethod
    def parse(self, row: Row, dataset: str) -> Item:
        """The row as an Item; a malformed row raises DataError naming its line and field."""

    def example_text(self, item: Item) -> str:
        """The example itself, as a person reads it (a persona statement without the question
        around it): what the dataset map embeds and shows."""
        return item.user_text

    def check_spec(self, spec: BehaviorSpec, check: SpecCheck) -> None:
        """Checks of a spec against the family's input file, before anything is paid for
        (a count larger than a bank has): raise `check.error(field, message)`, or
        `check.warn(field, message)` for a spec that runs but will not measure everything."""
        return None  # nothing to check for most families

    # --- building ----------------------------------------------------------------------------

    def build(self, spec: BehaviorSpec, out: Path, models: Models, progress: bool = True
              ) -> dict[str, Any]:
        """For a family that is not `staged`: write spec.json, generated.jsonl,
        generate.json, dataset.jsonl (the released format) and the card into `out`, resumably
        (every model call through `models`, so cached); return the card."""
        raise NotImplementedError(f"{self.name} is built by the generic stages")

    def plan(self, spec: BehaviorSpec, models: Models) -> BuildPlan:
        """For a family that is not `staged`: what `build` would call, calling nothing."""
        raise NotImplementedError(f"{self.name} is built by the generic stages")

    # --- the generic stages' steps (staged families) ------------------------------------------
    # generate: material = prepare(spec); draws(...) says every model call; each sample goes
    # through parse_sample; duplicates (and copies of the material) are dropped generically.
    # filter: discriminator_requests per example, discriminator_scores over all of them (so a
    # family can calibrate across the batch), the paper's top-k selection per label, then
    # dataset_row writes each kept example in the released format.

    labels: ClassVar[tuple[str, ...]] = ()  # what generation is conditioned on
    stop: ClassVar[tuple[str, ...]] = ("\n",)  # where a sample ends

    def prepare(self, spec: BehaviorSpec) -> dict[str, list[str]]:
        """Per label, the texts generation is conditioned on besides the description (few-shot
        examples); a sample copying one of them is dropped. Errors name the input file."""
        return {}

    def draws(self, spec: BehaviorSpec, model: CachedModel, material: dict[str, list[str]]
              ) -> tuple[list[list[Draw]], dict[str, str]]:
        """Every sampling call, in fixed chunks (one model call and cache entry each, so a
        killed run redraws exactly the same samples), and one prompt per label to show."""
        raise NotImplementedError(f"{self.name} is not built by the generic stages")

    def parse_sample(self, spec: BehaviorSpec, sample: str) -> tuple[str | None, str]:
        """The example in one sample, with status 'ok'; or None and why it was dropped."""
        raise NotImplementedError(f"{self.name} is not built by the generic stages")

    def discriminator_requests(self, spec: BehaviorSpec, model: CachedModel, text: str,
                               reward: bool) -> list[ScoreRequest]:
        """The discriminator's score requests for one example (the same number for each).
        `reward`: the discriminator scores whole replies, not answer words."""
        raise NotImplementedError(f"{self.name} is not built by the generic stages")

    def discriminator_scores(self, spec: BehaviorSpec, labels: list[str],
                             logprobs: list[list[list[float]]]) -> list[dict[str, float]]:
        """Per example, from its requests' log-probs: at least `label_confidence` (the
        discriminator's P(the intended label is right)) and `score` (what is ranked)."""
        raise NotImplementedError(f"{self.name} is not built by the generic stages")

    def dataset_row(self, text: str, label: str, confidence: float) -> dict[str, Any]:
        """One kept example in exactly the released format of the family."""
        raise NotImplementedError(f"{self.name} is not built by the generic stages")

    # --- reporting -------------------------------------------------------------------------
    # A family with a `report_title` has its own section in `mwe report`, drawn by `report`
    # and shown by the template mwe/families/templates/sections/<name>.html.j2. Rows of
    # rows.jsonl reach it only when `report_row_fields` names what it reads from them
    # (field, "text" or "number", lowest, highest), each checked with its file and line.

    report_title: ClassVar[str | None] = None
    report_row_fields: ClassVar[tuple[tuple[str, str, float | None, float | None], ...]] = ()

    def report(self, inputs: Any, figures: Any) -> Any:
        """What the family's report section shows (plain data for its template), drawing its
        figures with `figures.add(name, png, caption)`, `name` starting with the family's
        name (so a later report into the same file can tell its own PNGs). `inputs` holds
        the collected results (one dict per model and dataset) and the rows this family
        asked for."""
        raise NotImplementedError(f"{self.name} has no report section")

    # --- scoring ---------------------------------------------------------------------------

    def variants(self, dataset: Dataset) -> list[Dataset]:
        """Datasets scored for one file: itself, and any controls the family defines."""
        return [dataset]

    def result(self, item: Item, probs: list[float], logprobs: list[float],
               answers: list[str]) -> dict[str, Any]:
        """The family's fields of one scored row. `probs` are renormalised over the valid
        answers. The default is the paper's rule: the behavior is shown when a matching
        answer is the most likely one."""
        matching = set(item.matching)
        best_match = max(logprobs[i] for i in matching)
        best_other = max(lp for i, lp in enumerate(logprobs) if i not in matching)
        return {"answer_matching_behavior": [answers[i] for i in item.matching],
                "p_matching": sum(probs[i] for i in matching),
                "matches_behavior": best_match > best_other}

    def summary(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """The dataset metric over its scored rows: % matching with a Wilson interval."""
        n = len(rows)
        k = sum(1 for r in rows if r["matches_behavior"])
        lo, hi = wilson_interval(k, n)
        return {"n_matching": k, "pct_matching": 100.0 * k / n if n else float("nan"),
                "ci_low": 100.0 * lo, "ci_high": 100.0 * hi,
                "mean_p_matching": sum(r["p_matching"] for r in rows) / n if n else float("nan")}

    def outputs(self, out: Path, rows: list[dict[str, Any]], summaries: list[dict[str, Any]]
                ) -> dict[str, Path]:
        """Extra result files for this family's rows (tables, figures), by name."""
        return {}
