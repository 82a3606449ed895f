"""Tests for the pure layer's dependency rule: keywords/ imports the standard library only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "keywords"
FORBIDDEN = frozenset({"asyncio", "asyncpg", "redis", "aiohttp", "aiosmtpd", "smpplib"})
ALLOWED = frozenset(sys.stdlib_module_names) - FORBIDDEN | {"keywords"}


def imported_modules(path: Path) -> set[str]:
    """Top-level module names a file imports (relative imports stay inside the package)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


MODULES = sorted(PACKAGE.glob("*.py"))


def test_package_has_modules() -> None:
    """The walk below really sees the package's modules."""
    assert {"classify.py", "consent.py", "normalize.py"} <= {p.name for p in MODULES}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_imports_only_stdlib_and_keywords(path: Path) -> None:
    """Every keywords/ module imports only the standard library and keywords itself."""
    assert set() == imported_modules(path) - ALLOWED


def test_forbidden_import_is_caught(tmp_path: Path) -> None:
    """The walk notices an I/O import even inside a function."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    import asyncio\n    from redis import asyncio as r\n")
    assert {"asyncio", "redis"} == imported_modules(bad) - ALLOWED
