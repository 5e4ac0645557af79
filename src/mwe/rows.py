"""Reading JSON Lines (or a JSON array) into located rows, refusing what JSON readers
would otherwise accept silently: duplicate keys, NaN, and texts no model should be asked.

Every malformed line stops the run with its file, line and field.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from mwe import settings
from mwe.checks import At
from mwe.errors import DataError


class Row:
    """A parsed JSON object with its location, for field access with located errors (checked
    through `mwe.checks.At`, naming what was found by its kind alone: "got a number")."""

    def __init__(self, obj: Any, path: str, line: int) -> None:
        self.path = path
        self.line = line
        self.obj: dict[str, Any] = self.at.mapping(obj, None, "a JSON object")

    @property
    def at(self) -> At:
        return At(self.path, self.line, show="kind")

    def error(self, field_name: str | None, message: str) -> DataError:
        return self.at.error(field_name, message)

    def has(self, name: str) -> bool:
        return name in self.obj

    def string(self, name: str, required: bool = True, nonempty: bool = True) -> str:
        if name not in self.obj:
            if required:
                raise self.error(name, "missing")
            return ""
        value = self.at.string(self.obj[name], name)
        if nonempty and not value.strip():
            raise self.error(name, "is empty")
        return value

    def number(self, name: str, required: bool = True) -> float | None:
        if name not in self.obj:
            if required:
                raise self.error(name, "missing")
            return None
        return float(self.at.number(self.obj[name], name))

    def str_or_list(self, name: str) -> list[str]:
        if name not in self.obj:
            raise self.error(name, "missing")
        values = self.at.strings(self.obj[name], name, what="a string or a list of strings",
                                 nonblank=False)
        if any(not v.strip() for v in values):
            raise self.error(name, "is empty")
        return values


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
    limit = settings.current().max_chars
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
