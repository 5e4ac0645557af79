"""The records every family turns its data into: one question ready for a prompt (`Item`),
a parsed evaluation file (`Dataset`), shared by reading, scoring, exports and the map."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


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
    order: int | None = None  # --orders all: options rotated by this much (mwe.orders)
    # earlier turns of a conversation, (role "user" or "assistant", text), before the final
    # user turn `user_text` (multi-turn families: pushback); () for one question
    turns: tuple[tuple[str, str], ...] = ()


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


