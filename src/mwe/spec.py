"""Behavior specs of the registered families: `load_spec` reads a spec file against
`mwe.families.FAMILIES`.

The record and the reader are in `mwe.behavior_spec`, which knows no family (the families
import it for `BehaviorSpec`); this module is the one place that composes the reader with the
registry, so the two never import each other.
"""

from __future__ import annotations

from pathlib import Path

from mwe.behavior_spec import (
    NAME_RE,
    BehaviorSpec,
    FilterSettings,
    GenerateSettings,
    read_spec,
)
from mwe.config_reader import Checker, Locator, read_config
from mwe.families import FAMILIES

__all__ = ["NAME_RE", "BehaviorSpec", "Checker", "FilterSettings", "GenerateSettings", "Locator",
           "load_spec", "read_config"]


def load_spec(path: str | Path) -> BehaviorSpec:
    """Read and validate a spec; a bad one raises DataError naming file, line and field."""
    return read_spec(path, [f.schema for f in FAMILIES])
