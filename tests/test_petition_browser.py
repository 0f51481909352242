"""A supporter acts in a real browser: from the alert they received to the thank-you page."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

from playwright.sync_api import Page, expect
from sqlmodel import select

from mailer.blasts import create_blast, send_now
from mailer.devsmtp import free_port
from mailer.petitions.report import petition_report
from mailer.petitions.store import create_petition
from mailer.report import blast_report
from mailer.store import Database
from mailer.store.models import Signature
from mailer.web import app_for
from mailer.web.server import BackgroundServer
from tests.browser import screenshot
from tests.conftest import make_settings
from tests.factories import Person, add_people
from tests.smtpserver import SmtpTestServer

TARGET = "https://www.whitehouse.gov/contact/"


def test_a_supporter_signs_from_the_alert_and_is_handed_on_to_the_target(
    sqlite_db: Database, smtp_server: SmtpTestServer, page: Page
) -> None:
    db = sqlite_db
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = make_settings(
        smtp_port=smtp_server.port, base_url=base, tracking={"scanner_window": 0}
    )
    add_people(db, "members", [Person(email="rosa@example.org", first_name="Rosa")])
    create_petition(db, settings, name="executive-orders", goal=10, target_url=TARGET)
    blast = create_blast(
        db,
        settings,
        name="eo-alert",
        template="executive-orders",
        list_names=["members"],
        petition="executive-orders",
    )
    assert blast.id is not None
    # Playwright's sync API keeps an event loop on this thread; the sender runs its own.
    with ThreadPoolExecutor(1) as pool:
        result = pool.submit(send_now, db, settings, blast.id).result(timeout=60)
    assert result.counts["sent"] == 1

    # The call to action of the message the SMTP server received.
    [received] = smtp_server.handler.to("rosa@example.org")
    html_part = received.message().get_body(preferencelist=("html",))
    assert html_part is not None
    link = re.search(rf'href="({re.escape(base)}/c/[A-Za-z0-9_-]+)"', html_part.get_content())
    assert link is not None

    with BackgroundServer(app_for(db, settings), port=port):
        page.goto(link.group(1))
        expect(page).to_have_url(re.compile(rf"{re.escape(base)}/a/[A-Za-z0-9_-]+$"))
        action_url = page.url
        expect(page.locator("input[name=first_name]")).to_have_value("Rosa")
        message = page.locator("textarea[name=message]")
        expect(message).to_contain_text("I oppose the executive orders")
        expect(page.locator(".counter .count")).to_have_text("0")
        screenshot(page, "petition-action-page")

        message.fill("Mr. President, withdraw these orders. Rosa from Oakland.")
        page.get_by_role("button", name="Sign and send").click()

        expect(page.get_by_role("heading", level=1)).to_have_text("Thank you, Rosa!")
        expect(page.locator("#your-message")).to_have_value(
            "Mr. President, withdraw these orders. Rosa from Oakland."
        )
        expect(page.locator("a#target")).to_have_attribute("href", TARGET)
        expect(page.locator(".counter .count")).to_have_text("1")
        screenshot(page, "petition-thank-you")

        report = blast_report(db, blast.id)
        assert (report["actions"], report["clicks_unique"]) == (1, 1)
        assert report["action_rate"] == 1.0 and report["actions_per_click"] == 1.0
        assert petition_report(db, "executive-orders")["signatures"] == 1

        # A second submit (back to the page, sign again) updates; it never counts twice.
        page.goto(action_url)
        expect(page.locator("textarea[name=message]")).to_have_value(
            "Mr. President, withdraw these orders. Rosa from Oakland."
        )
        page.locator("textarea[name=message]").fill("Second thoughts, same signature.")
        page.get_by_role("button", name="Sign and send").click()
        expect(page.locator(".counter .count")).to_have_text("1")

    assert blast_report(db, blast.id)["actions"] == 1
    with db.session() as session:
        [signature] = session.exec(select(Signature)).all()
    assert signature.message == "Second thoughts, same signature."
    assert signature.first_name == "Rosa" and signature.blast_id == blast.id
