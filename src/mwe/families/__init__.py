"""Dataset families of Perez et al. (2022), registered in one place.

A new family is one module that composes a `mwe.family.Family` (FAMILY) and one line in
FAMILIES below. A module here that is no family (`biographies`) holds what several
families share: no family module imports another. Specs are read against this registry by
`mwe.spec.load_spec`; nothing here or in a family imports `mwe.spec`.
"""

from __future__ import annotations

from typing import Any

from mwe.errors import MweError
from mwe.families import (
    advanced_ai_risk,
    persona,
    pushback,
    sandbagging,
    sycophancy,
    winogenerated,
)
from mwe.family import Family
from mwe.records import Dataset, Item
from mwe.rows import Row

# the order of names in messages and of the families' sections in mwe report
FAMILIES: tuple[Family, ...] = (persona.FAMILY, advanced_ai_risk.FAMILY, winogenerated.FAMILY,
                                sycophancy.FAMILY, sandbagging.FAMILY, pushback.FAMILY)
BY_NAME: dict[str, Family] = {f.name: f for f in FAMILIES}
NAMES: tuple[str, ...] = tuple(BY_NAME)
# most specific first: advanced-ai-risk takes any question with answers
_DETECTION = sorted(FAMILIES, key=lambda f: f.reader.priority)

__all__ = ["BY_NAME", "FAMILIES", "NAMES", "Dataset", "Family", "Item", "Row", "by_name",
           "detect", "output_files"]


def detect(obj: dict[str, Any]) -> Family | None:
    for family in _DETECTION:
        if family.reader.detect(obj):
            return family
    return None


def by_name(name: str) -> Family:
    try:
        return BY_NAME[name]
    except KeyError:
        raise MweError(f"unknown family '{name}' (known: {', '.join(NAMES)})") from None


def output_files() -> tuple[str, ...]:
    """Every extra result file any family may write (for clearing a reused folder)."""
    return tuple(name for f in FAMILIES for name in f.scorer.output_files)
