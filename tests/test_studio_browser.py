"""The studio end to end, as a new organizer uses it: a real browser against `mailer run`.

Sign in as an organizer, start an alert from the seed statement, write its
Spanish version, preview it at phone width, send a test (received at the test
SMTP server), see the check flag a deliberately undefined variable and fix it,
schedule the alert a few seconds ahead, watch it send, open its report.
Screenshots of each step go to ``var/test-artifacts/`` (``studio-*.png``).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from mailer import accounts
from mailer.devsmtp import free_port
from mailer.store import open_database
from mailer.store.models import UserRole, utcnow
from tests.browser import screenshot
from tests.processes import Site, write_config
from tests.smtpserver import SmtpTestServer

pytestmark = pytest.mark.processes  # the journey runs against a real `mailer run`


PASSWORD = "organizer password 1"
STATEMENT = (Path(__file__).parent / "data" / "statement.txt").read_text("utf-8")
ENGLISH = [f"en{i}@example.org" for i in range(6)]
SPANISH = [f"es{i}@example.org" for i in range(4)]
OTHERS = [f"s{i}@example.org" for i in range(990)]  # 1,000 supporters in all
AUDIENCE = len(ENGLISH) + len(SPANISH) + len(OTHERS)
SPANISH_BODY = """Hola {{ supporter.first_name or "amiga" }}:

Hoy se firmaron dos órdenes ejecutivas crueles sobre inmigración.

=> [Escribe a la Casa Blanca]

