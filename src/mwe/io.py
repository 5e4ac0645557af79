"""Atomic file output: a reader never sees a half-written file, even after kill -9.

Output folders carry a manifest (MANIFEST, see `claim_outputs`): mwe replaces and removes only
files it lists as its own, so a folder holding a user's files is never emptied by a rerun.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
import tempfile
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mwe import __version__
from mwe.errors import MweError

_UMASK: int | None = None


def _file_mode() -> int:
    """0666 less the umask: what open() would give, so outputs can be shared with colleagues.

    mkstemp creates 0600 files and the mode survives the rename; the umask is read once (it can
    only be read by setting it) and restored at once.
    """
    global _UMASK
    if _UMASK is None:
        _UMASK = os.umask(0o022)
        os.umask(_UMASK)
    return 0o666 & ~_UMASK


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Write to a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        kwargs: dict[str, Any] = {} if "b" in mode else {"encoding": "utf-8", "newline": ""}
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    with atomic_open(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def jsonl_line(row: dict[str, Any]) -> bytes:
    """One row as write_jsonl writes it, encoded: what a spool holds and copies."""
    return (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")


class JsonlSpool:
    """Rows on disk, each line exactly as write_jsonl writes it, so that a long run holds one
    dataset's rows at a time instead of all of them, and its rows.jsonl is the same bytes.

    The file is unnamed (tempfile.TemporaryFile, in TMPDIR): nothing is left behind however
    the process ends.
    """

    def __init__(self) -> None:
        # open for the spool's life, not a block: closed by close() or when collected
        self._fh: IO[bytes] = tempfile.TemporaryFile(prefix="mwe-rows-", suffix=".jsonl")  # noqa: SIM115
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def extend(self, rows: Iterable[dict[str, Any]]) -> None:
        self._fh.seek(0, os.SEEK_END)  # a read may have moved the position
        for row in rows:
            self._fh.write(jsonl_line(row))
            self.count += 1

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """The rows read back, one at a time (JSON gives back the same values: floats by
        their repr, NaN as NaN)."""
        self._fh.flush()
        self._fh.seek(0)
        for line in self._fh:
            yield json.loads(line)

    def copy_to(self, fh: IO[bytes]) -> None:
        """The lines as written, never parsed again."""
        self._fh.flush()
        self._fh.seek(0)
        shutil.copyfileobj(self._fh, fh)  # in 64 KiB pieces

    def close(self) -> None:
        self._fh.close()


def write_jsonl_parts(path: str | Path, parts: Iterable[JsonlSpool | Iterable[dict[str, Any]]]
                      ) -> None:
    """One JSONL file from parts in order, atomically: a spool copied as is, rows as
    write_jsonl writes them (the same bytes either way)."""
    with atomic_open(path, "wb") as fh:
        for part in parts:
            if isinstance(part, JsonlSpool):
                part.copy_to(fh)
            else:
                for row in part:
                    fh.write(jsonl_line(row))


def _finite(obj: Any) -> Any:
    """obj with NaN and infinities as None: JSON has no such numbers (Python writes them,
    strict readers such as mwe report and JSON.parse refuse them); null is "no value"."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: str | Path, obj: Any) -> None:
    """Indented JSON, atomically; an undefined statistic (NaN) is written as null."""
    with atomic_open(path) as fh:
        json.dump(_finite(obj), fh, indent=2, ensure_ascii=False, allow_nan=False)
        fh.write("\n")


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    with atomic_open(path) as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})


def _existing_ancestor(path: Path, what: str, shown: Path) -> Path:
    """The nearest folder that exists at or above `path` (where the output would be created)."""
    probe = path.absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise MweError(f"{what} {shown}: {probe} is a file, not a folder")
    return probe


def check_output_dir(path: str | Path, what: str = "--out") -> Path:
    """Fail before any model runs if `path` cannot become a folder mwe can write into.

    Nothing is created: a run stopped by bad input later leaves no empty folder behind.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise MweError(f"{what} {path}: exists and is not a folder")
    _probe(_existing_ancestor(path, what, path), what, path)
    return path


def check_output_file(path: str | Path, what: str = "--out") -> Path:
    """Fail before any work if `path` cannot be written as a file."""
    path = Path(path)
    if path.is_dir():
        raise MweError(f"{what} {path}: is a folder; give a file name")
    _probe(_existing_ancestor(path.parent, what, path), what, path)
    return path


def _probe(folder: Path, what: str, shown: Path) -> None:
    """Write and remove a small file: catches read-only mounts, permissions and a full disk."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=".mwe-probe.", dir=folder)
        try:
            os.write(fd, b"0" * 4096)
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(tmp)
    except OSError as exc:
        raise MweError(f"{what} {shown}: cannot write in {folder} ({exc.strerror})") from None


# --- output folders and their manifests ------------------------------------------------------

MANIFEST = ".mwe-outputs.json"  # hidden: lists what mwe wrote in the folder
LEGACY_MANIFESTS = (".mwe-export.json",)  # mwe export's marker before every output had one


