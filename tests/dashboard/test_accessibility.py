"""axe-core on every page: no violation of serious or critical impact (WCAG 2.x A and AA rules and best practices)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

# axe-core runs in the page; it returns each violation with its impact and the elements it found.
RUN_AXE = """async () => {
    const results = await axe.run(document, {resultTypes: ['violations']});
    return results.violations.map(v => ({
        id: v.id, impact: v.impact, help: v.help,
        nodes: v.nodes.slice(0, 5).map(n => n.target.join(' ') + ' :: ' + n.failureSummary.replaceAll('\\n', ' ')),
    }));
}"""

PAGES = {
    "login": None,
    "list": "/",
    "experiment": "/experiments/free-shipping-threshold",
    "bandit": "/experiments/{bandit}",
    "planning": "/planning",
}


def _violations(page: Any, axe_source: str) -> list[dict[str, Any]]:
    page.add_script_tag(content=axe_source)
    return [v for v in page.evaluate(RUN_AXE) if v["impact"] in {"serious", "critical"}]


def _described(violations: list[dict[str, Any]]) -> str:
    return "\n".join(f"{v['impact']} {v['id']}: {v['help']}\n    " + "\n    ".join(v["nodes"]) for v in violations)


@pytest.mark.parametrize("name", list(PAGES))
def test_no_serious_or_critical_violation(
    name: str, new_tab: Callable[..., Any], dashboard: Any, axe_source: str
) -> None:
    # axe goes in as an inline script, which a Content-Security-Policy (none today) would block.
    tab = new_tab(bypass_csp=True)
    path = PAGES[name]
    if path is None:
        tab.page.goto("/login")
    else:
        tab.sign_in(dashboard.admin_key)
        tab.page.goto(path.format(bandit=dashboard.bandit))
    violations = _violations(tab.page, axe_source)
    assert violations == [], f"axe on {name} ({tab.page.url}):\n{_described(violations)}"


def test_the_open_confirmation_dialog_has_no_serious_violation(
    new_tab: Callable[..., Any], dashboard: Any, axe_source: str
) -> None:
    tab = new_tab(bypass_csp=True)
    tab.sign_in(dashboard.admin_key)
    tab.page.goto("/experiments/free-shipping-threshold")
    tab.page.click('section#actions button[data-action="stop"]')
    tab.page.locator("dialog#confirm-stop").wait_for(state="visible")
    violations = _violations(tab.page, axe_source)
    assert violations == [], f"axe with dialog#confirm-stop open:\n{_described(violations)}"
