"""Load released or generated evaluation files (JSONL, or a JSON array) of any family.

Everything is validated before a model is touched: the first malformed row stops the run
with its file, line and field.

mwe's own outputs are never read back as datasets from a folder or glob (only when a file is
named): the files an output folder's manifest lists (mwe.io.MANIFEST: rows.jsonl, an export's
task), a run folder's samples (generated.jsonl, scored.jsonl), and files whose rows are mwe's
scored rows (an output folder from an mwe before manifests). A run folder's dataset.jsonl is
the dataset it built, named after the run (its spec's name), not "dataset".
"""

from __future__ import annotations

import glob
import json
import os
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mwe.errors import MweError
from mwe.families import FAMILIES, Dataset, Family, by_name, detect
from mwe.io import read_manifest
from mwe.rows import read_rows
from mwe.run_folder import DATASET, GENERATED, SCORED, RunFolder
from mwe.spec import NAME_RE

__all__ = ["Dataset", "Skipped", "dataset_name", "expand", "load", "load_file", "read_rows"]


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


# what mwe generate and mwe filter write beside a run folder's dataset.jsonl: samples and
# their scores, not evaluations
RUN_SAMPLES = (GENERATED, SCORED)
# fields every row of an evaluate's rows.jsonl has (mwe.results.ScoredRow)
_RESULT_FIELDS = frozenset({"model", "format", "answers", "logprobs", "valid_mass"})


def _run_folder(folder: Path) -> bool:
    """Whether `folder` is one mwe generate, filter or run wrote (its spec or card beside)."""
    run = RunFolder(folder)
    return run.spec.is_file() or run.card_json.is_file()


class _Outputs:
    """Which files found under a folder or glob are mwe's outputs rather than datasets: those
    a manifest in a folder at or above them (up to `root`) lists, and a run folder's samples."""

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.abspath(root))
        self._listed: dict[Path, frozenset[Path]] = {}

    def _manifest(self, folder: Path) -> frozenset[Path]:
        if folder not in self._listed:
            files = read_manifest(folder) or []
            self._listed[folder] = frozenset(Path(os.path.abspath(folder / f)) for f in files)
        return self._listed[folder]

    def written(self, path: Path) -> bool:
        path = Path(os.path.abspath(path))
        if path.name in RUN_SAMPLES and _run_folder(path.parent):
            return True
        for folder in path.parents:
            if path in self._manifest(folder):
                return True
            if folder == self.root or self.root not in folder.parents:
                return False
        return False


def _find_jsonl(folder: Path, unreadable: list[str], outputs: list[Path]) -> list[Path]:
    """*.jsonl below `folder`, less mwe's outputs (to `outputs`); folders that cannot be listed
    go to `unreadable`, not silence."""
    found: list[Path] = []
    own = _Outputs(folder)

    def onerror(exc: OSError) -> None:
        unreadable.append(f"{exc.filename}: {exc.strerror}")

    for root, dirs, names in os.walk(folder, onerror=onerror, followlinks=False):
        dirs.sort()
        for n in names:
            if n.endswith(".jsonl"):
                (outputs if own.written(Path(root) / n) else found).append(Path(root) / n)
    return sorted(found)


def _glob_root(pattern: str) -> Path:
    """The folder a glob searches under: its parts before the first wildcard."""
    parts: list[str] = []
    for part in Path(pattern).parts:
        if glob.has_magic(part):
            break
        parts.append(part)
    return Path(*parts) if parts else Path(".")


def _besides(outputs: list[Path]) -> str:
    if not outputs:
        return ""
    names = sorted({p.name for p in outputs})
    return f" besides mwe's own outputs ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"


def expand(patterns: list[str], skip_unreadable: bool = False) -> list[Path]:
    """Files named by paths, folders (searched recursively for *.jsonl) or glob patterns.

    A subfolder that cannot be read is an error (a dataset silently missing from a paper's
    table is worse than a stop), unless `skip_unreadable` says to go on with a warning. mwe's
    own outputs are left out of folders and globs (see the module's docstring).
    """
    files: list[Path] = []
    for pattern in patterns:
        p = Path(pattern).expanduser()
        outputs: list[Path] = []
        if p.is_dir():
            unreadable: list[str] = []
            found = _find_jsonl(p, unreadable, outputs)
            if unreadable:
                if not skip_unreadable:
                    raise MweError(f"{pattern}: cannot read {unreadable[0]}"
                                   + (f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1
                                      else "") + "; fix the permissions or pass --skip-unreadable")
                for u in unreadable:
                    print(f"mwe: warning: skipped unreadable {u}", file=sys.stderr)
            if not found:
                raise MweError(f"{pattern}: folder has no .jsonl files{_besides(outputs)}")
        elif p.is_file():
            found = [p]
        elif any(ch in pattern for ch in "*?["):
            own = _Outputs(_glob_root(pattern))
            found = []
            for f in sorted(Path(f) for f in glob.glob(pattern, recursive=True)):
                if f.is_file():
                    (outputs if own.written(f) else found).append(f)
            if not found:
                raise MweError(f"{pattern}: no file matches{_besides(outputs)}")
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
        if first.obj.keys() >= _RESULT_FIELDS:
            return Skipped(str(path), "rows scored by mwe evaluate (results, not an evaluation)")
        for f in FAMILIES:
            reason = f.reader.not_an_evaluation(first.obj)
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
    items = tuple(fam.reader.parse(row, dataset) for row in rows)
    return Dataset(dataset, str(path), fam.name, items)


def dataset_name(path: Path) -> str:
    """The file's stem; for a run folder's dataset.jsonl the run's name (spec.json's `name`,
    else card.json's), as `mwe run` names its results, so that tables and reports never show
    "dataset" for every generated dataset. Only a name a spec may have is taken (the files are
    data on disk). A missing or unreadable spec.json is passed over; card.json is read as
    every card is (`read_card`: optional here, a malformed one an error)."""
    if path.name == DATASET:
        run = RunFolder(path.parent)
        try:
            spec = json.loads(run.spec.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            spec = None
        name = _spec_name(spec) or _spec_name(run.read_card(optional=True))
        if name:
            return name
    return path.stem


def _spec_name(obj: object) -> str | None:
    """`obj`'s `name`, when it is an object with a name a spec may have."""
    name = obj.get("name") if isinstance(obj, dict) else None
    return name if isinstance(name, str) and NAME_RE.fullmatch(name) else None


def load(patterns: list[str], family: str | None = None, skip_unreadable: bool = False
         ) -> tuple[list[Dataset], list[Skipped]]:
    files = expand(patterns, skip_unreadable)
    names = {f: dataset_name(f) for f in files}
    counts = Counter(names.values())
    datasets: list[Dataset] = []
    skipped: list[Skipped] = []
    for f in files:
        name = names[f] if counts[names[f]] == 1 else f"{f.parent.name}/{names[f]}"
        result = load_file(f, name, family)
        if isinstance(result, Dataset):
            datasets.append(result)
        else:
            skipped.append(result)
    return datasets, skipped
