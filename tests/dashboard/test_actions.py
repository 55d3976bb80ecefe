"""Actions through the dashboard: a pause with its reason, the confirmation dialog, a viewer, a forged form."""

from __future__ import annotations

from typing import Any

from splitlab.storage import open_store

PAUSED = "homepage-recommendations"  # the one experiment this session pauses
REASON = "revenue guardrail unclear: pausing until finance reviews the attribution"


def _status(database_url: str, key: str) -> str:
    with open_store(database_url) as store:
        return str(store.experiments.get(key=key).status)


def _action_form(page: Any, action: str) -> dict[str, Any]:
    """The action's form as the admin's page has it: where it posts and its hidden fields (the CSRF token)."""
    return page.eval_on_selector(
        f"dialog#confirm-{action} form",
        """form => ({
            action: form.action,
            hidden: Object.fromEntries([...form.querySelectorAll('input[type=hidden]')].map(i => [i.name, i.value])),
        })""",
    )


def test_an_admin_pauses_an_experiment_with_a_reason(admin_tab: Any, dashboard: Any) -> None:
    page = admin_tab.page
    page.click(f'tr[data-experiment="{PAUSED}"] a.experiment-link')
    page.click('section#actions button[data-action="pause"]')
    dialog = page.locator("dialog#confirm-pause")
    dialog.wait_for(state="visible")
    # The reason is required: confirming without one submits nothing.
    dialog.locator("button.confirm").click()
    assert dialog.is_visible()
    assert dialog.locator('textarea[name="reason"]').evaluate("e => e.validity.valueMissing")
    assert _status(dashboard.database_url, PAUSED) == "running"
    # Cancel closes the dialog (and the browser's "fill out this field" bubble); the button opens it again.
    dialog.locator("button.cancel").click()
    dialog.wait_for(state="hidden")
    page.click('section#actions button[data-action="pause"]')
    dialog.wait_for(state="visible")
    dialog.locator('textarea[name="reason"]').fill(REASON)
    admin_tab.screenshot("pause-dialog")
    dialog.locator("button.confirm").click()
    flash = page.locator("p#flash")
    flash.wait_for()
    assert "paused" in flash.inner_text().lower(), flash.inner_text()
    audit = page.locator("section#audit li.audit-entry")
    assert any(REASON in entry for entry in audit.all_inner_texts()), audit.all_inner_texts()
    assert _status(dashboard.database_url, PAUSED) == "paused"
    assert page.locator('section#actions button[data-action="pause"]').count() == 0  # nothing left to pause
    admin_tab.assert_clean()


def test_a_viewer_sees_no_actions_and_a_forged_action_is_refused(
    admin_tab: Any, viewer_tab: Any, dashboard: Any
) -> None:
    target = "free-shipping-threshold"
    admin_tab.page.goto(f"/experiments/{target}")
    form = _action_form(admin_tab.page, "stop")
    viewer = viewer_tab.page
    viewer.goto(f"/experiments/{target}")
    viewer.wait_for_selector("section#decision")
    assert viewer.locator("section#actions").count() == 0
    assert viewer.locator("dialog[id^=confirm-]").count() == 0
    # The viewer replays the admin's form with its own session cookie: the admin's token, its own
    # (from the sign-out form, when it has one), and none at all. Every one is refused.
    own = viewer.eval_on_selector_all(
        "form#logout input[type=hidden]", "inputs => Object.fromEntries(inputs.map(i => [i.name, i.value]))"
    )
    for hidden in (form["hidden"], own, {}):
        answer = viewer_tab.page.request.post(form["action"], form={**hidden, "reason": "forged"}, max_redirects=0)
        assert answer.status == 403, (hidden.keys(), answer.status, answer.text()[:300])
    assert _status(dashboard.database_url, target) == "running"
    viewer_tab.assert_clean()


def test_an_action_without_the_csrf_token_is_refused(admin_tab: Any, dashboard: Any) -> None:
    target = "free-shipping-threshold"
    page = admin_tab.page
    page.goto(f"/experiments/{target}")
    form = _action_form(page, "stop")
    assert form["hidden"], "the action form carries no hidden CSRF field"
    tokenless = {name: value for name, value in form["hidden"].items() if "csrf" not in name.lower()}
    answer = page.request.post(form["action"], form={**tokenless, "reason": "no token"}, max_redirects=0)
    assert answer.status == 403, answer.text()[:300]
    wrong = {name: ("x" * len(value) if "csrf" in name.lower() else value) for name, value in form["hidden"].items()}
    answer = page.request.post(form["action"], form={**wrong, "reason": "wrong token"}, max_redirects=0)
    assert answer.status == 403, answer.text()[:300]
    assert _status(dashboard.database_url, target) == "running"
    admin_tab.assert_clean()


def test_the_keyboard_reaches_the_search_and_the_actions_and_escape_closes_a_dialog(admin_tab: Any) -> None:
    page = admin_tab.page
    focused = _tab_until(page, "input#search")
    assert focused, "Tab never reached input#search on the list"
    page.goto("/experiments/free-shipping-threshold")
    assert _tab_until(page, "section#actions button[data-action]"), "Tab never reached an action button"
    action = page.evaluate("() => document.activeElement.dataset.action")
    page.keyboard.press("Enter")
    dialog = page.locator(f"dialog#confirm-{action}")
    dialog.wait_for(state="visible")
    assert page.evaluate("() => document.activeElement.name") == "reason"  # focus moved into the dialog
    page.keyboard.press("Escape")
    dialog.wait_for(state="hidden")
    assert not dialog.evaluate("d => d.open")
    assert page.evaluate("() => document.activeElement.dataset.action") == action  # and back to its button
    admin_tab.assert_clean()


def _tab_until(page: Any, selector: str, *, presses: int = 60) -> bool:
    """Press Tab until the focused element matches ``selector``; whether it did."""
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    for _ in range(presses):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement !== null && document.activeElement.matches(s)", selector):
            return True
    return False


def test_a_refused_action_comes_back_as_the_operations_message(admin_tab: Any, dashboard: Any) -> None:
    target = "free-shipping-threshold"
    page = admin_tab.page
    page.goto(f"/experiments/{target}")
    form = _action_form(page, "roll-out")
    # A variant the spec does not have (the page's select offers only real ones): roll_out refuses it.
    fields = {**form["hidden"], "variant": "no-such-variant", "reason": "typo"}
    answer = page.request.post(form["action"], form=fields, max_redirects=0)
    assert answer.status == 303
    page.goto(f"/experiments/{target}")
    flash = page.locator("p#flash").inner_text()
    assert flash.startswith("Refused"), flash
    assert "no-such-variant" in flash
    assert _status(dashboard.database_url, target) == "running"
    page.reload()
    assert page.locator("p#flash").count() == 0  # a message is shown once
    admin_tab.assert_clean()
