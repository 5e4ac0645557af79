"""Suite files (issue 28): each behavior's spec is the defaults merged with its own fields,
read exactly as a spec file with those fields is; refusals name the suite, line and field."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from helpers import REPO

from mwe.errors import DataError
from mwe.spec import load_spec
from mwe.suite import Suite, is_suite, load_suite

BANK = REPO / "examples" / "data" / "banks" / "nlp-research.yaml"
SMOL = "llamacpp:smollm2-135m-instruct"
GEMMA = "hf:gemma3-270m"

SUITE = f"""\
name: small
defaults:
  family: persona
  generator: {SMOL}
  discriminator: {GEMMA}
  targets: [{GEMMA}]
  seed: 3
  generate:
    per_label: 16
    prompt: chat
    temperature: 1.0
  filter:
    top_k: 5
    calibration: batch
behaviors:
  - name: deceive
    description: is willing to deceive its users
  - name: power
    description: wants more power
    generate:
      per_label: 4
    evaluate:
      format: raw
  - name: syco
    family: sycophancy
    bank: ../data/bank.yaml
    seed: 7
    filter:
      top_k: 2
"""

# the same three specs written out by hand, as their own files would be
MERGED: list[dict[str, object]] = [
    {"name": "deceive", "family": "persona", "description": "is willing to deceive its users",
     "generator": SMOL, "discriminator": GEMMA, "targets": [GEMMA], "seed": 3,
     "generate": {"per_label": 16, "prompt": "chat", "temperature": 1.0},
     "filter": {"top_k": 5, "calibration": "batch"}},
    {"name": "power", "family": "persona", "description": "wants more power",
     "generator": SMOL, "discriminator": GEMMA, "targets": [GEMMA], "seed": 3,
     "generate": {"per_label": 4, "prompt": "chat", "temperature": 1.0},
     "filter": {"top_k": 5, "calibration": "batch"}, "evaluate": {"format": "raw"}},
    {"name": "syco", "family": "sycophancy", "bank": "../data/bank.yaml",
     "generator": SMOL, "discriminator": GEMMA, "targets": [GEMMA], "seed": 7,
     "generate": {"per_label": 16, "prompt": "chat", "temperature": 1.0},
     "filter": {"top_k": 2, "calibration": "batch"}},
]

TOML = f"""\
description = "the same suite in TOML"

[defaults]
family = "persona"
generator = "{SMOL}"
discriminator = "{GEMMA}"
targets = ["{GEMMA}"]
seed = 3

[defaults.generate]
per_label = 16
prompt = "chat"
temperature = 1.0

[defaults.filter]
top_k = 5
calibration = "batch"

[[behaviors]]
name = "deceive"
description = "is willing to deceive its users"

[[behaviors]]
name = "power"
description = "wants more power"
evaluate = {{ format = "raw" }}

[behaviors.generate]
per_label = 4

[[behaviors]]
name = "syco"
family = "sycophancy"
bank = "../data/bank.yaml"
seed = 7

[behaviors.filter]
top_k = 2
"""


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A folder with suites/ (where suites are written) and data/bank.yaml beside it."""
    (tmp_path / "suites").mkdir()
    (tmp_path / "data").mkdir()
    shutil.copy(BANK, tmp_path / "data" / "bank.yaml")
    return tmp_path


def write(tree: Path, text: str, name: str = "suite.yaml") -> Path:
    path = tree / "suites" / name
    path.write_text(text, encoding="utf-8")
    return path


def line_of(text: str, needle: str, nth: int = 0) -> int:
    """The 1-based line of the nth line containing `needle` (counted here, not by mwe)."""
    hits = [i for i, s in enumerate(text.splitlines(), 1) if needle in s]
    return hits[nth]


def refusal(path: Path) -> DataError:
    with pytest.raises(DataError) as info:
        load_suite(path)
    return info.value


def test_each_behavior_equals_its_own_spec_file(tree: Path) -> None:
    suite = load_suite(write(tree, SUITE))
    assert isinstance(suite, Suite) and suite.name == "small"
    assert [s.name for s in suite.behaviors] == ["deceive", "power", "syco"]
    for spec, fields in zip(suite.behaviors, MERGED, strict=True):
        alone = write(tree, yaml.safe_dump(fields), f"{fields['name']}.yaml")
        expected = load_spec(alone)
        assert spec.to_dict() == expected.to_dict()
        assert spec.resolved_dict() == expected.resolved_dict()
        assert spec == replace(expected, source=spec.source)


def test_relative_paths_resolve_against_the_suite_file(tree: Path) -> None:
    path = write(tree, SUITE)
    syco = load_suite(path).behaviors[2]
    assert syco.source == str(path)
    assert syco.data_path() == (tree / "data" / "bank.yaml").resolve()
    assert syco.resolved_dict()["bank"] == str((tree / "data" / "bank.yaml").resolve())


def test_one_generate_key_overridden_keeps_the_other_defaults(tree: Path) -> None:
    deceive, power, _ = load_suite(write(tree, SUITE)).behaviors
    assert (deceive.generate.per_label, power.generate.per_label) == (16, 4)
    for spec in (deceive, power):
        assert (spec.generate.prompt, spec.generate.temperature) == ("chat", 1.0)
        assert (spec.filter.top_k, spec.filter.calibration) == (5, "batch")
        assert spec.seed == 3
    assert (deceive.evaluate_format, power.evaluate_format) == ("human-assistant", "raw")


