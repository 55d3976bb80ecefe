"""The browser set-up itself: Debian's Chromium renders what ``splitlab serve`` serves, and axe-core loads locally."""

from __future__ import annotations

import json
from typing import Any


def test_chromium_renders_a_page_of_the_server(tab: Any, axe_source: str) -> None:
    response = tab.page.goto("/api/v1/health")
    assert response is not None
    assert response.status == 200
    assert json.loads(tab.page.inner_text("body")) == {"status": "ok"}
    # axe-core comes from the local npm install, injected as a script: no CDN is reachable here.
    tab.page.add_script_tag(content=axe_source)
    assert tab.page.evaluate("() => axe.version").startswith("4.")
    tab.assert_clean()  # Chromium's own /favicon.ico request beside the JSON is left out (conftest)
