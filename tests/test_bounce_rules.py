"""What each bounce means, and what it changes: one regression test per kind of mistake
seen on real reports, the blocked class, the soft-bounce score, review and undo."""

from __future__ import annotations

import base64
import quopri
import time
from datetime import timedelta
from pathlib import Path

import pytest

from mailer.compose.tokens import TokenSigner
from mailer.config import Settings
from mailer.inbound import Kind, Outcome, apply, classify
from mailer.inbound.review import Selection, stopped_by_bounces, undo_bounces
from mailer.report import blast_report, blocked_by_domain
from mailer.store import Database, DeliveryState, SupporterStatus
from mailer.store.models import utcnow
from tests.conftest import TEST_SECRET, make_settings
from tests.factories import add_people, people
from tests.processes import run_mailer, write_config
from tests.smtpserver import SmtpTestServer
from tests.test_inbound import Sent, dsn, events, send_blast, state_of

TO = "bounces+AQMAAAAAAAAAAZ7a_vKqUe6Q1kkY4Fn2ZxI@example.org"


def report(status: str, diagnostic: str, action: str = "failed") -> bytes:
    return dsn(
        to=TO, recipient="p1@example.org", status=status, action=action, diagnostic=diagnostic
    )


# -- the evidence beyond the Status field --------------------------------------------------


@pytest.mark.parametrize(
    ("status", "diagnostic", "kind"),
    [
        # A generic 5.0.0 refined by the server's words or the code they quote.
        ("5.0.0", "smtp; 550 5.2.2 Mailbox Full", Kind.SOFT_BOUNCE),
        ("5.0.0 (recipient reached disk quota)", "", Kind.SOFT_BOUNCE),
        ("5.0.0", "smtp; 550 5.1.1 <p1@example.org>: user unknown", Kind.HARD_BOUNCE),
        ("5.0.0", "smtp; 550 Requested action not taken", Kind.SOFT_BOUNCE),  # nothing more
        # Refusals of the sender or the message say nothing about the address.
        (
            "5.7.1",
            "smtp; 554 5.7.1 Service unavailable; client host blocked using Spamhaus",
            Kind.BLOCKED,
        ),
        ("5.7.1", "smtp; 550 5.7.1 Message rejected as spam by Content Filtering", Kind.BLOCKED),
        (
            "5.7.26",
            "smtp; 550 5.7.26 Unauthenticated email from example.org is not accepted"
            " due to domain's DMARC policy",
            Kind.BLOCKED,
        ),
        ("5.7.1", "smtp; 550 5.7.1 SPF check failed", Kind.BLOCKED),
        (
            "5.1.1",
            "smtp; 550 5.1.0 <alerts@example.org>: Sender address rejected: Domain not found",
            Kind.BLOCKED,
        ),
        (
            "5.7.1",
            "smtp; 550-5.7.1 Our system has detected that this message is likely unsolicited mail",
            Kind.BLOCKED,
        ),
        (
            "5.2.1",
            "smtp; 550-5.2.1 The user you are trying to contact is receiving mail at a rate"
            " that prevents additional messages from being delivered",
            Kind.SOFT_BOUNCE,
        ),
        # An expiry after retries is not a dead mailbox, whatever the MTA calls it.
        ("5.4.7", "X-Postfix; retry timeout exceeded", Kind.SOFT_BOUNCE),
        (
            "5.0.0",
            "smtp; 421 connection timed out (permanent failure after 5 days)",
            Kind.SOFT_BOUNCE,
        ),
    ],
)
def test_the_servers_words_decide_beyond_the_status(
    status: str, diagnostic: str, kind: Kind
) -> None:
    found = classify(report(status, diagnostic))
    assert found.kind is kind, found
    assert found.rule  # the rule that decided is named


@pytest.mark.parametrize("action", ["failure", "failed", "expired"])
def test_non_standard_actions_are_read(action: str) -> None:
    kind = classify(report("4.4.7" if action == "expired" else "5.1.1", "", action)).kind
    assert kind is (Kind.SOFT_BOUNCE if action == "expired" else Kind.HARD_BOUNCE)