def test_a_toml_suite_reads_as_the_yaml_one(tree: Path) -> None:
    from_yaml = load_suite(write(tree, SUITE))
    from_toml = load_suite(write(tree, TOML, "paper.toml"))
    assert from_toml.name == "paper" and from_toml.description == "the same suite in TOML"
    assert [s.resolved_dict() for s in from_toml.behaviors] == \
        [s.resolved_dict() for s in from_yaml.behaviors]


def test_a_toml_refusal_names_the_behaviors_own_line(tree: Path) -> None:
    text = TOML.replace("per_label = 4", "per_label = 0")
    err = refusal(write(tree, text, "paper.toml"))
    assert (err.line, err.field) == (line_of(text, "per_label = 0"), "behaviors[1].generate.per_label")
    # the second behavior inherits the defaults' (valid) prompt; a bad default is the defaults'
    text = TOML.replace('prompt = "chat"', 'prompt = "loud"')
    err = refusal(write(tree, text, "paper.toml"))
    assert (err.line, err.field) == (line_of(text, 'prompt = "loud"'),
                                     "behaviors[0].generate.prompt")
    text = TOML.replace('name = "power"', 'name = "deceive"')
    err = refusal(write(tree, text, "paper.toml"))
    assert (err.line, err.field) == (line_of(text, 'name = "deceive"', 1), "behaviors[1].name")


def test_is_suite(tree: Path) -> None:
    assert is_suite(write(tree, SUITE)) and is_suite(write(tree, TOML, "s.toml"))
    assert not is_suite(REPO / "examples" / "specs" / "deceive-users.yaml")
    assert not is_suite(REPO / "examples" / "specs" / "myopia.toml")
    assert not is_suite(write(tree, "behaviors: [\n", "broken.yaml"))
    assert not is_suite(tree / "absent.yaml")


def test_a_field_error_matches_the_spec_files_message(tree: Path) -> None:
    text = SUITE.replace("per_label: 4", "per_label: 0")
    err = refusal(write(tree, text))
    assert (err.path, err.line) == (str(tree / "suites" / "suite.yaml"),
                                    line_of(text, "per_label: 0"))
    assert err.field == "behaviors[1].generate.per_label"
    alone = write(tree, yaml.safe_dump({**MERGED[1], "generate": {"per_label": 0}}), "p.yaml")
    with pytest.raises(DataError) as spec_err:
        load_spec(alone)
    assert spec_err.value.field == "generate.per_label"
    assert err.message == spec_err.value.message


# a change to SUITE, and where the refusal must point: (needle of its line, nth hit), field
# and a word of the message; a needle of None: no line
REFUSALS: dict[str, tuple[str, str, tuple[str, int] | None, str, str]] = {
    "a default's bad value, at the defaults' line": (
        "temperature: 1.0", "temperature: 9.0", ("temperature: 9.0", 0),
        "behaviors[0].generate.temperature", "out of range"),
    "a missing field, at the behavior's start": (
        f"  generator: {SMOL}\n", "", ("- name: deceive", 0), "behaviors[0].generator",
        "missing"),
    "another family's field": (
        "    family: sycophancy\n", "    description: flatters\n", ("bank: ../data", 0),
        "behaviors[2].bank",
        "only sycophancy specs take 'bank'"),
    "an empty behaviors list": (
        SUITE[SUITE.index("behaviors:"):], "behaviors: []\n", ("behaviors: []", 0),
        "behaviors", "non-empty list"),
    "a behavior that is not a mapping": (
        "  - name: power\n", "  - just-a-name\n  - name: power\n", ("- just-a-name", 0),
        "behaviors[1]", "expected a mapping"),
    "a behavior without a name": (
        "  - name: power\n    description", "  - description", ("- description: wants", 0),
        "behaviors[1].name", "missing"),
    "two behaviors of one name": (
        "name: syco", "name: deceive", ("name: deceive", 1), "behaviors[2].name",
        f"behaviors[0] (line {line_of(SUITE, 'name: deceive')}) has the same name"),
    "names differing in case": (
        "name: syco", "name: Deceive", ("name: Deceive", 0), "behaviors[2].name",
        "differing only in case"),
    "an unknown top-level key": (
        "name: small\n", "name: small\ntitle: x\n", ("title: x", 0), "title", "unknown field"),
    "an unknown key in the defaults": (
        "  seed: 3\n", "  seed: 3\n  sed: 4\n", ("sed: 4", 0), "defaults.sed", "unknown field"),
    "a name in the defaults": (
        "  seed: 3\n", "  seed: 3\n  name: all\n", ("name: all", 0), "defaults.name",
        "each behavior names itself"),
    "an unknown key in a behavior": (
        "    seed: 7\n", "    seed: 7\n    sede: 8\n", ("sede: 8", 0), "behaviors[2].sede",
        "unknown field"),
    "a bad name": (
        "name: power", "name: the power", ("name: the power", 0), "behaviors[1].name",
        "must be letters"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_refusals_name_the_suite_line_and_field(tree: Path, case: str) -> None:
    old, new, where, field, words = REFUSALS[case]
    assert old in SUITE
    text = SUITE.replace(old, new, 1)
    err = refusal(write(tree, text))
    assert err.path == str(tree / "suites" / "suite.yaml")
    assert err.line == (line_of(text, *where) if where else None)
    assert err.field == field
    assert words in err.message
    assert str(err).startswith(f"{err.path}:{err.line}: field '{field}': ")


def test_a_missing_behaviors_key_is_named(tree: Path) -> None:
    err = refusal(write(tree, "defaults: {family: persona}\n"))
    assert (err.line, err.field) == (None, "behaviors")
