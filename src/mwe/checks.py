"""One way to check a value read from somewhere a user wrote: `At` says where (file, line),
its accessors check a value's type and bounds, and every refusal is one
`mwe.errors.DataError` naming the file, the line and the (dotted) field, worded
"expected WHAT, got KIND" with `kind` naming what was there.

Specs and series files (`mwe.config_reader`), prices (`mwe.cost`), report inputs
(`mwe.report.inputs`), JSON rows (`mwe.rows`) and the `MWE_*` environment (`mwe.settings`,
whose text kinds are here too, as a model string's `?key=value` options read them) all check
through this module, so a value is refused in the same words wherever it was read.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from mwe.errors import DataError

# how a refused value is shown: its kind ('a string'), its kind and value ('a string ("x")'),
# or, for values that are always text (a variable, a URL option), the text ("'x'")
Show = Literal["kind", "value", "text"]
SHOWN_CHARS = 40  # a longer string is cut there, so the error stays one readable line


def kind(value: Any, show: Show = "kind") -> str:
    """What a JSON/YAML value is, as an error message names it: 'null', 'a boolean',
    'a number', 'a string', 'a list', 'an object' (else the Python type, e.g. a YAML date);
    `show="value"` adds the value ('a number (5)'), `show="text"` is the text's repr."""
    if show == "text":
        return repr(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        name, shown = "a boolean", json.dumps(value)
    elif isinstance(value, int | float):
        try:
            name, shown = "a number", repr(value)
        except ValueError:  # an integer of more digits than Python prints
            name, shown = "a number", "too long to show"
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        cut = text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 1] + "…"
        name, shown = "a string", cut
    elif isinstance(value, list):
        return "a list"
    elif isinstance(value, dict):
        return "an object"
    else:
        return type(value).__name__
    return name if show == "kind" else f"{name} ({shown})"


def _bounds(low: float | None, high: float | None, above: float | None) -> str:
    """' between 0 and 1', ' of at least 0', ' above 0': the range a number was refused for."""
    if above is not None:
        return f" above {above:g}"
    if low is not None and high is not None:
        return f" between {low:g} and {high:g}"
    return f" of at least {low:g}" if low is not None else \
        f" of at most {high:g}" if high is not None else ""


