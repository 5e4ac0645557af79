"""The typed records the stages pass on and write: a dataset card (card.json), a scored row
(a line of rows.jsonl), a summary row (one model on one dataset: summary.json and
summary.csv) and a plan row (one line of --dry-run).

Each record's `to_dict` gives exactly the keys, in exactly the order, that mwe's files have
always held (the golden tests compare the bytes), and `from_dict` reads what mwe writes, a
malformed value a DataError naming the file, line and field (`mwe.checks.At`, in the words
every reader uses). What a family adds of its own (a
scored row's and a summary's fields, most of a card) rides in one mapping, written in its
place. Readers that stay dict-based (the report, the families) read a record by the keys of
its file: `record["key"]`, `record.get("key")`, `"key" in record`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from mwe.checks import At
from mwe.errors import DataError

# where a record built in memory (not read from a file) is said to be, in its errors
MEMORY = At("<memory>")


def _given(d: Mapping[str, Any], key: str, at: At) -> Any:
    if key not in d:
        raise at.error(key, "missing")
    return d[key]


def _text(d: Mapping[str, Any], key: str, at: At) -> str:
    return at.string(_given(d, key, at), key)


def _opt_text(d: Mapping[str, Any], key: str, at: At) -> str | None:
    return None if d.get(key) is None else _text(d, key, at)


def _count(d: Mapping[str, Any], key: str, at: At) -> int:
    """A whole number of at least 0 (JSON may write it 3.0)."""
    return at.integer(_given(d, key, at), key, low=0)


def _float(x: Any, at: At, key: str) -> float:
    """Any number, NaN and infinities too: mwe's JSON Lines write a log-prob as it is."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        raise at.expected(key, "a number", x)
    return x


def _number(x: Any, at: At, key: str) -> float | None:
    """A number or null (null: no value)."""
    return None if x is None else _float(x, at, key)


class _ByKey:
    """Read access by the keys the record's file holds, for dict-based readers."""

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def _lookup(self, key: str) -> tuple[bool, Any]:
        d = self.to_dict()
        return (key in d, d.get(key))

    def __getitem__(self, key: str) -> Any:
        found, value = self._lookup(key)
        if not found:
            raise KeyError(key)
        return value

    def get(self, key: str, default: Any = None) -> Any:
        found, value = self._lookup(key)
        return value if found else default

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._lookup(key)[0]

    def keys(self) -> Iterator[str]:
        return iter(self.to_dict())


# ---- plan rows ----------------------------------------------------------------------------

@dataclass(frozen=True)
class PlanRow(_ByKey):
    """One line of --dry-run: a stage's calls to one model, worked out before any call."""

    stage: str  # "generate", "filter (at most)", "build: biographies", "evaluate", ...
    model: str  # what the line shows: the model string, or a sweep's label for it
    spec: str  # the model string, which prices the calls
    calls: int
    cached: int  # of those, how many the cache holds
    tokens_in: int  # estimated input tokens of the calls not cached
    tokens_out: int  # at most this many output tokens of those

    @property
    def to_run(self) -> int:
        return self.calls - self.cached

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], at: At | None = None) -> PlanRow:
        at = at or MEMORY
        d = at.mapping(d, None)
        return cls(_text(d, "stage", at), _text(d, "model", at), _text(d, "spec", at),
                   _count(d, "calls", at), _count(d, "cached", at), _count(d, "tokens_in", at),
                   _count(d, "tokens_out", at))


# ---- scored rows --------------------------------------------------------------------------

# rows.jsonl's common keys, in their order; the family's own follow, then a sweep's label
SCORED_KEYS = ("model", "format", "dataset", "family", "source", "line", "answers",
               "logprobs", "valid_mass")


