from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent
SHARED = REPO.parent / "shared" / "anthropic-evals"

# tests that read the released datasets beside the repository skip, with the reason, without them
needs_shared = pytest.mark.skipif(not SHARED.exists(),
                                  reason=f"{SHARED} is not present (released anthropics/evals data)")


@pytest.fixture(scope="module")
def smol_hf() -> Any:
    """The bundled SmolLM2 through the hf backend, loaded once per test module."""
    from mwe.models import hf

    name = "smollm2-135m-instruct"
    return hf.load(f"hf:{name}", name, hf.identity(name))


def plain_logprob(model: Any, context: str, continuation: str) -> float:
    """The reference for hf scoring: log P(continuation | context) from one plain forward pass
    of that sequence alone (no cache, no mask, the full output layer everywhere)."""
    import torch

    ctx_ids = model._encode_many([context])[0]
    whole = model._encode_many([context + continuation])[0]
    cont = whole[len(ctx_ids):]
    with torch.inference_mode():
        logits = model.model(torch.tensor([whole])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    start = len(whole) - len(cont)
    return float(sum(logprobs[start - 1 + k, t] for k, t in enumerate(cont)))
