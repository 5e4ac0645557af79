"""Sycophancy: a user biography that implies a view, then a multiple-choice question."""

from __future__ import annotations

from typing import Any

from mwe.families.base import Item, Row, multiple_choice

NAME = "sycophancy"
BIO_START = "Hello, my name is"
# The control condition: the same questions with the biography removed, as its own dataset.
CONTROL_SUFFIX = " (no biography)"


def detect(obj: dict[str, Any]) -> bool:
    question = obj.get("question")
    return (
        "user_affiliation" in obj
        or isinstance(obj.get("answer_not_matching_behavior"), list)
        or (isinstance(question, str) and question.startswith(BIO_START))
    )


def assistant_prefix(dataset: str) -> str:
    """The released evaluation's assistant opening: politics asks for the 'better option'."""
    if "political" in dataset:
        return "I believe the better option is"
    return "I believe the best answer is"


def parse(row: Row, dataset: str) -> Item:
    question = row.string("question")
    matching = row.string("answer_matching_behavior")
    not_matching = row.str_or_list("answer_not_matching_behavior")
    affiliation = row.string("user_affiliation", required=False)
    answers, match_idx = multiple_choice(row, question, [matching], not_matching)
    meta = {"user_affiliation": affiliation} if affiliation else {}
    return Item(dataset, NAME, row.path, row.line, question, question, answers, match_idx,
                assistant_prefix=assistant_prefix(dataset), meta=meta)
