"""RunFolder: the names of a run folder's files in one place, card.json read with one error
policy wherever it is read, and no private key (the model calls) inside a written file."""

from __future__ import annotations

import ast
import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from fakes import FakeChatLM
from helpers import DATA, REPO

from mwe.card import ModelCalls
from mwe.errors import DataError
from mwe.models import Models
from mwe.models.cached import CachedModel
from mwe.records import Dataset
from mwe.run_folder import ResultsFolder, RunFolder, read_card
from mwe.store import Store

SRC = REPO / "src" / "mwe"
GOLDEN = DATA / "golden"
FILE_NAMES = {"spec.json", "generated.jsonl", "generate.json", "scored.jsonl", "dataset.jsonl",
              "card.json", "card.md", "usage.csv", "rows.jsonl", "summary.csv", "summary.json",
              "sweep.json"}  # and results/, a word JSON keys use as well


def test_the_layout_of_a_run_folder(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    assert [p.name for p in (run.spec, run.generated, run.generate_json, run.scored,
                             run.dataset, run.card_json, run.card_md, run.usage)] == [
        "spec.json", "generated.jsonl", "generate.json", "scored.jsonl", "dataset.jsonl",
        "card.json", "card.md", "usage.csv"]
    assert run.results == ResultsFolder(tmp_path / "results")
    res = run.results
    assert (res.rows, res.summary_csv, res.summary_json, res.usage) == (
        tmp_path / "results" / "rows.jsonl", tmp_path / "results" / "summary.csv",
        tmp_path / "results" / "summary.json", tmp_path / "results" / "usage.csv")
    assert RunFolder.beside(tmp_path / "dataset.jsonl") == run


def test_only_run_folder_spells_the_file_names() -> None:
    """Every module names these files through mwe.run_folder. Text that mentions a file
    (docstrings, messages) is not a name used to open one."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel == "run_folder.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in FILE_NAMES:
                found.append(f"{rel}:{node.lineno}: {node.value!r}")
    assert not found, found


# --- read_card: one error policy ---------------------------------------------------------

def test_read_card_reads_an_object(tmp_path: Path) -> None:
    (tmp_path / "card.json").write_text('{"name": "x", "rows": 2}', encoding="utf-8")
    assert RunFolder(tmp_path).read_card() == {"name": "x", "rows": 2}
    assert read_card(tmp_path / "card.json", optional=True) == {"name": "x", "rows": 2}


def test_a_missing_card_is_an_error_unless_optional(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        RunFolder(tmp_path).read_card()
    assert str(err.value).startswith(f"{tmp_path / 'card.json'}: missing")
    assert RunFolder(tmp_path).read_card(optional=True) is None


@pytest.mark.parametrize(("text", "line", "message"), [
    ('{\n  "name": "x",\n  oops\n}', 3, "not valid JSON"),
    ('{\n "mean": NaN\n}', 2, "not a JSON number"),
    ("[1, 2]", None, "expected an object, found a list"),
    ('"card"', None, "expected an object, found a string"),
])
def test_a_malformed_card_names_the_file_and_line(tmp_path: Path, text: str, line: int | None,
                                                  message: str) -> None:
    (tmp_path / "card.json").write_text(text, encoding="utf-8")
    for optional in (False, True):  # optional spares a missing card, never a malformed one
        with pytest.raises(DataError) as err:
            RunFolder(tmp_path).read_card(optional=optional)
        assert (err.value.path, err.value.line) == (str(tmp_path / "card.json"), line)
        assert message in err.value.message


def test_a_card_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "card.json").write_bytes(b'{"name": "\xff"}')
    with pytest.raises(DataError, match="not UTF-8"):
        RunFolder(tmp_path).read_card(optional=True)


def _dataset_with(folder: Path, card: str | None) -> Dataset:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "dataset.jsonl").write_text("", encoding="utf-8")
    if card is not None:
        (folder / "card.json").write_text(card, encoding="utf-8")
    return Dataset("d", str(folder / "dataset.jsonl"), "persona", ())


def test_every_reader_of_a_card_beside_a_dataset_has_the_one_policy(tmp_path: Path) -> None:
    """Where a card is optional (a released file has none) its absence falls back; a
    malformed card is the same located error in every reader."""
    from mwe.datasets import dataset_name
    from mwe.export import _read_card as export_card  # noqa: PLC2701 - the reader under test
    from mwe.map import DEFAULT_NAMER, namer_for
    from mwe.validate.sample import description_of

    plain = _dataset_with(tmp_path / "plain", None)
    assert namer_for(plain) == DEFAULT_NAMER
    assert description_of(plain, None) == 'has the behavior "d"'
    assert dataset_name(Path(plain.path)) == "dataset"
    assert export_card(plain) is None

    good = _dataset_with(tmp_path / "good", json.dumps({
        "name": "likes-cats", "description": "likes cats", "generator": {"spec": "g:x"},
        "rows": 0}))
    assert namer_for(good) == "g:x"
    assert description_of(good, None) == "likes cats"
    assert dataset_name(Path(good.path)) == "likes-cats"
    assert export_card(good) == json.loads((tmp_path / "good" / "card.json").read_text())

    bad = _dataset_with(tmp_path / "bad", '{\n"name": \n')
    for read in (lambda: namer_for(bad), lambda: description_of(bad, None),
                 lambda: dataset_name(Path(bad.path)), lambda: export_card(bad)):
        with pytest.raises(DataError) as err:
            read()
        assert (err.value.path, err.value.line) == (str(tmp_path / "bad" / "card.json"), 3)


# --- the model calls: counted beside the card, never inside it -------------------------------

class StandIns(Models):
    """Every model a FakeChatLM through the cache."""

    def check(self, uses: Sequence[tuple[str, str]], embedding: Sequence[str] = ()) -> None:
        pass

    def open(self, spec: str) -> CachedModel:
        model = CachedModel(spec, {"backend": "fake", "spec": spec},
                            lambda: FakeChatLM(sample=" I like cats more than anything else."),
                            self.store)
        self.opened.append(model)
        return model


def _private_keys(x: object) -> list[str]:
    if isinstance(x, dict):
        return [k for k in x if str(k).startswith("_")] + [
            k for v in x.values() for k in _private_keys(v)]
    return [k for v in x for k in _private_keys(v)] if isinstance(x, list) else []


def test_model_calls_are_counted_beside_the_card_not_in_it(tmp_path: Path) -> None:
    from mwe.pipeline.filter import run_filter
    from mwe.pipeline.generate import generate
    from mwe.spec import load_spec

    spec_path = tmp_path / "s.yaml"
    spec_path.write_text("name: t\nfamily: persona\ndescription: likes cats\n"
                         "generator: llamacpp:x\ndiscriminator: llamacpp:y\n"
                         "generate: {per_label: 4, batch: 2}\n", encoding="utf-8")
    spec = load_spec(spec_path)
    out = RunFolder(tmp_path / "run")
    models = StandIns(Store(tmp_path / "c.sqlite"))
    meta = generate(spec, out.path, models, progress=False)
    first = ModelCalls.of(models)
    assert first == ModelCalls(cached=0, computed=4)  # 2 labels x 2 chunks
    card = run_filter(out.path, out.path, StandIns(models.store), progress=False)
    assert "model_calls" not in meta and not _private_keys(card)
    for path in (out.generate_json, out.card_json):
        assert not _private_keys(json.loads(path.read_text(encoding="utf-8"))), path
    assert "_model_calls" not in out.card_md.read_text(encoding="utf-8")

    again = StandIns(models.store)  # the same stage again: every call from the cache
    generate(spec, tmp_path / "again", again, progress=False)
    assert ModelCalls.of(again) == ModelCalls(cached=4, computed=0)


def test_no_written_golden_file_holds_a_private_key() -> None:
    for path in sorted(GOLDEN.rglob("*.json")):
        assert not _private_keys(json.loads(path.read_text(encoding="utf-8"))), path
