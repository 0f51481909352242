"""The web admin end to end: a real browser against `mailer run` and a real SMTP server.

An organizer signs in, creates a blast, schedules it two seconds ahead, watches
it finish on the dashboard, opens its send log, filters the failed deliveries
(the SMTP server refuses some recipients), exports them as CSV and signs out.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from mailer.blasts import create_blast, send_now
from mailer.config import Settings
from mailer.devsmtp import free_port
from mailer.store import Database
from tests.admin_helpers import PASSWORD as HELPER_PASSWORD
from tests.admin_helpers import add_users, serve
from tests.browser import screenshot
from tests.factories import add_people, people
from tests.processes import Site, run_mailer, write_config, write_people
from tests.smtpserver import S550_NO_SUCH_USER, SmtpTestServer

pytestmark = pytest.mark.processes  # every test here starts mailer processes

PASSWORD = "organizer password 1"
GOOD = [f"p{i}@example.org" for i in range(8)]
REFUSED = [f"r{i}@refusing.example" for i in range(3)]


@pytest.fixture
def service(tmp_path: Path, smtp_server: SmtpTestServer) -> Iterator[Site]:
    web_port = free_port()
    config = write_config(
        tmp_path,
        database_url="sqlite:///m.db",
        smtp_port=smtp_server.port,
        base_url=f"http://127.0.0.1:{web_port}",
        sections={
            "schedule": {"poll_interval": 0.5, "timezone": "UTC"},
            "sending": {"control_interval": 0.2, "retry_base": 0.1},
        },
    )
    write_people(tmp_path, ((address, address[:2].upper()) for address in GOOD + REFUSED))
    for address in REFUSED:
        smtp_server.handler.refuse[address] = S550_NO_SUCH_USER
    work = Site(tmp_path, config, "sqlite:///m.db", smtp_server, web_port)
    work.ok("import", "people.csv", "--list", "supporters")
    added = run_mailer(
        tmp_path,
        *("user", "add", "ana", "--role", "organizer", "--password-stdin"),
        config=config,
        input=PASSWORD + "\n",
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    work.start_service()
    try:
        yield work
    finally:
        try:
            work.stop_all()
        finally:
            work.close()


def test_organizer_schedules_watches_filters_exports(
    service: Site, page: Page, smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{service.web_port}"
    page.goto(f"{base}/admin/")
    expect(page).to_have_url(f"{base}/admin/login?next=/admin/")
    page.get_by_label("User name").fill("ana")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

    page.get_by_role("link", name="New blast").click()
    page.get_by_label("Name").fill("Rapid response")
    page.get_by_label("Template").select_option("executive-orders")
    page.get_by_label("supporters").check()
    page.get_by_role("button", name="Create draft").click()
    expect(page.get_by_role("status")).to_contain_text("Draft 'Rapid response' created")

    at = datetime.now(UTC) + timedelta(seconds=2)
    at = at.replace(microsecond=0) + timedelta(seconds=math.ceil(at.microsecond / 1e6))
    page.get_by_label("Date").fill(at.strftime("%Y-%m-%d"))
    page.get_by_label("Time", exact=True).fill(at.strftime("%H:%M:%S"))
    page.get_by_label("Time zone").fill("UTC")
    page.get_by_role("button", name="Schedule", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("scheduled for")

    page.get_by_role("link", name="Dashboard").click()
    recent = page.locator("section", has=page.get_by_role("heading", name="Recent"))
    deadline = time.monotonic() + 60
    while not recent.get_by_text("done", exact=True).is_visible():
        assert time.monotonic() < deadline, "the blast did not finish"
        time.sleep(0.5)
        page.reload()
    row = recent.get_by_role("row", name="Rapid response")
    expect(row).to_contain_text(str(len(GOOD)))  # sent
    expect(row).to_contain_text(str(len(REFUSED)))  # failed
    screenshot(page, "admin-dashboard")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "admin-dashboard-phone")
    page.set_viewport_size({"width": 1280, "height": 900})

    row.get_by_role("link", name="Rapid response").click()
    expect(page.get_by_role("heading", name="Failures")).to_be_visible()
    expect(page.locator("svg.chart").first).to_be_visible()
    expect(page.get_by_role("link", name="refusing.example")).to_be_visible()
    screenshot(page, "admin-blast")

    page.get_by_role("link", name="Send log").click()
    page.get_by_label("State").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.log tbody tr")
    expect(rows).to_have_count(len(REFUSED))
    for address in REFUSED:
        expect(page.locator("table.log")).to_contain_text(address)
    expect(page.locator("table.log")).not_to_contain_text(GOOD[0])

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export CSV").click()
    saved = tmp_path / "log.csv"
    download_info.value.save_as(saved)
    with saved.open(encoding="utf-8") as fh:
        exported = list(csv.DictReader(fh))
    assert sorted(r["email"] for r in exported) == sorted(REFUSED)
    assert {r["state"] for r in exported} == {"failed"}
    assert {r["reply_code"] for r in exported} == {"550"}

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    page.goto(f"{base}/admin/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert sorted(a for r in smtp_server.handler.received for a in r.rcpt_tos) == sorted(GOOD)


def test_keyboard_only_and_phone_sized(
    sqlite_db: Database, settings: Settings, smtp_server: SmtpTestServer, page: Page
) -> None:
    add_people(sqlite_db, "members", people(4))
    add_users(sqlite_db)
    blast = create_blast(
        sqlite_db, settings, name="alert", template="executive-orders", list_names=["members"]
    )
    assert blast.id is not None
    # Playwright's loop runs in this thread; sending (asyncio.run) needs one of its own.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(send_now, sqlite_db, settings, blast.id).result(timeout=60)
    with serve(sqlite_db, settings) as url:
        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(f"{url}/admin/login")
        # Signing in with the keyboard alone: the name field has focus, Tab moves on, Enter sends.
        # (Typing waits for that focus: keys pressed before autofocus applies would be lost.)
        expect(page.get_by_label("User name")).to_be_focused()
        page.keyboard.type("organizer")
        page.keyboard.press("Tab")
        page.keyboard.type(HELPER_PASSWORD)
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Dashboard")).to_be_visible(timeout=15_000)
        page.keyboard.press("Tab")
        expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
        for path in ("/admin/", f"/admin/blasts/{blast.id}", f"/admin/blasts/{blast.id}/log"):
            page.goto(url + path)
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"{path} is {width} px wide on a 390 px screen"
        screenshot(page, "admin-log-phone")
        # Every form field has a label the browser knows.
        page.goto(f"{url}/admin/blasts/{blast.id}")
        unlabeled = page.evaluate(
            "[...document.querySelectorAll('input:not([type=hidden]), select')]"
            ".filter(e => e.labels.length === 0).map(e => e.name)"
        )
        assert unlabeled == []
