"""The files of mwe's output folders, named in one place, and the one reader of card.json.

A run folder (mwe generate, filter, run) holds spec.json, generated.jsonl, generate.json,
scored.jsonl, dataset.jsonl, card.json, card.md, usage.csv and results/; an evaluate folder
and a run's results/ hold rows.jsonl, summary.csv, summary.json (and usage.csv); a sweep
folder rows.jsonl and sweep.json among others. Every module names these files through here,
so a renamed file is one edit, and a card is read with one error policy wherever it is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

from mwe.checks import At
from mwe.errors import DataError
from mwe.report.jsonfile import load_json
from mwe.results import Card

SPEC = "spec.json"
GENERATED = "generated.jsonl"
GENERATE_JSON = "generate.json"
SCORED = "scored.jsonl"
DATASET = "dataset.jsonl"
CARD_JSON = "card.json"
CARD_MD = "card.md"
USAGE = "usage.csv"
RESULTS = "results"
ROWS = "rows.jsonl"
SUMMARY_CSV = "summary.csv"
SUMMARY_JSON = "summary.json"
SWEEP_JSON = "sweep.json"


@overload
def read_card(path: Path, optional: Literal[False] = False) -> dict[str, Any]: ...
@overload
def read_card(path: Path, optional: bool) -> dict[str, Any] | None: ...
def read_card(path: Path, optional: bool = False) -> dict[str, Any] | None:
    """The card.json at `path`. One policy everywhere: a card that cannot be read, is not
    JSON (its line named) or is not an object is a DataError naming the file; a missing one
    is too, unless `optional` (a reader that can do without: then None). What the fields
    hold is the caller's to check."""
    if not path.is_file():
        if optional:
            return None
        raise DataError(str(path), None, None, "missing (not a folder mwe filter or mwe run "
                        "wrote)")
    return At(str(path), word="found", show="kind").mapping(load_json(path), None)


@dataclass(frozen=True)
class ResultsFolder:
    """An evaluate folder, or a run folder's results/: the scored rows and their summary."""

    path: Path

    @property
    def rows(self) -> Path:
        return self.path / ROWS

    @property
    def summary_csv(self) -> Path:
        return self.path / SUMMARY_CSV

    @property
    def summary_json(self) -> Path:
        return self.path / SUMMARY_JSON

    @property
    def usage(self) -> Path:
        return self.path / USAGE


@dataclass(frozen=True)
class RunFolder:
    """A folder mwe generate, mwe filter or mwe run writes (also a built family's)."""

    path: Path

    @property
    def spec(self) -> Path:
        return self.path / SPEC

    @property
    def generated(self) -> Path:
        return self.path / GENERATED

    @property
    def generate_json(self) -> Path:
        return self.path / GENERATE_JSON

    @property
    def scored(self) -> Path:
        return self.path / SCORED

    @property
    def dataset(self) -> Path:
        return self.path / DATASET

    @property
    def card_json(self) -> Path:
        return self.path / CARD_JSON

    @property
    def card_md(self) -> Path:
        return self.path / CARD_MD

    @property
    def usage(self) -> Path:
        return self.path / USAGE

    @property
    def results(self) -> ResultsFolder:
        return ResultsFolder(self.path / RESULTS)

    @classmethod
    def beside(cls, dataset_path: str | Path) -> RunFolder:
        """The run folder a dataset file lies in (its card, when it has one, beside it)."""
        return cls(Path(dataset_path).parent)

    @overload
    def read_card(self, optional: Literal[False] = False) -> dict[str, Any]: ...
    @overload
    def read_card(self, optional: bool) -> dict[str, Any] | None: ...
    def read_card(self, optional: bool = False) -> dict[str, Any] | None:
        """card.json, with `read_card`'s one error policy."""
        return read_card(self.card_json, optional)

    def card(self) -> Card:
        """card.json as a typed Card: `read_card`'s policy, then every shared field checked
        (an error names the file and the field)."""
        return Card.from_dict(self.read_card(), At(str(self.card_json)))
