"""Loading every family from real released files and from rows written in the documented formats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import DATA, SHARED, needs_shared

from mwe.datasets import expand, load
from mwe.errors import DataError, MweError


def test_released_slices_detect_each_family() -> None:
    datasets, skipped = load([str(DATA / "released")])
    fam = {d.name: d.family for d in datasets}
    assert fam == {
        "agreeableness": "persona",
        "survival-instinct": "advanced-ai-risk",
        "few-shot-power-seeking-inclination": "advanced-ai-risk",
        "winogenerated_examples": "winogenerated",
    }
    assert skipped == []
    persona = next(d for d in datasets if d.family == "persona")
    first = json.loads((DATA / "released" / "agreeableness.jsonl").read_text().splitlines()[0])
    item = persona.items[0]
    assert item.line == 1
    assert item.answers[item.matching[0]] == first["answer_matching_behavior"]
    assert item.meta["label_confidence"] == first["label_confidence"]


def test_advanced_ai_risk_answers_keep_dataset_spelling() -> None:
    datasets, _ = load([str(DATA / "released" / "survival-instinct.jsonl")])
    rows = [json.loads(x) for x in (DATA / "released" / "survival-instinct.jsonl").read_text().splitlines()]
    for item, row in zip(datasets[0].items, rows):
        assert item.answers == (" (A)", " (B)")
        assert item.answers[item.matching[0]] == row["answer_matching_behavior"]


def test_sycophancy_formats() -> None:
    datasets, _ = load([str(DATA / "formats" / "sycophancy_*.jsonl")])
    by = {d.name: d for d in datasets}
    assert {d.family for d in datasets} == {"sycophancy"}
    phil = by["sycophancy_on_philpapers2020"]
    # answer_not_matching_behavior is a list there; every option of the question is scored
    assert phil.items[1].answers == (" (A)", " (B)", " (C)")
    assert phil.items[1].matching == (2,)
    politics = by["sycophancy_on_political_typology_quiz"]
    assert politics.items[0].meta["user_affiliation"] == "liberal"
    assert politics.items[0].assistant_prefix == "I believe the better option is"
    assert by["sycophancy_on_nlp_survey"].items[0].assistant_prefix == "I believe the best answer is"
    assert "user_affiliation" not in by["sycophancy_on_nlp_survey"].items[0].meta


def test_human_generated_advanced_ai_risk() -> None:
    datasets, _ = load([str(DATA / "formats" / "human_generated")])
    by = {d.name: d for d in datasets}
    array_file = by["self-awareness-general-ai"]  # a JSON array, answers written as "(A)"
    assert array_file.family == "advanced-ai-risk"
    assert array_file.items[1].answers == ("(A)", "(B)") and array_file.items[1].matching == (1,)
    wrapped = by["survival-instinct"].items[0]
    assert wrapped.answers == tuple(f" ({c})" for c in "ABCDEFGH")
    assert wrapped.matching == (2,)
    assert wrapped.raw_text.startswith("Question:")
    assert not wrapped.user_text.startswith("Question:") and not wrapped.user_text.endswith("Answer:")


def test_winogenerated_fields() -> None:
    datasets, _ = load([str(DATA / "released" / "winogenerated_examples.jsonl")])
    item = datasets[0].items[0]
    assert item.answers == (" his", " her", " their")
    assert (item.meta["male"], item.meta["female"]) == (0, 1)
    assert item.user_text.startswith("Please fill in the missing blank in this sentence with a pronoun: ")


def test_folder_glob_and_duplicate_names(tmp_path: Path) -> None:
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "same.jsonl").write_text(
            (DATA / "released" / "agreeableness.jsonl").read_text())
    datasets, _ = load([str(tmp_path)])
    assert sorted(d.name for d in datasets) == ["a/same", "b/same"]
    assert len(expand([str(tmp_path / "*" / "same.jsonl")])) == 2
    with pytest.raises(MweError, match="no file matches"):
        expand([str(tmp_path / "*.nothing")])
    with pytest.raises(MweError, match="no such file"):
        expand([str(tmp_path / "missing.jsonl")])


MALFORMED = {
    "bad_json.jsonl": (2, None, "invalid JSON"),
    "missing_field.jsonl": (3, "answer_not_matching_behavior", "missing"),
    "mistyped_confidence.jsonl": (1, "label_confidence", "expected a number"),
    "question_not_string.jsonl": (2, "question", "expected a string"),
    "empty.jsonl": (None, None, "empty"),
    "blank_lines_only.jsonl": (None, None, "empty"),
    "non_utf8.jsonl": (2, None, "UTF-8"),
    "answer_not_in_choices.jsonl": (2, "answer_matching_behavior", "not among the question's choices"),
    "persona_answer_not_yes_no.jsonl": (1, "answer_matching_behavior", "not among the choices"),
    "not_an_object.jsonl": (2, None, "expected a JSON object"),
    "unknown_family.jsonl": (1, None, "cannot tell the dataset family"),
    "sycophancy_empty_list.jsonl": (1, "answer_not_matching_behavior", "expected a string or a list"),
    "winogenerated_no_female_pronoun.jsonl": (2, "pronoun_options", "one female and one male"),
    "winogenerated_bls_string.jsonl": (1, "BLS_percent_women_2019", "expected a number"),
}


def test_malformed_corpus_is_complete() -> None:
    assert sorted(p.name for p in (DATA / "malformed").iterdir()) == sorted(MALFORMED)


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_file_is_located(name: str) -> None:
    line, field, text = MALFORMED[name]
    path = DATA / "malformed" / name
    with pytest.raises(DataError) as info:
        load([str(path)])
    err = info.value
    assert err.path == str(path)
    assert err.line == line
    assert err.field == field
    assert text in err.message


@needs_shared
def test_every_released_file_loads() -> None:
    datasets, skipped = load([str(SHARED)])
    assert len(datasets) == len(list(SHARED.rglob("*.jsonl"))) - 1
    assert [Path(s.path).name for s in skipped] == ["winogenerated_occupations.jsonl"]
    for d in datasets:
        lines = sum(1 for x in Path(d.path).read_text().splitlines() if x.strip())
        assert len(d.items) == lines, d.path
