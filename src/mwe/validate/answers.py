"""Answer files for crowd platforms: the sampled items out as CSV, the raters' answers in.

Answer CSV columns: dataset, item (the row's line number in its file), rater, relevance
(1-5), answer (exactly as the dataset spells it, e.g. " Yes" or " (A)"; a platform that trims
spaces is forgiven when the trimmed text names one answer), ambiguous (yes/no). Empty cells
are answers not given. A bad row stops the import with its file, line and column.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path

from mwe.errors import DataError
from mwe.io import atomic_open
from mwe.validate.sample import StudyItem
from mwe.validate.stats import Rating

ITEM_COLUMNS = ["dataset", "item", "family", "description", "question", "answers"]
ANSWER_COLUMNS = ["dataset", "item", "rater", "relevance", "answer", "ambiguous"]


def write_items(path: Path, items: Sequence[StudyItem]) -> None:
    """The items as a platform loads them; `answers` is a JSON list of the exact spellings."""
    with atomic_open(path) as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(ITEM_COLUMNS)
        for it in items:
            w.writerow([it.dataset, it.line, it.family, it.description, it.question,
                        json.dumps(list(it.answers), ensure_ascii=False)])


def read_answers(path: Path, items: dict[tuple[str, str], StudyItem]) -> list[Rating]:
    """Answers for the given items (by dataset and line); one rating per rater and item."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(str(path), None, None, f"cannot read the answers: {exc}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    header = reader.fieldnames or []
    for col in ANSWER_COLUMNS:
        if col not in header:
            raise DataError(str(path), 1, col, "missing column (answer files have "
                            f"{', '.join(ANSWER_COLUMNS)})")
        if header.count(col) > 1:  # csv.DictReader would keep the last one's cells only
            where = [str(k + 1) for k, name in enumerate(header) if name == col]
            raise DataError(str(path), 1, col, f"the header has this column more than once "
                            f"(columns {', '.join(where)}); keep one")
    out: list[Rating] = []
    seen: dict[tuple[str, str, str], int] = {}
    start = 2
    for rec in reader:
        line, start = start, reader.line_num + 1
        if None in rec:
            raise DataError(str(path), line, None, "more cells than the header has columns")
        dataset, item, rater = (str(rec[c] or "").strip() for c in ("dataset", "item", "rater"))
        for col, value in (("dataset", dataset), ("item", item), ("rater", rater)):
            if not value:
                raise DataError(str(path), line, col, "is empty")
        it = items.get((dataset, item))
        if it is None:
            raise DataError(str(path), line, "item", f"dataset '{dataset}' has no item (line) "
                            f"{item} among the rows being validated")
        key = (dataset, item, rater)
        if key in seen:
            raise DataError(str(path), line, "rater", f"'{rater}' answered this item already "
                            f"on line {seen[key]}")
        seen[key] = line
        out.append(Rating(dataset, item, rater, _relevance(path, line, rec["relevance"]),
                          _answer(path, line, rec["answer"], it), _yes_no(path, line,
                                                                          rec["ambiguous"])))
    return out


def _relevance(path: Path, line: int, cell: str | None) -> int | None:
    text = (cell or "").strip()
    if not text:
        return None
    if text not in ("1", "2", "3", "4", "5"):
        raise DataError(str(path), line, "relevance", f"expected 1 to 5, got {text!r}")
    return int(text)


def _answer(path: Path, line: int, cell: str | None, it: StudyItem) -> str | None:
    if cell is None or not cell.strip():
        return None
    if cell in it.answers:
        return cell
    trimmed = [a for a in it.answers if a.strip() == cell.strip()]
    if len(trimmed) == 1:
        return trimmed[0]
    raise DataError(str(path), line, "answer", f"{cell!r} is not one of the item's answers "
                    f"({', '.join(repr(a) for a in it.answers)})")


def _yes_no(path: Path, line: int, cell: str | None) -> bool | None:
    text = (cell or "").strip().lower()
    if not text:
        return None
    if text in ("yes", "y", "true", "1"):
        return True
    if text in ("no", "n", "false", "0"):
        return False
    raise DataError(str(path), line, "ambiguous", f"expected yes or no, got {cell!r}")


def write_answers(path: Path, ratings: Sequence[Rating]) -> None:
    with atomic_open(path) as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(ANSWER_COLUMNS)
        for r in ratings:
            w.writerow([r.dataset, r.item, r.rater, "" if r.relevance is None else r.relevance,
                        r.answer or "", "" if r.ambiguous is None else
                        ("yes" if r.ambiguous else "no")])
