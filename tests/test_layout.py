"""The import rules of the tree (docs/architecture.md): the shared core imports neither side,
the workers never import the gateway, the gateway never imports the workers, and only the
``synthgate`` CLI wires both. Every import counts, also one inside a function."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.ordering import LONGEST_FIRST, TESTS
from fixtures.processes import ROOT

PACKAGES = ("taskcore", "gateway", "workers", "synthgate", "simulator")

# Which of the project's packages each package may import (itself always).
ALLOWED: dict[str, frozenset[str]] = {
    "taskcore": frozenset(),
    "gateway": frozenset({"taskcore"}),
    "workers": frozenset({"taskcore"}),
    "simulator": frozenset(),
    "synthgate": frozenset({"taskcore", "gateway", "workers", "simulator"}),
}


def imported_packages(source: str) -> Iterator[tuple[int, str]]:
    """(line, top-level package) of every absolute import in ``source``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module.split(".")[0]


def violations(root: Path) -> list[str]:
    """``path:line imports package`` for every import that breaks :data:`ALLOWED`."""
    found = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            for line, imported in imported_packages(path.read_text()):
                allowed = imported == package or imported in ALLOWED[package]
                if imported in PACKAGES and not allowed:
                    found.append(f"{path.relative_to(root)}:{line} imports {imported}")
    return found


def test_the_tree_keeps_its_import_rules() -> None:
    assert violations(ROOT) == []


@pytest.mark.parametrize(
    ("module", "statement"),
    [
        ("workers/backends/bad.py", "from gateway.edge.errors import ApiError"),
        ("workers/bad.py", "def later():\n    import gateway.edge.app\n"),
        ("taskcore/bad.py", "from workers import metrics"),
        ("taskcore/store/bad.py", "import gateway"),
        ("gateway/routes/bad.py", "from workers.storage import build_storage"),
        ("simulator/bad.py", "from taskcore.settings import Settings"),
    ],
)
def test_an_import_across_the_rules_is_found(tmp_path: Path, module: str, statement: str) -> None:
    for package in PACKAGES:
        (tmp_path / package).mkdir()
    target = tmp_path / module
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(f"from __future__ import annotations\n\n{statement}\n")
    [found] = violations(tmp_path)
    assert found.startswith(module)


def test_only_the_cli_imports_both_sides() -> None:
    both = [
        package
        for package, allowed in ALLOWED.items()
        if {"gateway", "workers"} <= allowed | {package}
    ]
    assert both == ["synthgate"]


def test_the_files_run_first_exist() -> None:
    # A renamed file would silently lose its place at the front (tests/fixtures/ordering.py).
    missing = [name for name in LONGEST_FIRST if not (TESTS / name).is_file()]
    assert not missing, missing
