"""Each page of the dashboard in Chromium: what it shows, its screenshot for docs/dashboard.md, no console error."""

from __future__ import annotations

import re
from typing import Any

from splitlab.stats.power import plan_sample_size

DECISIONS = {"STRONG_LAUNCH", "LAUNCH", "CONSIDER_LAUNCH", "EXTEND_TEST", "NO_LAUNCH", "ROLLBACK", "INVALID"}
SECTIONS = ("decision", "traffic", "metrics", "timeline", "segments", "guardrails", "history", "audit")
ANALYSED = "free-shipping-threshold"  # the demo's strong launch, with segments: the page the screenshot shows


def _row_keys(page: Any) -> list[str]:
    return page.eval_on_selector_all(
        "table#experiments tr[data-experiment]", "rows => rows.map(r => r.dataset.experiment)"
    )


def test_signed_out_visitors_go_to_the_login_page_and_a_wrong_key_is_refused(tab: Any) -> None:
    page = tab.page
    page.goto("/")
    page.wait_for_selector("form#login")
    assert re.search(r"/login(\?|$)", page.url), page.url
    assert page.locator("p#login-error").count() == 0
    tab.screenshot("login")
    page.fill("input#api-key", "slk_nosuchkey_0123456789abcdef")
    with page.expect_response("**/login") as refused:
        page.click("button#sign-in")
    assert refused.value.status == 401
    error = page.locator("p#login-error")
    error.wait_for()
    assert "not valid" in error.inner_text()
    assert page.locator("form#login").is_visible()  # still signed out, on the form
    assert page.locator("table#experiments").count() == 0
    # Chromium logs every document answered with an error status; this 401 is the one expected.
    assert [e for e in tab.errors if "status of 401" not in e or not e.startswith(f"console error at {page.url}")] == []


def test_the_list_shows_every_experiment_with_its_decision(admin_tab: Any, dashboard: Any) -> None:
    page = admin_tab.page
    assert sorted(_row_keys(page)) == sorted(dashboard.experiments)
    row = page.locator(f'tr[data-experiment="{ANALYSED}"]')
    assert row.locator("a.experiment-link").count() == 1
    badges = page.eval_on_selector_all("span.badge[data-decision]", "badges => badges.map(b => b.dataset.decision)")
    assert badges, "no decision badge on the list"
    assert set(badges) <= DECISIONS, badges
    assert page.locator("nav#top").is_visible()
    admin_tab.screenshot("list")
    admin_tab.assert_clean()


def test_the_status_filter_and_the_search_narrow_the_rows(admin_tab: Any, dashboard: Any) -> None:
    page = admin_tab.page
    everything = _row_keys(page)
    filters = page.locator("select#status-filter").locator("xpath=ancestor::form")
    page.select_option("select#status-filter", "draft")
    with page.expect_navigation():
        filters.locator("button[type=submit]").click()
    assert _row_keys(page) == [dashboard.draft]
    assert "status=draft" in page.url
    page.select_option("select#status-filter", "")  # any status again, now by key
    page.fill("input#search", "recommend")
    with page.expect_navigation():
        page.press("input#search", "Enter")
    assert _row_keys(page) == ["homepage-recommendations"]
    assert len(everything) > 1
    admin_tab.assert_clean()


def test_the_experiment_page_shows_every_section_and_loads_within_a_second(admin_tab: Any) -> None:
    page = admin_tab.page
    page.click(f'tr[data-experiment="{ANALYSED}"] a.experiment-link')
    page.wait_for_selector("section#decision")
    assert page.url.endswith(f"/experiments/{ANALYSED}")
    for section in SECTIONS:
        assert page.locator(f"section#{section}").count() == 1, f"section#{section} is missing"
    heading = page.locator("section#decision h2").first.inner_text()
    assert any(f"Decision: {category}" in heading for category in DECISIONS), heading
    assert page.locator("section#audit li.audit-entry").count() >= 1  # applied and started by the demo
    assert page.locator("section#actions").count() == 1
    admin_tab.screenshot("experiment", full_page=True)
    # A fresh load, timed by the browser: request to the load event, static files and charts included.
    page.reload()
    duration = page.evaluate("() => performance.getEntriesByType('navigation')[0].duration")
    assert 0 < duration < 1000, f"the experiment page took {duration:.0f} ms to load"
    admin_tab.assert_clean()


