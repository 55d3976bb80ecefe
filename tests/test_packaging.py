"""The built wheel is complete: installed alone in a fresh virtual environment, ``splitlab demo`` runs.

An editable install reads files straight from the checkout, so it hides anything packaging drops
(the bundled examples were once a symlink that ``pip wheel`` left out). These tests build the wheel,
install it into a new venv and run the console script from there (fixtures in tests/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

from splitlab.specs import load_catalog

from .conftest import DemoRun, run_isolated

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "src" / "splitlab" / "data" / "examples"
# Where the venv's interpreter finds splitlab and its examples. splitlab.cli re-exports the demo
# command under the module's name, hence import_module.
LOCATE = """
import importlib, splitlab
print(splitlab.__file__)
print(importlib.import_module("splitlab.cli.demo").examples_path())
"""


def test_wheel_ships_the_bundled_examples_as_files(tmp_path: Path, installed_wheel: Path) -> None:
    located = run_isolated([installed_wheel / "bin" / "python", "-c", LOCATE], cwd=tmp_path)
    assert located.returncode == 0, located.stderr
    package, examples = (Path(line) for line in located.stdout.splitlines())
    assert package.is_relative_to(installed_wheel)
    assert examples.is_relative_to(installed_wheel)
    assert not examples.is_symlink()
    assert sorted(path.name for path in examples.iterdir()) == sorted(path.name for path in EXAMPLES.iterdir())


def test_demo_runs_from_the_installed_wheel(demo_run: DemoRun) -> None:
    # The run is shared with tests/cli/test_demo.py, which checks its verdicts (tests/conftest.py).
    assert demo_run.process.returncode == 0, demo_run.process.stdout + demo_run.process.stderr
    reports = {path.name for path in demo_run.reports.glob("*.html")}
    assert reports == {f"{key}.html" for key in load_catalog(EXAMPLES).experiments}
    assert all("<html" in (demo_run.reports / name).read_text(encoding="utf-8").lower() for name in reports)
