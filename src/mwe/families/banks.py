"""Question banks with known answers: TruthfulQA's CSV as published, or the plain
multiple-choice JSONL (`question`, `correct_answer`, `incorrect_answers`). Read by the families
that ask a model questions it can get right or wrong (sandbagging today); a bank with a
duplicated question or a correct answer among the incorrect ones is a located error, since
either would bias the accuracy silently."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from mwe.errors import DataError
from mwe.rows import Row


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    correct: str
    incorrect: tuple[str, ...]
    line: int


def load_bank(path: str | Path) -> list[Question]:
    """TruthfulQA's CSV as published (Question, Best Answer, Incorrect Answers), or the plain
    format: JSONL {"question", "correct_answer", "incorrect_answers": [...]} or a CSV with
    those columns (incorrect answers separated by "; "); an optional `id`. Errors name the
    file, line and field. A question listed twice is refused: it would be asked, and weigh in
    the accuracy, twice."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(str(path), None, None, f"cannot read the question bank: {exc}") from None
    if path.suffix == ".jsonl":
        entries = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    entries.append(Row(json.loads(line), str(path), i))
                except json.JSONDecodeError as exc:
                    raise DataError(str(path), i, None, f"not valid JSON: {exc.msg}") from None
        questions = [_plain(r, path.stem, k) for k, r in enumerate(entries)]
        column = "question"
    elif path.suffix == ".csv":
        questions, column = _csv(path, text)
    else:
        raise DataError(str(path), None, None, "a question bank is a .csv or .jsonl file")
    if not questions:
        raise DataError(str(path), None, None, "the bank has no questions")
    seen: dict[str, int] = {}
    for q in questions:
        if q.id in seen:
            raise DataError(str(path), q.line, "id", f"'{q.id}' is used twice (first on line "
                            f"{seen[q.id]})")
        seen[q.id] = q.line
    texts: dict[str, int] = {}
    for q in questions:
        key = _normal(q.question)
        if key in texts:
            raise DataError(str(path), q.line, column, f"the same question as on line "
                            f"{texts[key]} (it would be asked, and counted, twice); remove one")
        texts[key] = q.line
    return questions


def _normal(text: str) -> str:
    """Text compared as a reader would: case and spacing aside."""
    return " ".join(text.split()).casefold()


def _csv(path: Path, text: str) -> tuple[list[Question], str]:
    """The questions, and the name of the question column (for errors)."""
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    truthfulqa = "Best Answer" in header
    need = ("Question", "Best Answer", "Incorrect Answers") if truthfulqa else \
        ("question", "correct_answer", "incorrect_answers")
    for col in need:
        if col not in header:
            raise DataError(str(path), 1, col, "missing column (a bank is TruthfulQA's CSV, "
                            "or has the columns question, correct_answer, incorrect_answers)")
    out = []
    start = 2
    for k, rec in enumerate(reader):
        line, start = start, reader.line_num + 1
        if None in rec:
            raise DataError(str(path), line, None, "more cells than the header has columns")
        q, right, wrong = (rec[c] for c in need)
        row = Row({"question": q, "correct_answer": right,
                   "incorrect_answers": [w for w in (wrong or "").split(";") if w.strip()],
                   **({"id": rec["id"]} if rec.get("id") else {})}, str(path), line)
        if truthfulqa:  # the published file's column names, in the errors
            try:
                out.append(_plain(row, "truthfulqa", k))
            except DataError as exc:
                names = dict(zip(("question", "correct_answer", "incorrect_answers"), need))
                raise DataError(exc.path, exc.line, names.get(exc.field or "", exc.field),
                                exc.message) from None
        else:
            out.append(_plain(row, path.stem, k))
    return out, need[0]


def _plain(row: Row, stem: str, k: int) -> Question:
    for key in row.obj:
        if key not in ("id", "question", "correct_answer", "incorrect_answers"):
            raise row.error(key, "unknown field (expected question, correct_answer, "
                            "incorrect_answers, id)")
    question = row.string("question").strip()
    correct = row.string("correct_answer").strip()
    wrong = row.obj.get("incorrect_answers")
    if not isinstance(wrong, list) or not wrong or \
            not all(isinstance(w, str) and w.strip() for w in wrong):
        raise row.error("incorrect_answers", "expected at least one incorrect answer "
                        "(a list of strings; in a CSV, separated by '; ')")
    for w in wrong:
        if _normal(w) == _normal(correct):
            raise row.error("incorrect_answers", f"lists the correct answer {correct!r} among "
                            "the incorrect ones (a choice would be both right and wrong)")
    incorrect = tuple(dict.fromkeys(w.strip() for w in wrong))
    qid = row.obj.get("id", f"{stem}-{k + 1:04d}")
    if isinstance(qid, bool) or not isinstance(qid, str | int) or not str(qid).strip():
        raise row.error("id", f"expected a string or number, got {json.dumps(qid)}")
    return Question(str(qid).strip(), question, correct, incorrect, row.line)
