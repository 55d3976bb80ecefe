"""The docs are code: every Python example runs as written, every relative link resolves, and the
README's commands exist in the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from splitlab.cli import app

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
# Pages whose Python blocks must run; docs/architecture.md is included by the glob like any page.
PAGES_WITH_CODE = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "examples" / "README.md"]
PAGES_WITH_LINKS = [*PAGES_WITH_CODE, ROOT / "benchmarks" / "README.md", ROOT / "deploy" / "README.md"]
_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", flags=re.DOTALL | re.MULTILINE)
# [text](target): the target up to a space (a title) or the closing parenthesis.
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)[^)]*\)")


def _python_blocks() -> list[pytest.ParameterSet]:
    blocks = []
    for page in PAGES_WITH_CODE:
        text = page.read_text(encoding="utf-8")
        for index, match in enumerate(_PYTHON_BLOCK.finditer(text)):
            line = text.count("\n", 0, match.start(1))  # lines before the block's first line
            name = page.relative_to(ROOT).as_posix()
            blocks.append(pytest.param(page, line, match.group(1), id=f"{name}#{index}"))
    return blocks


def test_readme_starts_with_the_two_commands() -> None:
    first_block = re.search(r"```\n(.*?)```", README, flags=re.DOTALL)
    assert first_block is not None
    commands = [line.split("#")[0].strip() for line in first_block.group(1).splitlines() if line.strip()]
    assert commands == ["make demo", "make test"]


@pytest.mark.parametrize(("page", "line", "code"), _python_blocks())
def test_python_examples_run(page: Path, line: int, code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A reader runs the examples from a checkout: `examples/` is where the README says, and
    # whatever a block writes (a SQLite file) lands in a temporary folder, not in the repository.
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    monkeypatch.chdir(tmp_path)
    # Padding with the lines above the block makes a traceback name the page's own line numbers.
    source = "\n" * line + code
    exec(compile(source, str(page), "exec"), {"__name__": "__docs__"})  # noqa: S102 - our own docs


def test_every_page_with_python_has_examples() -> None:
    # The regex must keep finding blocks: a changed fence style would otherwise test nothing.
    pages = {page for page, _, _ in (param.values for param in _python_blocks())}
    assert {ROOT / "README.md", ROOT / "docs" / "bandits.md", ROOT / "docs" / "storage.md"} <= pages


def test_links_are_found() -> None:
    # The pattern must see the README's links, or every page would pass with none checked.
    found = _LINK.findall(README)
    assert "docs/methodology.md" in found
    assert _LINK.findall('see [the diary](../benchmarks/README.md#runs "title")') == ["../benchmarks/README.md#runs"]


@pytest.mark.parametrize("page", PAGES_WITH_LINKS, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page: Path) -> None:
    targets = _LINK.findall(page.read_text(encoding="utf-8"))
    relative = [
        target.split("#")[0] for target in targets if "://" not in target and not target.startswith(("#", "mailto:"))
    ]
    missing = [target for target in relative if not (page.parent / target).exists()]
    assert not missing, f"{page.relative_to(ROOT)} links to files that do not exist: {missing}"


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
