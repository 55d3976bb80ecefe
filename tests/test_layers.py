"""What the import-linter contracts in pyproject.toml (run by `make lint`) cannot say.

The layers themselves (front ends > operations > analysis > specs, storage > the pure core, and
no I/O framework in the pure core) are import-linter contracts; this file keeps the statistics
package to numpy, scipy and the standard library, an allow-list that import-linter has no
contract for.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "splitlab"


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


def test_checker_reads_every_import_form(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text("import sqlalchemy\nfrom splitlab.cli import app\nfrom .. import x\n")
    assert _imports(module) == ["sqlalchemy", "splitlab.cli", ".."]


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
