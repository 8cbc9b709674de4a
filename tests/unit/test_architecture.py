"""The shape docs/architecture.md promises, checked on the source so it cannot drift."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "entrasync"
SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _inside(path: Path, folder: str) -> bool:
    return path.relative_to(PACKAGE).parts[0] == folder


@pytest.mark.parametrize(
    ("library", "home"),
    [("sqlalchemy", "store"), ("msgraph", "graph"), ("msal", "graph"), ("kiota", "graph")],
)
def test_a_library_is_imported_only_by_its_adapter(library: str, home: str) -> None:
    strays = [
        str(path.relative_to(PACKAGE))
        for path in SOURCES
        if not _inside(path, home)
        and any(
            name == library or name.startswith((library + ".", library + "_"))
            for name in _imports(path)
        )
    ]
    assert strays == []


def test_the_domain_does_no_io() -> None:
    allowed = {"entrasync.domain"}
    strays = {
        f"{path.name}: {name}"
        for path in SOURCES
        if _inside(path, "domain")
        for name in _imports(path)
        if name.startswith("entrasync") and not name.startswith(tuple(allowed))
    }
    assert strays == set()


def test_no_module_is_over_the_limit() -> None:
    long = {
        str(p.relative_to(PACKAGE)): n
        for p in SOURCES
        if (n := p.read_text(encoding="utf-8").count("\n")) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_function_is_over_the_limit() -> None:
    long = {
        f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name}": node.end_lineno - node.lineno + 1
        for path in SOURCES
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    }
    assert long == {}
