"""The rules package is pure: the standard library and phonenumbers, no I/O libraries."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "rules"
FORBIDDEN = frozenset({"asyncio", "asyncpg", "redis", "aiohttp", "aiosmtpd", "smpplib", "socket"})
ALLOWED = frozenset(sys.stdlib_module_names) - FORBIDDEN | {"rules", "phonenumbers"}
MODULES = sorted(PACKAGE.glob("*.py"))
READS_FILES = {"loading.py"}  # the one module that opens files


def imported(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_package_has_modules() -> None:
    assert {"evaluate.py", "loading.py", "location.py"} <= {p.name for p in MODULES}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_imports_only_stdlib_phonenumbers_and_rules(path: Path) -> None:
    """No asyncio, no database or network client, and not the gateway."""
    assert set() == imported(path) - ALLOWED


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_only_the_loader_reads_files(path: Path) -> None:
    """``open``/``read_bytes`` appear in loading.py alone."""
    text = path.read_text(encoding="utf-8")
    touches = any(word in text for word in ("open(", "read_bytes", "read_text", "tomllib"))
    assert touches == (path.name in READS_FILES)


def test_sender_files_name_the_categories_and_bases_rules_defines() -> None:
    """keywords/ validates a program's ``categories`` and ``basis`` without importing rules/:
    its lists must be the rules' own names."""
    from keywords.schema import BASES, CATEGORIES
    from rules.model import Basis, Category

    assert set(CATEGORIES) == {c.value for c in Category}
    assert set(BASES) == {b.value for b in Basis}
