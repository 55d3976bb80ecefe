"""The built wheel is complete: installed alone in a fresh virtual environment, ``splitlab demo`` runs.

An editable install reads files straight from the checkout, so it hides anything packaging drops
(the bundled examples were once a symlink that ``pip wheel`` left out). This test builds the wheel,
installs it into a new venv and runs the console script from there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from importlib.metadata import version
from pathlib import Path

import pytest

from splitlab.specs import load_catalog

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "src" / "splitlab" / "data" / "examples"
# The build backend's floor in pyproject.toml: older setuptools refuses `license = "MIT"`.
SETUPTOOLS_FLOOR = 77
# Where the venv's interpreter finds splitlab and its examples. splitlab.cli re-exports the demo
# command under the module's name, hence import_module.
LOCATE = """
import importlib, splitlab
print(splitlab.__file__)
print(importlib.import_module("splitlab.cli.demo").examples_path())
"""


def _run(command: list[str | Path], *, cwd: Path) -> subprocess.CompletedProcess[str]:
    # A PYTHONPATH pointing at src/ would import the checkout instead of the installed wheel.
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "PYTHONHOME"}}
    # The demo alone takes about 30 s of CPU; the timeout only stops a hung process before
    # pytest-timeout's 300 s would, leaving its output in the failure.
    return subprocess.run(  # noqa: S603 - our own interpreters and the wheel we built
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=240
    )


def _build_wheel(tmp: Path) -> Path:
    # Build from a copy of the sources: an in-tree build writes build/ into the checkout, and a
    # build/lib left over from an earlier build would put deleted modules back into the wheel.
    source = tmp / "source"
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    dist = tmp / "dist"
    # No isolation and no index: the build uses this environment's setuptools and downloads nothing.
    options = ["--no-deps", "--no-build-isolation", "--no-index", "--quiet", "--wheel-dir", dist]
    built = _run([sys.executable, "-m", "pip", "wheel", *options, source], cwd=tmp)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = dist.glob("splitlab-*.whl")
    return wheel


def _fresh_venv(path: Path) -> Path:
    venv.EnvBuilder(with_pip=False).create(path)
    python = path / "bin" / "python"
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], cwd=path)
    # The dependencies (numpy, pandas, ...) come from this interpreter's site-packages, appended
    # after the venv's own: a plain path line in a .pth file does not run the .pth files of the
    # directory it names, so the editable splitlab of this checkout stays invisible.
    Path(purelib.stdout.strip(), "_splitlab_test_dependencies.pth").write_text(
        sysconfig.get_path("purelib") + "\n", encoding="utf-8"
    )
    return python


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the wheel built from this checkout; returns its directory."""
    setuptools_major = int(version("setuptools").split(".")[0])
    assert setuptools_major >= SETUPTOOLS_FLOOR, (
        f"setuptools {version('setuptools')} cannot build splitlab; run `pip install -e '.[dev]'`"
    )
    tmp = tmp_path_factory.mktemp("packaging")
    wheel = _build_wheel(tmp)
    environment = tmp / "venv"
    python = _fresh_venv(environment)
    install = _run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "--quiet", wheel],
        cwd=tmp,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    return environment


def test_wheel_ships_the_bundled_examples_as_files(tmp_path: Path, installed: Path) -> None:
    located = _run([installed / "bin" / "python", "-c", LOCATE], cwd=tmp_path)
    assert located.returncode == 0, located.stderr
    package, examples = (Path(line) for line in located.stdout.splitlines())
    assert package.is_relative_to(installed)
    assert examples.is_relative_to(installed)
    assert not examples.is_symlink()
    assert sorted(path.name for path in examples.iterdir()) == sorted(path.name for path in EXAMPLES.iterdir())


def test_demo_runs_from_the_installed_wheel(tmp_path: Path, installed: Path) -> None:
    result = _run(
        [installed / "bin" / "splitlab", "demo", "--database", "demo.db", "--reports", "reports"], cwd=tmp_path
    )
    assert result.returncode == 0, result.stdout + result.stderr
    reports = {path.name for path in (tmp_path / "reports").glob("*.html")}
    assert reports == {f"{key}.html" for key in load_catalog(EXAMPLES).experiments}
    assert all("<html" in (tmp_path / "reports" / name).read_text(encoding="utf-8").lower() for name in reports)
