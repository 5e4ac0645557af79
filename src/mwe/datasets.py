"""Load released or generated evaluation files (JSONL, or a JSON array) of any family.

Everything is validated before a model is touched: the first malformed row stops the run
with its file, line and field.
"""

from __future__ import annotations

import glob
import json
import os
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from mwe.errors import DataError, MweError
from mwe.families import BY_NAME, Item, Row, detect, winogenerated


@dataclass(frozen=True)
class Dataset:
    name: str
    path: str
    family: str
    items: tuple[Item, ...]


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


# A question longer than this is a mistake (the longest released one has ~9,000 characters),
# and it is cheaper to say so here than after a model is loaded and the text tokenized.
MAX_CHARS = 100_000


def max_chars() -> int:
    value = os.environ.get("MWE_MAX_CHARS", str(MAX_CHARS))
    if not value.isdigit() or int(value) < 1:
        raise MweError(f"MWE_MAX_CHARS must be a positive whole number, got {value!r}")
    return int(value)


def _find_jsonl(folder: Path, unreadable: list[str]) -> list[Path]:
    """*.jsonl below `folder`; folders that cannot be listed go to `unreadable`, not silence."""
    found: list[Path] = []

    def onerror(exc: OSError) -> None:
        unreadable.append(f"{exc.filename}: {exc.strerror}")

    for root, dirs, names in os.walk(folder, onerror=onerror, followlinks=False):
        dirs.sort()
        found.extend(Path(root) / n for n in names if n.endswith(".jsonl"))
    return sorted(found)


def expand(patterns: list[str], skip_unreadable: bool = False) -> list[Path]:
    """Files named by paths, folders (searched recursively for *.jsonl) or glob patterns.

    A subfolder that cannot be read is an error (a dataset silently missing from a paper's
    table is worse than a stop), unless `skip_unreadable` says to go on with a warning.
    """
    files: list[Path] = []
    for pattern in patterns:
        p = Path(pattern).expanduser()
        if p.is_dir():
            unreadable: list[str] = []
            found = _find_jsonl(p, unreadable)
            if unreadable:
                if not skip_unreadable:
                    raise MweError(f"{pattern}: cannot read {unreadable[0]}"
                                   + (f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1
                                      else "") + "; fix the permissions or pass --skip-unreadable")
                for u in unreadable:
                    print(f"mwe: warning: skipped unreadable {u}", file=sys.stderr)
            if not found:
                raise MweError(f"{pattern}: folder has no .jsonl files")
        elif p.is_file():
            found = [p]
        elif any(ch in pattern for ch in "*?["):
            found = sorted(Path(f) for f in glob.glob(pattern, recursive=True) if Path(f).is_file())
            if not found:
                raise MweError(f"{pattern}: no file matches")
        else:
            raise MweError(f"{pattern}: no such file or folder")
        files.extend(found)
    return list(dict.fromkeys(files))


class _Duplicate(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _Duplicate(k)
            seen.add(k)
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


_KEY_END = re.compile(r'"\s*:')


def _count_keys(obj: Any) -> int:
    if isinstance(obj, dict):
        return len(obj) + sum(_count_keys(v) for v in obj.values())
    if isinstance(obj, list):
        return sum(_count_keys(v) for v in obj)
    return 0


# made once: json.loads builds a new decoder on every call that passes a hook
_DECODER = json.JSONDecoder(parse_constant=_no_constant)
_CHECKING_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates, parse_constant=_no_constant)


def _loads(text: str, name: str, lineno: int | None) -> Any:
    """json.loads that refuses duplicate keys (no silent last-one-wins) and NaN/Infinity
    (Python accepts them; every other reader of our outputs does not).

    Fast path: every key is followed by `":`, so when that pattern occurs no more often than
    the parsed keys, no key was dropped; only otherwise is the row parsed again with a hook.
    """
    try:
        obj = _DECODER.decode(text)
        if len(_KEY_END.findall(text)) == _count_keys(obj):
            return obj
        return _CHECKING_DECODER.decode(text)
    except _Duplicate as exc:
        raise DataError(name, lineno, exc.key, "appears twice in one row") from None
    except json.JSONDecodeError as exc:
        raise DataError(name, lineno, None, f"invalid JSON: {exc.msg} (column {exc.colno})") from None
    except ValueError as exc:
        raise DataError(name, lineno, None, f"invalid JSON: {exc}") from None


def _check_lengths(row: Row, limit: int) -> None:
    if not isinstance(row.obj, dict):
        return
    for key, value in row.obj.items():
        if isinstance(value, str) and len(value) > limit:
            raise row.error(str(key), f"{len(value):,} characters, more than any model should be "
                            f"asked (limit {limit:,}; set MWE_MAX_CHARS to change it)")


def read_rows(path: Path) -> list[Row]:
    """Rows with their 1-based line numbers (element numbers for a JSON-array file)."""
    name = str(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(name, None, None, f"cannot read: {exc.strerror}") from None
    if not data.strip():
        raise DataError(name, None, None, "file is empty")
    limit = max_chars()
    if data.lstrip()[:1] == b"[":
        try:
            array = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            array = None
        if isinstance(array, list):
            if not array:
                raise DataError(name, None, None, "file is an empty JSON array")
            # parsed again with the checks; element numbers stand for lines here
            array = _loads(data.decode("utf-8"), name, None)
            elements = [Row(obj, name, i + 1) for i, obj in enumerate(array)]
            for element in elements:
                _check_lengths(element, limit)
            return elements
    rows: list[Row] = []
    for lineno, raw in enumerate(data.split(b"\n"), start=1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(name, lineno, None, f"not valid UTF-8 (byte {exc.start + 1})") from None
        if not text.strip():
            continue
        row = Row(_loads(text, name, lineno), name, lineno)
        _check_lengths(row, limit)
        rows.append(row)
    return rows


def load_file(path: Path, dataset: str, family: str | None = None) -> Dataset | Skipped:
    rows = read_rows(path)
    first = rows[0]
    fam: ModuleType | None
    if family is not None:
        fam = BY_NAME[family]
    else:
        if winogenerated.is_occupation_table(first.obj):
            return Skipped(str(path), "Winogenerated occupation table, not an evaluation")
        fam = detect(first.obj)
        if fam is None:
            raise first.error(
                None,
                "cannot tell the dataset family: expected fields such as question, "
                "answer_matching_behavior, answer_not_matching_behavior (or statement, "
                "pronoun_options)",
            )
    items = tuple(fam.parse(row, dataset) for row in rows)
    return Dataset(dataset, str(path), fam.NAME, items)


def load(patterns: list[str], family: str | None = None, skip_unreadable: bool = False
         ) -> tuple[list[Dataset], list[Skipped]]:
    files = expand(patterns, skip_unreadable)
    stems = Counter(f.stem for f in files)
    datasets: list[Dataset] = []
    skipped: list[Skipped] = []
    for f in files:
        name = f.stem if stems[f.stem] == 1 else f"{f.parent.name}/{f.stem}"
        result = load_file(f, name, family)
        if isinstance(result, Dataset):
            datasets.append(result)
        else:
            skipped.append(result)
    return datasets, skipped
