"""The typed records (mwe.results) give back exactly the files mwe writes: every key, in its
order, the families' own fields included; and a malformed file is an error naming the file,
line and field. Checked on real outputs: the recorded golden runs (demo, sycophancy,
winogenerated, sweep), and a demo run here (slow)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from helpers import DATA, REPO

from mwe.checks import At
from mwe.errors import DataError
from mwe.io import write_json
from mwe.results import Card, PlanRow, ScoredRow, SummaryRow
from mwe.run_folder import RunFolder

GOLDEN = DATA / "golden"
RUNS = ("demo", "sycophancy", "winogenerated")  # run folders: a card and results/
ROWS = {name: GOLDEN / name / "results" / "rows.jsonl" for name in RUNS} | {
    "sweep": GOLDEN / "sweep" / "rows.jsonl"}


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def as_written(d: dict[str, Any]) -> str:
    """A JSON Lines row as mwe.io writes it."""
    return json.dumps(d, ensure_ascii=False)


# ---- scored rows ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(ROWS))
def test_scored_rows_give_back_their_lines(name: str) -> None:
    path = ROWS[name]
    for i, line in enumerate(lines(path), 1):
        row = ScoredRow.from_dict(json.loads(line), At(str(path), i))
        assert as_written(row.to_dict()) == line, f"{path}:{i}"


def test_a_familys_own_fields_stay_in_their_place() -> None:
    wino = ScoredRow.from_dict(json.loads(lines(ROWS["winogenerated"])[0]))
    assert dict(wino.extra) == {k: wino[k] for k in ("p_female_minus_male", "occupation",
                                                     "BLS_percent_women_2019")}
    assert list(wino.to_dict())[-3:] == ["p_female_minus_male", "occupation",
                                         "BLS_percent_women_2019"]
    syc = ScoredRow.from_dict(json.loads(lines(ROWS["sycophancy"])[0]))
    assert list(syc.to_dict())[9:] == ["question_part", "answer_matching_behavior",
                                       "p_matching", "matches_behavior"]
    assert syc.family == "sycophancy" and syc.line == 1 and syc.label is None
    assert "label" not in syc and syc.get("label") is None


def test_a_sweep_row_ends_with_its_label() -> None:
    row = ScoredRow.from_dict(json.loads(lines(ROWS["sweep"])[0]))
    assert row.label == "SmolLM2-135M-Instruct" and list(row.to_dict())[-1] == "label"
    unlabelled = replace(row, label=None)
    assert "label" not in unlabelled.to_dict()
    assert unlabelled.labelled("x").to_dict() == {**row.to_dict(), "label": "x"}


def test_a_reward_models_row_has_no_valid_mass() -> None:
    d = json.loads(lines(ROWS["demo"])[0]) | {"valid_mass": None, "logprobs": [812.5, 790.0]}
    row = ScoredRow.from_dict(d)
    assert row.valid_mass is None and as_written(row.to_dict()) == as_written(d)


def test_a_familys_field_may_not_hide_a_common_one() -> None:
    row = ScoredRow.from_dict(json.loads(lines(ROWS["demo"])[0]))
    with pytest.raises(ValueError, match="repeat common ones"):
        replace(row, extra={**row.extra, "line": 3})


@pytest.mark.parametrize(("change", "field"), [
    ({"answers": " Yes"}, "answers"),
    ({"logprobs": [-1.0]}, "logprobs"),
    ({"logprobs": [-1.0, "x"]}, "logprobs[1]"),
    ({"line": 0}, "line"),
    ({"model": 3}, "model"),
    ({"label": 3}, "label"),
])
def test_a_malformed_row_names_its_file_line_and_field(change: dict[str, Any], field: str
                                                       ) -> None:
    d = json.loads(lines(ROWS["demo"])[0]) | change
    with pytest.raises(DataError) as err:
        ScoredRow.from_dict(d, At("rows.jsonl", 7))
    assert (err.value.path, err.value.line, err.value.field) == ("rows.jsonl", 7, field)
    assert str(err.value).startswith(f"rows.jsonl:7: field '{field}': ")


# ---- summary rows ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", RUNS)
def test_summary_rows_give_back_summary_json(name: str, tmp_path: Path) -> None:
    path = GOLDEN / name / "results" / "summary.json"
    summary = json.loads(path.read_text(encoding="utf-8"))
    rows = [SummaryRow.from_dict(s, At(str(path))) for s in summary["summary"]]
    assert [list(r.to_dict()) for r in rows] == [list(s) for s in summary["summary"]]
    write_json(tmp_path / "summary.json", {"settings": summary["settings"],
                                           "summary": [r.to_dict() for r in rows]})
    assert (tmp_path / "summary.json").read_bytes() == path.read_bytes()


def test_a_summarys_measures_are_the_familys() -> None:
    path = GOLDEN / "winogenerated" / "results" / "summary.json"
    row = SummaryRow.from_dict(json.loads(path.read_text(encoding="utf-8"))["summary"][0])
    assert list(row.extra) == ["pearson_r", "r_ci_low", "r_ci_high", "mean_p_female_minus_male"]
    assert row.n == 6 and row["pearson_r"] == row.extra["pearson_r"]
    assert "pct_matching" not in row


def test_a_null_mean_valid_mass_is_nan_as_in_memory() -> None:
    """write_json writes the rewards' NaN as null; read back, it is NaN again."""
    path = GOLDEN / "demo" / "results" / "summary.json"
    d = json.loads(path.read_text(encoding="utf-8"))["summary"][0] | {"mean_valid_mass": None}
    assert math.isnan(SummaryRow.from_dict(d).mean_valid_mass)
    with pytest.raises(DataError, match=r"field 'n': expected a number of at least 0, got a number \(-1\)"):
        SummaryRow.from_dict(d | {"n": -1}, At("summary.json"))


