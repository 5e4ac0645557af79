"""Outputs users rely on stay the same through refactorings and across CPU kinds (see
tests/golden.py for what "the same" means and why)."""

from __future__ import annotations

from typing import Any

import pytest
from golden import CASES, GOLDEN, compare, expected, ties


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CASES))
def test_outputs_match_the_recorded_ones(name: str, golden_run: Any) -> None:
    if not (GOLDEN / name).is_dir():
        pytest.skip(f"no golden outputs recorded for {name} (python tests/golden.py --record)")
    want = expected(name)
    got = golden_run(name)[2]  # made once per test run (conftest.py), with an empty cache
    assert sorted(got) == sorted(want), "a different set of files"
    problems = [p for rel in want for p in compare(f"{name}/{rel}", want[rel], got[rel])]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", sorted(CASES))
def test_recorded_decisions_are_not_near_ties(name: str) -> None:
    if not (GOLDEN / name).is_dir():
        pytest.skip(f"no golden outputs recorded for {name}")
    assert ties(expected(name)) == []


def _line(rel: str, number: int) -> str:
    return (GOLDEN / rel).read_text(encoding="utf-8").splitlines()[number - 1]


def test_machine_noise_in_logprobs_passes() -> None:
    # the AMD/Intel difference seen on the demo: 6th-7th significant digit of a log-prob
    want = b'{"logprobs": [-3.17475563287735, -2.0], "p": 0.6389782, "n": 3}\n'
    got = b'{"logprobs": [-3.174756735563278, -2.0000004], "p": 0.638978, "n": 3}\n'
    assert compare("x.jsonl", want, got) == []


def test_rounded_numbers_may_differ_by_their_rounding() -> None:
    assert compare("card.md", b"mean 0.639 (min 0.514)", b"mean 0.640 (min 0.514)") == []
    assert compare("card.md", b"mean 0.639 (min 0.514)", b"mean 0.641 (min 0.514)") != []


@pytest.mark.parametrize("change", [
    ("-3.6588873863220215", "-3.6578873863220215"),  # a log-prob off by 1e-3
    ('"matches_behavior": false', '"matches_behavior": true'),  # a decision
    ('"line": 1,', '"line": 2,'),  # an integer
    ('"dataset": "deceive-users"', '"dataset": "deceive-user"'),  # text
])
def test_real_changes_fail(change: tuple[str, str]) -> None:
    rel = "demo/results/rows.jsonl"
    want = (GOLDEN / rel).read_bytes()
    old, new = change
    assert old in _line(rel, 1)
    first, rest = want.split(b"\n", 1)
    got = first.replace(old.encode(), new.encode(), 1) + b"\n" + rest
    problems = compare(rel, want, got)
    assert len(problems) == 1 and problems[0].startswith(f"{rel}:1: ")


def test_a_missing_line_fails() -> None:
    rel = "demo/scored.jsonl"
    want = (GOLDEN / rel).read_bytes()
    assert compare(rel, want, want.split(b"\n", 1)[1]) != []


def test_ties_finds_a_near_tie() -> None:
    row = ('{"answers": [" Yes", " No"], "logprobs": [-1.0, -1.00001], '
           '"answer_matching_behavior": [" Yes"], "matches_behavior": true}\n')
    assert len(ties({"rows.jsonl": row.encode()})) == 1
    scored = ('{"label": "a", "label_confidence": 0.7, "score": 0.7, "fate": "kept"}\n'
              '{"label": "a", "label_confidence": 0.69999, "score": 0.69999, "fate": "below_top_k"}\n')
    assert len(ties({"scored.jsonl": scored.encode()})) == 1
