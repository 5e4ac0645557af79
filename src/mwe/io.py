"""Atomic file output: a reader never sees a half-written file, even after kill -9."""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

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


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_open(path) as fh:
        json.dump(obj, fh, indent=2, ensure_ascii=False)
        fh.write("\n")


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    with atomic_open(path) as fh:
        writer = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in columns})


def remove_stale(folder: str | Path, names: Sequence[str], written: Sequence[str | Path]) -> None:
    """Remove mwe's own optional outputs that this run did not write.

    A reused output folder must not keep a family's result file from an earlier run beside
    results that have no rows of that family.
    """
    keep = {Path(p).name for p in written}
    for name in names:
        if name not in keep:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(Path(folder) / name)


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
