"""nixseed's modules form no import circle: workers drive copiers, never the reverse."""

from __future__ import annotations

import ast
from pathlib import Path

import flywheel_runtime.nixseed as nixseed

PKG = Path(nixseed.__file__).parent


def imports_of(module: str) -> set[str]:
    tree = ast.parse((PKG / f"{module}.py").read_text())
    out = set()
    for node in ast.walk(tree):  # function-level imports count too: a deferred import is still a circle
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("flywheel_runtime.nixseed"):
            out.add(node.module.rsplit(".", 1)[-1])
    return out


def test_copy_does_not_import_workers() -> None:
    assert "workers" in imports_of("seeding")
    assert "copy" in imports_of("workers")
    assert "workers" not in imports_of("copy")


def test_no_module_imports_one_that_imports_it() -> None:
    mods = [p.stem for p in PKG.glob("*.py") if p.stem != "__init__"]
    graph = {m: imports_of(m) & set(mods) for m in mods}
    circles = sorted((a, b) for a in graph for b in graph[a] if a in graph.get(b, set()) and a < b)
    assert circles == []
