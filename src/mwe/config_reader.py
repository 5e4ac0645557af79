"""Reading the YAML and TOML files a user writes (specs, series files, price tables) into a
mapping, with the line of each key, so that every refusal names the file, line and field.

`Checker` is `mwe.checks.At` for such a file: it finds the line of the key it checks.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path
from typing import Any

from mwe.checks import At
from mwe.errors import DataError


class Locator:
    """Finds the line of a key for error messages (YAML node marks, or a search in TOML)."""

    def __init__(self, text: str, yaml_root: Any = None) -> None:
        self.lines = text.splitlines()
        self.root = yaml_root

    def line(self, section: str | None, key: str) -> int | None:
        if self.root is not None:
            node, mark = self.root, None
            for part in ([section] if section else []) + [key]:
                pairs = node.value if isinstance(getattr(node, "value", None), list) else []
                pair = next((kv for kv in pairs if isinstance(kv, tuple)
                             and getattr(kv[0], "value", None) == part), None)
                if pair is None:
                    return None
                mark, node = pair[0].start_mark, pair[1]
            return int(mark.line) + 1 if mark is not None else None
        in_section = section is None
        for i, raw in enumerate(self.lines, 1):
            s = raw.strip()
            if s.startswith("["):
                in_section = s.strip("[] ") == section
            elif (in_section and re.match(rf"^{re.escape(key)}\s*=", s)) or (
                    section and re.match(rf"^{re.escape(section)}\s*=\s*\{{", s) and key in s):
                return i
        return None


def parse_yaml(text: str, source: str) -> tuple[Any, Any]:
    """The YAML text's data and its node tree (for the lines of keys), refusing a key given
    twice in one mapping; a syntax error names its line."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise DataError(source, mark.line + 1 if mark else None, None,
                        f"invalid YAML: {problem}") from None
    _no_duplicate_keys(source, root)
    return data, root


def read_config(path: Path) -> tuple[dict[str, Any], Locator]:
    """A YAML or TOML file as a mapping, refusing empty files and repeated keys, with a
    locator for the lines of its keys (specs and series files share this)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(str(path), None, None, f"cannot read the spec: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise DataError(str(path), None, None, "the spec is not UTF-8 text") from None
    if not text.strip():
        raise DataError(str(path), None, None, "the file is empty (a spec needs at least name, "
                        "family and generator; see examples/specs)")
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            m = re.search(r"line (\d+)", str(exc))
            raise DataError(str(path), int(m.group(1)) if m else None, None,
                            f"invalid TOML: {exc}") from None
        return data, Locator(text)
    if path.suffix not in (".yaml", ".yml", ".json"):
        raise DataError(str(path), None, None, "a spec is a .yaml, .yml, .toml or .json file")
    data, root = parse_yaml(text, str(path))
    if data is None:
        raise DataError(str(path), None, None, "the file has no fields, only comments (a spec "
                        "needs at least name, family and generator; see examples/specs)")
    if not isinstance(data, dict):
        raise DataError(str(path), 1, None, "a spec is a mapping of fields (name: ..., family: ...)")
    return data, Locator(text, root)


def _no_duplicate_keys(source: str, node: Any) -> None:
    """YAML keeps the last of two equal keys without a word; a file that says a thing twice is
    a mistake, so name the line of the second. (TOML's parser already refuses them.)"""
    import yaml

    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key, value in node.value:
            k = getattr(key, "value", None)
            if isinstance(k, str):
                if k in seen:
                    raise DataError(source, key.start_mark.line + 1, k,
                                    "appears twice (the first would be silently ignored)")
                seen.add(k)
            _no_duplicate_keys(source, value)
    elif isinstance(node, yaml.SequenceNode):
        for value in node.value:
            _no_duplicate_keys(source, value)


class Checker:
    """Typed field checks (`mwe.checks.At`) whose errors name the file, the key's line and
    the field ('key' or 'section.key')."""

    def __init__(self, path: Path, loc: Locator) -> None:
        self.path = path
        self.loc = loc

    def at(self, section: str | None, key: str | None) -> tuple[At, str | None]:
        """Where a key is: the file at its line (else its section's), and its dotted name."""
        line = self.loc.line(section, key) if key else None
        if line is None and section:
            line = self.loc.line(None, section)
        return At(str(self.path), line), f"{section}.{key}" if section and key else (key or section)

    def fail(self, section: str | None, key: str | None, message: str) -> DataError:
        at, name = self.at(section, key)
        return at.error(name, message)

    def error(self, field_name: str, message: str) -> DataError:
        """A located error on 'key' or 'section.key' (the SpecCheck a SpecSchema's check reports through)."""
        section, _, key = field_name.rpartition(".")
        return self.fail(section or None, key, message)

    def warn(self, field_name: str, message: str) -> None:
        """Print a located warning, as mwe prints its other warnings: the spec still runs."""
        print(f"mwe: warning: {self.error(field_name, message)}", file=sys.stderr)

    def table(self, data: dict[str, Any], section: str | None, allowed: set[str]) -> None:
        for key in data:
            if key not in allowed:
                at, name = self.at(section, str(key))
                raise at.unknown(name, allowed)

    def string(self, data: dict[str, Any], section: str | None, key: str,
               choices: tuple[str, ...] | None = None) -> str:
        at, name = self.at(section, key)
        v = at.nonempty(data[key], name)
        if choices:
            at.choice(v, name, choices)
        return v.strip()

    def integer(self, data: dict[str, Any], section: str | None, key: str, low: int,
                high: int | None = None, limit: str = "") -> int:
        at, name = self.at(section, key)
        v = data[key]
        if isinstance(v, bool) or not isinstance(v, int):  # 2.0 is a mistake in a spec
            raise at.expected(name, "a whole number", v)
        if v < low or (high is not None and v > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            why = f": {limit}" if limit and high is not None and v > high else ""
            raise at.error(name, f"{v} is out of range (must be {bound}{why})")
        return v

    def number(self, data: dict[str, Any], section: str | None, key: str, low: float,
               high: float, low_open: bool = False) -> float:
        at, name = self.at(section, key)
        v = at.number(data[key], name)
        if v < low or v > high or (low_open and v == low):
            raise at.error(name, f"{v} is out of range ({low} to {high})")
        return float(v)

    def strings(self, data: dict[str, Any], section: str | None, key: str) -> list[str]:
        """A list of distinct non-empty strings (one string counts as a list of one)."""
        at, name = self.at(section, key)
        return at.distinct([x.strip() for x in at.strings(data[key], name)], name)

    def boolean(self, data: dict[str, Any], section: str | None, key: str) -> bool:
        at, name = self.at(section, key)
        return at.boolean(data[key], name)

