"""The record every family turns a dataset row into, and checks shared by the families."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mwe.errors import DataError


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


_CHOICE = re.compile(r"^\s*\(([A-Z])\)", re.MULTILINE)
_LETTER = re.compile(r"^\s*\(([A-Z])\)\s*$")


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