def read_manifest(folder: str | Path) -> list[str] | None:
    """The files (relative paths) mwe listed as its own in `folder`, or None if it lists none.

    A manifest that is not mwe's JSON is an error naming it, never a silent "not mwe's"."""
    folder = Path(folder)
    for name in (MANIFEST, *LEGACY_MANIFESTS):
        path = folder / name
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue
        except (OSError, UnicodeDecodeError) as exc:
            raise MweError(f"{path}: cannot read mwe's list of outputs ({exc})") from None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise MweError(f"{path}:{exc.lineno}: not mwe's list of outputs ({exc.msg}); "
                           "delete it if mwe did not write it") from None
        files = obj.get("files") if isinstance(obj, dict) else None
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
            raise MweError(f"{path}: field 'files': expected a list of file names; delete the "
                           "file if mwe did not write it")
        return files
    return None


def _inside(folder: Path, rel: str) -> Path | None:
    """`folder`/`rel` if it names a file inside `folder` (a manifest is data on disk: '..',
    absolute paths and folders linked elsewhere are never followed), else None."""
    if not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
        return None
    path = folder / rel
    root = folder.resolve()
    parent = path.parent.resolve()
    return path if parent == root or root in parent.parents else None


@dataclass
class Claim:
    """An output folder checked for a run: the files its earlier manifest listed, and the
    names this run may write (None: any, as an export folder, which must be empty or mwe's)."""

    folder: Path
    names: tuple[str, ...] | None
    previous: list[str]

    def begin(self) -> None:
        """List what this run may write before writing it, so that a run killed half-way
        leaves no file of its own unlisted (and refused by the next run)."""
        if self.names:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._write(sorted({*self.previous, *self.names}))

    def finish(self, written: Iterable[str | Path], **about: Any) -> Path:
        """Remove the earlier run's files this one did not write (only those listed), then
        list this run's; returns the manifest's path."""
        rels = [str(Path(p).absolute().relative_to(self.folder.absolute()).as_posix())
                for p in written]
        keep = set(rels)
        for rel in self.previous:
            path = _inside(self.folder, rel)
            if rel in keep or path is None:
                continue
            with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
                path.unlink()
            if path.parent != self.folder:  # e.g. an export's data/, once empty
                with contextlib.suppress(OSError):
                    path.parent.rmdir()
        return self._write(sorted(keep), **about)

    def _write(self, files: list[str], **about: Any) -> Path:
        path = self.folder / MANIFEST
        write_json(path, {"mwe_version": __version__, **about, "files": files})
        for legacy in LEGACY_MANIFESTS:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.folder / legacy)
        return path


def claim_outputs(folder: str | Path, names: Collection[str] | None, what: str = "--out"
                  ) -> Claim:
    """Check, before any work, that mwe may write `names` into `folder`: it is new, or none of
    those names exists there unless mwe's manifest lists it. With `names` None the folder must
    be new, empty or hold a manifest. Nothing is written."""
    folder = check_output_dir(folder, what)
    previous = read_manifest(folder) if folder.is_dir() else None
    if names is None:
        others = [] if previous is not None or not folder.is_dir() else sorted(
            p.name for p in folder.iterdir() if p.name not in (MANIFEST, *LEGACY_MANIFESTS))
        if others:
            raise MweError(f"{what} {folder}: folder is not empty and holds no list of mwe's "
                           f"outputs ({MANIFEST}): {_few(others)}; give a new or empty folder")
    else:
        listed = set(previous or ())
        foreign = [n for n in names if n not in listed
                   and ((folder / n).exists() or (folder / n).is_symlink())]
        if foreign:
            raise MweError(f"{what} {folder}: would replace {_few(foreign)}, which mwe did not "
                           f"write there (mwe replaces only the files its {MANIFEST} lists, "
                           "which outputs of an older mwe lack); move them or give another "
                           "folder")
    return Claim(folder, None if names is None else tuple(names), previous or [])


def adopt_outputs(folder: str | Path, names: Iterable[str]) -> None:
    """List the `names` present in `folder` as mwe's, where the folder has no manifest: the
    outputs of an mwe from before manifests, in a folder known to be mwe's."""
    folder = Path(folder)
    if folder.is_dir() and read_manifest(folder) is None:
        present = sorted(n for n in names if (folder / n).is_file())
        if present:
            Claim(folder, None, [])._write(present)


def add_outputs(folder: str | Path, paths: Iterable[str | Path]) -> None:
    """List more files in `folder`'s manifest (usage.csv, written after the results); a folder
    without one is not an output folder and is left as it is."""
    folder = Path(folder)
    previous = read_manifest(folder)
    if previous is None or not (folder / MANIFEST).is_file():
        return
    rels = {str(Path(p).absolute().relative_to(folder.absolute()).as_posix()) for p in paths}
    Claim(folder, None, previous)._write(sorted({*previous, *rels}))


def clear_outputs(folder: str | Path) -> None:
    """Remove every file `folder`'s manifest lists, the manifest, and the folder once empty:
    a run that now has no results keeps none from an earlier run."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    previous = read_manifest(folder)
    if previous is None:
        return
    Claim(folder, (), previous).finish([])
    for name in (MANIFEST, *LEGACY_MANIFESTS):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(folder / name)
    with contextlib.suppress(OSError):
        folder.rmdir()


def _few(names: Sequence[str], n: int = 5) -> str:
    shown = ", ".join(names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")
