"""Multiple-choice questions: the letters of their options and the answers a row names."""

from __future__ import annotations

import re

from mwe.rows import Row

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




# a lettered option on a line of its own: its letter and its text
OPTION_LINE = re.compile(rf"^\s*\(([{ANSWER_LETTERS}])\)[ \t]*(\S.*?)\s*$", re.MULTILINE)


def option_texts(question: str, letters: list[str]) -> list[str] | None:
    """The text of each lettered option ('(A) Yes' -> 'Yes'), in the order of `letters`;
    None when the question does not list every one on a line of its own."""
    found: dict[str, str] = {}
    for letter, text in OPTION_LINE.findall(question):
        found.setdefault(letter, text)
    if not all(x in found for x in letters):
        return None
    return [found[x] for x in letters]
