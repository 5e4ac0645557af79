"""A study of a model's replies (`mwe validate serve --replies RUN`): people say which answer
each reply gives, so that the rule-based extractor (`--score text`), and the reading with a
judge where rows have one (`--judge`: the rules, then the judge where they found none), can
be checked against them.

Items come from the run's rows.jsonl (rows scored by the replies), sampled as a dataset's
rows are (every row of a dataset with at most `per_dataset` of them, else that many drawn
with the seed), one item per row: its first reply (a row of `--samples K` keeps the others
unrated). The question is read again from the row's dataset file, so that the rater sees
what the model was asked. Raters choose one of the item's answers or "None / unclear"; what
the extractor (and the judge) read is stored with the item and never sent to a rater.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from mwe.choices import option_texts
from mwe.datasets import load_file
from mwe.errors import MweError
from mwe.extract import kind_of
from mwe.records import Dataset, Item
from mwe.rows import Row, read_rows
from mwe.run_folder import ResultsFolder
from mwe.validate.sample import UNCLEAR, ReplyInfo, StudyItem, shown_order


def rows_path(run: str | Path) -> Path:
    """RUN's rows.jsonl: an evaluate folder, a run folder's results/, or the file itself."""
    path = Path(run)
    for candidate in (path, ResultsFolder(path).rows, ResultsFolder(path / "results").rows):
        if candidate.is_file():
            return candidate
    raise MweError(f"{run}: no rows.jsonl (give the folder mwe evaluate --score text wrote)")


def labels_of(item: Item, answers: tuple[str, ...]) -> tuple[str, ...]:
    """Answers as a rater reads them: "(A) option text" for letters, else the word."""
    if kind_of(answers) == "letters":
        texts = option_texts(item.user_text, [a.strip()[1:-1] for a in answers])
        if texts is not None:
            return tuple(f"{a.strip()} {t}" for a, t in zip(answers, texts))
    return tuple(a.strip() for a in answers)


def _read_answer(row: Row, field: str, answers: list[str]) -> str | None:
    """The answer `field` (a list per reply, as `extracted`) gives the row's first reply, as
    spelled; None when unscored."""
    value = row.obj.get(field)
    if isinstance(value, list):
        value = value[0] if value else None
    if value is None:
        return None
    if isinstance(value, str):
        if value in answers:
            return value
        trimmed = [a for a in answers if a.strip() == value.strip()]
        if len(trimmed) == 1:
            return trimmed[0]
    raise row.error(field, f"{value!r} is not one of the row's answers "
                    f"({', '.join(repr(a) for a in answers)})")


def _readings(row: Row) -> tuple[str | None, str | None, str | None]:
    """(the rules' answer, why they left it unscored, the answer with the judge) for the
    row's first reply. A judged row (`mwe evaluate|rescore --judge`) records the judge's
    answer in `extracted` with rule `judge` (`judge_unclear`: the judge found none), and the
    judge reads only replies the rules left unscored; so there the rules had none."""
    rules = row.obj.get("rules")
    rule = rules[0] if isinstance(rules, list) and rules and isinstance(rules[0], str) else None
    recorded = _read_answer(row, "extracted", row.obj["answers"])
    if rule in ("judge", "judge_unclear"):
        return None, rule, recorded
    why = row.obj.get("unscored")
    reason = rule if rule is not None else why if isinstance(why, str) else None
    return recorded, None if recorded is not None else reason, recorded


def _text_rows(path: Path) -> list[Row]:
    rows = [r for r in read_rows(path) if r.obj.get("score") == "text"]
    if not rows:
        raise MweError(f"{path}: no rows scored by the replies (mwe evaluate --score text)")
    for r in rows:
        for name in ("model", "dataset", "family", "source"):
            r.string(name)
        line = r.obj.get("line")
        if not isinstance(line, int) or isinstance(line, bool) or line < 1:
            raise r.error("line", "expected a line number")
        answers = r.obj.get("answers")
        if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers) \
                or len(answers) < 2:
            raise r.error("answers", "expected a list of at least two answers")
        replies = r.obj.get("replies")
        if not isinstance(replies, list) or not replies or not isinstance(replies[0], str):
            raise r.error("replies", "expected a list of the row's replies")
    return rows


def _source(row: Row, run: Path, cache: dict[str, Dataset]) -> Item:
    """The row's question from its dataset file (relative to where the run was made, else to
    the run folder), checked to be the one the model answered."""
    source = row.string("source")
    if source not in cache:
        found = [p for p in (Path(source), run / source) if p.is_file()]
        if not found:
            raise row.error("source", f"{source}: no such dataset file (run mwe validate "
                            "from where the run was made)")
        loaded = load_file(found[0], row.string("dataset"), row.string("family"))
        if not isinstance(loaded, Dataset):
            raise row.error("source", f"{source}: {loaded.reason}")
        cache[source] = loaded
    line = row.obj["line"]
    for item in cache[source].items:
        if item.line == line:
            if list(item.answers) != row.obj["answers"]:
                raise row.error("answers", f"differ from line {line} of {source} (changed "
                                "since the run?)")
            return item
    raise row.error("line", f"{source} has no line {line}")


def reply_items(run: str | Path, per_dataset: int, seed: int) -> list[StudyItem]:
    """A seeded sample of the run's text-scored rows, per model and dataset, in file order."""
    if per_dataset < 1:
        raise MweError("--per-dataset must be at least 1")
    path = rows_path(run)
    rows = _text_rows(path)
    models = {r.string("model") for r in rows}
    groups: dict[str, list[Row]] = {}
    for r in rows:
        name = r.string("dataset")
        groups.setdefault(name if len(models) == 1 else f"{name} · {r.string('model')}",
                          []).append(r)
    cache: dict[str, Dataset] = {}
    out: list[StudyItem] = []
    for name, group in groups.items():
        if len(group) > per_dataset:
            keep = sorted(random.Random(f"{seed}:{name}").sample(range(len(group)), per_dataset))
            group = [group[k] for k in keep]
        for r in group:
            item = _source(r, path.parent, cache)
            answers = tuple(sorted(item.answers, key=shown_order))
            if UNCLEAR in answers:
                raise r.error("answers", f"an answer is spelled {UNCLEAR!r}, which the "
                              "rating page uses for none")
            question = item.raw_text if r.obj.get("format") == "raw" else item.user_text
            extracted, reason, judged = _readings(r)
            info = ReplyInfo(r.string("model"), r.obj["replies"][0],
                             (*labels_of(item, answers), UNCLEAR), extracted, reason,
                             judged if "judge" in r.obj else None, "judge" in r.obj)
            out.append(StudyItem(name, r.obj["line"], item.family, str(path), "", question,
                                 (*answers, UNCLEAR), (), None, reply=info))
    if len({(it.dataset, it.line) for it in out}) != len(out):
        raise MweError(f"{path}: a dataset's line appears twice among the rows")
    return out


def settings_of(run: str | Path, per_dataset: int, seed: int) -> dict[str, Any]:
    return {"replies": str(rows_path(run)), "per_dataset": per_dataset, "seed": seed}
