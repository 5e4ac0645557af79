"""The hf backend's packed scoring: prefix trees laid out in rows must let every token see
exactly its own sequence, as a plain forward pass of that sequence alone would."""

from __future__ import annotations

import random
from types import SimpleNamespace
from typing import Any

import pytest
from helpers import plain_logprob

from mwe.models.base import Job
from mwe.models.hf import HFModel, _Row


def _pack(jobs: list[Job], p: int, row_tokens: int) -> list[_Row]:
    return HFModel._pack(SimpleNamespace(row_tokens=row_tokens), jobs, p)  # type: ignore[arg-type]


def _random_jobs(rng: random.Random, n: int, p: int) -> list[Job]:
    """Sequences over a 3-token alphabet after a shared prefix: many shared branches."""
    prefix = list(range(100, 100 + p))
    jobs = []
    for r in range(n):
        tokens = prefix + [rng.randrange(3) for _ in range(rng.randrange(1, 9))]
        reads = [(k, rng.randrange(50), r, 0) for k in range(p, len(tokens))]
        jobs.append(Job(tokens, reads))
    return jobs


@pytest.mark.parametrize("seed", range(5))
def test_tree_mask_from_subtree_ends_is_each_tokens_own_sequence(seed: int) -> None:
    """j <= i < ends[j] holds exactly when j is on i's path: the path rebuilt from the
    visible tokens is the job's own suffix, at the depths a plain forward pass gives it."""
    rng = random.Random(seed)
    p = rng.randrange(0, 3)
    jobs = _random_jobs(rng, 40, p)
    rows = _pack(jobs, p, row_tokens=rng.choice([4, 8, 16, 64]))
    seen = 0
    for row in rows:
        n = len(row.tokens)
        assert len(row.ends) == len(row.depths) == n
        visible = [[j for j in range(n) if j <= i < row.ends[j]] for i in range(n)]
        for i, path in enumerate(visible):
            assert [row.depths[j] for j in path] == list(range(row.depths[i] + 1))
        for i, target, r, _ in row.reads:
            job = jobs[r]
            path = visible[i]
            # the read at row index i is the job's position p + depth: its tokens so far
            pos = p + len(path) - 1
            assert [row.tokens[j] for j in path] == job.tokens[p : pos + 1]
            assert (pos, target) in {(k, t) for k, t, _, _ in job.reads}
            seen += 1
    assert seen == sum(len(j.reads) for j in jobs)


@pytest.mark.slow
@pytest.mark.parametrize("row_tokens", [6, 128])
def test_packed_scores_equal_plain_forward_passes(smol_hf: Any, row_tokens: int) -> None:
    """Small rows force many units per row and several forward calls; long answers branch
    inside a tree; the last request's context is the whole shared prefix."""
    head = "Is the following statement something you would say?\n\""
    reqs: list[tuple[str, list[str]]] = [
        (head + "I like cats\"", [" Yes", " No"]),
        (head + "I like dogs\"", [" Yes", " No"]),
        (head + "I like dogs and cats\"", [" (A) yes", " (B) no, not at all"]),
        (head + "I never lie\"", [" Yes", " No", " Maybe so"]),
        (head.rstrip('"'), [" \"I agree\"", " nothing"]),
    ]
    saved = smol_hf.row_tokens, smol_hf.batch_tokens
    smol_hf.row_tokens, smol_hf.batch_tokens = row_tokens, 4 * row_tokens
    try:
        scores = smol_hf.score(reqs)
    finally:
        smol_hf.row_tokens, smol_hf.batch_tokens = saved
    for (ctx, conts), lps in zip(reqs, scores):
        for cont, lp in zip(conts, lps):
            assert lp == pytest.approx(plain_logprob(smol_hf, ctx, cont), abs=1e-4), (ctx[-30:], cont)
