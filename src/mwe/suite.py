"""Suite files: many behaviors built with shared settings (issue 28).

    name: persona-small            # optional; else the file's stem
    defaults:                      # any spec field, shared by every behavior
      family: persona
      generator: llamacpp:smollm2-135m-instruct
      generate: {per_label: 16, prompt: chat}
    behaviors:
      - name: deceive-users
        description: is willing to deceive its users to reach its goals
      - name: power-seeking
        description: wants to acquire more power and resources
        generate: {per_label: 32}  # generate/filter/evaluate merge key by key with defaults

Each behavior's spec is its defaults merged with its own fields, then read exactly as
`mwe.spec.load_spec` reads a spec file (same checks, same defaults, relative input files
resolved against the suite's folder). A refusal names the suite file, the line (the
behavior's own key where it sets it, else the defaults') and the field as
'behaviors[I].FIELD' (I counted from 0, as series files count their models).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mwe.behavior_spec import NAME_RE, SPEC_FIELDS, BehaviorSpec, spec_from_data
from mwe.checks import At
from mwe.config_reader import Checker, Locator, read_config
from mwe.families import FAMILIES

# the spec's blocks a behavior merges key by key with the defaults' (other fields replace)
BLOCKS = ("generate", "filter", "evaluate")
SUITE_FIELDS = {"name", "description", "defaults", "behaviors"}


@dataclass(frozen=True)
class Suite:
    path: Path
    name: str  # the suite's `name:`, else the file's stem
    behaviors: tuple[BehaviorSpec, ...]  # in file order
    description: str = ""


def is_suite(path: str | Path) -> bool:
    """Whether the file is a suite (a mapping with a top-level `behaviors` key); a file that
    cannot be read or parsed is not one, so the spec reader reports its problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml", ".json"):
            import yaml

            data = yaml.safe_load(text)
        else:
            return False
    except Exception:  # any unreadable file: load_spec words the refusal
        return False
    return isinstance(data, dict) and "behaviors" in data


class SuiteLocator(Locator):
    """The line of a behavior's field: its own key where it sets it, else the defaults'."""

    def __init__(self, own: Locator, defaults: Locator | None) -> None:
        super().__init__("")
        self.own = own
        self.defaults = defaults

    def line(self, section: str | None, key: str) -> int | None:
        line = self.own.line(section, key)
        if line is None and self.defaults is not None:
            line = self.defaults.line(section, key)
        return line


class SuiteChecker(Checker):
    """A spec checker for one behavior: fields named 'behaviors[I].FIELD', and a field that no
    key gives (a missing one) at the line where the behavior starts."""

    def __init__(self, path: Path, loc: SuiteLocator, where: str, start: int | None) -> None:
        super().__init__(path, loc)
        self.where = where
        self.start = start

    def at(self, section: str | None, key: str | None) -> tuple[At, str | None]:
        at, name = super().at(section, key)
        if at.line is None:
            at = at.on(self.start)
        return at, f"{self.where}.{name}" if name else self.where


def load_suite(path: str | Path) -> Suite:
    """Read and validate a suite: every behavior's spec, in file order; a bad one raises
    DataError naming the suite file, the line and the field."""
    path = Path(path)
    data, loc = read_config(path)
    text = "\n".join(loc.lines)
    c = Checker(path, loc)
    c.table(data, None, SUITE_FIELDS)
    name = path.stem
    if "name" in data:
        name = c.string(data, None, "name")
        if not NAME_RE.match(name):
            raise c.fail(None, "name", f"'{name}' must be letters, digits, '.', '_' or '-'")
    description = c.string(data, None, "description") if "description" in data else ""
    scopes = _Scopes(text, loc)
    defaults = _defaults(data, c)
    items = data.get("behaviors")
    if not isinstance(items, list) or not items:
        raise c.fail(None, "behaviors", "expected a non-empty list of behaviors (each a "
                     "mapping with name, description and any field overriding the defaults)")
    starts = [scopes.start(i) or loc.line(None, "behaviors") for i in range(len(items))]
    _check_items(path, items, starts, scopes)
    d_loc = scopes.defaults() if "defaults" in data else None
    specs = []
    for i, item in enumerate(items):
        checker = SuiteChecker(path, SuiteLocator(scopes.behavior(i), d_loc),
                               f"behaviors[{i}]", starts[i])
        specs.append(spec_from_data(merge(defaults, item), checker, path,
                                    [f.schema for f in FAMILIES]))
    return Suite(path, name, tuple(specs), description)


def merge(defaults: dict[str, Any], behavior: dict[str, Any]) -> dict[str, Any]:
    """A behavior's spec fields: the defaults, its own fields replacing them, except the
    generate/filter/evaluate blocks, merged key by key."""
    merged = dict(defaults)
    for key, value in behavior.items():
        base = defaults.get(key)
        if key in BLOCKS and isinstance(base, dict) and isinstance(value, dict):
            merged[key] = {**base, **value}
        else:
            merged[key] = value
    return merged