Gracias por actuar.
"""


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
    # The organizer uploads this in the browser; a spreadsheet's export, two bad rows.
    rows = ["email,first_name,language"]
    rows += [f"{a},{a[:3].upper()},en" for a in ENGLISH]
    rows += [f"{a},{a[:3].upper()},es" for a in SPANISH]
    rows += [f"{a},{a[:4].upper()},en" for a in OTHERS]
    rows += ["not an address,Bad,en", ",Empty,es"]  # rejected by the importer
    (tmp_path / "people.csv").write_text("\r\n".join(rows) + "\r\n", "utf-8")
    db = open_database(f"sqlite:///{tmp_path / 'm.db'}", create=True)
    try:
        accounts.add_user(db, "ana", UserRole.ORGANIZER, PASSWORD, actor="test", now=utcnow())
    finally:
        db.dispose()
    work = Site(tmp_path, config, "sqlite:///m.db", smtp_server, web_port)
    work.start_service()
    try:
        yield work
    finally:
        try:
            work.stop_all()
        finally:
            work.close()


def test_new_organizer_goes_from_statement_to_sent_alert(
    service: Site, page: Page, smtp_server: SmtpTestServer
) -> None:
    base = f"http://127.0.0.1:{service.web_port}"
    page.goto(f"{base}/admin/")
    page.get_by_label("User name").fill("ana")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()

    # The supporter list, uploaded: checked, confirmed, imported, with the bad rows shown.
    page.get_by_role("link", name="Lists").click()
    page.get_by_label("CSV file").set_input_files(str(service.path / "people.csv"))
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("button", name="Import 1,002 rows")).to_be_visible()
    page.get_by_label("Import into the list").fill("supporters")
    screenshot(page, "studio-0-upload")
    page.get_by_role("button", name="Import 1,002 rows").click()
    expect(page.get_by_role("heading", name="Imported into supporters")).to_be_visible()
    expect(page.get_by_text("email: missing")).to_be_visible()

    # A draft from the statement.
    page.get_by_role("link", name="Alerts", exact=True).click()
    page.get_by_role("link", name="New alert from a statement").click()
    page.get_by_label("Alert name").fill("executive-orders-response")
    page.get_by_label("Statement").fill(STATEMENT)
    screenshot(page, "studio-1-statement")
    page.get_by_role("button", name="Make the draft").click()
    expect(page.get_by_role("status")).to_contain_text("saved from the statement")
    body = page.get_by_label("Body")
    expect(body).to_have_value(re.compile(r"^=> \[", re.MULTILINE))  # the call-to-action line
    screenshot(page, "studio-2-editor")

    # The Spanish version.
    page.get_by_label("Add a language").fill("es")
    page.get_by_role("button", name="Add language").click()
    page.get_by_label("Subject", exact=True).fill("Nos levantamos por la justicia migrante")
    page.get_by_label("Preheader").fill("Escribe hoy a la Casa Blanca")
    page.get_by_label("Body").fill(SPANISH_BODY)
    page.get_by_role("button", name="Save es").click()
    expect(page.get_by_role("status")).to_contain_text("Saved as revision 2 (es)")
    screenshot(page, "studio-3-spanish")

    # Preview at phone width, and a test to the organizer's own address.
    page.get_by_role("link", name="Preview and test").click()
    phone = page.frame_locator("iframe.preview.phone")
    expect(phone.get_by_text("Escribe a la Casa Blanca")).to_be_visible()
    assert page.locator("iframe.preview.phone").bounding_box()["width"] <= 377  # type: ignore[index]
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot(page, "studio-4-preview-phone")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.get_by_label("Send a [TEST] copy").fill("ana@example.org")
    page.get_by_role("button", name="Send test").click()
    expect(page.get_by_role("status")).to_contain_text("Test sent")
    received = smtp_server.handler.to("ana@example.org")
    assert len(received) == 1
    assert received[0].message()["Subject"].startswith("[TEST] Nos levantamos")

    # A deliberately undefined variable: the check points at its line; then it is fixed.
    page.get_by_role("link", name="executive-orders-response").click()
    languages = page.get_by_role("navigation", name="Languages")
    languages.get_by_role("link", name=re.compile(r"^es ")).click()
    page.get_by_label("Body").fill(SPANISH_BODY.replace("Gracias", "Gracias, {{ suporter.name }},"))
    page.get_by_role("button", name="Save es").click()
    expect(page.locator(".findings li.error").first).to_contain_text("suporter")
    expect(page.locator(".findings li.error").first).to_contain_text("line 7")
    screenshot(page, "studio-5-check-error")
    page.get_by_label("Body").fill(SPANISH_BODY)
    page.get_by_role("button", name="Save es").click()
    expect(page.get_by_role("status")).to_contain_text("Saved as revision 4")
    expect(page.locator(".findings li.error")).to_have_count(0)

    # Send it: lists, the audience count, the confirmation, a time a few seconds ahead.
    page.get_by_role("link", name="Send", exact=True).click()
    page.get_by_label("supporters").check()
    expect(page.locator("#audience")).to_have_text(f"{AUDIENCE} supporters")
    page.get_by_label("Blast name").fill("Orders response")
    screenshot(page, "studio-6-send")
    page.get_by_role("button", name="Continue").click()
    expect(page.locator(".audience")).to_have_text(f"{AUDIENCE} supporters")
    expect(page.locator("dd.verdict")).to_contain_text("passed")
    expect(page.locator("dd.tested")).to_contain_text("revision 2 was tested")
    screenshot(page, "studio-7-confirm")
    at = datetime.now(UTC) + timedelta(seconds=3)
    at = at.replace(microsecond=0) + timedelta(seconds=math.ceil(at.microsecond / 1e6))
    page.get_by_label("Date").fill(at.strftime("%Y-%m-%d"))
    page.get_by_label("Time", exact=True).fill(at.strftime("%H:%M:%S"))
    page.get_by_label("Time zone").fill("UTC")
    page.get_by_role("button", name="Schedule", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("scheduled for")

    # Watch it send, then its report.
    deadline = time.monotonic() + 120
    while not page.locator("h1 .state.done").is_visible():
        assert time.monotonic() < deadline, "the blast did not finish"
        time.sleep(0.5)
        page.reload()
    expect(page.get_by_role("heading", name="Figures")).to_be_visible()
    screenshot(page, "studio-8-report")
    for address in SPANISH:
        (message,) = smtp_server.handler.to(address)
        assert message.message()["Subject"] == "Nos levantamos por la justicia migrante"
    for address in ENGLISH:
        (message,) = smtp_server.handler.to(address)
        assert not message.message()["Subject"].startswith("[TEST]")

    # Every studio page fits a phone's screen, and every field has a label.
    blast_id = page.url.split("/admin/blasts/")[1].split("?")[0]
    alert = "/admin/studio/alerts/executive-orders-response"
    page.set_viewport_size({"width": 390, "height": 844})
    for path in (
        "/admin/studio",
        "/admin/studio/new",
        alert,
        f"{alert}?lang=es",
        f"{alert}/preview",
        f"{alert}/history?old=1&new=2",
        "/admin/studio/send",
        f"/admin/studio/blasts/{blast_id}",
    ):
        page.goto(base + path)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width} px wide on a 390 px screen"
        unlabeled = page.evaluate(
            "[...document.querySelectorAll('input:not([type=hidden]), select, textarea')]"
            ".filter(e => e.labels.length === 0).map(e => e.name)"
        )
        assert unlabeled == [], path
