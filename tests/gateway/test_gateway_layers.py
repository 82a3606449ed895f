"""The house's rules, read from the code: layers import only downward, no import cycles, SQL
only in gateway/store/ (docs/DESIGN.md, "Architecture").

The walk reads every ``import`` of every module, ``TYPE_CHECKING`` ones and those inside
functions included: a type-only import that runs upward is still a dependency on the floor
above.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import ROOT

# Floors, top first: a module may import its own floor or lower ones. Longest prefix wins.
FLOORS: dict[str, int] = {
    "gateway.__main__": 9,
    "gateway.app": 8,  # the composition root: builds and wires everything below
    "gateway.edges": 7,  # protocol adapters: wire to messages and back
    "gateway.outbox": 6,  # the outbox worker drives the senders
    "gateway.senders": 5,  # the ways out: SMPP, SMTP relay, HTTP provider
    "gateway.pipeline": 4,
    "gateway.gate": 4,
    "gateway.send_rules": 4,  # the rules engine joined to programs and send history
    "gateway.health": 4,
    "gateway.merge": 4,
    "gateway.email": 4,  # link service and email settings, shared by edges and senders
    "gateway.store": 3,  # all SQL, grouped by table
    "gateway.audit": 2,  # audit report, receipts and proofs: pure, data in, documents out
    "gateway.security": 2,
    "gateway.catalogs": 2,
    "gateway.settings": 2,
    "gateway.config_rules": 2,
    "gateway.messages": 2,
    "gateway.addresses": 2,
    "gateway.send_limits": 2,
    "gateway.storable": 2,
    "gateway.supervisor": 2,
    "gateway.waiting": 2,
    "gateway.errors": 1,
    "gateway.logs": 1,
    "gateway.clock": 1,
    "gateway.metrics": 1,
    "keywords": 0,  # pure: the standard library only (tests/keywords/test_keywords_imports.py)
    "rules": 0,  # pure: send windows, caps and consent durations (tests/rules/)
}
SQL = re.compile(
    r"^\s*(SELECT\s|INSERT\s+INTO\s|UPDATE\s+\w+\s|DELETE\s+FROM\s|WITH\s+\w+\s+AS\s|"
    r"CREATE\s|ALTER\s|DROP\s|LISTEN\s|NOTIFY\s|LOCK\s|TRUNCATE\s)"
)
DB_CALLS = frozenset(
    {"fetch", "fetchrow", "fetchval", "execute", "executemany", "copy_records_to_table"}
)


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = {
    _module(p): p
    for folder in ("gateway", "keywords", "rules")
    for p in sorted((ROOT / folder).rglob("*.py"))
}


def _resolve(name: str) -> str | None:
    """The project module ``name`` is, or is inside (None: not ours)."""
    while name and name not in SOURCES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> set[str]:
    """Project modules ``module`` imports (a package's face counts as the package)."""
    tree = ast.parse(SOURCES[module].read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            target = _resolve(name)
            if target is not None and target not in (module, "gateway"):
                found.add(target)
    return found


def floor(module: str) -> int:
    """The floor of ``module`` (the longest prefix in ``FLOORS``)."""
    best = max((p for p in FLOORS if module == p or module.startswith(p + ".")), key=len)
    return FLOORS[best]


GRAPH = {m: _imports(m) for m in SOURCES}


def test_every_module_has_a_floor() -> None:
    """A new module lands on a floor someone chose (add its prefix to ``FLOORS``)."""
    missing = [m for m in SOURCES if m != "gateway" and m not in FLOORS and not any(
        m.startswith(p + ".") for p in FLOORS)]  # fmt: skip
    assert [] == missing


def test_no_import_runs_upward() -> None:
    """Every import goes to the module's own floor or a lower one."""
    upward = sorted(
        f"{m} (floor {floor(m)}) -> {t} (floor {floor(t)})"
        for m, targets in GRAPH.items()
        if m != "gateway"
        for t in targets
        if floor(t) > floor(m)
    )
    assert [] == upward


# Pairs a floor alone would allow: edges reach the data through the pipeline, the gate and
# the services the composition root hands them, never the tables.
NEVER = (("gateway.edges", "gateway.store"),)


def test_edges_never_touch_the_store() -> None:
    """No module of gateway/edges/ imports gateway/store/."""
    found = sorted(
        f"{m} -> {t}"
        for above, below in NEVER
        for m, targets in GRAPH.items()
        if m.startswith(above)
        for t in targets
        if t.startswith(below)
    )
    assert [] == found


def _cycles(graph: dict[str, set[str]]) -> Iterator[list[str]]:
    """Each strongly connected group of two or more modules (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> Iterator[list[str]]:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                yield from visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group: list[str] = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                yield sorted(group)

    for node in sorted(graph):
        if node not in index:
            yield from visit(node)


def test_no_import_cycles() -> None:
    """No two modules import each other, directly or around a loop."""
    assert [] == list(_cycles(GRAPH))


def test_the_cycle_finder_finds_a_loop() -> None:
    """The walk above would notice a loop of three."""
    assert [["a", "b", "c"]] == list(_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}))


def _sql_outside_store(module: str) -> list[str]:
    tree = ast.parse(SOURCES[module].read_text(encoding="utf-8"))
    found: list[str] = []
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
            and SQL.match(node.value)
        ):
            found.append(f"line {node.lineno}: SQL text")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in DB_CALLS
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in {"conn", "connection", "pool", "db", "tx"}
        ):
            found.append(f"line {node.lineno}: {node.func.value.id}.{node.func.attr}()")
    return found


@pytest.mark.parametrize("module", sorted(m for m in SOURCES if not m.startswith("gateway.store")))
def test_sql_only_in_the_store(module: str) -> None:
    """Outside gateway/store/ no module holds SQL or calls a connection's query methods."""
    assert [] == _sql_outside_store(module)


def test_the_sql_finder_sees_a_query(tmp_path: Path) -> None:
    """A query in an edge would be caught, as text or as a call."""
    SOURCES["probe"] = tmp_path / "probe.py"
    SOURCES["probe"].write_text(
        'async def f(conn):\n    """SELECT in a docstring is prose."""\n'
        '    return await conn.fetchval("SELECT 1")\n'
    )
    try:
        assert {"line 3: SQL text", "line 3: conn.fetchval()"} == set(_sql_outside_store("probe"))
    finally:
        del SOURCES["probe"]
