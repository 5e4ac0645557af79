"""Fixtures, used by name. Nothing here is imported: shared names are in helpers.py (paths, the
`mwe` command) and fakes.py (stand-in models)."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import Mwe


@pytest.fixture(scope="session")
def mwe() -> Mwe:
    """The one way a test runs the `mwe` command (session-wide: module fixtures use it too)."""
    return Mwe()


@pytest.fixture(scope="module")
def smol_hf() -> Any:
    """The bundled SmolLM2 through the hf backend, loaded once per test module."""
    from mwe.models import hf

    name = "smollm2-135m-instruct"
    return hf.load(f"hf:{name}", name, hf.identity(name))
