"""The pure layers import nothing from storage, service, CLI, SQLAlchemy or FastAPI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "splitlab"
PURE = ("stats", "assignment", "bandits")
FORBIDDEN = (
    "splitlab.storage", "splitlab.service", "splitlab.cli", "splitlab.analysis", "splitlab.sdk",
    "sqlalchemy", "fastapi", "starlette", "typer", "alembic", "psycopg",
)  # fmt: skip


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            names.append("." * node.level + (node.module or ""))
    return names


def _violations(package: str) -> list[str]:
    found = []
    for path in sorted((SRC / package).rglob("*.py")):
        for name in _imports(path):
            if name.startswith(".."):
                found.append(f"{path.relative_to(SRC)}: relative import {name} leaves the package")
            elif any(name == f or name.startswith(f + ".") for f in FORBIDDEN):
                found.append(f"{path.relative_to(SRC)}: imports {name}")
    return found


@pytest.mark.parametrize("package", PURE)
def test_pure_layer_has_no_forbidden_imports(package: str) -> None:
    if not (SRC / package).is_dir():
        pytest.skip(f"splitlab.{package} does not exist yet")
    assert _violations(package) == []


def test_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("import sqlalchemy\nfrom splitlab.cli import app\n")
    assert _imports(module) == ["sqlalchemy", "splitlab.cli"]


def test_stats_uses_only_numpy_scipy_and_the_standard_library() -> None:
    import sys

    allowed = set(sys.stdlib_module_names) | {"numpy", "scipy", "__future__"}
    outside = []
    for path in sorted((SRC / "stats").rglob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            if name.startswith("."):
                continue
            wrong_layer = top == "splitlab" and not name.startswith("splitlab.stats")
            if wrong_layer or (top != "splitlab" and top not in allowed):
                outside.append(f"{path.name}: {name}")
    assert outside == []


def test_top_level_names_resolve() -> None:
    import splitlab

    for name in splitlab.__all__:
        assert getattr(splitlab, name) is not None
