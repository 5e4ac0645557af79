"""The one shared checker (mwe.checks): each accessor's accept and refuse paths, the message
naming file, line and field, and every validator reporting through it (spec, series file,
price table, report input, JSON row, the MWE_* environment and a model string's options)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from helpers import REPO

from mwe import checks, settings
from mwe.checks import At, kind
from mwe.config_reader import Checker, read_config
from mwe.errors import DataError, MweError

AT = At("f.yaml", 3)


def refused(call: Any, *args: Any, **kwargs: Any) -> DataError:
    with pytest.raises(DataError) as err:
        call(*args, **kwargs)
    return err.value


@pytest.mark.parametrize("value, plain, shown", [
    (None, "null", "null"),
    (True, "a boolean", "a boolean (true)"),
    (3, "a number", "a number (3)"),
    (2.5, "a number", "a number (2.5)"),
    ("x", "a string", 'a string ("x")'),
    ([1], "a list", "a list"),
    ({"a": 1}, "an object", "an object"),
])
def test_kind_names_each_json_value(value: Any, plain: str, shown: str) -> None:
    assert kind(value) == plain
    assert kind(value, "value") == shown
    assert kind("x", "text") == "'x'"


def test_kind_keeps_a_message_one_short_line() -> None:
    assert kind("y" * 100, "value") == f'a string ("{"y" * 38}…)'
    assert kind(float("nan"), "value") == "a number (nan)"
    assert kind(10 ** 5000, "value") == "a number (too long to show)"  # repr refuses it
    assert kind(Path("p")) == "PosixPath"  # a value no JSON or YAML reader makes


def test_a_refusal_names_file_line_and_field() -> None:
    err = refused(AT.string, 5, "generate.prompt")
    assert (err.path, err.line, err.field) == ("f.yaml", 3, "generate.prompt")
    assert err.message == "expected a string, got a number (5)"
    assert str(err) == "f.yaml:3: field 'generate.prompt': expected a string, got a number (5)"
    # no line, no field: the file alone
    assert str(refused(At("f.json").mapping, [], None)) == "f.json: expected an object, got a list"
    assert AT.on(9).line == 9 and AT.on(9).path == "f.yaml"
    # each source keeps its words
    found = At("r.json", word="found", show="kind")
    assert refused(found.listing, 1, "x").message == "expected a list, found a number"


def test_strings() -> None:
    assert AT.string("", "a") == "" and AT.nonempty(" x ", "a") == " x "
    assert refused(AT.nonempty, "  ", "a").message == 'expected a non-empty string, got a string ("  ")'
    assert refused(AT.nonempty, None, "a").message == "expected a non-empty string, got null"
    assert AT.choice("chat", "f", ("chat", "plain")) == "chat"
    assert refused(AT.choice, "x", "f", ("chat", "plain")).message == "'x' is not one of: chat, plain"


def test_boolean() -> None:
    assert AT.boolean(False, "b") is False
    assert refused(AT.boolean, "yes", "b").message == 'expected true or false, got a string ("yes")'
    assert refused(AT.boolean, 1, "b").message == "expected true or false, got a number (1)"


def test_number() -> None:
    assert AT.number(3, "n") == 3 and isinstance(AT.number(3, "n"), int)  # kept as read
    assert AT.number(0.5, "n", low=0, high=1) == 0.5
    assert AT.number("135e6", "n", text=True) == 135e6  # YAML's reading of 135e6
    assert refused(AT.number, "135e6", "n").message == 'expected a number, got a string ("135e6")'
    assert refused(AT.number, True, "n").message == "expected a number, got a boolean (true)"
    assert refused(AT.number, math.inf, "n").message == "expected a finite number, got a number (inf)"
    assert refused(AT.number, "nan", "n", text=True).message == \
        'expected a finite number, got a string ("nan")'
    assert refused(AT.number, 10 ** 400, "n").message == "expected a finite number, got one too large"
    assert refused(AT.number, 1.5, "n", low=0, high=1).message == \
        "expected a number between 0 and 1, got a number (1.5)"
    assert refused(AT.number, -1, "n", low=0).message == \
        "expected a number of at least 0, got a number (-1)"
    assert refused(AT.number, 2, "n", high=1).message == "expected a number of at most 1, got a number (2)"
    assert refused(AT.number, 0, "n", above=0).message == "expected a number above 0, got a number (0)"
    # `what` words every refusal of the value
    for bad in ("x", -1, math.nan):
        assert refused(AT.number, bad, "p", low=0, what="a price of at least 0").message.startswith(
            "expected a price of at least 0, got")


def test_integer() -> None:
    assert AT.integer(4, "k") == 4
    assert AT.integer(4.0, "k") == 4 and isinstance(AT.integer(4.0, "k"), int)
    assert AT.integer(" 7 ", "k", text=True) == 7
    assert refused(AT.integer, 4.5, "k").message == "expected a whole number, got a number (4.5)"
    assert refused(AT.integer, "4", "k").message == 'expected a number, got a string ("4")'
    assert refused(AT.integer, 11, "k", low=0, high=10).message == \
        "expected a number between 0 and 10, got a number (11)"


def test_mapping_and_listing() -> None:
    assert AT.mapping({"a": 1}, "m") == {"a": 1} and AT.listing([], "l") == []
    assert refused(AT.mapping, [], "m").message == "expected an object, got a list"
    assert refused(AT.mapping, 1, None, "a JSON object").message == \
        "expected a JSON object, got a number (1)"
    assert refused(AT.listing, {}, "l").message == "expected a list, got an object"


def test_lists_of_strings() -> None:
    assert AT.strings("a", "s") == ["a"] and AT.strings(["a", "b"], "s") == ["a", "b"]
    for bad in ([], ["a", ""], ["a", 1], 3, None):
        assert refused(AT.strings, bad, "s").message.startswith(
            "expected a list of non-empty strings, got")
    assert AT.strings(["a", " "], "s", nonblank=False) == ["a", " "]
    assert AT.distinct(["a", "b"], "s") == ["a", "b"]
    assert refused(AT.distinct, ["a", "b", "a"], "s").message == "'a' is listed twice"
    assert AT.unknown("colour", {"b", "a"}).message == "unknown field (expected one of: a, b)"


def test_text_kinds() -> None:
    assert checks.POSITIVE_INT.parse("MWE_THREADS", " 3 ") == 3
    err = refused(checks.POSITIVE_INT.parse, "MWE_THREADS", "x")
    assert (err.path, err.line, err.field) == ("MWE_THREADS", None, None)
    assert str(err) == "MWE_THREADS: expected a positive integer, got 'x'"
    for text in ("0", "2.0", "-1", "1e3"):
        with pytest.raises(ValueError):
            checks.POSITIVE_INT.convert(text)
    assert checks.COUNT.convert("0") == 0
    assert checks.NON_NEGATIVE.convert("0") == 0.0 and checks.POSITIVE.convert("2.5") == 2.5
    for text in ("0", "nan", "inf", "x"):
        with pytest.raises(ValueError):
            checks.POSITIVE.convert(text)
    assert checks.one_of("a", "b")(" b ") == "b"
    with pytest.raises(ValueError):
        checks.one_of("a", "b")("c")
    assert checks.text_number(" 1e3 ") == 1000.0 and checks.text_number("x") is None


# --- every validator reports through the shared checker ---------------------------------


def test_a_config_file_key_is_checked_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ngenerate:\n  per_label: many\n  top_p: .inf\n")
    data, loc = read_config(path)
    c = Checker(path, loc)
    err = refused(c.integer, data["generate"], "generate", "per_label", 1)
    assert (err.path, err.line, err.field) == (str(path), 3, "generate.per_label")
    assert err.message == 'expected a whole number, got a string ("many")'
    assert refused(c.number, data["generate"], "generate", "top_p", 0.0, 1.0).message == \
        "expected a finite number, got a number (inf)"
    toml = tmp_path / "c.toml"
    toml.write_text('name = "x"\n\n[filter]\nbalance = "yes"\n')
    data, loc = read_config(toml)
    err = refused(Checker(toml, loc).boolean, data["filter"], "filter", "balance")
    assert (err.line, err.field) == (4, "filter.balance")


def test_a_bad_spec(tmp_path: Path) -> None:
    from mwe.spec import load_spec

    path = tmp_path / "s.yaml"
    path.write_text("name: x\nfamily: persona\ngenerator: hf:gemma3-270m\n"
                    "discriminator: hf:gemma3-270m\ndescription: likes cats\nseed: [1]\n")
    err = refused(load_spec, path)
    assert (err.path, err.line, err.field) == (str(path), 6, "seed")
    assert err.message == "expected a whole number, got a list"


def test_a_bad_series_file(tmp_path: Path) -> None:
    from mwe.series import load_series

    path = tmp_path / "series.yaml"
    path.write_text("name: s\nmodels:\n  - model: hf:gemma3-270m\n    params: lots\n")
    err = refused(load_series, path)
    assert (err.path, err.line, err.field) == (str(path), 2, "models[0].params")
    assert err.message == 'expected a positive number, got a string ("lots")'
    path.write_text("models:\n  - model: hf:gemma3-270m\n    num_gpus: -1\n")
    assert refused(load_series, path).message == \
        "expected a number of at least 0 (e.g. 1 or 0.25), got a number (-1)"


def test_a_bad_price_table(tmp_path: Path) -> None:
    from mwe.cost import load_prices

    path = tmp_path / "prices.yaml"
    path.write_text("models:\n  openai:a: {input: 1, output: 2}\n"
                    "  openai:b: {input: 1, output: two}\n")
    err = refused(load_prices, path)
    assert (err.path, err.line, err.field) == (str(path), 3, "models.openai:b.output")
    assert err.message == 'expected a price of at least 0, got a string ("two")'
    # a model priced twice is a mistake, not the last one silently winning
    path.write_text("models:\n  openai:a: {input: 1, output: 2}\n  openai:a: {input: 3, output: 4}\n")
    err = refused(load_prices, path)
    assert (err.line, err.field) == (3, "openai:a") and "appears twice" in err.message
    path.write_text("local: [hf, 3]\nmodels: {}\n")
    assert (refused(load_prices, path).line, refused(load_prices, path).field) == (1, "local")


def test_a_bad_report_input(tmp_path: Path) -> None:
    from mwe.report.inputs import collect

    row = {"model": "m", "dataset": "d", "family": "f", "n": "ten"}
    (tmp_path / "summary.json").write_text(json.dumps({"summary": [row]}))
    err = refused(collect, [tmp_path])
    assert (err.path, err.line, err.field) == (str(tmp_path / "summary.json"), None, "summary[0].n")
    assert err.message == 'expected a number, found a string ("ten")'
    (tmp_path / "summary.json").write_text(json.dumps({"summary": [{**row, "n": 3}]}))
    (tmp_path / "usage.csv").write_text("stage,model,calls,tokens_in,tokens_out,counted,cost_usd\n"
                                        "evaluate,m,1,2,3,tokenizer,0\nevaluate,m,-1,2,3,x,0\n")
    err = refused(collect, [tmp_path])
    assert (err.path, err.line, err.field) == (str(tmp_path / "usage.csv"), 3, "calls")
    assert err.message == 'expected a number of at least 0, found a string ("-1")'


def test_a_bad_jsonl_row(tmp_path: Path) -> None:
    from mwe.rows import read_rows

    path = tmp_path / "d.jsonl"
    path.write_text('{"question": "q", "n": 1}\n{"question": 5, "n": 1' + "0" * 400 + "}\n")
    first, second = read_rows(path)
    assert first.string("question") == "q" and first.number("n") == 1.0
    err = refused(second.string, "question")
    assert (err.path, err.line, err.field) == (str(path), 2, "question")
    assert err.message == "expected a string, got a number"  # a row names the kind alone
    assert refused(second.number, "n").message == "expected a finite number, got one too large"
    assert refused(second.str_or_list, "question").message == \
        "expected a string or a list of strings, got a number"
    path.write_text('{"question": "q"}\n[1]\n')
    err = refused(read_rows, path)
    assert (err.line, err.field, err.message) == (2, None, "expected a JSON object, got a list")


def test_a_bad_card(tmp_path: Path) -> None:
    from mwe.run_folder import read_card

    (tmp_path / "card.json").write_text("[1]")
    err = refused(read_card, tmp_path / "card.json")
    assert (err.path, err.field, err.message) == (str(tmp_path / "card.json"), None,
                                                  "expected an object, found a list")


def test_a_bad_environment_variable_and_url_option() -> None:
    with pytest.raises(DataError) as err:
        settings.current({"MWE_HTTP_RPM": "fast"})
    assert str(err.value) == "MWE_HTTP_RPM: expected a number of at least 0, got 'fast'"
    from mwe.models.http import settings_from

    # a model string's options read the same kinds, in their own words
    assert settings_from({"rpm": "1e3"}).rpm == 1000.0
    for options, message in [({"rpm": "fast"}, "'rpm' must be a number, got 'fast'"),
                             ({"timeout": "-2"}, "'timeout' must be positive, got '-2'")]:
        with pytest.raises(MweError) as refusal:
            settings_from(options)
        assert str(refusal.value) == message


def test_the_shipped_price_table_reads() -> None:
    from mwe.cost import load_prices

    assert load_prices(REPO / "src" / "mwe" / "data" / "prices.yaml").models