@dataclass(frozen=True)
class At:
    """Where values were read: the file (or variable), and the line where one is known.

    `word` and `show` are how this source words a refusal ("got" and the kind with its value
    by default; the report says "found"), so each reader keeps its messages."""

    path: str
    line: int | None = None
    word: str = "got"
    show: Show = "value"

    def error(self, field: str | None, message: str) -> DataError:
        return DataError(self.path, self.line, field or None, message)

    def on(self, line: int | None) -> At:
        """The same source at another line."""
        return replace(self, line=line)

    def expected(self, field: str | None, what: str, value: Any) -> DataError:
        """The one refusal: "expected WHAT, got KIND"."""
        return self.error(field, f"expected {what}, {self.word} {kind(value, self.show)}")

    def string(self, value: Any, field: str | None) -> str:
        if not isinstance(value, str):
            raise self.expected(field, "a string", value)
        return value

    def nonempty(self, value: Any, field: str | None) -> str:
        """A string with more than white space in it (returned as it is)."""
        if not isinstance(value, str) or not value.strip():
            raise self.expected(field, "a non-empty string", value)
        return value

    def choice(self, value: str, field: str | None, choices: tuple[str, ...]) -> str:
        if value not in choices:
            raise self.error(field, f"'{value}' is not one of: {', '.join(choices)}")
        return value

    def boolean(self, value: Any, field: str | None) -> bool:
        if not isinstance(value, bool):
            raise self.expected(field, "true or false", value)
        return value

    def number(self, value: Any, field: str | None, *, low: float | None = None,
               high: float | None = None, above: float | None = None, what: str | None = None,
               text: bool = False) -> float:
        """A finite number (booleans are not), returned as read (an int stays an int) within
        the bounds given; `what` words every refusal ("a price of at least 0"); `text`: a
        string that reads as a number counts as one (YAML reads 135e6 as a string; a CSV cell
        is one)."""
        v = value
        if text and isinstance(v, str) and (read := text_number(v)) is not None:
            v = read
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self.expected(field, what or "a number", value)
        try:
            finite = math.isfinite(v)
        except OverflowError:  # an integer too long for a float
            raise self.error(field, f"expected {what or 'a finite number'}, {self.word} one "
                             "too large") from None
        if not finite:
            raise self.expected(field, what or "a finite number", value)
        if (low is not None and v < low) or (high is not None and v > high) or \
                (above is not None and v <= above):
            raise self.expected(field, what or f"a number{_bounds(low, high, above)}", value)
        return v

    def integer(self, value: Any, field: str | None, *, low: float | None = None,
                high: float | None = None, what: str | None = None, text: bool = False) -> int:
        """A number (as `number` checks it) that is whole: 2.0 counts, 2.5 does not."""
        v = self.number(value, field, what=what, text=text)
        if isinstance(v, float) and not v.is_integer():
            raise self.expected(field, what or "a whole number", value)
        if (low is not None and v < low) or (high is not None and v > high):
            raise self.expected(field, what or f"a number{_bounds(low, high, None)}", value)
        return int(v)

    def mapping(self, value: Any, field: str | None, what: str = "an object") -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.expected(field, what, value)
        return value

    def listing(self, value: Any, field: str | None, what: str = "a list") -> list[Any]:
        if not isinstance(value, list):
            raise self.expected(field, what, value)
        return value

    def strings(self, value: Any, field: str | None, *, what: str = "a list of non-empty strings",
                nonblank: bool = True) -> list[str]:
        """One string or a non-empty list of them, as a list; `nonblank`: none only white
        space."""
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(
                isinstance(x, str) and (x.strip() or not nonblank) for x in items):
            raise self.expected(field, what, value)
        return list(items)

    def distinct(self, values: list[str], field: str | None) -> list[str]:
        seen: set[str] = set()
        for x in values:
            if x in seen:
                raise self.error(field, f"'{x}' is listed twice")
            seen.add(x)
        return values

    def unknown(self, field: str | None, allowed: set[str]) -> DataError:
        """The refusal of a key that is none of `allowed`."""
        return self.error(field, f"unknown field (expected one of: {', '.join(sorted(allowed))})")


@dataclass(frozen=True)
class Kind:
    """What a text value (an environment variable, a model string's option) holds: `what`
    completes "expected ...", `convert` raises ValueError for a text that is not one."""

    what: str
    convert: Callable[[str], Any]

    def parse(self, source: str, text: str) -> Any:
        """`text` converted, or the refusal naming `source` (e.g. the variable):
        "MWE_THREADS: expected a positive integer, got 'x'"."""
        try:
            return self.convert(text)
        except ValueError:
            raise At(source, show="text").expected(None, self.what, text) from None


def text_number(text: str) -> float | None:
    """The number a text spells (' 2.5 ', '1e3'), or None; NaN and infinities included."""
    try:
        return float(text)
    except ValueError:
        return None


def whole(least: int) -> Callable[[str], int]:
    """Digits only (no sign, no exponent), at least `least`."""
    def convert(text: str) -> int:
        text = text.strip()
        if not (text.isascii() and text.isdigit()) or int(text) < least:
            raise ValueError(text)
        return int(text)
    return convert


def decimal(positive: bool) -> Callable[[str], float]:
    """A finite number of at least 0 (`positive`: above 0)."""
    def convert(text: str) -> float:
        value = text_number(text)
        if value is None or not math.isfinite(value) or value < 0 or (positive and value == 0):
            raise ValueError(text)
        return value
    return convert


def one_of(*choices: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text.strip() not in choices:
            raise ValueError(text)
        return text.strip()
    return convert


POSITIVE_INT = Kind("a positive integer", whole(1))
COUNT = Kind("an integer of at least 0", whole(0))
POSITIVE = Kind("a positive number", decimal(positive=True))
NON_NEGATIVE = Kind("a number of at least 0", decimal(positive=False))
