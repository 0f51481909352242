"""The browser harness: Chromium starts, loads a page of the app, and is screenshotted."""

from __future__ import annotations

from playwright.sync_api import Page

from mailer.devsmtp import free_port
from mailer.store import Database
from mailer.web import app_for
from mailer.web.server import BackgroundServer
from tests.browser import screenshot
from tests.conftest import make_settings


def test_chromium_renders_a_page_of_the_app(sqlite_db: Database, page: Page) -> None:
    settings = make_settings()
    with BackgroundServer(app_for(sqlite_db, settings), port=free_port()) as server:
        response = page.goto(f"{server.url}/c/not-a-token")
        assert response is not None and response.status == 404
        assert page.locator("body").inner_text().strip() != ""
        assert screenshot(page, "not-found").stat().st_size > 0
