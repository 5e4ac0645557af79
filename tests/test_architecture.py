"""The design rules, checked on the source: families are only named inside mwe.families, the
module graph has no cycles (type-only and function-level imports included), no family module
imports another, and no module reaches into another's private names."""

from __future__ import annotations

import ast
from pathlib import Path

from mwe.families import FAMILIES, NAMES

SRC = Path(__file__).resolve().parent.parent / "src" / "mwe"


def modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        name = ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)
        out[name] = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return out


def imports(name: str, tree: ast.Module) -> set[str]:
    """mwe modules `name` imports anywhere: at module level, under `if TYPE_CHECKING:` and
    inside functions (a type or a late import is a dependency as much as a runtime one).

    An edge goes to the module an import names: `from pkg import x` to `pkg.x` when that is a
    module, else to `pkg` (x is defined or re-exported by its __init__). Importing a submodule
    (`import pkg.sub`, `from pkg.sub import x`, `from pkg import sub`) does not count `pkg`'s
    __init__, although Python runs it first: a package's __init__ that imports its own
    submodules (the family registry, the commands of mwe.cli) is the top of its package, and
    counting that implicit edge would make every such package a cycle with its members by
    construction. A member that needs its package's __init__ names something defined there
    (`from mwe.families import FAMILIES`), and that edge is counted. Backends named by string
    in `mwe.models.BACKENDS` (importlib) are plugins, not counted."""
    found: set[str] = set()
    package = name if (SRC.parent / name.replace(".", "/") / "__init__.py").exists() \
        else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "mwe"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] == "mwe":
                found |= {f"{base}.{a.name}" if is_module(f"{base}.{a.name}") else base
                          for a in node.names}
    return found


def is_module(dotted: str) -> bool:
    path = SRC.parent / dotted.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: {d for d in imports(m, t) if d in mods and d != m} for m, t in mods.items()}


def test_family_names_only_inside_mwe_families() -> None:
    names = set(NAMES)
    assert len(names) == len(FAMILIES) >= 4
    offenders = []
    for mod, tree in modules().items():
        if mod.startswith("mwe.families"):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in names:
                offenders.append(f"{mod}:{node.lineno} {node.value!r}")
    assert not offenders, "family names outside mwe.families:\n" + "\n".join(offenders)


def test_imports_counts_type_only_and_function_level_imports() -> None:
    tree = ast.parse("from typing import TYPE_CHECKING\n"
                     "if TYPE_CHECKING:\n    from mwe.spec import BehaviorSpec\n"
                     "def f() -> None:\n    from mwe.models import parse_spec\n"
                     "    from . import persona\n")
    assert imports("mwe.families.x", tree) == {"mwe.spec", "mwe.models", "mwe.families.persona"}


def test_no_import_cycles() -> None:
    """No cycle among mwe's modules, counting every import (see `imports`): each is reported
    with its path, so a new one names the edge to cut."""
    edges = graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(edges[m]):
            if state.get(d) == 1:
                cycles.append(" -> ".join(stack[stack.index(d):] + [d]))
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_families_import_no_other_family() -> None:
    """A family module may share code through modules that are no family (the biographies
    of sycophancy and sandbagging), never by importing another family: a change to one
    family's pipeline must not silently change another's datasets."""
    members = family_modules()
    assert len(members) == len(FAMILIES)
    offenders = [f"{m} imports {d}" for m, ds in graph().items() if m in members
                 for d in sorted(ds & members)]
    assert not offenders, "\n".join(offenders)


def family_modules() -> set[str]:
    """The modules under mwe.families that define a family (FAMILY = Family(...))."""
    out = set()
    for mod, tree in modules().items():
        if mod.startswith("mwe.families."):
            for node in tree.body:
                if isinstance(node, ast.Assign | ast.AnnAssign):
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    if any(isinstance(x, ast.Name) and x.id == "FAMILY" for x in targets):
                        out.add(mod)
    return out


def test_no_private_names_across_modules() -> None:
    offenders = []
    for mod, tree in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mwe"):
                offenders += [f"{mod}: {node.module}.{a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
    assert not offenders, "\n".join(offenders)


def test_families_are_composed_of_typed_parts() -> None:
    """Each family is a `Family` of its parts; how it is built is the builder's type (no flag
    with half the methods raising)."""
    from mwe.family import Family, OneStepBuilder, Reader, ReportSection, Scorer, SpecSchema, StagedBuilder

    for f in FAMILIES:
        assert type(f) is Family, f.name
        assert isinstance(f.schema, SpecSchema) and isinstance(f.reader, Reader)
        assert isinstance(f.builder, StagedBuilder | OneStepBuilder), f.name
        assert isinstance(f.scorer, Scorer)
        assert f.section is None or isinstance(f.section, ReportSection)
    kinds = {type(f.builder) for f in FAMILIES}
    assert kinds == {StagedBuilder, OneStepBuilder}  # both kinds stay exercised


def _params(fn: ast.FunctionDef) -> list[str]:
    return [a.arg for a in fn.args.args if a.arg not in ("self", "cls")]


def pass_throughs(tree: ast.Module) -> list[ast.FunctionDef]:
    """Functions and methods whose body only forwards their own arguments, in order."""
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef):
            continue
        body = [s for s in node.body if not (isinstance(s, ast.Expr)
                                            and isinstance(s.value, ast.Constant))]
        if len(body) != 1 or not isinstance(body[0], ast.Return):
            continue
        call = body[0].value
        if isinstance(call, ast.Call) and not call.keywords and call.args and \
                [a.id if isinstance(a, ast.Name) else None for a in call.args] == _params(node):
            out.append(node)
    return out


def test_pass_throughs_finds_forwarding_methods() -> None:
    tree = ast.parse("class F:\n    def parse(self, row, ds):\n        return parse(row, ds)\n"
                     "def g(x):\n    'doc'\n    return h(x)\n"
                     "def k(x):\n    return h(x, 1)\n")
    assert sorted(f.name for f in pass_throughs(tree)) == ["g", "parse"]


def test_no_pass_through_functions_in_families() -> None:
    """No function or method in a family module only forwards its own arguments to another
    function: the family's part takes that function itself."""
    offenders = [f"{mod}:{fn.lineno} {fn.name}" for mod, tree in modules().items()
                 if mod.startswith("mwe.families") for fn in pass_throughs(tree)]
    assert not offenders, "pass-throughs:\n" + "\n".join(offenders)


def test_only_the_inspect_log_module_imports_inspect() -> None:
    """Inspect is an optional extra (mwe[inspect]): one module imports it, inside its
    functions, so that nothing else in mwe needs it installed."""
    users = {}
    for mod, tree in modules().items():
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "inspect_ai" for n in names):
                users.setdefault(mod, []).append(node)
    assert set(users) == {"mwe.inspect_log"}, sorted(users)
    top = [n for n in users["mwe.inspect_log"] if n in modules()["mwe.inspect_log"].body]
    assert not top, "inspect_ai imported at module level"
