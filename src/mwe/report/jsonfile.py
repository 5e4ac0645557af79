"""Reading the report's JSON inputs strictly: a file that is not JSON as every other reader
takes it (Python's json also reads NaN, Infinity and -Infinity) is a DataError naming the
file, the line and, where there is one, the field."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from mwe.errors import DataError


def field_name(prefix: str, key: str | int) -> str:
    """The field's name in an error: summary[3].dataset, counts."label with spaces"."""
    if isinstance(key, int):
        return f"{prefix}[{key}]"
    name = key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)
    return f"{prefix}.{name}" if prefix else name


class _Constant(str):
    """NaN, Infinity or -Infinity as read: JSON has no such numbers, so load_json refuses
    them with their line and field."""


_DECODER = json.JSONDecoder(parse_constant=_Constant)
_CONSTANT = re.compile(r'"(?:[^"\\]|\\.)*"|(-?Infinity|NaN)')  # a string (skipped) or one


def _constant(x: Any, prefix: str = "") -> tuple[str, str] | None:
    """The field and name of the first constant in x, in the file's order (json keeps it)."""
    if isinstance(x, _Constant):
        return prefix, str(x)
    items = x.items() if isinstance(x, dict) else enumerate(x) if isinstance(x, list) else ()
    return next((f for k, v in items if (f := _constant(v, field_name(prefix, k)))), None)


def load_json(path: Path) -> Any:
    """A JSON file; unreadable text, invalid JSON, NaN and infinities are a DataError."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(str(path), None, None, f"not UTF-8 text (byte {exc.start})") from exc
    except OSError as exc:
        raise DataError(str(path), None, None, f"cannot read: {exc.strerror or exc}") from exc
    try:
        x = _DECODER.decode(text)
        found = _constant(x)
    except json.JSONDecodeError as exc:
        raise DataError(str(path), exc.lineno, None,
                        f"not valid JSON: {exc.msg} (column {exc.colno})") from exc
    except RecursionError as exc:
        raise DataError(str(path), None, None, "not valid JSON: nested too deeply") from exc
    except ValueError as exc:  # an integer of more digits than Python converts
        raise DataError(str(path), None, None,
                        f"not valid JSON: {str(exc).split(';')[0]}") from exc
    if found is not None:
        first = next(m for m in _CONSTANT.finditer(text) if m.group(1))
        raise DataError(str(path), text.count("\n", 0, first.start()) + 1, found[0] or None,
                        f"found {found[1]}, which is not a JSON number (write null where there "
                        "is no value)")
    return x
