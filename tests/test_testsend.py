"""Test sends, whichever page or command starts them: screened and capped alike.

A test goes to an organizer's own addresses. It never reaches an address on
the suppression list or a supporter who is no longer active, and one call
goes to at most ``blast.test_send_limit`` addresses.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailer import testsend
from mailer.alerts.sending import parse_addresses, send_alert_test
from mailer.alerts.studio import start_from_statement
from mailer.blasts import create_blast, send_test
from mailer.config import Settings
from mailer.errors import InvalidState
from mailer.store import Database, SupporterStatus
from mailer.store.models import utcnow
from mailer.supporters.suppression import suppress_address
from tests.conftest import make_settings
from tests.factories import Person, add_people
from tests.smtpserver import SmtpTestServer

STATEMENT = "Two executive orders were signed today.\n\nTell the White House you oppose them.\n"


def suppress(db: Database, address: str) -> None:
    with db.session() as session:
        suppress_address(session, address, reason="test", actor="test", now=utcnow())


@pytest.fixture
def seeded(sqlite_db: Database) -> Database:
    add_people(
        sqlite_db,
        "members",
        [
            Person("ana@example.org", "Ana"),
            Person("gone@example.org", "Gone", status=SupporterStatus.UNSUBSCRIBED),
        ],
    )
    suppress(sqlite_db, "blocked@example.org")
    return sqlite_db


def test_the_studio_test_skips_suppressed_and_inactive_addresses(
    seeded: Database, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    start_from_statement(seeded, "orders", STATEMENT, author="test")
    to = ["ANA@example.org", "gone@example.org", "blocked@example.org", "me@example.org"]
    results = dict(send_alert_test(seeded, settings, "orders", to, actor="test"))
    assert results["ana@example.org"].code == 250 and results["me@example.org"].code == 250
    assert results["gone@example.org"].text == "not sent: the supporter is unsubscribed"
    assert results["blocked@example.org"].text.startswith("not sent: the address is on the")
    assert smtp_server.handler.to("ana@example.org") and smtp_server.handler.to("me@example.org")
    assert not smtp_server.handler.to("gone@example.org")
    assert not smtp_server.handler.to("blocked@example.org")


def test_a_blast_test_and_a_studio_test_have_the_same_cap(
    seeded: Database, smtp_server: SmtpTestServer
) -> None:
    settings = make_settings(smtp_port=smtp_server.port, blast={"test_send_limit": 2})
    start_from_statement(seeded, "orders", STATEMENT, author="test")
    blast = create_blast(
        seeded, settings, name="b", template="executive-orders", list_names=["members"]
    )
    three = ["a@example.org", "b@example.org", "c@example.org"]
    with pytest.raises(InvalidState, match="at most 2 addresses"):
        send_alert_test(seeded, settings, "orders", three, actor="test")
    with pytest.raises(InvalidState, match="at most 2 addresses"):
        send_test(seeded, settings, blast.id or 0, three)
    assert smtp_server.handler.received == []
    # The same address twice, in two spellings, is one.
    twice = dict(
        send_alert_test(
            seeded, settings, "orders", ["a@example.org", "A@Example.org"], actor="test"
        )
    )
    assert list(twice) == ["a@example.org"]


def test_bad_and_missing_addresses_are_named(seeded: Database, settings: Settings) -> None:
    with pytest.raises(InvalidState, match="'not an address' is not an email address"):
        testsend.seeds(seeded, settings, ["me@example.org", "not an address"])
    with pytest.raises(InvalidState, match="at least one address"):
        parse_addresses(" ,; ")


@given(st.text(max_size=200))
def test_parse_addresses_never_fails_otherwise(text: str) -> None:
    try:
        parts = parse_addresses(text)
    except InvalidState:
        return
    assert parts and all(p and p == p.strip() and "," not in p and ";" not in p for p in parts)
