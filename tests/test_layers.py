"""The import structure holds: storage below the domain, the domain free of Celery and
SQL, nothing in the product importing tests or the lab, and no module importing itself
back through others. Read from the source (every import statement, local ones too)."""

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The product's folders, imported as packages of ttcq (its links in ttcq/).
LINKED = ("api", "db", "worker", "migrations")
PRODUCT = (*LINKED, "ttcq")
DOMAIN = ("worker/search", "worker/engines", "worker/verifiers")


def _modules(*folders: str) -> Iterator[tuple[str, Path]]:
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            relative = path.relative_to(ROOT).with_suffix("")
            parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
            prefix = ("ttcq",) if parts[0] in LINKED else ()
            yield ".".join(prefix + parts), path


def _imports(path: Path) -> set[str]:
    """Every module an import statement in path names (absolute imports)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def _offenders(folders: tuple[str, ...], banned: tuple[str, ...]) -> list[str]:
    return [f"{module} imports {name}"
            for module, path in _modules(*folders)
            for name in sorted(_imports(path))
            if any(name == b or name.startswith(b + ".") for b in banned)]


def test_storage_imports_nothing_of_the_worker_or_the_api() -> None:
    assert _offenders(("db",), ("ttcq.worker", "ttcq.api")) == []


def test_the_worker_imports_nothing_of_the_api() -> None:
    assert _offenders(("worker",), ("ttcq.api",)) == []


def test_the_search_domain_knows_no_celery_and_no_sql() -> None:
    banned = ("celery", "kombu", "sqlalchemy", "sqlmodel", "psycopg", "ttcq.db")
    assert _offenders(DOMAIN, banned) == []


def test_everything_imports_the_product_by_its_one_name() -> None:
    """api, db, worker and migrations are ttcq's: a bare `import db` would load a second
    copy of the same files (and define every table twice)."""
    everywhere = (*PRODUCT, "lab", "bench", "tests")
    assert _offenders(everywhere, LINKED) == []


def test_the_product_imports_no_tests_and_no_lab() -> None:
    assert _offenders(PRODUCT, ("tests", "lab", "bench")) == []


def test_no_module_imports_itself_back() -> None:
    known = dict(_modules(*PRODUCT))
    graph = {module: {name for name in _imports(path) if name in known and name != module}
             for module, path in known.items()}
    assert sorted(module for module in graph if _reaches(graph, module, module)) == []


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    """Whether goal is reachable from start's imports (following imports of imports)."""
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        node = todo.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(graph[node])
    return False
