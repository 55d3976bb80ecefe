"""The dashboard in a real Chromium: one ``splitlab serve`` process and one browser for the whole session.

The store is a SQLite file prepared once with experiments that have data: the demo's bundled
examples (applied, started, simulated with their planted effects and analysed, at a tenth of their
planned traffic so it takes seconds), a Thompson bandit with simulated traffic, a stored readout
and rounds of rewards, and a draft. An admin key and a viewer key are created in the store before
any page is asked for.

Chromium is Debian's (``/usr/bin/chromium``), driven by Playwright's sync API; axe-core comes from
npm into ``.cache/axe``. ``make test`` installs both (target ``browser-deps``). When either is
missing the tests skip with the command that installs it, except under ``CI=true``, where that is a
failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from splitlab.storage import open_store

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
AXE = ROOT / ".cache" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
IMAGES = ROOT / "docs" / "images"
VIEWPORT = {"width": 1280, "height": 800}  # a laptop: the size of the screenshots in docs/dashboard.md
INSTALL_HINT = "run `make browser-deps` (Debian's chromium with apt-get, axe-core with npm)"
# The probe's flags: without the background-networking ones Chromium keeps dialling Google's hosts,
# which this machine's closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCALE = 0.1  # share of each example's planned traffic: enough for real verdicts, a few seconds to simulate
BANDIT = "cta-colour"
BANDIT_SPEC: dict[str, Any] = {
    "key": BANDIT,
    "name": "Call-to-action colour",
    "owner": "growth-team@example.com",
    "variants": [{"key": "grey"}, {"key": "green"}, {"key": "orange"}],
    "metrics": {"goal": ["conversion"]},
    "allocation": {"method": "bandit", "bandit": {"policy": "thompson", "metric": "purchase", "update_every": 50}},
}
CONVERTING = {"grey": 8, "green": 14, "orange": 10}  # units in a hundred rewarded, per arm
DRAFT = "onboarding-tour"  # applied, never started: the one draft, for the status filter
DRAFT_SPEC: dict[str, Any] = {"key": DRAFT, "variants": [{"key": "off"}, {"key": "tour"}]}


def browser_unavailable(reason: str) -> NoReturn:
    """Skip (dev machine) or fail (CI=true) because Chromium, Playwright or axe-core is missing."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"the browser tests need it under CI=true: {reason}", pytrace=False)
    pytest.skip(f"{reason}; {INSTALL_HINT}")


@dataclass(frozen=True)
class Dashboard:
    """The running server, its store and the keys to sign in with."""

    base: str
    database_url: str
    admin_key: str
    viewer_key: str
    experiments: tuple[str, ...]
    log: Path
    bandit: str = BANDIT
    draft: str = DRAFT


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _prepare_store(database_url: str) -> tuple[tuple[str, ...], str, str]:
    """Experiments with data, and an admin and a viewer key: (experiment keys, admin key, viewer key)."""
    from splitlab.cli.demo import run_scenarios
    from splitlab.operations.analysis import analyze
    from splitlab.operations.assignment import assign
    from splitlab.operations.bandits import record_rewards
    from splitlab.operations.experiments import apply_spec, change_status
    from splitlab.operations.simulation import simulate_experiment
    from splitlab.specs import ExperimentSpec

    with open_store(database_url) as store:
        results = run_scenarios(store, seed=7, scale=SCALE)
        apply_spec(store, ExperimentSpec.model_validate(BANDIT_SPEC), actor="ana")
        apply_spec(store, ExperimentSpec.model_validate(DRAFT_SPEC), actor="ana")
        change_status(store, key=BANDIT, action="start", actor="ana", reason="find the colour that converts")
        simulate_experiment(store, BANDIT, units=3000, effects={"conversion": 0.2}, days=7, seed=7)
        analyze(store, BANDIT)  # a stored readout, as the demo's examples have
        # Then live rounds: units assigned one by one, as the service does, and rewarded in batches
        # of the window's size, so the weights move window by window.
        for first in range(0, 200, 50):
            rewards = {}
            for i in range(first, first + 50):
                variant = assign(store, BANDIT, f"visitor-{i}", record=True).variant
                rewards[f"visitor-{i}"] = float(i % 100 < CONVERTING[variant])  # a fixed share converts
            record_rewards(store, BANDIT, rewards)
        _, admin_key = store.keys.create(role="admin", name="ops", actor="test")
        _, viewer_key = store.keys.create(role="viewer", name="analyst", actor="test")
    return (*(result.key for result in results), BANDIT, DRAFT), admin_key, viewer_key


