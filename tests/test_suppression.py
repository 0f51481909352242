"""The suppression list: imported, exported, and honored by every audience and the sender."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlmodel import select

from mailer.assemble import composer_for, make_sender
from mailer.blasts import create_blast, send_now
from mailer.config import Settings
from mailer.errors import InvalidState
from mailer.petitions.signing import clean_form
from mailer.store import Blast, Database, Delivery, DeliveryState, Event, Supporter, SupporterStatus
from mailer.store.models import Suppression, utcnow
from mailer.supporters.columns import normalize_email
from mailer.supporters.history import find_supporters
from mailer.supporters.suppression import (
    export_suppressions,
    import_suppressions,
    resubscribe,
    suppress_address,
)
from tests.factories import Person, add_people, people
from tests.smtpserver import SmtpTestServer


def test_import_from_csv_and_plain_lists(db: Database, tmp_path: Path) -> None:
    csv_file = tmp_path / "old-tool.csv"
    csv_file.write_text(
        "Name,E-mail\nAna,ANA@Example.org\nBo,not-an-address\nCy,cy@example.org\n", "utf-8"
    )
    result = import_suppressions(db, csv_file, reason="carried over", actor="test", now=utcnow())
    assert (result.added, result.already) == (2, 0)
    assert [(line, value) for line, value, _ in result.rejected] == [(3, "not-an-address")]
    plain = tmp_path / "more.txt"
    plain.write_text("cy@example.org\ndee@example.net\n\n", "utf-8")
    again = import_suppressions(db, plain, reason="manual", actor="test", now=utcnow())
    assert (again.added, again.already, again.rejected) == (1, 1, [])
    exported = [(s.email, s.reason) for s in export_suppressions(db)]
    assert exported == [
        ("ana@example.org", "carried over"),
        ("cy@example.org", "carried over"),
        ("dee@example.net", "manual"),
    ]
    with db.session() as session:
        assert (
            len(session.exec(select(Event).where(Event.action == "suppression.imported")).all())
            == 2
        )


def test_suppressed_addresses_are_left_out_of_every_audience(
    db: Database, settings: Settings, smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    add_people(db, "members", people(4))
    listing = tmp_path / "never.txt"
    listing.write_text("p1@example.org\n", "utf-8")
    import_suppressions(db, listing, reason="asked by phone", actor="test", now=utcnow())
    blast = create_blast(
        db, settings, name="b", template="executive-orders", list_names=["members"]
    )
    assert blast.id is not None
    result = send_now(db, settings, blast.id)
    assert result.counts["sent"] == 3
    assert smtp_server.handler.to("p1@example.org") == []


def test_an_address_suppressed_mid_blast_is_skipped(
    db: Database, settings: Settings, smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    add_people(db, "members", [*people(2), Person("late@example.org")])
    blast = create_blast(
        db, settings, name="b", template="executive-orders", list_names=["members"]
    )
    assert blast.id is not None
    sender = make_sender(db, settings)
    sender.start(blast.id)  # the snapshot already holds late@example.org
    listing = tmp_path / "late.txt"
    listing.write_text("late@example.org\n", "utf-8")
    import_suppressions(db, listing, reason="late", actor="test", now=utcnow())
    with db.session() as session:
        stored = session.get(Blast, blast.id)
        assert stored is not None
    asyncio.run(sender.send(blast.id, composer_for(db, settings, stored)))
    with db.session() as session:
        row = session.exec(
            select(Delivery)
            .join(Supporter, Supporter.id == Delivery.supporter_id)  # type: ignore[arg-type]
            .where(Supporter.email == "late@example.org")
        ).one()
    assert row.state is DeliveryState.SKIPPED and "suppression list" in row.reply_text
    assert smtp_server.handler.to("late@example.org") == []


def test_resubscribe_is_a_logged_organizer_act(db: Database) -> None:
    add_people(
        db,
        "members",
        [
            Person("u@example.org", status=SupporterStatus.UNSUBSCRIBED),
            Person("b@example.org", status=SupporterStatus.BOUNCED),
        ],
    )
    with db.session() as session:
        back = resubscribe(
            session, "U@example.org", actor="cli", reason="asked by email", now=utcnow()
        )
        assert back.status is SupporterStatus.ACTIVE
    with db.session() as session:
        event = session.exec(select(Event).where(Event.action == "supporter.resubscribed")).one()
        assert event.detail == {"reason": "asked by email"} and event.actor == "cli"
    with db.session() as session, pytest.raises(InvalidState, match="only an unsubscribed"):
        resubscribe(session, "b@example.org", actor="cli", reason="x", now=utcnow())


def test_an_idn_address_has_one_stored_form_on_every_path(db: Database) -> None:
    """A suppressed sup@bücher.example is the same address on the public form, on import,
    in the suppression list and in the admin's search."""
    with db.session() as session:
        suppress_address(session, "sup@bücher.example", reason="asked", actor="t", now=utcnow())
    ascii_form = "sup@xn--bcher-kva.example"
    assert normalize_email("Sup@Bücher.example") == (ascii_form, "")
    signer, problems = clean_form(
        {"first_name": "Sup", "email": "Sup@Bücher.example", "zip": "94110"},
        public=True,
        max_message=2000,
        require_message=False,
    )
    assert problems == {} and signer is not None
    assert signer.email == ascii_form  # the form stores what the suppression list holds
    with db.session() as session:
        assert session.exec(select(Suppression).where(Suppression.email == signer.email)).first()
    add_people(db, "members", [Person(ascii_form)])
    assert [s.email for s in find_supporters(db, "sup@bücher.example")] == [ascii_form]
    assert [s.email for s in find_supporters(db, "SUP@xn--bcher")] == [ascii_form]
