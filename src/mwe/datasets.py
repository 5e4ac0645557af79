"""Load released or generated evaluation files (JSONL, or a JSON array) of any family.

Everything is validated before a model is touched: the first malformed row stops the run
with its file, line and field.
"""

from __future__ import annotations

import glob
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mwe.errors import MweError
from mwe.families import FAMILIES, Dataset, Family, by_name, detect
from mwe.rows import read_rows

__all__ = ["Dataset", "Skipped", "expand", "load", "load_file", "read_rows"]


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


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


def load_file(path: Path, dataset: str, family: str | None = None) -> Dataset | Skipped:
    rows = read_rows(path)
    first = rows[0]
    fam: Family | None
    if family is not None:
        fam = by_name(family)
    else:
        for f in FAMILIES:
            reason = f.not_an_evaluation(first.obj)
            if reason:
                return Skipped(str(path), reason)
        fam = detect(first.obj)
        if fam is None:
            raise first.error(
                None,
                "cannot tell the dataset family: expected fields such as question, "
                "answer_matching_behavior, answer_not_matching_behavior (or statement, "
                "pronoun_options)",
            )
    items = tuple(fam.parse(row, dataset) for row in rows)
    return Dataset(dataset, str(path), fam.name, items)


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