def _encoded(encoding: str) -> bytes:
    fields = (
        b"Reporting-MTA: dns; mx.example.net\n\n"
        b"Final-Recipient: rfc822; p1@example.org\nAction: failed\nStatus: 5.1.1\n"
        b"Diagnostic-Code: smtp; 550 5.1.1 user unknown\n"
    )
    body = base64.encodebytes(fields) if encoding == "base64" else quopri.encodestring(fields)
    return (
        b"From: MAILER-DAEMON@mx.example.net\nTo: " + TO.encode() + b"\nSubject: failure\n"
        b"MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status;"
        b' boundary="B"\n\n--B\nContent-Type: text/plain\n\nfailed.\n\n--B\n'
        b"Content-Type: message/delivery-status\nContent-Transfer-Encoding: "
        + encoding.encode()
        + b"\n\n"
        + body
        + b"\n--B--\n"
    )


@pytest.mark.parametrize("encoding", ["base64", "quoted-printable"])
def test_an_encoded_delivery_status_part_keeps_its_fields(encoding: str) -> None:
    found = classify(_encoded(encoding))
    assert (found.kind, found.status, found.original_recipient) == (
        Kind.HARD_BOUNCE,
        "5.1.1",
        "p1@example.org",
    )


def test_a_report_without_per_recipient_fields_falls_back_to_the_prose() -> None:
    data = (
        "From: MAILER-DAEMON@mx.example.net\nTo: " + TO + "\nSubject: Undeliverable\n"
        "MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status;"
        ' boundary="B"\n\n--B\nContent-Type: text/plain\n\n'
        "Your message to p1@example.org couldn't be delivered.\n"
        "p1 wasn't found at example.org: the e-mail address was not\nrecognized.\n\n"
        "--B\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.example.net\n\n"
        "--B--\n"
    )
    found = classify(data.encode())
    assert found.kind is Kind.HARD_BOUNCE, found


@pytest.mark.parametrize(
    ("prose", "kind"),
    [
        (
            "The e-mail address you entered couldn't be found: it was not\n   recognized",
            Kind.HARD_BOUNCE,
        ),
        ("550 5.1.1 RESOLVER.ADR.RecipNotFound; Unknown Recipient", Kind.HARD_BOUNCE),
        ("User Ana Lopez (p1@example.org) not listed in Domino Directory", Kind.HARD_BOUNCE),
        ("This user doesn't have an\nexample.org account (p1@example.org)", Kind.HARD_BOUNCE),
        ("p1@example.org: unknown host example.invalid", Kind.HARD_BOUNCE),
        ("p1@example.org: user is over disk\n quota", Kind.SOFT_BOUNCE),
        ("Delivery failed: no valid recipients", Kind.HARD_BOUNCE),
    ],
)
def test_prose_wordings_also_when_wrapped(prose: str, kind: Kind) -> None:
    data = (
        "From: Mail Delivery Subsystem <MAILER-DAEMON@mx.example.net>\nTo: " + TO + "\n"
        "Subject: Returned mail: see transcript for details\n\n" + prose + "\n"
    )
    assert classify(data.encode()).kind is kind


def test_an_html_only_bounce_is_read() -> None:
    data = (
        "From: postmaster@mx.example.net\nTo: " + TO + "\nSubject: Undeliverable: alert\n"
        "MIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\n\n"
        "<html><body><p>Delivery has failed to these recipients:</p>"
        "<p><b>p1@example.org</b><br>The email address couldn&#39;t be found.</p>"
        "<p>Remote server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound'</p></body></html>\n"
    )
    found = classify(data.encode())
    assert found.kind is Kind.HARD_BOUNCE, found


def test_an_unrecognized_bounce_with_bulk_precedence_is_not_an_auto_reply() -> None:
    data = (
        "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\nTo: " + TO + "\n"
        "Subject: Undelivered Mail Returned to Sender\nPrecedence: bulk\n\n"
        "Something odd happened to your message.\n"
    )
    assert classify(data.encode()).kind is Kind.UNKNOWN


def test_a_microsoft_jmrp_complaint_is_a_complaint() -> None:
    data = (
        "From: staff@hotmail.com\nTo: " + TO + "\nSubject: complaint about message from 192.0.2.1\n"
        'MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary="J"\n\n--J\n'
        "Content-Type: message/rfc822\nContent-Disposition: inline\n\n"
        "X-HmXmrOriginalRecipient: <p1@outlook.example>\nFrom: alerts@example.org\n"
        "To: p1@outlook.example\nSubject: alert\nMessage-ID: <1.2.abc@example.org>\n\n"
        "hello\n--J--\n"
    )
    found = classify(data.encode())
    assert (found.kind, found.shape, found.original_recipient) == (
        Kind.COMPLAINT,
        "jmrp",
        "p1@outlook.example",
    )


