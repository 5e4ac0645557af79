"""How the tests are put together, checked like the architecture: conftest.py holds fixtures
only (used by name, never imported), the stand-in models live in fakes.py alone, and the `mwe`
command line is spelt in helpers.py alone (tests run it through the `mwe` fixture)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from helpers import MWE

TESTS = Path(__file__).parent
SOURCES = sorted(TESTS.glob("*.py"))
# a stand-in model is a class with a model's methods (mwe.models.base.Scorer and Sampler)
MODEL_METHODS = {"score", "generate"}
MODULE = MWE[-1]  # python -m mwe.cli
# golden.py also runs alone (`python tests/golden.py --record`), outside pytest
OWN_COMMAND = {"helpers.py", "golden.py"}


def conftest_imports(source: str) -> list[int]:
    return [node.lineno for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.ImportFrom) and node.module == "conftest"
            or isinstance(node, ast.Import) and any(a.name == "conftest" for a in node.names)]


def stand_in_models(source: str) -> list[str]:
    """Classes that are a model (score or generate) or extend a fake one: 'line: name'."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ClassDef):
            methods = {f.name for f in node.body
                       if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)}
            bases = {ast.unparse(b).rsplit(".", 1)[-1] for b in node.bases}
            if methods & MODEL_METHODS or any(b.startswith("Fake") for b in bases):
                found.append(f"{node.lineno}: {node.name}")
    return found


def command_spellings(source: str) -> list[int]:
    return [node.lineno for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and node.value == MODULE]


def read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def test_the_rules_see_what_they_forbid() -> None:
    assert {"conftest.py", "fakes.py", "helpers.py", "test_cache.py"} <= set(ids(SOURCES))
    assert conftest_imports("import conftest\nfrom conftest import REPO\n") == [1, 2]
    assert stand_in_models("class A:\n    def score(self): ...\nclass B(fakes.FakeLM): ...\n"
                           ) == ["1: A", "3: B"]
    assert "FakeLM" in " ".join(stand_in_models(read(TESTS / "fakes.py")))
    assert command_spellings(read(TESTS / "helpers.py"))


@pytest.mark.parametrize("path", SOURCES, ids=ids(SOURCES))
def test_nothing_imports_conftest(path: Path) -> None:
    found = conftest_imports(read(path))
    assert not found, f"{path.name}:{found[0]}: import from helpers.py or fakes.py, or use a fixture"


@pytest.mark.parametrize("path", [p for p in SOURCES if p.name != "fakes.py"],
                         ids=ids([p for p in SOURCES if p.name != "fakes.py"]))
def test_stand_in_models_are_defined_in_fakes_only(path: Path) -> None:
    found = stand_in_models(read(path))
    assert not found, (f"{path.name}:{found[0]}: a stand-in model outside fakes.py (use "
                       "fakes.FakeLM, or give it the option this test needs)")


@pytest.mark.parametrize("path", [p for p in SOURCES if p.name not in OWN_COMMAND],
                         ids=ids([p for p in SOURCES if p.name not in OWN_COMMAND]))
def test_the_mwe_command_is_spelt_in_helpers_only(path: Path) -> None:
    found = command_spellings(read(path))
    assert not found, f"{path.name}:{found[0]}: run mwe through the `mwe` fixture (helpers.Mwe)"


def test_conftest_holds_fixtures_only() -> None:
    """What conftest.py defines is fixtures; anything a test imports belongs in helpers.py."""
    for node in ast.parse(read(TESTS / "conftest.py")).body:
        if isinstance(node, ast.FunctionDef):
            assert any("fixture" in ast.unparse(d) for d in node.decorator_list), node.name
        else:
            assert isinstance(node, ast.Import | ast.ImportFrom) or (
                isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)), \
                f"conftest.py:{node.lineno}: {ast.unparse(node)[:60]}"