def test_every_experiment_page_renders_without_errors(admin_tab: Any, dashboard: Any) -> None:
    page = admin_tab.page
    for key in dashboard.experiments:  # the bandit and the draft too: pages of another shape
        response = page.goto(f"/experiments/{key}")
        assert response is not None
        assert response.status == 200, key
        assert page.locator("section#decision").count() == 1, key
    admin_tab.assert_clean()


def test_planning_computes_the_sample_size_the_stats_engine_gives(admin_tab: Any) -> None:
    page = admin_tab.page
    page.click("nav#top a[href='/planning']")
    page.wait_for_selector("form#planning")
    form = page.locator("form#planning")
    for name, value in {"baseline": "0.1", "mde": "0.05", "alpha": "0.05", "power": "0.8"}.items():
        form.locator(f"[name={name}]").fill(value)
    form.locator("[name=daily_units]").fill("2000")
    form.locator("[name=variants]").fill("2")
    mde_type = form.locator("[name=mde_type]")
    if mde_type.first.evaluate("e => e.tagName") == "SELECT":
        mde_type.select_option("relative")
    else:
        form.locator("[name=mde_type][value=relative]").check()
    form.locator("button[type=submit], input[type=submit]").first.click()
    result = page.locator("section#plan-result")
    result.wait_for()
    expected = plan_sample_size("proportion", 0.05, baseline=0.1, alpha=0.05, power=0.8, relative=True, variants=2)
    text = result.inner_text()
    assert f"{expected.per_variant:,}" in text or str(expected.per_variant) in text, text
    admin_tab.screenshot("planning")
    admin_tab.assert_clean()


def test_signing_out_ends_the_session(admin_tab: Any, dashboard: Any) -> None:
    page = admin_tab.page
    # The session is a cookie scripts cannot read and other sites' requests do not carry; the key stays out of it.
    [cookie] = page.context.cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == ("splitlab_session", True, "Strict")
    assert dashboard.admin_key not in cookie["value"]
    assert page.evaluate("() => document.cookie") == ""
    page.click("form#logout button")
    page.wait_for_selector("form#login")
    page.goto("/")
    page.wait_for_selector("form#login")  # the session cookie no longer signs in
    assert page.locator("table#experiments").count() == 0
    admin_tab.assert_clean()


def _bandit_windows(page: Any) -> list[list[str]]:
    return page.eval_on_selector_all(
        "table#bandit-weights tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.innerText.trim()))"
    )


def test_the_bandit_page_shows_its_weights_moving_window_by_window(admin_tab: Any, dashboard: Any) -> None:
    page = admin_tab.page
    page.goto(f"/experiments/{dashboard.bandit}")
    windows = _bandit_windows(page)
    assert len(windows) >= 3, windows  # four rounds of rewards, one window each after the first
    assert windows[0][2] != windows[-1][2], windows  # the weights moved with the rewards
    assert "green" in windows[1][2]
    admin_tab.assert_clean()


def test_no_bandit_window_starts_before_the_experiment(admin_tab: Any, dashboard: Any) -> None:
    page = admin_tab.page
    page.goto(f"/experiments/{dashboard.bandit}")
    started = [row[1] for row in _bandit_windows(page)]
    assert started
    assert all(day >= "2020" for day in started), started


def test_the_pages_have_an_icon(tab: Any) -> None:
    tab.page.goto("/login")
    declared = tab.page.locator("link[rel~=icon]").count() > 0
    assert declared or tab.page.request.get("/favicon.ico").ok
