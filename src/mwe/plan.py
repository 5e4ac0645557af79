"""What a build would call, worked out before any call: the rows --dry-run prints."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mwe.models.base import Prompt, Sampling
from mwe.results import PlanRow

if TYPE_CHECKING:
    from mwe.models import CachedModel


@dataclass
class BuildPlan:
    """What building a one-step family's dataset would call, worked out before any call (what
    --dry-run prints): the sampling calls exactly, later stages at most, since they depend on
    how many samples survive."""

    calls: Sequence[PlanRow]  # one row per stage and model
    rows: int  # at most this many rows reach each target model (controls included)
    row_tokens: int  # about this many tokens in one evaluation prompt
    notes: list[str] = field(default_factory=list)

def sampling_row(stage: str, model: CachedModel,
                 calls: Sequence[tuple[Sequence[Prompt], Sampling]]) -> PlanRow:
    """A --dry-run row for sampling calls: how many, how many the cache holds, the estimated
    input tokens and at most max_tokens out per sample of the rest."""
    n = cached = t_in = t_out = 0
    for prompts, sampling in calls:
        a, b, c, d = model.plan_generate(prompts, sampling)
        n, cached, t_in, t_out = n + a, cached + b, t_in + c, t_out + d
    return PlanRow(stage, model.spec, model.spec, n, cached, t_in, t_out)

