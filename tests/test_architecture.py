"""The design rules, checked on the source: families are only named inside mwe.families, the
module graph has no cycles, and no module reaches into another's private names."""

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


def runtime_imports(name: str, tree: ast.Module) -> set[str]:
    """mwe modules imported when `name` is imported: module level, outside TYPE_CHECKING."""
    found: set[str] = set()
    package = name if name.count(".") and (SRC / "/".join(name.split(".")[1:]) /
                                          "__init__.py").exists() else name.rpartition(".")[0]
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        for sub in ast.walk(node) if isinstance(node, (ast.Import, ast.ImportFrom, ast.If,
                                                        ast.Try)) else []:
            if isinstance(sub, ast.Import):
                found |= {a.name for a in sub.names if a.name.startswith("mwe")}
            elif isinstance(sub, ast.ImportFrom):
                base = sub.module or ""
                if sub.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - sub.level + 1]
                                    + ([base] if base else []))
                if base.startswith("mwe"):
                    found.add(base)
                    found |= {f"{base}.{a.name}" for a in sub.names}
    return found


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


def test_no_import_cycles() -> None:
    mods = modules()
    graph = {m: {d for d in runtime_imports(m, t) if d in mods and d != m}
             for m, t in mods.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_no_private_names_across_modules() -> None:
    offenders = []
    for mod, tree in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mwe"):
                offenders += [f"{mod}: {node.module}.{a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
    assert not offenders, "\n".join(offenders)