# ---- cards ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", RUNS)
def test_cards_give_back_card_json(name: str, tmp_path: Path) -> None:
    run = RunFolder(GOLDEN / name)
    card = run.card()
    out = tmp_path / "card.json"
    write_json(out, card.to_dict())
    assert out.read_bytes() == run.card_json.read_bytes()
    d = json.loads(run.card_json.read_text(encoding="utf-8"))
    assert list(card.to_dict()) == list(d) and list(d)[-1] == "usage"
    assert card.rows == d["rows"] and card.counts == d["counts"]
    assert card.filtered == (name == "demo")  # the others are built in one step
    assert (card.name, card.family) == (d["name"], d["family"])


def test_a_one_step_familys_statistics_stay_in_their_place() -> None:
    card = RunFolder(GOLDEN / "winogenerated").card()
    # the family's own keys, between the head and usage, as the family wrote them
    assert list(card.body)[:3] == ["occupations", "generator", "discriminator"]
    assert list(card.body).index("blanks") == list(card.body).index("counts") + 1
    assert card["pronoun_sets"] == card.body["pronoun_sets"]


def test_adding_to_a_card_keeps_its_order() -> None:
    card = RunFolder(GOLDEN / "demo").card()
    added = card.adding("rebalance", {"method": "cluster"})
    assert list(added.to_dict())[-2:] == ["rebalance", "usage"]
    again = added.adding("rows", 3)  # in its place
    assert list(again.to_dict()) == list(added.to_dict()) and again.rows == 3
    assert replace(card, usage=None).get("usage") is None
    assert "usage" not in replace(card, usage=None).to_dict()


@pytest.mark.parametrize(("card", "field"), [
    ({"name": "x", "family": "persona", "counts": {"a": {}}}, "rows"),
    ({"name": "x", "family": "persona", "counts": {"a": 1}, "rows": 1}, "counts.a"),
    ({"name": "x", "family": "persona", "counts": [], "rows": 1}, "counts"),
    ({"name": "x", "counts": {}, "rows": 1}, "family"),
    ({"name": "x", "family": "persona", "counts": {}, "rows": 1, "usage": {}}, "usage"),
])
def test_a_malformed_card_names_its_file_and_field(tmp_path: Path, card: dict[str, Any],
                                                   field: str) -> None:
    run = RunFolder(tmp_path)
    run.card_json.write_text(json.dumps(card), encoding="utf-8")
    with pytest.raises(DataError) as err:
        run.card()
    assert (err.value.path, err.value.field) == (str(run.card_json), field)


