"""Which rows people rate: all rows of a small dataset, a seeded sample of a large one (as the
paper: every row of 11 persona datasets, 100 of each other), the same items for every rater.

An item is named by its dataset and its line in the file, in the answer files too, so that
ratings gathered anywhere can be matched back to the row they judge.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from mwe.datasets import load
from mwe.errors import MweError
from mwe.records import Dataset, Item
from mwe.run_folder import RunFolder
from mwe.validate.stats import ItemInfo

PER_DATASET = 100
UNCLEAR = "None / unclear"  # a reply study's answer for a reply that gives none or several


@dataclass(frozen=True)
class ReplyInfo:
    """A reply study's item (`--replies RUN`): the reply, how each answer is shown (UNCLEAR
    last), then what the readers made of it, never shown to raters."""

    model: str
    reply: str
    labels: tuple[str, ...]
    extracted: str | None  # the extractor's answer; None: unscored
    unscored: str | None   # the extractor's reason for leaving it unscored
    judge: str | None      # the answer with the judge (rules, then judge); None: unscored
    has_judge: bool


@dataclass(frozen=True)
class StudyItem:
    """One row as a rater sees it: the behavior it tests, the question, the answers."""

    dataset: str
    line: int
    family: str
    path: str
    description: str
    question: str
    answers: tuple[str, ...]
    label: tuple[str, ...]  # never shown to raters
    label_confidence: float | None
    reply: ReplyInfo | None = None  # set in a study of a run's replies

    def info(self) -> ItemInfo:
        return ItemInfo(self.dataset, str(self.line), self.family, self.answers, self.label,
                        self.label_confidence)


def description_of(ds: Dataset, given: str | None) -> str:
    """The behavior the dataset tests, to follow "an AI system that": as given, from the
    dataset card beside a generated file, or from its name (a released file's name is its
    behavior: "believes-it-is-not-being-watched"). A released file has no card beside it
    (`read_card` optional); a card without a description falls back to the name."""
    if given:
        return given
    card = RunFolder.beside(ds.path).read_card(optional=True)
    desc = card.get("description") if card is not None else None
    if isinstance(desc, str) and desc.strip():
        return desc.strip()
    words = ds.name.rsplit("/", 1)[-1].replace("-", " ").replace("_", " ")
    return f'has the behavior "{words}"'


def shown_order(answer: str) -> tuple[int, str]:
    """Answers in a fixed order (Yes before No, then by text: (A), (B), ...), never in the
    row's, which may put the label first and so give it away."""
    text = answer.strip()
    return ({"Yes": 0, "No": 1}.get(text, 2), text)


def to_item(ds: Dataset, item: Item, description: str) -> StudyItem:
    conf = item.meta.get("label_confidence")
    return StudyItem(ds.name, item.line, item.family, str(item.source), description,
                     item.user_text, tuple(sorted(item.answers, key=shown_order)),
                     tuple(item.answers[i] for i in item.matching),
                     float(conf) if isinstance(conf, int | float) else None)


def sample_items(paths: list[str], per_dataset: int = PER_DATASET, seed: int = 0,
                 description: str | None = None) -> list[StudyItem]:
    """Every row of a dataset with at most `per_dataset` rows, else `per_dataset` of them
    drawn with the seed (in file order). Errors name the file, line and field."""
    if per_dataset < 1:
        raise MweError("--per-dataset must be at least 1")
    datasets, skipped = load(paths)
    if not datasets:
        why = f" ({skipped[0].path}: {skipped[0].reason})" if skipped else ""
        raise MweError(f"no dataset to rate in {', '.join(paths)}{why}")
    names = [d.name for d in datasets]
    for n in names:
        if names.count(n) > 1:
            raise MweError(f"two datasets are named '{n}'; rate them in separate studies")
    out: list[StudyItem] = []
    for ds in datasets:
        items = list(ds.items)
        if len(items) > per_dataset:
            keep = sorted(random.Random(f"{seed}:{ds.name}").sample(range(len(items)),
                                                                     per_dataset))
            items = [items[k] for k in keep]
        desc = description_of(ds, description)
        out.extend(to_item(ds, it, desc) for it in items)
    return out


def all_items(paths: list[str]) -> dict[tuple[str, str], StudyItem]:
    """Every row of the datasets, by (dataset, line): what an answer file may name."""
    items = sample_items(paths, per_dataset=10**9)
    return {(it.dataset, str(it.line)): it for it in items}


def rater_order(n: int, seed: int, rater: str) -> list[int]:
    """A rater's own order of the items (the paper shows them shuffled per rater)."""
    order = list(range(n))
    random.Random(f"{seed}:order:{rater}").shuffle(order)
    return order


def as_dict(it: StudyItem) -> dict[str, Any]:
    return {"dataset": it.dataset, "item": it.line, "family": it.family,
            "description": it.description, "question": it.question,
            "answers": list(it.answers)}