def _defaults(data: dict[str, Any], c: Checker) -> dict[str, Any]:
    """The `defaults:` mapping, its keys checked here so that a mistake in it is named there
    (once) rather than in every behavior."""
    defaults = data.get("defaults", {})
    if defaults is None:  # `defaults:` with nothing under it
        return {}
    if not isinstance(defaults, dict):
        raise c.fail(None, "defaults", "expected a mapping of spec fields shared by every "
                     "behavior")
    allowed = set(SPEC_FIELDS - {"name"}) | {k for f in FAMILIES for k in f.schema.options}
    if "name" in defaults:
        raise c.fail("defaults", "name", "each behavior names itself (its name names its "
                     "folder); the suite's own name is the top-level 'name'")
    c.table(defaults, "defaults", allowed)
    for key in BLOCKS:
        if key in defaults and not isinstance(defaults[key], dict):
            raise c.fail("defaults", key, "expected a table of settings")
    return defaults


def _check_items(path: Path, items: list[Any], starts: list[int | None],
                 scopes: _Scopes) -> None:
    """Each behavior a mapping with a name, no two names alike (they name the folders)."""
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        at = At(str(path), starts[i])
        if not isinstance(item, dict):
            raise at.expected(f"behaviors[{i}]", "a mapping (name: ..., description: ...)",
                              item)
        if "name" not in item:
            raise at.error(f"behaviors[{i}].name", "missing (each behavior needs a name: it "
                           "names the behavior's folder)")
        name = item["name"]
        if not isinstance(name, str):
            continue  # the spec reader refuses it, with its line
        key = name.strip().casefold()
        line = scopes.behavior(i).line(None, "name") or starts[i]
        if key in seen:
            j = seen[key]
            first = scopes.behavior(j).line(None, "name") or starts[j]
            same = "the same name" if items[j]["name"].strip() == name.strip() else \
                "a name differing only in case (one folder on case-insensitive file systems)"
            raise At(str(path), line).error(
                f"behaviors[{i}].name", f"'{name.strip()}': behaviors[{j}] (line {first}) has "
                f"{same}; each behavior needs its own (it names the behavior's folder)")
        seen[key] = i


class _Scopes:
    """Locators for the suite's parts: the defaults and each behavior (YAML: their nodes;
    TOML: the lines of each `[[behaviors]]` table, searched as the spec reader searches)."""

    def __init__(self, text: str, loc: Locator) -> None:
        self.text = text
        self.root = loc.root
        self.lines = text.splitlines()
        self.toml: dict[Any, list[str]] | None = None if self.root is not None else self._split()

    def _node(self, key: str) -> Any:
        pairs = self.root.value if isinstance(getattr(self.root, "value", None), list) else []
        return next((v for k, v in pairs if getattr(k, "value", None) == key), None)

    def _items(self) -> list[Any]:
        node = self._node("behaviors")
        value = getattr(node, "value", None)
        return value if isinstance(value, list) else []

    def start(self, i: int) -> int | None:
        """The line where behavior `i` starts (its `[[behaviors]]` header in TOML)."""
        if self.root is not None:
            items = self._items()
            return int(items[i].start_mark.line) + 1 if i < len(items) else None
        headers = [n for n, s in enumerate(self.lines, 1) if _header(s) == "[[behaviors]]"]
        return headers[i] if i < len(headers) else None

    def behavior(self, i: int) -> Locator:
        if self.root is not None:
            items = self._items()
            return Locator(self.text, items[i] if i < len(items) else _EMPTY)
        assert self.toml is not None
        return Locator("\n".join(self.toml.get(i, [])))

    def defaults(self) -> Locator:
        if self.root is not None:
            return Locator(self.text, self._node("defaults") or _EMPTY)
        assert self.toml is not None
        return Locator("\n".join(self.toml.get("defaults", [])))

    def _split(self) -> dict[Any, list[str]]:
        """Per scope (the index of a behavior, or "defaults"), the file's lines with every
        other scope's blanked (so that line numbers stay) and table headers made relative to
        the scope (`[behaviors.generate]` → `[generate]`)."""
        blank = [""] * len(self.lines)
        scopes: dict[Any, list[str]] = {}
        scope: Any = None
        count = -1
        for n, raw in enumerate(self.lines):
            header = _header(raw)
            line = raw
            if header == "[[behaviors]]":
                count += 1
                scope, line = count, ""
            elif header is not None:
                table = header.strip("[] ")
                if table == "defaults":
                    scope, line = "defaults", ""
                elif table.startswith("defaults."):
                    scope, line = "defaults", f"[{table.removeprefix('defaults.')}]"
                elif table.startswith("behaviors.") and isinstance(scope, int):
                    line = f"[{table.removeprefix('behaviors.')}]"
                else:
                    scope = None
            if scope is not None:
                scopes.setdefault(scope, list(blank))[n] = line
        return scopes


def _header(raw: str) -> str | None:
    """A TOML table header on this line (`[x]`, `[[x]]`), without spaces or comment."""
    m = re.match(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\s]+?)\s*(\]\]?)\s*(#.*)?$", raw)
    return f"{m.group(1)}{m.group(2)}{m.group(3)}" if m else None


class _Empty:
    """A YAML node with no keys (a behavior or defaults the file does not have)."""

    value: list[Any] = []


_EMPTY = _Empty()
