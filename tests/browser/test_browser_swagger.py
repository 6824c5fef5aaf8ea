"""`/schema/swagger` in a real Chromium with the network blocked: it renders from our own files.

Debian's Chromium through Playwright, as tests/browser/test_browser.py drives it; every request
not to 127.0.0.1 is aborted (and counted), as on a machine without internet. The page must show
the API and its operations, break none of its own Content-Security-Policy, and need nothing from
outside.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import ConsoleMessage, Route, expect, sync_playwright

from tests.support.fixtures import Database
from tests.support.realtime import Server, running

pytestmark = pytest.mark.slow

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _chromium() -> str:
    """Debian's Chromium (`make browser`), installed now when missing: never a skip."""
    found = shutil.which("chromium")
    if found is None:
        subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=True)
        found = shutil.which("chromium")
    assert found, "chromium could not be installed"
    return found


@pytest.fixture(scope="module")
def server(migrated_database: Database) -> Iterator[Server]:
    with running(migrated_database.app_url) as servers:
        yield servers[0]


def test_swagger_renders_offline_under_its_policy(server: Server) -> None:
    outside: list[str] = []
    problems: list[str] = []

    def route(request_route: Route) -> None:
        if urlsplit(request_route.request.url).hostname == "127.0.0.1":
            request_route.continue_()
        else:
            outside.append(request_route.request.url)
            request_route.abort("internetdisconnected")

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(message.text)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            context.route("**/*", route)
            page = context.new_page()
            page.on("console", on_console)
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            response = page.goto(server.base + "/schema/swagger")
            assert response is not None and response.status == 200
            expect(page.locator(".swagger-ui .info .title")).to_contain_text("vechat-rls")
            operations = page.locator(".swagger-ui .opblock")
            expect(operations.first).to_be_visible()
            assert operations.count() >= 25
            # An operation opens, with its responses: the page works, not only its frame.
            operations.first.locator(".opblock-summary").click()
            expect(page.locator(".swagger-ui .responses-table").first).to_be_visible()
            csp = response.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "unsafe" not in csp
        finally:
            browser.close()
    assert outside == [], "the page asked for something outside this machine"
    assert problems == [], problems
