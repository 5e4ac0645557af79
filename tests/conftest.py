from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent
SHARED = REPO.parent / "shared" / "anthropic-evals"

# tests that read the released datasets beside the repository skip, with the reason, without them
needs_shared = pytest.mark.skipif(not SHARED.exists(),
                                  reason=f"{SHARED} is not present (released anthropics/evals data)")
