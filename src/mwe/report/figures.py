"""The report's figures: each is embedded in the page and saved as a PNG beside it, in
NAME-plots/ for NAME.html (reports never share a folder)."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path

from mwe.families import NAMES
from mwe.io import atomic_open

# The names of the PNGs mwe writes (a family section's figures start with the family's name);
# any other file in NAME-plots/ is left alone.
OWN_PNG = re.compile("(heatmap-|lines-|card-\\d+-|agreement|validation|positions|"
                     + "|".join(re.escape(n) for n in NAMES) + ").*\\.png")


def _file_name(name: str) -> str:
    """A figure's file name from dataset, family and model names: ASCII letters, digits,
    '-', '_' and '.', never a path (a name like ../x or a/b stays inside NAME-plots/)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:120]


@dataclass(frozen=True)
class Figure:
    """One drawn figure, as the page template shows it (the `figure` macro)."""

    stem: str  # the PNG's file name without .png
    data: bytes
    alt: str  # alt text and caption: may hold dataset and model names, so escaped
    cls: str = ""

    @property
    def b64(self) -> str:
        """The PNG for a data: URL, so the page needs no file beside it to show it."""
        return base64.b64encode(self.data).decode("ascii")


class Figures:
    """Keeps each figure's PNG to save beside the report once the whole page is built
    (nothing is written for a report that fails)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.files: dict[str, bytes] = {}

    @property
    def paths(self) -> list[Path]:
        return [self.folder / name for name in self.files]

    def add(self, name: str, data: bytes, alt: str, cls: str = "") -> Figure:
        """Register a figure under a file name of its own; names that differ only in odd
        characters (x/y and x_y) get -2, -3, ... in the order they are added."""
        stem = _file_name(name)
        k = 1
        while f"{stem}.png" in self.files:
            k += 1
            stem = f"{_file_name(name)}-{k}"
        self.files[f"{stem}.png"] = data
        return Figure(stem, data, alt, cls)

    def write(self) -> None:
        for name, data in self.files.items():
            with atomic_open(self.folder / name, "wb") as fh:
                fh.write(data)

    def prune(self) -> None:
        """Remove the figures an earlier report into the same file wrote and this one did
        not, so the folder holds this report's figures only."""
        if not self.folder.is_dir():
            return
        for old in self.folder.iterdir():
            if old.name not in self.files and OWN_PNG.fullmatch(old.name) and old.is_file():
                old.unlink()
