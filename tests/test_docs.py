"""The README's Python examples run as written, and its commands exist in the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from splitlab.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def test_readme_starts_with_the_two_commands() -> None:
    first_block = re.search(r"```\n(.*?)```", README, flags=re.DOTALL)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_readme_python_examples_run(index: int) -> None:
    exec(compile(PYTHON_BLOCKS[index], f"README block {index}", "exec"), {})  # noqa: S102 - our own README


def _documented_usages() -> dict[str, str]:
    block = README.split("## Command line", 1)[1].split("```")[1]
    usages: dict[str, str] = {}
    for chunk in re.split(r"\n(?=splitlab )", block.strip()):
        words = chunk.split()
        usages[words[1]] = chunk
    return usages


@pytest.mark.parametrize("command", ["analyze-file", "sample-size"])
def test_readme_command_options_exist(command: str) -> None:
    usage = _documented_usages()[command]
    documented = set(re.findall(r"--[a-z][a-z-]+", usage))
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert documented
    assert documented <= set(re.findall(r"--[a-z][a-z-]+", result.output))