@pytest.mark.parametrize(
    ("recipient", "expected"),
    [
        ("rfc822; p1@example.org:", "p1@example.org"),
        ("rfc822; <p2@example.org>", "p2@example.org"),
        # Refused: then the returned original's To is the one, never these.
        ("rfc822; |/usr/local/bin/procmail", "p1@example.org"),
        ("rfc822; mailto:list-unsubscribe@example.org?subject=unsubscribe", "p1@example.org"),
        ("rfc822; alerts@example.org", "p1@example.org"),  # our own sender
        ("rfc822; " + TO, "p1@example.org"),  # our return path
    ],
)
def test_the_address_is_cleaned_and_never_ours(recipient: str, expected: str) -> None:
    data = dsn(
        to=TO,
        recipient="x",
        diagnostic="smtp; 550 5.1.1 user unknown",
        original_head="From: alerts@example.org\nTo: p1@example.org\nSubject: alert",
    ).replace(b"Final-Recipient: rfc822; x", f"Final-Recipient: {recipient}".encode())
    assert classify(data).original_recipient == expected


# -- blocked: counted, never stops a supporter ---------------------------------------------


@pytest.fixture
def verp_settings(smtp_server: SmtpTestServer) -> Settings:
    return make_settings(
        smtp_port=smtp_server.port, sender={"verp": True, "return_path": "bounces@example.org"}
    )


def apply_report(
    db: Database,
    settings: Settings,
    item: Sent,
    status: str,
    diagnostic: str,
    n: int,
    days: float = 0,
) -> Outcome:
    data = dsn(
        to=item.return_path,
        recipient=item.email,
        status=status,
        diagnostic=diagnostic,
        report_id=f"<{n}@mx.example.net>",
    )
    return apply(
        db,
        classify(data, envelope_to=item.return_path),
        signer=TokenSigner(TEST_SECRET),
        settings=settings.inbound,
        now=utcnow() + timedelta(days=days),
    ).outcome


def test_a_blocked_report_counts_per_blast_and_domain_but_never_stops_the_supporter(
    db: Database, verp_settings: Settings, smtp_server: SmtpTestServer
) -> None:
    add_people(db, "members", people(3))
    sent = send_blast(db, verp_settings, smtp_server)
    spam = "smtp; 550 5.7.1 Message rejected as spam by Content Filtering"
    for n, who in enumerate(("p0@example.org", "p1@example.org")):
        assert apply_report(db, verp_settings, sent[who], "5.7.1", spam, n) is Outcome.BLOCKED
    assert (
        apply_report(db, verp_settings, sent["p0@example.org"], "5.7.1", spam, 0)
        is Outcome.DUPLICATE
    )
    for who in ("p0@example.org", "p1@example.org"):
        assert state_of(db, sent[who]) == (DeliveryState.BOUNCED, SupporterStatus.ACTIVE)
    blast_id = next(e.blast_id for e in events(db, "delivery.blocked"))
    assert blast_id is not None
    figures = blast_report(db, blast_id)
    assert figures["blocked"] == 2
    (row,) = figures["blocked_by_domain"]
    assert (row["domain"], row["blocked"], row["rules"]) == ("example.org", 2, {"words:spam": 2})
    assert blocked_by_domain(db, since=utcnow() + timedelta(days=1)) == []


# -- soft bounces add up -------------------------------------------------------------------


