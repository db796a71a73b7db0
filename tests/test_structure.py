"""The package's shape, as docs/design.md describes it: every module says
what it owns, public functions say what they promise, modules stay small
enough to read in one sitting, the core stays pure, and layers import
downwards only."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from synchrod.core.states import SourceLifecycle
from synchrod.sync.runtime import SourceRuntime

PACKAGE = Path(__file__).resolve().parent.parent / "synchrod"
MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)
#: the demo and the benchmarks follow the same rules of size and docstrings
SCRIPTS = sorted((PACKAGE.parent / "scripts").glob("*.py"))
MAX_LINES = 400
LONG_FUNCTION = 30
#: what each package may import from synchrod (besides itself); the pure
#: core imports nothing, and nothing below imports what builds on it
ALLOWED = {
    "core": set(),
    "errors": set(), "exits": set(), "faults": set(),
    "pg": {"core", "errors"},
    "fs": {"core", "errors", "faults"},
    "config": {"core", "errors", "pg"},
    "recorder": {"core", "errors", "pg"},
    "replay": {"core", "errors", "pg"},
    "logs": {"pg"},
    "storage": {"core", "errors", "faults", "pg", "fs", "config", "replay"},
    "archive": {"core", "errors", "faults", "pg", "fs", "config", "replay"},
    "sync": {"core", "errors", "faults", "pg", "fs", "config", "recorder", "replay", "storage"},
    "control": {"core", "errors", "pg", "config", "recorder", "replay", "sync", "storage"},
    "monitor": {"core", "errors", "pg", "config", "replay", "control", "sync", "storage",
                "archive"},
    "daemon": {"core", "errors", "pg", "config", "replay", "control", "sync", "monitor", "logs",
               "exits", "storage", "archive"},
    "cli": {"core", "errors", "pg", "fs", "config", "recorder", "replay", "control", "sync",
            "daemon", "monitor", "logs", "exits", "storage", "archive"},
    "testing": {"core", "pg", "config", "monitor"},
}


def _rel(path: Path) -> str:
    return str(path.relative_to(PACKAGE.parent))


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


@pytest.mark.parametrize("path", MODULES + SCRIPTS, ids=_rel)
def test_module_says_what_it_owns(path):
    assert ast.get_docstring(_tree(path)), f"{_rel(path)} has no module docstring"


@pytest.mark.parametrize("path", MODULES + SCRIPTS, ids=_rel)
def test_module_is_small(path):
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{_rel(path)} has {n} lines (at most {MAX_LINES})"


def _functions(tree: ast.Module):
    """(qualified name, node, public) of every function and method, nested ones too."""
    def walk(node, prefix, public_scope):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                public = public_scope and not child.name.startswith("_")
                yield f"{prefix}{child.name}", child, public
                yield from walk(child, f"{prefix}{child.name}.", False)
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, f"{prefix}{child.name}.",
                                public_scope and not child.name.startswith("_"))
    yield from walk(tree, "", True)


@pytest.mark.parametrize("path", MODULES + SCRIPTS, ids=_rel)
def test_functions_say_what_they_promise(path):
    missing = []
    for name, node, public in _functions(_tree(path)):
        length = node.end_lineno - node.lineno + 1
        if (public or length > LONG_FUNCTION) and not ast.get_docstring(node):
            if name.endswith("__init__") or name.split(".")[-1].startswith("__"):
                continue  # the class docstring speaks for its constructor and dunders
            missing.append(f"{name} ({length} lines)")
    assert not missing, f"{_rel(path)}: no docstring: {', '.join(missing)}"


def _package_of(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0][:-3] if len(parts) == 1 else parts[0]


def _imported_packages(path: Path) -> set[str]:
    """The synchrod packages a module imports when it runs (relative and absolute
    imports; those under ``if TYPE_CHECKING:`` serve annotations only)."""
    depth = len(path.relative_to(PACKAGE).parts) - 1   # 0: a top-level module
    found = set()
    tree = _tree(path)
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                   and isinstance(block.test, ast.Name) and block.test.id == "TYPE_CHECKING"
                   for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue  # annotations only: no dependency when the code runs
        if isinstance(node, ast.ImportFrom):
            if node.level:
                up = node.level - 1
                if up < depth:   # inside its own package
                    continue
                target = (node.module or "").split(".")[0]
                names = [target] if target else [a.name for a in node.names]
            elif (node.module or "").startswith("synchrod."):
                names = [node.module.split(".")[1]]
            else:
                continue
            found |= {n for n in names if n != "__version__"}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("synchrod.")}
    return found


@pytest.mark.parametrize("path", [p for p in MODULES if p.name != "__main__.py"], ids=_rel)
def test_imports_go_downwards(path):
    package = _package_of(path)
    if package == "__init__":
        return
    extra = _imported_packages(path) - ALLOWED[package] - {package}
    assert not extra, f"{_rel(path)} ({package}) imports {sorted(extra)}"


def test_core_does_no_io():
    io = {"asyncio", "asyncpg", "aiohttp", "psycopg", "socket", "subprocess", "shutil", "tempfile"}
    for path in (PACKAGE / "core").glob("*.py"):
        for node in ast.walk(_tree(path)):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            bad = {n.split(".")[0] for n in names} & io
            assert not bad, f"{_rel(path)} imports {bad}"


def test_source_state_changes_only_through_the_state_machine():
    """``SourceRuntime.state`` cannot be assigned: every change goes through
    ``SourceLifecycle.on`` (core.states.TRANSITIONS)."""
    prop = SourceRuntime.__dict__["state"]
    assert isinstance(prop, property) and prop.fset is None
    for path in MODULES:
        if path.name == "states.py":
            continue
        for node in ast.walk(_tree(path)):
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    assert not (isinstance(t, ast.Attribute) and t.attr == "state"
                                and isinstance(t.value, ast.Attribute) and t.value.attr == "lifecycle"), \
                        f"{_rel(path)}:{node.lineno} sets a source's state behind the state machine"
    assert SourceLifecycle.__slots__ == ("state",)


def test_no_module_is_left_at_the_top_but_the_cross_cutting_ones():
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert top == ["__init__", "__main__", "errors", "exits", "faults", "logs"], top


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
