"""The layout's promises, checked on the source (docs/architecture.md, Layout): adapters depend
on nothing of the gateway, no import cycles, the production service needs nothing of the demo,
only gateway/store talks to PostgreSQL, every statement is used once, and every path the code
and docs mention exists inside the repository."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.store import statements
from tests.paths import ROOT

PACKAGES = ("gateway", "adapters", "simulator")
SHARED = "../" + "shared"  # the design folder beside the repository (not in this one)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> Iterator[str]:
    """Every project module `path` imports, at the top or inside a function."""
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name:
                yield name


def test_adapters_import_nothing_of_the_gateway_or_the_simulator() -> None:
    wrong = {(m, i) for m, p in MODULES.items() if m.startswith("adapters")
             for i in _imports(p) if not i.startswith("adapters")}
    assert wrong == set()


def test_no_import_cycles() -> None:
    graph = {m: {i for i in _imports(p) if i != m} for m, p in MODULES.items()}
    cycles: list[list[str]] = []
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = [stack.pop()]
            while group[-1] != v:
                group.append(stack.pop())
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in graph:
        if module not in index:
            visit(module)
    assert cycles == []


# The gateway's folders in the order they may depend on each other: each imports only from
# folders before it (and from adapters/), never after.
LAYERS = [("gateway.crypto", "gateway.observability", "gateway.settings", "gateway.tls"),
          ("gateway.store",),
          ("gateway.ownership",), ("gateway.ingest",), ("gateway.transports", "gateway.delivery"),
          ("gateway.node",), ("gateway.roles",), ("gateway.demo",), ("gateway.cli",),
          ("gateway.__main__",)]


def _layer(module: str) -> int | None:
    for rank, folders in enumerate(LAYERS):
        if any(module == f or module.startswith(f + ".") for f in folders):
            return rank
    return None


def test_dependencies_point_one_way() -> None:
    upward = sorted(f"{m} -> {i}" for m, p in MODULES.items() for i in _imports(p)
                    if (a := _layer(m)) is not None and (b := _layer(i)) is not None and b > a)
    assert upward == []


def test_the_production_service_needs_nothing_of_the_demo() -> None:
    """`gateway serve` runs without the simulator and the embedded services (an extra)."""
    probe = ("import sys, gateway.roles.ingest, gateway.cli.main\n"
             "print(sorted(m for m in sys.modules if m.split('.')[0] in "
             "('simulator', 'pgserver', 'amqtt') or m.startswith('gateway.demo')))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("gateway")
                                          and not m.startswith("gateway.store")))
def test_only_the_store_talks_to_postgresql(module: str) -> None:
    source = MODULES[module].read_text("utf-8")
    tree = ast.parse(source)
    assert "asyncpg" not in set(_imports(MODULES[module])) | {
        a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(isinstance(n, ast.Attribute) and n.attr in ("pool", "_pool", "acquire")
                   for n in ast.walk(tree)), "connections belong to gateway/store"


def test_every_statement_is_used_and_none_is_written_twice() -> None:
    seen: dict[tuple[str, str], str] = {}
    for sql_file in sorted((ROOT / "gateway" / "store" / "sql").glob("*.sql")):
        area = sql_file.stem
        database = "node" if area == "node" else "ingest"  # the node has a database of its own
        module = (ROOT / "gateway" / "store" / f"{area}.py").read_text("utf-8")
        for name, statement in statements.load(f"sql/{area}.sql").items():
            assert f'"{name}"' in module, f"{area}.{name} is never run"
            text = (database, " ".join(statement.sql.split()))
            assert text not in seen, f"{area}.{name} repeats {seen.get(text)}"
            seen[text] = f"{area}.{name}"


# Paths of the repository as the code and docs name them (a folder, a module, a document).
_PATH = re.compile(r"(?<![\w./-])((?:gateway|adapters|simulator|tests|bench|docs|config)"
                   r"/[\w./*-]*[\w/*])")
# Named as what an operator creates, not as files of the repository.
_NOT_IN_REPOSITORY = {"config/sinks.toml"}


def _documents() -> Iterator[Path]:
    for pattern in ("*.md", "*.py", "*.toml", "*.sql", "Makefile", "*.conf"):
        for path in ROOT.rglob(pattern):
            parts = path.relative_to(ROOT).parts
            # Migrations are history: their text is checksummed once applied.
            if parts[0] not in (".venv", ".git", ".state") and "conformance" not in parts \
                    and "migrations" not in parts:
                yield path


def test_every_path_mentioned_exists() -> None:
    missing = set()
    for document in _documents():
        for match in _PATH.finditer(document.read_text("utf-8")):
            named = match.group(1).rstrip(".")
            if named not in _NOT_IN_REPOSITORY and not (ROOT / named).exists() and \
                    not any(ROOT.glob(named)):
                missing.add(f"{document.relative_to(ROOT)}: {named}")
    assert sorted(missing) == []


def test_nothing_points_outside_the_repository() -> None:
    outside = {str(d.relative_to(ROOT)) for d in _documents()
               if SHARED in d.read_text("utf-8")}
    assert outside == set()
