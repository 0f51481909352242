"""Sending a blast over real SMTP into a real database: outcomes, audience, no doubles."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from sqlmodel import col, select

from mailer.assemble import composer_for, make_sender
from mailer.blasts import create_blast, send_now, send_test
from mailer.config import Settings
from mailer.errors import InvalidState
from mailer.send import workers
from mailer.send.engine import BlastSender
from mailer.send.outcome import Verdict
from mailer.send.transport import SmtpTransport
from mailer.store import (
    Blast,
    BlastStatus,
    Database,
    Delivery,
    DeliveryState,
    Event,
    Supporter,
    SupporterStatus,
)
from mailer.store.models import utcnow
from mailer.supporters.suppression import suppress_address
from tests.conftest import both_smtp_paths, make_settings
from tests.factories import Person, add_people, people
from tests.smtpserver import S450_MAILBOX_BUSY, S550_NO_SUCH_USER, SmtpTestServer


def new_blast(
    db: Database, settings: Settings, name: str = "alert", lists: tuple[str, ...] = ("members",)
) -> int:
    blast = create_blast(
        db, settings, name=name, template="executive-orders", list_names=list(lists)
    )
    assert blast.id is not None
    return blast.id


def deliveries(db: Database, blast_id: int) -> dict[str, Delivery]:
    with db.session() as session:
        rows = session.exec(
            select(Supporter.email, Delivery)
            .join(Delivery, col(Delivery.supporter_id) == Supporter.id)
            .where(Delivery.blast_id == blast_id)
        ).all()
    return {email: delivery for email, delivery in rows}


def blast_status(db: Database, blast_id: int) -> Blast:
    with db.session() as session:
        blast = session.get(Blast, blast_id)
        assert blast is not None
        return blast


def test_every_active_member_gets_one_message_with_the_required_headers(
    db: Database, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    add_people(db, "members", [*people(5), Person("ines@example.org", "Inés", "es")])
    blast_id = new_blast(db, settings)
    result = send_now(db, settings, blast_id)
    assert result.status is BlastStatus.DONE
    assert result.counts["sent"] == 6
    received = smtp_server.handler.received
    assert Counter(r.rcpt_tos[0] for r in received) == Counter(
        [f"p{i}@example.org" for i in range(5)] + ["ines@example.org"]
    )
    rows = deliveries(db, blast_id)
    for item in received:
        msg = item.message()
        row = rows[item.rcpt_tos[0]]
        assert item.mail_from == "alerts@example.org"
        assert (
            row.state is DeliveryState.SENT and row.reply_code == 250 and "Queued" in row.reply_text
        )
        assert row.message_id == msg["Message-ID"] and row.attempts == 1 and row.sent_at is not None
        for header in (
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "List-Id",
            "List-Unsubscribe",
        ):
            assert msg[header], header
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    spanish = smtp_server.handler.to("ines@example.org")[0].message()
    assert spanish["Subject"].startswith("Inés, dile a la Casa Blanca")
    assert blast_status(db, blast_id).finished_at is not None


@both_smtp_paths
def test_a_550_recipient_fails_alone(
    db: Database, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    add_people(db, "members", people(4))
    smtp_server.handler.refuse["p1@example.org"] = S550_NO_SUCH_USER
    blast_id = new_blast(db, settings)
    result = send_now(db, settings, blast_id)
    rows = deliveries(db, blast_id)
    assert rows["p1@example.org"].state is DeliveryState.FAILED
    assert rows["p1@example.org"].reply_code == 550
    assert rows["p1@example.org"].reply_text == "5.1.1 No such user here"
    assert {e for e, d in rows.items() if d.state is DeliveryState.SENT} == {
        "p0@example.org",
        "p2@example.org",
        "p3@example.org",
    }
    assert result.status is BlastStatus.DONE
    assert len(smtp_server.handler.received) == 3


@both_smtp_paths
def test_a_4xx_reply_is_retried_with_backoff_until_sent(
    db: Database, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    add_people(db, "members", people(3))
    smtp_server.handler.refuse_first["p0@example.org"] = (S450_MAILBOX_BUSY, 2)
    blast_id = new_blast(db, settings)
    result = send_now(db, settings, blast_id)
    assert result.status is BlastStatus.DONE
    row = deliveries(db, blast_id)["p0@example.org"]
    assert row.state is DeliveryState.SENT and row.attempts == 3 and row.reply_code == 250
    assert smtp_server.handler.rcpt_attempts["p0@example.org"] == 3
    assert Counter(r.rcpt_tos[0] for r in smtp_server.handler.received) == {
        p.email: 1 for p in people(3)
    }


def test_retries_stop_after_max_attempts(db: Database, smtp_server: SmtpTestServer) -> None:
    settings = make_settings(smtp_port=smtp_server.port, sending={"max_attempts": 3})
    add_people(db, "members", people(2))
    smtp_server.handler.refuse["p0@example.org"] = S450_MAILBOX_BUSY
    blast_id = new_blast(db, settings)
    result = send_now(db, settings, blast_id)
    row = deliveries(db, blast_id)["p0@example.org"]
    assert row.state is DeliveryState.FAILED and row.attempts == 3
    assert row.reply_code == 450 and row.reply_text.startswith("gave up after 3 attempts")
    assert result.status is BlastStatus.DONE and result.counts["sent"] == 1


def test_unsubscribed_supporter_gets_nothing_from_the_next_blast(
    db: Database, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    ids = add_people(db, "members", people(3))
    send_now(db, settings, new_blast(db, settings, "first"))
    with db.session() as session:
        supporter = session.get(Supporter, ids["p2@example.org"])
        assert supporter is not None
        supporter.status = SupporterStatus.UNSUBSCRIBED
        session.add(supporter)
    second = new_blast(db, settings, "second")
    send_now(db, settings, second)
    assert "p2@example.org" not in deliveries(db, second)
    assert len(smtp_server.handler.to("p2@example.org")) == 1  # only the first blast


def test_supporter_who_unsubscribes_after_the_snapshot_is_skipped(
    db: Database, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    ids = add_people(db, "members", people(3))
    blast_id = new_blast(db, settings)
    sender = make_sender(db, settings)
    sender.start(blast_id)  # audience snapshot taken: p1 is in it
    with db.session() as session:
        supporter = session.get(Supporter, ids["p1@example.org"])
        assert supporter is not None
        supporter.status = SupporterStatus.UNSUBSCRIBED
        session.add(supporter)
    result = asyncio.run(
        sender.send(blast_id, composer_for(db, settings, blast_status(db, blast_id)))
    )
    row = deliveries(db, blast_id)["p1@example.org"]
    assert row.state is DeliveryState.SKIPPED and "unsubscribed" in row.reply_text
    assert smtp_server.handler.to("p1@example.org") == []
    assert result.counts["sent"] == 2 and result.status is BlastStatus.DONE


def test_audience_is_active_members_once_across_several_lists(
    db: Database, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    add_people(db, "a", people(3))
    add_people(
        db,
        "b",
        [
            *people(2),
            Person("b-only@example.org"),
            Person("gone@example.org", status=SupporterStatus.BOUNCED),
        ],
    )
    blast_id = new_blast(db, settings, lists=("a", "b"))
    send_now(db, settings, blast_id)
    assert sorted(deliveries(db, blast_id)) == [
        "b-only@example.org",
        "p0@example.org",
        "p1@example.org",
        "p2@example.org",
    ]
    assert len(smtp_server.handler.received) == 4


def test_a_finished_blast_cannot_be_sent_again(
    db: Database, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    add_people(db, "members", people(2))
    blast_id = new_blast(db, settings)
    send_now(db, settings, blast_id)
    with pytest.raises(InvalidState, match="is done"):
        send_now(db, settings, blast_id)
    assert len(smtp_server.handler.received) == 2


def test_down_relay_pauses_the_blast_and_resume_sends_each_once(
    db: Database, tmp_path: object
) -> None:
    add_people(db, "members", people(3))
    server = SmtpTestServer()  # chosen port, not started yet: nothing listens there
    settings = make_settings(smtp_port=server.port)
    blast_id = new_blast(db, settings)
    sender = BlastSender(
        db, lambda: SmtpTransport(settings.smtp, connect_attempts=2, retry_delay=0.01)
    )
    result = asyncio.run(
        sender.send(blast_id, composer_for(db, settings, blast_status(db, blast_id)))
    )
    assert result.status is BlastStatus.PAUSED
    assert "unreachable" in result.error and "after 2 attempts" in result.error
    assert blast_status(db, blast_id).last_error == result.error
    assert {d.state for d in deliveries(db, blast_id).values()} == {DeliveryState.QUEUED}
    server.start()
    try:
        result = send_now(db, settings, blast_id)
    finally:
        server.stop()
    assert result.status is BlastStatus.DONE and result.counts["sent"] == 3
    assert Counter(r.rcpt_tos[0] for r in server.handler.received) == {
        p.email: 1 for p in people(3)
    }


def test_the_senders_status_changes_are_audited(db: Database) -> None:
    """Started, paused by a down relay, resumed, finished: each an event with its detail."""
    add_people(db, "members", people(2))
    server = SmtpTestServer()  # chosen port, not started yet: nothing listens there
    settings = make_settings(smtp_port=server.port)
    blast_id = new_blast(db, settings)
    first = BlastSender(
        db, lambda: SmtpTransport(settings.smtp, connect_attempts=1, retry_delay=0.01)
    )
    paused = asyncio.run(
        first.send(blast_id, composer_for(db, settings, blast_status(db, blast_id)), actor="t")
    )
    assert paused.status is BlastStatus.PAUSED
    server.start()
    try:
        second = make_sender(db, settings)
        done = asyncio.run(
            second.send(blast_id, composer_for(db, settings, blast_status(db, blast_id)))
        )
    finally:
        server.stop()
    assert done.status is BlastStatus.DONE
    with db.session() as session:
        events = session.exec(
            select(Event)
            .where(Event.blast_id == blast_id, col(Event.action) != "blast.created")
            .order_by(col(Event.id))
        ).all()
    nothing_recovered = {"released": 0, "in_doubt": 0}
    assert [(e.action, e.actor, e.detail) for e in events] == [
        ("blast.started", "t", {"worker": first.worker, **nothing_recovered}),
        ("blast.paused", "system", {"reason": paused.error}),
        ("blast.resumed", "cli", {"worker": second.worker, **nothing_recovered}),
        ("blast.finished", "system", {}),
    ]


def test_what_a_dead_sender_held_is_recovered_and_only_in_flight_is_unknown(
    db: Database, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    add_people(db, "members", people(4))
    blast_id = new_blast(db, settings)
    dead = make_sender(db, settings).ledger
    dead.start(blast_id)
    claimed = dead.claim(blast_id, 0, 3)  # it claims three ...
    dead.mark_sending([claimed[0].delivery_id])  # ... hands one to the relay, then dies
    dead.close()
    with db.session() as session:
        workers.unregister(session, dead.worker)
    result = send_now(db, settings, blast_id)
    rows = deliveries(db, blast_id)
    assert [e for e, d in rows.items() if d.state is DeliveryState.UNKNOWN] == [
        claimed[0].recipient.email
    ]
    assert smtp_server.handler.to(claimed[0].recipient.email) == []  # not silently resent
    assert result.counts["sent"] == 3 and result.counts["unknown"] == 1
    assert result.status is BlastStatus.DONE


def test_a_test_send_refuses_a_seed_address_smtp_cannot_carry(
    sqlite_db: Database, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    add_people(sqlite_db, "members", people(2))
    blast_id = new_blast(sqlite_db, settings)
    with pytest.raises(InvalidState, match=r"zoë@example\.org"):
        send_test(sqlite_db, settings, blast_id, ["seed@example.net", "zoë@example.org"])
    assert smtp_server.handler.received == []  # checked before anything is sent


def test_a_test_send_skips_suppressed_and_unsubscribed_addresses(
    sqlite_db: Database, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    add_people(
        sqlite_db,
        "members",
        [Person("on@example.org"), Person("gone@example.org", status=SupporterStatus.UNSUBSCRIBED)],
    )
    with sqlite_db.session() as session:
        suppress_address(session, "Sup@Example.org", reason="test", actor="t", now=utcnow())
    blast_id = new_blast(sqlite_db, settings)
    results = send_test(
        sqlite_db,
        settings,
        blast_id,
        ["on@example.org", "gone@example.org", "sup@example.org", "seed@example.net"],
    )
    assert [(a, o.verdict) for a, o in results] == [
        ("on@example.org", Verdict.SENT),
        ("gone@example.org", Verdict.FAILED),
        ("sup@example.org", Verdict.FAILED),
        ("seed@example.net", Verdict.SENT),
    ]
    assert "unsubscribed" in results[1][1].text and "suppress" in results[2][1].text
    assert sorted(r.rcpt_tos[0] for r in smtp_server.handler.received) == [
        "on@example.org",
        "seed@example.net",
    ]


def test_a_test_send_is_capped(sqlite_db: Database, smtp_server: SmtpTestServer) -> None:
    settings = make_settings(smtp_port=smtp_server.port, blast={"test_send_limit": 3})
    add_people(sqlite_db, "members", people(1))
    blast_id = new_blast(sqlite_db, settings)
    seeds = [f"s{i}@example.net" for i in range(4)]
    with pytest.raises(InvalidState, match=r"at most 3 addresses.*blast\.test_send_limit"):
        send_test(sqlite_db, settings, blast_id, seeds)
    assert smtp_server.handler.received == []
    # The same address twice is one message.
    assert len(send_test(sqlite_db, settings, blast_id, [*seeds[:3], "S0@example.net"])) == 3
    assert len(smtp_server.handler.received) == 3
