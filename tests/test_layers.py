"""The package's architecture, checked by reading its source: layers import only downwards,
no module imports itself round a cycle, and nothing inside a package imports through that
package's own `__init__` (whose public face imports the package's modules)."""

from __future__ import annotations

import ast
from pathlib import Path

from .conftest import REPO

PACKAGE = REPO / "jaxfool"
# bottom to top; a module may import from its own layer and the layers below it
LAYERS = {"base": 0, "plots": 0, "classifiers": 1, "search": 2, "runs": 3, "studies": 4}
MAX_TOP_LEVEL = 14  # modules and subpackages directly in jaxfool/
MAX_MODULE_LINES = 420  # "no library module over ~400 lines"
MAX_SCRIPT_LINES = {"benchmark.py": 200}  # experiments/*.py: thin front ends
DEFAULT_SCRIPT_LINES = 150


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path, known: dict[str, Path]) -> set[tuple[str, int]]:
    """(module imported, line) for every jaxfool import in a file, at any depth (function-level
    imports count too). `from P import x` is an import of the submodule P.x when there is one,
    else of P."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {(a.name, node.lineno) for a in node.names if a.name.startswith("jaxfool")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            if not base.startswith("jaxfool"):
                continue
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add((sub if sub in known else base, node.lineno))
    return found


def layer(module: str) -> int:
    parts = module.split(".")
    return 0 if len(parts) == 1 else LAYERS[parts[1]]


def graph() -> dict[str, set[tuple[str, int]]]:
    known = modules()
    return {name: imports(path, known) for name, path in known.items()}


def test_every_module_is_in_a_layer():
    for name in modules():
        parts = name.split(".")
        assert len(parts) == 1 or parts[1] in LAYERS, f"{name}: not in a layer {sorted(LAYERS)}"


def test_layers_import_only_downwards():
    bad = [
        f"{name} (layer {layer(name)}) imports {target} (layer {layer(target)}) at line {line}"
        for name, targets in graph().items()
        for target, line in targets
        if layer(target) > layer(name)
    ]
    assert not bad, "\n".join(bad)


def test_no_module_imports_through_its_own_package_init():
    bad = []
    for name, targets in graph().items():
        path = modules()[name]
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for target, line in targets:
            inside = package.startswith(target + ".") or package == target
            if inside and target != "jaxfool" and target != name:
                bad.append(f"{name} line {line} imports from its package {target}'s __init__")
    assert not bad, "\n".join(bad)


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    edges = {n: {t for t, _ in ts if t != n} for n, ts in graph().items()}
    cycle = find_cycle(edges)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_is_a_few_layers_not_a_flat_list():
    entries = [
        p.name
        for p in PACKAGE.iterdir()
        if (p.suffix == ".py" or (p / "__init__.py").exists()) and p.name != "__init__.py"
    ]
    assert len(entries) <= MAX_TOP_LEVEL, sorted(entries)


def test_modules_and_scripts_stay_small():
    long = [
        f"{p.relative_to(REPO)}: {n} lines"
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    for script in (REPO / "experiments").glob("*.py"):
        limit = MAX_SCRIPT_LINES.get(script.name, DEFAULT_SCRIPT_LINES)
        if (n := len(script.read_text().splitlines())) > limit:
            long.append(f"{script.relative_to(REPO)}: {n} lines (a script: <= {limit})")
    assert not long, "\n".join(long)