def test_a_one_step_build_with_a_malformed_card_writes_nothing(tmp_path: Path) -> None:
    from mwe.card import write_build
    from mwe.spec import load_spec

    spec = load_spec(REPO / "src" / "mwe" / "data" / "demo.yaml")
    with pytest.raises(DataError, match="persona build: field 'rows': missing"):
        write_build(tmp_path / "run", spec, {"name": "x", "family": "persona", "counts": {}},
                    [], [], ["sampled"], (), ())
    assert not (tmp_path / "run").exists()


# ---- plan rows ------------------------------------------------------------------------------

def test_plan_rows_keep_their_keys() -> None:
    row = PlanRow("generate", "llamacpp:x", "llamacpp:x", 16, 2, 1000, 400)
    assert list(row.to_dict()) == ["stage", "model", "spec", "calls", "cached", "tokens_in",
                                   "tokens_out"]
    assert PlanRow.from_dict(row.to_dict()) == row and row.to_run == 14
    with pytest.raises(DataError, match="field 'cached': missing"):
        PlanRow.from_dict({k: v for k, v in row.to_dict().items() if k != "cached"})


def test_dry_run_prints_typed_plan_rows(capsys: pytest.CaptureFixture[str]) -> None:
    from mwe.cli.table import print_plan

    print_plan([PlanRow("generate", "g", "llamacpp:x", 16, 2, 1000, 400),
                PlanRow("evaluate (at most)", "t", "hf:y", 5, 0, 300, 0)], ["a note"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["stage", "model", "calls", "cached", "to", "run", "tokens", "in",
                              "tokens", "out", "cost"]
    assert out[2].split()[:7] == ["generate", "g", "16", "2", "14", "~1,000", "<=400"]
    assert out[3].split()[:7] == ["evaluate", "(at", "most)", "t", "5", "0", "5"]
    assert "a note" in out


# ---- a demo run here: the records the stages pass on are the files they write ---------------

@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Card, list[Any]]:
    from mwe.models import Models
    from mwe.pipeline.run import run_all
    from mwe.spec import load_spec
    from mwe.store import Store

    tmp = tmp_path_factory.mktemp("demo")
    spec = load_spec(REPO / "src" / "mwe" / "data" / "demo.yaml")
    spec = replace(spec, generate=replace(spec.generate, per_label=4))
    card, runs = run_all(spec, tmp / "run", Models(Store(tmp / "calls.sqlite")), progress=False)
    return tmp / "run", card, runs


@pytest.mark.slow
def test_the_demos_card_is_the_card_it_wrote(demo: tuple[Path, Card, list[Any]]) -> None:
    out, card, _ = demo
    assert isinstance(card, Card) and card.filtered
    written = json.loads(RunFolder(out).card_json.read_text(encoding="utf-8"))
    assert card.to_dict() == written and list(card.to_dict()) == list(written)
    assert RunFolder(out).card() == card
    assert card.rows == sum(c["kept"] for c in card.counts.values())


@pytest.mark.slow
def test_the_demos_rows_and_summaries_are_those_it_wrote(demo: tuple[Path, Card, list[Any]]
                                                         ) -> None:
    out, _, runs = demo
    results = RunFolder(out).results
    held = [row for run in runs for row in run.iter_rows()]
    assert held and all(isinstance(r, ScoredRow) for r in held)
    assert [as_written(r.to_dict()) for r in held] == lines(results.rows)
    for i, line in enumerate(lines(results.rows), 1):
        row = ScoredRow.from_dict(json.loads(line), At(str(results.rows), i))
        assert row == held[i - 1] and as_written(row.to_dict()) == line
        assert {"answer_matching_behavior", "p_matching", "matches_behavior"} == set(row.extra)
    summary = json.loads(results.summary_json.read_text(encoding="utf-8"))["summary"]
    typed = [s for run in runs for s in run.summaries]
    assert [SummaryRow.from_dict(s) for s in summary] == typed
    assert [list(s.to_dict()) for s in typed] == [list(s) for s in summary]
