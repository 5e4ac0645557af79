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


@pytest.fixture(scope="session")
def smol_hf() -> Any:
    """The bundled SmolLM2 through the hf backend, loaded once per test run (three modules
    use it; a test that changes a setting of it puts it back)."""
    from mwe.models import hf

    name = "smollm2-135m-instruct"
    return hf.load(f"hf:{name}", name, hf.identity(name))


@pytest.fixture(scope="session")
def golden_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A golden case (tests/golden.py CASES) run once per test run, with an empty cache:
    `golden_run(name)` gives (its folder, its cache, its files as compared). The golden
    comparison and the construction tests read the same run instead of building twice."""
    from golden import produce

    root = tmp_path_factory.mktemp("golden")
    runs: dict[str, Any] = {}

    def get(name: str) -> Any:
        if name not in runs:
            runs[name] = (root / name, root / f"{name}.sqlite", produce(name, root))
        return runs[name]

    return get
