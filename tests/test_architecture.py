"""The architecture holds: the import-linter layers, ruff, no import cycle, imports at the top, small modules.

The layers are declared once, in pyproject.toml ([tool.importlinter]); docs/ARCHITECTURE.md draws them.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mtkit"
MAX_LINES = 450


def _lint_imports(config: Path) -> subprocess.CompletedProcess:
    """import-linter on ``config``, in its own process (its command line reconfigures logging)."""
    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={str(config)!r}, no_cache=True, no_logo=True))")
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)


def test_import_linter_contracts_are_kept():
    result = _lint_imports(ROOT / "pyproject.toml")
    assert result.returncode == 0, "a box imports a box above it:\n" + result.stdout + result.stderr


def test_import_linter_sees_a_broken_layer(tmp_path):
    """The check above can fail: with the model put above the tasks, the tasks' imports of the model break it."""
    config = tmp_path / "layers.toml"
    config.write_text('[tool.importlinter]\nroot_package = "mtkit"\n\n[[tool.importlinter.contracts]]\n'
                      'name = "upside down"\ntype = "layers"\nlayers = ["mtkit.model", "mtkit.tasks"]\n')
    result = _lint_imports(config)
    assert result.returncode != 0 and "upside down BROKEN" in result.stdout


def test_ruff_is_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def _cycles(graph) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan's algorithm over grimp's graph)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in graph.find_modules_directly_imported_by(module):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == module:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return groups


def test_no_import_cycle_among_mtkit_modules():
    assert _cycles(grimp.build_graph("mtkit")) == []


def test_the_cycle_finder_finds_a_cycle(tmp_path, monkeypatch):
    """The check above can fail: two modules that import each other are one group."""
    package = tmp_path / "loopy"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from loopy import b\n")
    (package / "b.py").write_text("from loopy import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert _cycles(grimp.build_graph("loopy")) == [["loopy.a", "loopy.b"]]


def _local_imports(path: Path) -> list[tuple[int, str, str]]:
    """(line, imported module, the line's text) of every import inside a function."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for sub in ast.walk(node):
                if isinstance(sub, ast.ImportFrom):
                    found.append((sub.lineno, sub.module or "", " ".join(lines[sub.lineno - 1:sub.end_lineno])))
                elif isinstance(sub, ast.Import):
                    found.extend((sub.lineno, alias.name, " ".join(lines[sub.lineno - 1:sub.end_lineno]))
                                 for alias in sub.names)
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_sit_at_the_top(path):
    """A function-local import only for an optional or heavy dependency, with a comment saying why; never one of
    mtkit's own modules (that would hide a circle) or the standard library."""
    bad = [f"{path.relative_to(ROOT)}:{line}: {text.strip()}" for line, module, text in _local_imports(path)
           if module.split(".")[0] == "mtkit" or module.split(".")[0] in sys.stdlib_module_names - {"resource"}
           or "#" not in text]
    assert not bad, "imports to move to the top of the module (or to comment):\n" + "\n".join(bad)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_is_over_the_size_of_a_room(path):
    """A module is one box of the data path: at most 450 lines (split it along its jobs when it grows)."""
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines (at most {MAX_LINES})"
