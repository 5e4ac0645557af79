"""Two scoring methods side by side (`--score logprob,text`): the agreement of log-probs and
replies per model and dataset, and its confusion table."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import Mwe

from mwe.pipeline.methods import compare, logprob_answer, text_answer

AB = [" (A)", " (B)"]


def lp_row(line: int, logprobs: list[float], dataset: str = "d") -> dict[str, Any]:
    return {"model": "m", "dataset": dataset, "source": "d.jsonl", "line": line,
            "answers": AB, "logprobs": logprobs}


def text_row(line: int, extracted: list[str | None], unscored: str | None = None,
             dataset: str = "d") -> dict[str, Any]:
    return {"model": "m", "dataset": dataset, "source": "d.jsonl", "line": line,
            "answers": AB, "logprobs": None, "score": "text", "extracted": extracted,
            "unscored": unscored}


def test_answers_of_each_method() -> None:
    assert logprob_answer(lp_row(1, [-2.0, -0.5])) == " (B)"
    assert logprob_answer(lp_row(1, [-1.0, -1.0])) == " (A)"  # a tie: the first, as argmax
    assert text_answer(text_row(1, [" (A)", " (B)", " (A)"])) == (" (A)", None)
    assert text_answer(text_row(1, [" (A)", " (B)"])) == (None, "several_answers")
    assert text_answer(text_row(1, [None], "refused")) == (None, "refused")


def test_agreement_over_items_both_scored_with_the_rest_in_the_table() -> None:
    rows = [lp_row(1, [-0.1, -3.0]), lp_row(2, [-3.0, -0.1]), lp_row(3, [-0.1, -3.0]),
            lp_row(4, [-0.1, -3.0]),
            text_row(1, [" (A)"]), text_row(2, [" (A)"]), text_row(3, [" (A)"]),
            text_row(4, [None], "truncated")]
    (out,) = compare(rows)
    # items 1-3 both scored; 1 and 3 agree (A, A), 2 does not (B vs A); 4 is unscored by text
    assert (out["n"], out["n_both_scored"], out["n_same"], out["n_text_unscored"]) == (4, 3, 2, 1)
    assert out["pct_same"] == pytest.approx(200 / 3)
    assert out["ci_low"] < out["pct_same"] < out["ci_high"]
    assert out["confusion"] == {"(A)": {"(A)": 2, "unscored: truncated": 1}, "(B)": {"(A)": 1}}


def test_a_chat_answer_without_its_space_is_the_same_answer() -> None:
    """After a chat template's newline the log-prob answer is "(A)"; the reply's is " (A)"."""
    row = lp_row(1, [-0.1, -3.0])
    row["answers"] = ["(A)", "(B)"]
    (out,) = compare([row, text_row(1, [" (A)"])])
    assert (out["n_both_scored"], out["n_same"]) == (1, 1)


def test_one_method_alone_compares_nothing() -> None:
    assert compare([lp_row(1, [-0.1, -3.0])]) == []
    assert compare([text_row(1, [" (A)"])]) == []


@pytest.mark.slow
def test_evaluate_both_ways_on_the_bundled_model(tmp_path: Path, mwe: Mwe) -> None:
    out = tmp_path / "out"
    res = mwe(["evaluate", "-m", "llamacpp:smollm2-135m-instruct",
               "-d", "tests/data/released/survival-instinct.jsonl", "--limit", "4",
               "--format", "chat", "--score", "logprob,text", "--max-tokens", "24", "-o", out],
              cache=tmp_path / "c.sqlite", progress=False, ok=True)
    rows = [json.loads(x) for x in (out / "rows.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and [r.get("score") for r in rows] == [None] * 4 + ["text"] * 4
    summaries = json.loads((out / "summary.json").read_text())["summary"]
    assert [s.get("n_scored") is None for s in summaries] == [True, False]
    assert summaries[1]["n_scored"] + summaries[1]["n_unscored"] == 4
    (table,) = list(csv.DictReader((out / "methods.csv").open()))
    # the table counts every item: both scored, or unscored by the replies
    assert int(table["n"]) == 4
    assert int(table["n_both_scored"]) + int(table["n_text_unscored"]) == 4
    assert int(table["n_both_scored"]) == summaries[1]["n_scored"]
    assert "log-probs vs replies" in res.stdout
    manifest = json.loads((out / ".mwe-outputs.json").read_text())
    assert {"methods.csv", "methods.json"} <= set(manifest["files"])
