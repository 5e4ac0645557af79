"""Outputs users rely on stay byte-identical through refactorings (see tests/golden.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from golden import CASES, GOLDEN, expected, produce


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_outputs_match_the_recorded_ones(name: str, tmp_path: Path) -> None:
    if not (GOLDEN / name).is_dir():
        pytest.skip(f"no golden outputs recorded for {name} (python tests/golden.py --record)")
    want = expected(name)
    got = produce(name, tmp_path)
    assert sorted(got) == sorted(want), "a different set of files"
    for rel in want:
        assert got[rel] == want[rel], f"{name}/{rel} differs from tests/data/golden/{name}/{rel}"
