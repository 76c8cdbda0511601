"""The packages import only downwards, and no module-level imports form a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: What each product package may import of ours, besides itself.
ALLOWED = {
    "jayavatar": set(),
    "storage": {"jayavatar"},
    "engines": {"jayavatar"},
    "jobs": {"engines", "storage", "jayavatar"},
    "bot": {"jobs", "storage", "jayavatar"},
    "api": {"jobs", "storage", "jayavatar"},
    "cli": {"bot", "api", "jobs", "engines", "storage", "jayavatar"},
}


def modules() -> dict[str, Path]:
    """Return every product module by dotted name."""
    found = {}
    for package in ALLOWED:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports(path: Path, module_level: bool) -> set[str]:
    """Return the modules of ours `path` imports (only at module level, `if` blocks included)."""
    tree = ast.parse(path.read_text())
    nodes = _top(tree.body) if module_level else list(ast.walk(tree))
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return {n for n in names if n.split(".")[0] in ALLOWED}


def _top(body: list[ast.stmt]) -> list[ast.stmt]:
    out: list[ast.stmt] = []
    for node in body:
        out.append(node)
        if isinstance(node, (ast.If, ast.Try)):
            out += _top(node.body) + _top(node.orelse)
    return out


def test_packages_import_only_downwards() -> None:
    upward = [
        f"{name} imports {target}"
        for name, path in modules().items()
        for target in imports(path, module_level=False)
        if (top := target.split(".")[0]) != name.split(".")[0]
        and top not in ALLOWED[name.split(".")[0]]
    ]
    assert upward == []


def test_no_module_level_import_cycles() -> None:
    known = modules()
    graph = {
        name: {t for t in imports(path, module_level=True) if t in known and t != name}
        for name, path in known.items()
    }
    cycles = [cycle for cycle in map(_cycle_from, [graph] * len(graph), graph) if cycle]
    assert cycles == []


def _cycle_from(graph: dict[str, set[str]], start: str) -> list[str]:
    """Return a path of imports from `start` back to itself, or [] if there is none."""
    stack, seen = [(start, [start])], set()
    while stack:
        name, path = stack.pop()
        for target in graph[name]:
            if target == start:
                return [*path, start]
            if target not in seen:
                seen.add(target)
                stack.append((target, [*path, target]))
    return []