def _splitlab_command() -> list[str]:
    script = Path(sys.executable).with_name("splitlab")
    found = str(script) if script.exists() else shutil.which("splitlab")
    assert found is not None, "the splitlab command is not installed (pip install -e '.[dev]')"
    return [found]


@pytest.fixture(scope="session")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """``splitlab serve`` on a free loopback port over the prepared store, stopped after the session.

    The server starts on the migrated, empty store while the store is filled: its start-up (seconds
    of imports) overlaps the simulation, and no page is asked for before both are done.
    """
    directory = tmp_path_factory.mktemp("dashboard")
    database_url = f"sqlite:///{directory / 'store.db'}"
    with open_store(database_url):  # migrated once, before the server and the simulation both open it
        pass
    port = _free_port()
    log = directory / "server.log"
    with log.open("ab") as stderr:  # a pipe nobody reads would block the server
        process = subprocess.Popen(  # noqa: S603 - our own command
            [*_splitlab_command(), "serve", "--port", str(port), "--database", database_url],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        experiments, admin_key, viewer_key = _prepare_store(database_url)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/api/v1/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"splitlab serve did not become ready:\n{log.read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)  # polling for start-up, not timing anything
        yield Dashboard(
            base=base,
            database_url=database_url,
            admin_key=admin_key,
            viewer_key=viewer_key,
            experiments=experiments,
            log=log,
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Debian Chromium per test module, driven by Playwright.

    Not one per session: Playwright's sync API keeps an asyncio loop running in the main thread
    while it lives, and every later test that calls ``asyncio.run`` would fail.
    """
    if not CHROMIUM.exists():
        browser_unavailable(f"{CHROMIUM} is missing")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        browser_unavailable(f"playwright is not installed ({exc})")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="session")
def axe_source() -> str:
    """axe-core's script, from the local npm install (never a CDN)."""
    if not AXE.exists():
        browser_unavailable(f"axe-core is missing ({AXE})")
    return AXE.read_text(encoding="utf-8")


@dataclass
class Tab:
    """A page in a fresh browser context, with every console error and uncaught exception it met."""

    page: Any
    errors: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        """No console error and no uncaught exception on any page this tab visited."""
        assert self.errors == [], "\n".join(self.errors)

    def sign_in(self, key: str) -> None:
        """Sign in through the login form; lands on the experiment list."""
        self.page.goto("/login")
        self.page.fill("input#api-key", key)
        self.page.click("button#sign-in")
        self.page.wait_for_selector("table#experiments")

    def screenshot(self, name: str, *, full_page: bool = False) -> None:
        """Write ``docs/images/dashboard-<name>.png`` (kept current by every run)."""
        IMAGES.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(IMAGES / f"dashboard-{name}.png"), full_page=full_page, animations="disabled")


def _described(message: Any) -> str:
    return f"console error at {message.location.get('url', '?')}: {message.text}"


def _on_console(tab: Tab, message: Any) -> None:
    # Chromium asks for /favicon.ico by itself, when it gets round to it, wherever a page declares no
    # icon (the API's JSON): whether the pages have one is test_pages.py::test_the_pages_have_an_icon's
    # to say, deterministically, not any test's by chance.
    if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico"):
        tab.errors.append(_described(message))


@pytest.fixture
def new_tab(browser: Any, dashboard: Dashboard) -> Iterator[Callable[..., Tab]]:
    """``new_tab(**context_options)``: a page in a context of its own (own cookies), closed after the test."""
    contexts: list[Any] = []

    def open_tab(**options: Any) -> Tab:
        context = browser.new_context(base_url=dashboard.base, viewport=VIEWPORT, **options)
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        tab = Tab(page)
        page.on("console", lambda message: _on_console(tab, message))
        page.on("pageerror", lambda error: tab.errors.append(f"pageerror: {error}"))
        return tab

    yield open_tab
    for context in contexts:
        context.close()


@pytest.fixture
def tab(new_tab: Callable[..., Tab]) -> Tab:
    """A page in a fresh context (signed out)."""
    return new_tab()


@pytest.fixture
def admin_tab(new_tab: Callable[..., Tab], dashboard: Dashboard) -> Tab:
    """A page signed in with the admin key."""
    signed_in = new_tab()
    signed_in.sign_in(dashboard.admin_key)
    return signed_in


@pytest.fixture
def viewer_tab(new_tab: Callable[..., Tab], dashboard: Dashboard) -> Tab:
    """A page signed in with the viewer key."""
    signed_in = new_tab()
    signed_in.sign_in(dashboard.viewer_key)
    return signed_in