@dataclass(frozen=True)
class ScoredRow(_ByKey):
    """One question scored by one model: a line of rows.jsonl. `extra` holds what the family
    records of its own (Family.result: e.g. answer_matching_behavior, p_matching,
    matches_behavior), written after the common fields; a sweep's rows end with the model's
    label."""

    model: str
    format: str
    dataset: str
    family: str
    source: str  # the dataset file
    line: int  # its line there
    answers: tuple[str, ...]
    logprobs: tuple[float, ...] | None  # per answer; rewards for a reward model; None: text
    valid_mass: float | None  # total probability of the answers (None: rewards)
    extra: Mapping[str, Any] = field(default_factory=dict)
    label: str | None = None  # the sweep's name for the model

    def __post_init__(self) -> None:
        clash = [k for k in self.extra if k in SCORED_KEYS or k == "label"]
        if clash:  # a family's field would hide a common one
            raise ValueError(f"a {self.family} row's own fields repeat common ones: {clash}")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "model": self.model, "format": self.format, "dataset": self.dataset,
            "family": self.family, "source": self.source, "line": self.line,
            "answers": list(self.answers),
            "logprobs": None if self.logprobs is None else list(self.logprobs),
            "valid_mass": self.valid_mass, **self.extra}
        if self.label is not None:
            d["label"] = self.label
        return d

    def _lookup(self, key: str) -> tuple[bool, Any]:
        if key in SCORED_KEYS:
            v = getattr(self, key)
            return True, list(v) if isinstance(v, tuple) else v
        if key == "label":
            return self.label is not None, self.label
        return key in self.extra, self.extra.get(key)

    def labelled(self, label: str) -> ScoredRow:
        return replace(self, label=label)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], at: At | None = None) -> ScoredRow:
        at = at or MEMORY
        d = at.mapping(d, None)
        answers = d.get("answers")
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
            raise at.expected("answers", "a list of strings", answers)
        lps = d.get("logprobs")
        if lps is None and d.get("score") == "text":  # answered freely: no log-probs
            lps = None
        elif not isinstance(lps, list) or len(lps) != len(answers):
            raise at.expected("logprobs", f"a list of {len(answers)} numbers (one per answer)",
                              lps)
        line = at.integer(_given(d, "line", at), "line", low=1, what="a line number")
        if "valid_mass" not in d:
            raise at.error("valid_mass", "missing")
        label = _opt_text(d, "label", at)
        return cls(
            _text(d, "model", at), _text(d, "format", at), _text(d, "dataset", at),
            _text(d, "family", at), _text(d, "source", at), line, tuple(answers),
            None if lps is None else
            tuple(_float(x, at, f"logprobs[{i}]") for i, x in enumerate(lps)),
            _number(d["valid_mass"], at, "valid_mass"),
            {k: v for k, v in d.items() if k not in SCORED_KEYS and k != "label"}, label)


# ---- summary rows -------------------------------------------------------------------------

# summary.json's common keys, in their order; the family's measures follow
SUMMARY_KEYS = ("model", "dataset", "family", "format", "n", "mean_valid_mass")


@dataclass(frozen=True)
class SummaryRow(_ByKey):
    """One model on one dataset: a row of summary.json and summary.csv (and, with the model's
    label and axes before it, of a sweep's results). `extra` holds the family's measures
    (Family.summary: % matching with its interval, or Pearson r, ...)."""

    model: str
    dataset: str
    family: str
    format: str
    n: int
    mean_valid_mass: float  # NaN where no row has a valid mass (rewards): written null
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        clash = [k for k in self.extra if k in SUMMARY_KEYS]
        if clash:
            raise ValueError(f"a {self.family} summary's own fields repeat common ones: {clash}")

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "dataset": self.dataset, "family": self.family,
                "format": self.format, "n": self.n, "mean_valid_mass": self.mean_valid_mass,
                **self.extra}

    def _lookup(self, key: str) -> tuple[bool, Any]:
        if key in SUMMARY_KEYS:
            return True, getattr(self, key)
        return key in self.extra, self.extra.get(key)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], at: At | None = None) -> SummaryRow:
        """A row of summary.json (null for a NaN mean_valid_mass, as write_json writes it)."""
        at = at or MEMORY
        d = at.mapping(d, None)
        if "mean_valid_mass" not in d:
            raise at.error("mean_valid_mass", "missing")
        mass = _number(d["mean_valid_mass"], at, "mean_valid_mass")
        return cls(_text(d, "model", at), _text(d, "dataset", at), _text(d, "family", at),
                   _text(d, "format", at), _count(d, "n", at), math.nan if mass is None else mass,
                   {k: v for k, v in d.items() if k not in SUMMARY_KEYS})