def test_soft_bounces_need_the_limit_from_two_blasts_each_step_recorded(
    db: Database, verp_settings: Settings, smtp_server: SmtpTestServer
) -> None:
    add_people(db, "members", people(1))
    first = send_blast(db, verp_settings, smtp_server, "a")["p0@example.org"]
    second = send_blast(db, verp_settings, smtp_server, "b")["p0@example.org"]
    full = "smtp; 452 4.2.2 mailbox full"
    # One blast's trouble, on three days: three steps, one blast: never enough.
    for day in range(3):
        apply_report(db, verp_settings, first, "4.2.2", full, day, days=day)
    assert state_of(db, first)[1] is SupporterStatus.ACTIVE
    steps = events(db, "supporter.soft_bounce")
    assert [(e.detail["count"], e.detail["blasts"], e.detail["reached"]) for e in steps] == [
        (1, 1, False),
        (2, 1, False),
        (3, 1, False),
    ]
    assert all(e.detail["evidence"]["status"] == "4.2.2" for e in steps)
    apply_report(db, verp_settings, second, "4.2.2", full, 9, days=4)
    assert state_of(db, second)[1] is SupporterStatus.BOUNCED
    (marked,) = events(db, "supporter.bounced")
    assert (marked.detail["reason"], marked.detail["count"], marked.detail["blasts"]) == (
        "soft bounce limit",
        4,
        2,
    )


# -- review and undo -----------------------------------------------------------------------


def test_review_lists_who_was_stopped_and_why_and_undo_brings_them_back(
    tmp_path: Path, smtp_server: SmtpTestServer
) -> None:
    config = write_config(
        tmp_path,
        database_url=f"sqlite:///{tmp_path / 'm.db'}",
        smtp_port=smtp_server.port,
        sections={"sender": {"verp": True, "return_path": "bounces@example.org"}},
    )
    from mailer.store import open_database

    db = open_database(f"sqlite:///{tmp_path / 'm.db'}", create=True)
    settings = make_settings(
        smtp_port=smtp_server.port, sender={"verp": True, "return_path": "bounces@example.org"}
    )
    try:
        add_people(db, "members", people(3))
        sent = send_blast(db, settings, smtp_server)
        apply_report(
            db, settings, sent["p0@example.org"], "5.1.1", "smtp; 550 5.1.1 user unknown", 1
        )
        apply_report(
            db, settings, sent["p1@example.org"], "5.0.0", "smtp; 550 no such user here", 2
        )
        assert [s.rule for s in stopped_by_bounces(db)] == ["words:no-mailbox"] * 2
        listed = run_mailer(tmp_path, "bounces", "review", config=config)
        assert listed.returncode == 0, listed.stderr
        assert "2 supporters stopped by bounces" in listed.stdout
        assert "p0@example.org" in listed.stdout and "hard bounce" in listed.stdout
        refused = run_mailer(tmp_path, "bounces", "review", "--undo", config=config)
        assert refused.returncode != 0 and "--undo needs" in refused.stderr
        undone = run_mailer(
            tmp_path, "bounces", "review", "--undo", "--rule", "words:", config=config
        )
        assert undone.returncode == 0, undone.stderr
        assert "2 supporters made active again" in undone.stdout
        for who in ("p0@example.org", "p1@example.org"):
            assert state_of(db, sent[who])[1] is SupporterStatus.ACTIVE
        records = events(db, "supporter.bounce_undone")
        assert len(records) == 2 and all(r.actor == "cli" for r in records)
        assert {r.detail["undoes"] for r in records} == {
            e.id for e in events(db, "supporter.bounced")
        }
        assert stopped_by_bounces(db) == []
        spam = "smtp; 550 5.7.1 Message rejected as spam by Content Filtering"
        apply_report(db, settings, sent["p2@example.org"], "5.7.1", spam, 3)
        shown = run_mailer(tmp_path, "report", "1", config=config)
        assert shown.returncode == 0, shown.stderr
        assert "blocked" in shown.stdout and "words:spam 1" in shown.stdout
        with pytest.raises(ValueError):
            undo_bounces(db, Selection(), actor="test")
    finally:
        db.dispose()


@pytest.mark.parametrize(
    "body",
    [
        "x" * 1_000_000,  # one long line without spaces or @
        ("a@" * 300_000),
        "user unknown " + "@" * 500_000,
        ("<" + "a" * 5000 + "@" + "b." * 5000 + ">\n") * 40,
    ],
)
def test_hostile_prose_is_read_in_well_under_a_second(body: str) -> None:
    data = (
        "From: MAILER-DAEMON@mx.example.net\nTo: "
        + TO
        + "\nSubject: Undelivered Mail\n\n"
        + body
        + "\n"
    ).encode()
    started = time.perf_counter()
    classify(data)
    assert time.perf_counter() - started < 1.0
