"""The house's floors: no package imports one on a floor above it, and no two
packages import each other, function-local and type-only imports counted
(a deferred import is still an edge; ``ast.walk`` sees every one).

Floors, low to high:

0. ``errors``, ``_files`` and the root package (``__version__``): the error
   contract and file helpers everything uses;
1. ``toolchain`` (what is built offline), ``topology`` (the model),
   ``kube`` (the one client), and the runtime packages ``nixseed`` and
   ``probe`` (stdlib and PyYAML only: they run before every job);
2. ``harness``, ``audit``, ``hooks``, ``canary``, ``actions``: what is built
   on the model, the client and the toolchain;
3. the CLI: ``cli``, ``__main__``, ``mainjob`` (the main job drives every
   command) and every package's ``_cli`` module (argparse only, one room per
   package, allowed to reach any floor below).

A new package gets a floor here before it can land.
"""

from __future__ import annotations

import ast
from pathlib import Path

import flywheel_runtime

SRC = Path(flywheel_runtime.__file__).parent
ROOT = "flywheel_runtime"
CLI = "cli"

FLOORS: dict[str, int] = {
    "": 0, "errors": 0, "_files": 0,
    "toolchain": 1, "topology": 1, "kube": 1, "nixseed": 1, "probe": 1,
    "harness": 2, "audit": 2, "hooks": 2, "canary": 2, "actions": 2,
    CLI: 3, "__main__": 3, "mainjob": 3,
}


def unit_of(module: str) -> str:
    """The floor-bearing unit of a dotted module name inside the package."""
    parts = module.split(".")[1:]  # drop "flywheel_runtime"
    if not parts:
        return ""
    if parts[-1] == "_cli" or parts[0] == "cli":
        return CLI
    return parts[0]


def module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(dotted: str) -> bool:
    rel = Path(*dotted.split(".")[1:])
    return (SRC / rel).is_dir() or (SRC / rel).with_suffix(".py").is_file()


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import of the package in ``path``, at any depth."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == ROOT]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != ROOT:
                continue
            # ``from flywheel_runtime import toolchain`` / ``from flywheel_runtime.harness import kind``: a
            # name may be a module; the deepest one decides the unit (a package's _cli counts as the CLI's).
            for a in node.names:
                out.append((node.lineno, f"{mod}.{a.name}" if _is_module(f"{mod}.{a.name}") else mod))
    return out


def edges() -> list[tuple[str, str, str]]:
    """(importing unit, imported unit, where) for every import between different units."""
    out = []
    for path in sorted(SRC.rglob("*.py")):
        src = unit_of(module_name(path))
        for line, mod in imports_of(path):
            dst = unit_of(mod)
            if dst != src:
                out.append((src, dst, f"{path.relative_to(SRC)}:{line} imports {mod}"))
    return out


def test_every_unit_has_a_floor() -> None:
    units = {unit_of(module_name(p)) for p in SRC.rglob("*.py")}
    assert sorted(units - set(FLOORS)) == [], "give every new package a floor in FLOORS (and say why)"


def test_no_import_goes_up_a_floor() -> None:
    up = [f"{where} ({s} on floor {FLOORS[s]} -> {d} on floor {FLOORS[d]})"
          for s, d, where in edges() if FLOORS.get(d, 99) > FLOORS.get(s, -1)]
    assert up == []


def test_no_two_packages_import_each_other() -> None:
    graph: dict[str, set[str]] = {}
    for s, d, _ in edges():
        graph.setdefault(s, set()).add(d)
    circles = []
    for start in graph:  # any path back to where it started, through any number of units
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph.get(node, ()):
                if nxt == start:
                    circles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert sorted(set(circles)) == []


def test_the_toolchain_imports_only_the_errors() -> None:
    """What is built offline knows nothing of what runs it (its _cli, on the CLI's floor, may)."""
    bad = [where for s, d, where in edges() if s == "toolchain" and d != "errors"]
    assert bad == []


def test_the_walk_sees_deferred_imports() -> None:
    """The checker counts an import inside a function body (the kind that once hid a circle)."""
    mods = [m for _, m in imports_of(SRC / "harness" / "__init__.py")]
    assert "flywheel_runtime.harness.sim" in mods and "flywheel_runtime.harness.kind" in mods