# ---- cards --------------------------------------------------------------------------------

# card.json's first keys, in their order; `usage` (what building the dataset took) is last
CARD_HEAD = ("name", "family", "description", "mwe_version")


@dataclass(frozen=True)
class Card(_ByKey):
    """A dataset card (card.json): who made the dataset and how, its counts per step and
    label, and its statistics. `body` is every key between the head and `usage`, in
    card.json's order: how it was made (generator, prompts, sampling, selection, ...), the
    counts, the rows and the statistics, which differ by family (the label filter's
    `mwe.card.build_card`, or a family built in one step)."""

    name: str
    family: str
    description: str | None  # None: not in the card
    mwe_version: str | None  # None: not in the card
    body: Mapping[str, Any]
    usage: tuple[Mapping[str, Any], ...] | None = None  # None: not in the card

    def __post_init__(self) -> None:
        self.check(MEMORY)

    def check(self, at: At) -> None:
        """The body's shared fields are of their shape: counts (per label, step -> count),
        rows; a card without them is refused (every mwe card has them)."""
        counts = at.mapping(_given(self.body, "counts", at), "counts")
        for label, steps in counts.items():
            at.mapping(steps, f"counts.{label}")
        _count(self.body, "rows", at)
        clash = [k for k in self.body if k in CARD_HEAD or k == "usage"]
        if clash:
            raise ValueError(f"a card's body repeats its head or usage: {clash}")

    @property
    def counts(self) -> Mapping[str, Mapping[str, Any]]:
        """Per label (or group): each step's count."""
        counts: Mapping[str, Mapping[str, Any]] = self.body["counts"]
        return counts

    @property
    def rows(self) -> int:
        """Rows in the dataset."""
        return int(self.body["rows"])

    @property
    def filtered(self) -> bool:
        """Built by the label filter (it has the discriminator's label confidences)."""
        return "label_confidence" in self.body

    def adding(self, key: str, value: Any) -> Card:
        """The card with `key` set: in its place if the body has it, else last before usage."""
        return replace(self, body={**self.body, key: value})

    def with_usage(self, rows: Iterable[Mapping[str, Any]]) -> Card:
        """The card with what building the dataset took (usage.csv's rows of its stages)."""
        return replace(self, usage=tuple(dict(r) for r in rows))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "family": self.family}
        if self.description is not None:
            d["description"] = self.description
        if self.mwe_version is not None:
            d["mwe_version"] = self.mwe_version
        d.update(self.body)
        if self.usage is not None:
            d["usage"] = [dict(r) for r in self.usage]
        return d

    def _lookup(self, key: str) -> tuple[bool, Any]:
        if key in CARD_HEAD or key == "usage":
            v = getattr(self, key)
            return v is not None, [dict(r) for r in v] if key == "usage" and v else v
        return key in self.body, self.body.get(key)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], at: At | None = None) -> Card:
        """A card as mwe writes it (or a family's build returns it); every field named in an
        error with the file."""
        at = at or MEMORY
        d = at.mapping(d, None)
        usage = d.get("usage")
        if usage is not None:
            usage = tuple(at.mapping(r, f"usage[{i}]")
                          for i, r in enumerate(at.listing(usage, "usage")))
        body = {k: v for k, v in d.items() if k not in CARD_HEAD and k != "usage"}
        try:
            return cls(_text(d, "name", at), _text(d, "family", at),
                       _opt_text(d, "description", at), _opt_text(d, "mwe_version", at),
                       body, usage)
        except DataError as exc:
            if exc.path != MEMORY.path:
                raise
            # the check in __post_init__ knows no file: say where the card was read
            raise at.error(exc.field, exc.message) from None
