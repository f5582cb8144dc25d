"""The pack's modules stay small and their imports run one way: no module of framepack_core/ or nodes/ over 500
lines, and no import loop among them (imports inside functions included: a loop hidden in a function is still a
loop between the two modules)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("framepack_core", "nodes")
MAX_LINES = 500


def _modules(root: Path, packages=PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of the packages."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The known modules that module `name` imports, absolute or relative, anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                # a relative import above the top package (nodes -> ..framepack_core) names a sibling package
                base = parts[:len(parts) - node.level + 1] if node.level <= len(parts) else []
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            targets.add(stem)
            targets.update(f"{stem}.{alias.name}" for alias in node.names)  # `from . import matmul`
    return {t for t in targets if t in known and t != name}


def import_loops(root: Path, packages=PACKAGES) -> list[list[str]]:
    """Each import loop among the packages' modules, as the modules on it (Tarjan's strongly connected
    components of more than one module, or a module importing itself)."""
    modules = _modules(root, packages)
    graph = {name: _imported(name, path, set(modules)) for name, path in modules.items()}
    index, low, stack, on_stack, loops = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return loops


def test_no_module_is_over_500_lines():
    long = {str(path.relative_to(REPO)): n for path in _modules(REPO).values()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these modules (at most {MAX_LINES} lines each): {long}"


def test_no_import_loop():
    assert not import_loops(REPO), "modules that import each other, directly or through others"


def test_the_loop_finder_sees_a_loop_through_a_function_level_and_a_cross_package_import(tmp_path):
    """The check above would pass vacuously if the finder saw nothing."""
    (tmp_path / "core").mkdir()
    (tmp_path / "glue").mkdir()
    (tmp_path / "core" / "__init__.py").write_text("")
    (tmp_path / "glue" / "__init__.py").write_text("")
    (tmp_path / "core" / "a.py").write_text("from . import b\n")
    (tmp_path / "core" / "b.py").write_text("def f():\n    from .c import thing\n")
    (tmp_path / "core" / "c.py").write_text("from glue.d import x\n")
    (tmp_path / "glue" / "d.py").write_text("from ..core.a import y\n")
    (tmp_path / "core" / "e.py").write_text("from .a import y\n")  # imports into the loop, not part of it
    assert import_loops(tmp_path, ("core", "glue")) == [["core.a", "core.b", "core.c", "glue.d"]]
