"""Inbound mail: DSNs, ARF complaints, prose bounces and mailto unsubscribes.

The reports are written here (RFC 3464, RFC 5965, qmail, Exim), about
messages that a real blast sent to the test SMTP server, and delivered through
the real inbound listener over SMTP (or read from a real Maildir and mbox).
"""

from __future__ import annotations

import mailbox
import re
import smtplib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import col, select

from mailer.blasts import create_blast, send_now
from mailer.compose.tokens import TokenSigner
from mailer.config import Settings
from mailer.devsmtp import DevSmtpServer
from mailer.errors import ImportFileError
from mailer.inbound import InboundServer, Outcome, apply, classify, import_mailbox
from mailer.store import Database, Delivery, DeliveryState, Event, Supporter, SupporterStatus
from mailer.store.models import utcnow
from tests.conftest import TEST_SECRET, make_settings
from tests.factories import add_people, people
from tests.smtpserver import SmtpTestServer

# -- sending something that can bounce ----------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """One message a blast sent, as the relay received it."""

    delivery_id: int
    supporter_id: int
    email: str
    return_path: str  # bounces+TOKEN@example.org
    message_id: str
    data: bytes

    @property
    def head(self) -> str:
        """The original's header block (what text/rfc822-headers carries)."""
        return re.split(r"\r?\n\r?\n", self.data.decode("ascii", "replace"), maxsplit=1)[0]

    @property
    def unsubscribe_token(self) -> str:
        found = re.search(r"subject=unsubscribe%20([A-Za-z0-9_-]+)", self.head)
        assert found is not None
        return found.group(1)


@pytest.fixture
def verp_settings(smtp_server: SmtpTestServer) -> Settings:
    return make_settings(
        smtp_port=smtp_server.port,
        sender={"verp": True, "return_path": "bounces@example.org"},
        inbound={"complaint_senders": ["isp.example.net"]},  # the feedback loop of arf()
    )


@pytest.fixture
def listener(db: Database, verp_settings: Settings) -> Iterator[InboundServer]:
    with InboundServer(db, verp_settings, port=0) as server:
        yield server


def send_blast(
    db: Database, settings: Settings, smtp_server: SmtpTestServer, name: str = "alert"
) -> dict[str, Sent]:
    blast = create_blast(
        db, settings, name=name, template="executive-orders", list_names=["members"]
    )
    assert blast.id is not None
    send_now(db, settings, blast.id)
    by_id = {r.message()["Message-ID"]: r for r in smtp_server.handler.received}
    with db.session() as session:
        rows = session.exec(
            select(Supporter.email, Delivery)
            .join(Delivery, col(Delivery.supporter_id) == Supporter.id)
            .where(Delivery.blast_id == blast.id)
        ).all()
    sent = {}
    for email, delivery in rows:
        assert delivery.state is DeliveryState.SENT and delivery.id is not None
        got = by_id[delivery.message_id]
        sent[email] = Sent(
            delivery.id, delivery.supporter_id, email, got.mail_from, delivery.message_id, got.data
        )
    return sent


@pytest.fixture
def sent(db: Database, verp_settings: Settings, smtp_server: SmtpTestServer) -> dict[str, Sent]:
    add_people(db, "members", people(4))
    return send_blast(db, verp_settings, smtp_server)


def deliver(server: InboundServer, data: bytes, rcpt: str, mail_from: str = "") -> tuple[int, str]:
    """Hand ``data`` to the inbound listener over SMTP; (reply code, text) after DATA."""
    with smtplib.SMTP(server.host, server.port, timeout=10) as client:
        client.ehlo("mx.example.net")
        assert client.mail(mail_from)[0] == 250
        assert client.rcpt(rcpt)[0] == 250
        code, text = client.data(crlf(data))
    return code, text.decode()


def crlf(data: bytes) -> bytes:
    """SMTP line ends (smtplib leaves those of bytes as they are)."""
    return re.sub(rb"\r?\n", b"\r\n", data)


def events(db: Database, action: str | None = None) -> list[Event]:
    """The events about supporters, deliveries and inbound mail (or only ``action``)."""
    with db.session() as session:
        found = session.exec(select(Event).order_by(col(Event.id))).all()
    if action is not None:
        return [e for e in found if e.action == action]
    return [e for e in found if e.action.startswith(("supporter.", "delivery.", "inbound."))]


def state_of(db: Database, item: Sent) -> tuple[DeliveryState, SupporterStatus]:
    with db.session() as session:
        delivery = session.get(Delivery, item.delivery_id)
        supporter = session.get(Supporter, item.supporter_id)
        assert delivery is not None and supporter is not None
        return delivery.state, supporter.status


# -- the reports, as mail systems write them ---------------------------------------------


def dsn(
    *,
    to: str,
    recipient: str,
    status: str = "5.1.1",
    action: str = "failed",
    diagnostic: str | None = None,
    original_head: str = "",
    report_id: str = "<20250120120000.4A1B2C3D@mx.example.net>",
) -> bytes:
    """An RFC 3464 report, in the shape Postfix writes."""
    if diagnostic is None:
        diagnostic = (
            f"smtp; 550 {status} <{recipient}>: Recipient address rejected:\n"
            "    User unknown in virtual mailbox table"
        )
    original = (
        f"--B1\nContent-Description: Undelivered Message Headers\n"
        f"Content-Type: text/rfc822-headers\n\n{original_head}\n\n"
        if original_head
        else ""
    )
    text = f"""\
From: MAILER-DAEMON@mx.example.net (Mail Delivery System)
To: {to}
Subject: Undelivered Mail Returned to Sender
Date: Mon, 20 Jan 2025 12:00:00 +0000
Message-ID: {report_id}
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
    boundary="B1"

This is a MIME-encapsulated message.

--B1
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

This is the mail system at host mx.example.net.

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

--B1
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
X-Postfix-Queue-ID: 4A1B2C3D
Arrival-Date: Mon, 20 Jan 2025 11:59:58 +0000

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822;{recipient}
Action: {action}
Status: {status}
Remote-MTA: dns; mail.example.com
Diagnostic-Code: {diagnostic}

{original}--B1--
"""
    return text.encode()


def arf(*, original: bytes, feedback_type: str = "abuse", report_id: str = "<fbl-1@isp>") -> bytes:
    """An RFC 5965 abuse report with the whole original, as feedback loops redact it:
    without the return path and the List-Unsubscribe header (so only the Message-ID
    can tell which message it was)."""
    original_head, _, body = original.replace(b"\r\n", b"\n").partition(b"\n\n")
    fields = re.split(rb"\n(?![ \t])", original_head)
    kept = [f for f in fields if not f.lower().startswith((b"return-path:", b"list-unsubscribe:"))]
    kept_text = b"\n".join(kept) + b"\n\n" + body
    head = f"""\
From: <feedback@isp.example.net>
To: <fbl@example.org>
Subject: Abuse report
Date: Tue, 21 Jan 2025 08:00:00 +0000
Message-ID: {report_id}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report;
    boundary="part1_13d.2e68ed54_boundary"

--part1_13d.2e68ed54_boundary
Content-Type: text/plain; charset="US-ASCII"
Content-Transfer-Encoding: 7bit

This is an email abuse report for an email message received from IP
192.0.2.1 on Mon, 20 Jan 2025 12:00:00 +0000.

--part1_13d.2e68ed54_boundary
Content-Type: message/feedback-report

Feedback-Type: {feedback_type}
User-Agent: ExampleFBL/2.1
Version: 1
Original-Rcpt-To: <redacted@isp.example.net>
Arrival-Date: Mon, 20 Jan 2025 12:00:00 +0000
Reported-Domain: example.org
Source-IP: 192.0.2.1

--part1_13d.2e68ed54_boundary
Content-Type: message/rfc822
Content-Disposition: inline

"""
    return head.encode() + kept_text + b"\n--part1_13d.2e68ed54_boundary--\n"


def qmail_bounce(*, to: str, recipient: str, original: bytes) -> bytes:
    head = f"""\
Date: 20 Jan 2025 12:00:05 -0000
From: MAILER-DAEMON@mail.example.net
To: {to}
Subject: failure notice
Message-ID: <20250120120005.31337.qmail@mail.example.net>

Hi. This is the qmail-send program at mail.example.net.
I'm afraid I wasn't able to deliver your message to the following addresses.
This is a permanent error; I've given up. Sorry it didn't work out.

<{recipient}>:
192.0.2.25 does not like recipient.
Remote host said: 550 5.1.1 <{recipient}>: Recipient address rejected: User unknown
Giving up on 192.0.2.25.

--- Below this line is a copy of the message.

"""
    return head.encode() + original.replace(b"\r\n", b"\n")


def exim_delay(*, to: str, recipient: str) -> bytes:
    return f"""\
From: Mail Delivery System <Mailer-Daemon@mx.example.net>
To: {to}
Subject: Warning: message 1tXyZa-000Abc-Q9 delayed 24 hours
Auto-Submitted: auto-replied
Message-ID: <E1tXyZb-000Abd-R2@mx.example.net>

This message was created automatically by mail delivery software.
A message that you sent has not yet been delivered to one or more of its
recipients after more than 24 hours on the queue on mx.example.net.

The message identifier is:     1tXyZa-000Abc-Q9
The date of the message is:    Mon, 20 Jan 2025 12:00:00 +0000

The address to which the message has not yet been delivered is:

  {recipient}
    host mail.example.com [192.0.2.7]
    Delay reason: SMTP error from remote mail server after RCPT TO:<{recipient}>:
    451 4.7.1 Greylisted, please try again later

No action is required on your part. Delivery attempts will continue for
some time, and this warning may be repeated at intervals if the message
remains undelivered.
""".encode()


def exim_failure(*, to: str, recipient: str, original_head: str) -> bytes:
    return f"""\
From: Mail Delivery System <Mailer-Daemon@mx.example.net>
To: {to}
Subject: Mail delivery failed: returning message to sender
Message-ID: <E1tXyZc-000Abe-S3@mx.example.net>

This message was created automatically by mail delivery software.

A message that you sent could not be delivered to one or more of its
recipients. This is a permanent error. The following address(es) failed:

  {recipient}
    host mail.example.com [192.0.2.7]
    SMTP error from remote mail server after RCPT TO:<{recipient}>:
    550 5.1.1 <{recipient}>: Recipient address rejected: User unknown

------ This is a copy of the message, including all the headers. ------

{original_head}

Dear supporter,
""".encode()


def mailto_unsubscribe(*, sender: str, token: str) -> bytes:
    return f"""\
From: A Supporter <{sender}>
To: unsubscribe@example.org
Subject: unsubscribe {token}
Date: Tue, 21 Jan 2025 09:00:00 +0000
Message-ID: <CAFx1-unsub@mail.example.org>

This message was automatically generated by Gmail.
""".encode()


def out_of_office(*, to: str, sender: str) -> bytes:
    return f"""\
From: A Supporter <{sender}>
To: {to}
Subject: Automatic reply: Tell the White House
Auto-Submitted: auto-replied
X-Auto-Response-Suppress: All
Message-ID: <oof-1@example.org>

I am out of the office until Monday, 27 January, with no access to email.
""".encode()


# -- through the real listener -----------------------------------------------------------


def test_a_hard_bounce_marks_the_delivery_and_the_supporter(
    db: Database, listener: InboundServer, sent: dict[str, Sent]
) -> None:
    p1 = sent["p1@example.org"]
    assert p1.return_path.startswith("bounces+")
    report = dsn(to=p1.return_path, recipient=p1.email, original_head=p1.head)
    code, text = deliver(listener, report, p1.return_path)
    assert (code, text) == (250, "2.0.0 Recorded: bounced")
    assert state_of(db, p1) == (DeliveryState.BOUNCED, SupporterStatus.BOUNCED)
    with db.session() as session:
        delivery = session.get(Delivery, p1.delivery_id)
        assert delivery is not None
        assert delivery.reply_code == 550
        assert delivery.reply_text == (
            "550 5.1.1 <p1@example.org>: Recipient address rejected: "
            "User unknown in virtual mailbox table"
        )
    bounced, marked = events(db, "delivery.bounced"), events(db, "supporter.bounced")
    assert len(bounced) == 1 and len(marked) == 1
    evidence = bounced[0].detail["evidence"]
    assert evidence["status"] == "5.1.1" and evidence["reporter"] == "mx.example.net"
    assert evidence["diagnostic"].startswith("550 5.1.1")
    assert bounced[0].detail["attributed_by"] == "verp"
    assert bounced[0].detail["previous_reply"].startswith("250")
    assert (bounced[0].delivery_id, bounced[0].supporter_id) == (p1.delivery_id, p1.supporter_id)
    assert marked[0].detail["previous"] == "active" and marked[0].actor == "inbound:smtp"
    for other in ("p0@example.org", "p2@example.org", "p3@example.org"):
        assert state_of(db, sent[other]) == (DeliveryState.SENT, SupporterStatus.ACTIVE)


def test_soft_bounces_mark_the_supporter_only_at_the_limit(
    db: Database,
    listener: InboundServer,
    verp_settings: Settings,
    smtp_server: SmtpTestServer,
) -> None:
    add_people(db, "members", people(2))
    blasts = [send_blast(db, verp_settings, smtp_server, f"alert {n}") for n in range(3)]
    first, second, third = (b["p0@example.org"] for b in blasts)

    def soft(item: Sent, status: str, action: str, report_id: str) -> str:
        diagnostic = f"smtp; 452 {status} Mailbox full"
        report = dsn(
            to=item.return_path,
            recipient=item.email,
            status=status,
            action=action,
            diagnostic=diagnostic,
            report_id=report_id,
        )
        code, text = deliver(listener, report, item.return_path)
        assert code == 250
        return text

    assert soft(first, "4.4.7", "delayed", "<d1@mx>") == "2.0.0 Recorded: soft_bounce"
    # The same alert delayed again, then given up on: still one alert, counted once.
    soft(first, "4.4.7", "delayed", "<d2@mx>")
    soft(first, "4.2.2", "failed", "<d3@mx>")
    assert state_of(db, first) == (DeliveryState.BOUNCED, SupporterStatus.ACTIVE)
    soft(second, "4.2.2", "failed", "<d4@mx>")
    assert state_of(db, second) == (DeliveryState.BOUNCED, SupporterStatus.ACTIVE)
    assert [e.detail["count"] for e in events(db, "supporter.soft_bounce")] == [1, 1, 1, 2]
    assert [e.detail["counted"] for e in events(db, "supporter.soft_bounce")] == [
        True,
        False,
        False,
        True,
    ]
    assert events(db, "supporter.bounced") == []
    soft(third, "4.4.7", "delayed", "<d5@mx>")
    assert state_of(db, third) == (DeliveryState.SENT, SupporterStatus.BOUNCED)
    (marked,) = events(db, "supporter.bounced")
    assert marked.detail["reason"] == "soft bounce limit"
    assert (marked.detail["count"], marked.detail["limit"]) == (3, 3)
    assert marked.delivery_id == third.delivery_id
    assert state_of(db, blasts[0]["p1@example.org"])[1] is SupporterStatus.ACTIVE


def test_a_full_mailbox_under_a_5xx_code_is_soft(
    db: Database, listener: InboundServer, sent: dict[str, Sent]
) -> None:
    p2 = sent["p2@example.org"]
    report = dsn(
        to=p2.return_path,
        recipient=p2.email,
        status="5.2.2",
        diagnostic="smtp; 552 5.2.2 <p2@example.org>: mailbox full",
    )
    assert deliver(listener, report, p2.return_path) == (250, "2.0.0 Recorded: soft_bounce")
    assert state_of(db, p2) == (DeliveryState.BOUNCED, SupporterStatus.ACTIVE)
    (counted,) = events(db, "supporter.soft_bounce")
    assert counted.detail["evidence"]["status"] == "5.2.2" and counted.detail["count"] == 1
    assert events(db, "supporter.bounced") == []


def test_an_arf_complaint_marks_the_supporter_by_the_original_message_id(
    db: Database, listener: InboundServer, sent: dict[str, Sent]
) -> None:
    p3 = sent["p3@example.org"]
    code, text = deliver(listener, arf(original=p3.data), "fbl@example.org")
    assert (code, text) == (250, "2.0.0 Recorded: complained")
    assert state_of(db, p3) == (DeliveryState.SENT, SupporterStatus.COMPLAINED)
    (reported,) = events(db, "delivery.complained")
    assert reported.delivery_id == p3.delivery_id
    assert reported.detail["attributed_by"] == "message-id"
    evidence = reported.detail["evidence"]
    assert evidence["feedback_type"] == "abuse" and evidence["reporter"] == "ExampleFBL/2.1"
    assert evidence["original_message_id"] == p3.message_id
    (marked,) = events(db, "supporter.complained")
    assert marked.detail["previous"] == "active"


@pytest.mark.parametrize(
    "sender", ["<anyone@elsewhere.example>", "<x@isp.example.net.evil.example>", ""]
)
def test_a_complaint_naming_a_forwarded_alerts_message_id_changes_nothing(
    db: Database, listener: InboundServer, sent: dict[str, Sent], sender: str
) -> None:
    """Anyone a supporter forwarded an alert to knows its Message-ID; a report naming it
    from outside inbound.complaint_senders, not sent to the VERP address, is only recorded."""
    p3 = sent["p3@example.org"]
    forged = arf(original=p3.data).replace(
        b"From: <feedback@isp.example.net>", f"From: {sender}".encode()
    )
    code, text = deliver(listener, forged, "fbl@example.org")
    assert (code, text) == (250, "2.0.0 Recorded: unverified")
    assert state_of(db, p3) == (DeliveryState.SENT, SupporterStatus.ACTIVE)
    (recorded,) = events(db, "delivery.complaint_unverified")
    assert recorded.delivery_id == p3.delivery_id
    assert recorded.detail["attributed_by"] == "message-id"
    assert events(db, "supporter.complained") == events(db, "delivery.complained") == []


def test_a_complaint_sent_to_the_verp_address_is_trusted(
    db: Database, listener: InboundServer, sent: dict[str, Sent]
) -> None:
    p3 = sent["p3@example.org"]
    report = arf(original=p3.data).replace(
        b"From: <feedback@isp.example.net>", b"From: <abuse@other-provider.example>"
    )
    assert deliver(listener, report, p3.return_path) == (250, "2.0.0 Recorded: complained")
    assert state_of(db, p3) == (DeliveryState.SENT, SupporterStatus.COMPLAINED)


def test_a_qmail_bounce_is_attributed_by_the_copy_of_the_original(
    db: Database, listener: InboundServer, sent: dict[str, Sent]
) -> None:
    p0 = sent["p0@example.org"]
    report = qmail_bounce(to="bounces@example.org", recipient=p0.email, original=p0.data)
    assert deliver(listener, report, "bounces@example.org") == (250, "2.0.0 Recorded: bounced")
    assert state_of(db, p0) == (DeliveryState.BOUNCED, SupporterStatus.BOUNCED)
    (bounced,) = events(db, "delivery.bounced")
    assert bounced.detail["attributed_by"] == "message-id"
    evidence = bounced.detail["evidence"]
    assert (evidence["shape"], evidence["status"], evidence["reply_code"]) == (
        "qmail",
        "5.1.1",
        550,
    )
    assert evidence["original_recipient"] == "p0@example.org"


def test_a_mailto_unsubscribe_unsubscribes(
    db: Database, listener: InboundServer, sent: dict[str, Sent]
) -> None:
    p1 = sent["p1@example.org"]
    request = mailto_unsubscribe(sender=p1.email, token=p1.unsubscribe_token)
    code, text = deliver(listener, request, "unsubscribe@example.org", mail_from=p1.email)
    assert (code, text) == (250, "2.0.0 Recorded: unsubscribed")
    assert state_of(db, p1) == (DeliveryState.SENT, SupporterStatus.UNSUBSCRIBED)
    (done,) = events(db, "supporter.unsubscribed")
    assert done.detail == {"via": "mailto", "previous": "active"}
    assert done.delivery_id == p1.delivery_id
    again = deliver(listener, request, "unsubscribe@example.org", mail_from=p1.email)
    assert again == (250, "2.0.0 Recorded: no_change")
    assert len(events(db, "supporter.unsubscribed")) == 1


def apple_one_tap_unsubscribe(*, sender: str, to: str) -> bytes:
    """What Apple Mail sends to the mailto target of List-Unsubscribe: its own subject."""
    return f"""\
From: {sender}
To: {to}
Subject: unsubscribe
Date: Thu, 2 May 2024 17:48:55 +0000
Message-ID: <898B6152-36BC-4F4B-ABF8-2694A88CB5FC@icloud.example>
Auto-Submitted: auto-replied
X-Apple-Unsubscribe: true
Content-Type: text/plain; charset=UTF-8

Apple Mail sent this email to unsubscribe from the message "Tell the White House".
""".encode()


def mailto_target(item: Sent) -> str:
    """The address of the mailto: in the message's List-Unsubscribe."""
    unfolded = re.sub(r"\r?\n[ \t]+", " ", item.head)
    m = re.search(r"<mailto:([^?>]+)\?", unfolded)
    assert m is not None, item.head
    return m.group(1)


def test_a_one_tap_unsubscribe_without_the_token_in_its_subject_is_attributed_by_address(
    db: Database, listener: InboundServer, sent: dict[str, Sent]
) -> None:
    p1 = sent["p1@example.org"]
    target = mailto_target(p1)
    assert target == f"unsubscribe+{p1.unsubscribe_token}@example.org"
    request = apple_one_tap_unsubscribe(sender=p1.email, to=target)
    code, text = deliver(listener, request, target, mail_from=p1.email)
    assert (code, text) == (250, "2.0.0 Recorded: unsubscribed")
    assert state_of(db, p1) == (DeliveryState.SENT, SupporterStatus.UNSUBSCRIBED)
    (done,) = events(db, "supporter.unsubscribed")
    assert (done.delivery_id, done.detail["via"]) == (p1.delivery_id, "mailto")


@pytest.mark.parametrize("forged", ["", "AQAAAAEAAAAHc2lnbmF0dXJlLWJ5dGVzLTAxMjM0NQ"])
def test_a_bare_unsubscribe_without_a_valid_token_changes_nothing(
    db: Database, listener: InboundServer, sent: dict[str, Sent], forged: str
) -> None:
    p1 = sent["p1@example.org"]
    target = f"unsubscribe+{forged}@example.org" if forged else "unsubscribe@example.org"
    request = apple_one_tap_unsubscribe(sender=p1.email, to=target)
    code, text = deliver(listener, request, target, mail_from=p1.email)
    assert (code, text) == (250, "2.0.0 Recorded: unattributed")
    assert state_of(db, p1) == (DeliveryState.SENT, SupporterStatus.ACTIVE)
    assert events(db, "supporter.unsubscribed") == []


def test_a_forged_verp_token_changes_nothing(
    db: Database, listener: InboundServer, sent: dict[str, Sent]
) -> None:
    p2 = sent["p2@example.org"]
    local, _, domain = p2.return_path.partition("@")
    token = local.partition("+")[2]
    altered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    other_key = TokenSigner("some-other-secret-that-is-long-enough-00").bounce(p2.delivery_id)
    for forged in (altered, other_key):
        address = f"bounces+{forged}@{domain}"
        report = dsn(to=address, recipient=p2.email, report_id=f"<{forged[:8]}@mx>")
        assert deliver(listener, report, address) == (250, "2.0.0 Recorded: unattributed")
    assert state_of(db, p2) == (DeliveryState.SENT, SupporterStatus.ACTIVE)
    unattributed = events(db, "inbound.unattributed")
    assert len(unattributed) == 2 and len(events(db)) == 2
    assert all(e.detail["rejected_tokens"] >= 1 for e in unattributed)
    assert all(e.delivery_id is None and e.supporter_id is None for e in unattributed)
    assert unattributed[0].detail["evidence"]["status"] == "5.1.1"


def test_an_out_of_office_reply_is_ignored(
    db: Database, listener: InboundServer, sent: dict[str, Sent]
) -> None:
    p0 = sent["p0@example.org"]
    reply = out_of_office(to=p0.return_path, sender=p0.email)
    assert deliver(listener, reply, p0.return_path, mail_from="") == (
        250,
        "2.0.0 Recorded: ignored",
    )
    assert state_of(db, p0) == (DeliveryState.SENT, SupporterStatus.ACTIVE)
    (ignored,) = events(db)
    assert ignored.action == "inbound.ignored" and ignored.delivery_id == p0.delivery_id
    assert ignored.detail["evidence"]["kind"] == "auto_reply"


def test_the_same_report_twice_counts_once(
    db: Database, listener: InboundServer, sent: dict[str, Sent]
) -> None:
    p3 = sent["p3@example.org"]
    delayed = dsn(
        to=p3.return_path,
        recipient=p3.email,
        status="4.4.1",
        action="delayed",
        diagnostic="smtp; 451 4.4.1 connection timed out",
    )
    for _ in range(2):
        assert deliver(listener, delayed, p3.return_path)[0] == 250
    p0 = sent["p0@example.org"]
    hard = dsn(to=p0.return_path, recipient=p0.email, report_id="<hard@mx>")
    for _ in range(2):
        assert deliver(listener, hard, p0.return_path)[0] == 250
    assert len(events(db, "supporter.soft_bounce")) == 1
    assert len(events(db, "delivery.bounced")) == 1
    assert len(events(db, "supporter.bounced")) == 1
    duplicates = events(db, "inbound.duplicate")
    assert {e.delivery_id for e in duplicates} == {p3.delivery_id, p0.delivery_id}


def test_a_stronger_status_is_never_weakened(
    db: Database, listener: InboundServer, sent: dict[str, Sent]
) -> None:
    p0, p1 = sent["p0@example.org"], sent["p1@example.org"]
    deliver(listener, mailto_unsubscribe(sender=p0.email, token=p0.unsubscribe_token), "u@x")
    deliver(listener, dsn(to=p0.return_path, recipient=p0.email), p0.return_path)
    assert state_of(db, p0) == (DeliveryState.BOUNCED, SupporterStatus.UNSUBSCRIBED)
    deliver(listener, arf(original=p1.data), "fbl@example.org")
    code, text = deliver(
        listener, mailto_unsubscribe(sender=p1.email, token=p1.unsubscribe_token), "u@x"
    )
    assert (code, text) == (250, "2.0.0 Recorded: no_change")
    assert state_of(db, p1) == (DeliveryState.SENT, SupporterStatus.COMPLAINED)
    assert events(db, "supporter.bounced") == []
    (kept,) = events(db, "inbound.no_change")
    assert kept.detail["status"] == "complained"


def test_a_database_failure_answers_451_so_the_sender_retries(
    db: Database, sent: dict[str, Sent], verp_settings: Settings
) -> None:
    p1 = sent["p1@example.org"]
    report = dsn(to=p1.return_path, recipient=p1.email)
    with InboundServer(db, verp_settings, port=0) as server:
        with db.engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE event RENAME TO event_away"))
        code, text = deliver(server, report, p1.return_path)
        assert code == 451 and text.startswith("4.3.0")
        assert state_of(db, p1) == (DeliveryState.SENT, SupporterStatus.ACTIVE)
        with db.engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE event_away RENAME TO event"))
        assert deliver(server, report, p1.return_path) == (250, "2.0.0 Recorded: bounced")
    assert state_of(db, p1) == (DeliveryState.BOUNCED, SupporterStatus.BOUNCED)


def test_messages_over_the_size_limit_are_refused(sqlite_db: Database) -> None:
    settings_ = make_settings()
    with InboundServer(sqlite_db, settings_, port=0, data_size_limit=2000) as server:
        big = b"Subject: big\n\n" + (b"x" * 70 + b"\n") * 100
        assert deliver(server, big, "bounces@example.org")[0] == 552
        assert deliver(server, b"Subject: small\n\nhello\n", "bounces@example.org")[0] == 250


# -- soft bounces and time -----------------------------------------------------------------


def test_soft_bounces_outside_the_window_do_not_count(
    db: Database, verp_settings: Settings, smtp_server: SmtpTestServer
) -> None:
    add_people(db, "members", people(1))
    items = [
        send_blast(db, verp_settings, smtp_server, f"a{n}")["p0@example.org"] for n in range(4)
    ]
    signer = TokenSigner(TEST_SECRET)
    start = utcnow()
    days = [0, 31, 40, 45]  # the window is 15 days: the first has aged out by day 31
    for n, (item, day) in enumerate(zip(items, days, strict=True)):
        report = dsn(
            to=item.return_path,
            recipient=item.email,
            status="4.2.2",
            diagnostic="smtp; 452 4.2.2 over quota",
            report_id=f"<{n}@mx>",
        )
        decision = apply(
            db,
            classify(report, envelope_to=item.return_path),
            signer=signer,
            settings=verp_settings.inbound,
            now=start + timedelta(days=day),
        )
        assert decision.outcome is Outcome.SOFT_BOUNCE
        expected = SupporterStatus.BOUNCED if day == 45 else SupporterStatus.ACTIVE
        assert decision.supporter_status == expected
    assert [e.detail["count"] for e in events(db, "supporter.soft_bounce")] == [1, 1, 2, 3]


# -- mailboxes -----------------------------------------------------------------------------


def mixed_reports(sent: dict[str, Sent]) -> list[tuple[bytes, str]]:
    """(message, envelope recipient): a hard bounce, a delay, a complaint, an unsubscribe,
    an out-of-office reply and a forged bounce."""
    p0, p1, p2, p3 = (sent[f"p{n}@example.org"] for n in range(4))
    forged = "bounces+" + "A" * 35 + "@example.org"
    return [
        (dsn(to=p0.return_path, recipient=p0.email, report_id="<m1@mx>"), p0.return_path),
        (exim_delay(to=p1.return_path, recipient=p1.email), p1.return_path),
        (arf(original=p2.data, report_id="<m3@isp>"), "fbl@example.org"),
        (mailto_unsubscribe(sender=p3.email, token=p3.unsubscribe_token), "unsubscribe@x"),
        (out_of_office(to=p1.return_path, sender=p1.email), p1.return_path),
        (dsn(to=forged, recipient=p3.email, report_id="<m6@mx>"), forged),
    ]


def check_mixed(db: Database, sent: dict[str, Sent]) -> None:
    assert state_of(db, sent["p0@example.org"]) == (DeliveryState.BOUNCED, SupporterStatus.BOUNCED)
    assert state_of(db, sent["p1@example.org"]) == (DeliveryState.SENT, SupporterStatus.ACTIVE)
    assert state_of(db, sent["p2@example.org"]) == (DeliveryState.SENT, SupporterStatus.COMPLAINED)
    assert state_of(db, sent["p3@example.org"]) == (
        DeliveryState.SENT,
        SupporterStatus.UNSUBSCRIBED,
    )
    assert len(events(db, "supporter.soft_bounce")) == 1


EXPECTED_KINDS = {
    "hard_bounce": 2,  # the forged one is a hard bounce too, just not attributable
    "soft_bounce": 1,
    "complaint": 1,
    "unsubscribe": 1,
    "auto_reply": 1,
}


def test_import_a_maildir(
    db: Database, sent: dict[str, Sent], verp_settings: Settings, tmp_path: Path
) -> None:
    maildir = tmp_path / "bounces"
    # A real delivery agent writes it: Return-Path and Delivered-To in front of each message.
    with DevSmtpServer(maildir) as mta:
        for message, rcpt in mixed_reports(sent):
            with smtplib.SMTP(mta.host, mta.port, timeout=10) as client:
                client.sendmail("", [rcpt], crlf(message))
    result = import_mailbox(db, verp_settings, maildir)
    assert (result.format, result.messages) == ("maildir", 6)
    assert dict(result.kinds) == EXPECTED_KINDS
    assert dict(result.outcomes) == {
        "bounced": 1,
        "soft_bounce": 1,
        "complained": 1,
        "unsubscribed": 1,
        "ignored": 1,
        "unattributed": 1,
    }
    check_mixed(db, sent)
    again = import_mailbox(db, verp_settings, maildir)
    assert again.outcomes["duplicate"] == 3 and again.outcomes["no_change"] == 1
    check_mixed(db, sent)


def test_import_an_mbox(
    sqlite_db: Database, verp_settings: Settings, smtp_server: SmtpTestServer, tmp_path: Path
) -> None:
    add_people(sqlite_db, "members", people(4))
    sent = send_blast(sqlite_db, verp_settings, smtp_server)
    path = tmp_path / "bounces.mbox"
    box = mailbox.mbox(path)
    for message, rcpt in mixed_reports(sent):
        box.add(f"Delivered-To: {rcpt}\n".encode() + message)
    box.flush()
    box.close()
    result = import_mailbox(sqlite_db, verp_settings, path)
    assert (result.format, result.messages) == ("mbox", 6)
    assert dict(result.kinds) == EXPECTED_KINDS
    check_mixed(sqlite_db, sent)
    (complaint,) = events(sqlite_db, "delivery.complained")
    assert complaint.actor == "inbound:import"


def test_import_names_a_path_that_is_not_a_mailbox(sqlite_db: Database, tmp_path: Path) -> None:
    settings_ = make_settings()
    (tmp_path / "folder").mkdir()
    (tmp_path / "notes.txt").write_text("hello\n")
    for name in ("folder", "notes.txt", "missing"):
        with pytest.raises(ImportFileError, match=re.escape(str(tmp_path / name))):
            import_mailbox(sqlite_db, settings_, tmp_path / name)
    (tmp_path / "empty.mbox").write_bytes(b"")
    assert import_mailbox(sqlite_db, settings_, tmp_path / "empty.mbox").messages == 0


# -- the parser on its own -----------------------------------------------------------------

TOKEN = "AQMAAAAAAAAAAZ7a_vKqUe6Q1kkY4Fn2ZxI"
VERP = f"bounces+{TOKEN}@example.org"
ORIGINAL_HEAD = (
    "From: Rapid Response <alerts@example.org>\n"
    "To: p1@example.org\n"
    "Subject: Tell the White House\n"
    "Message-ID: <7.42.a1b2c3d4e5f6@example.org>"
)


SAMPLES = [
    dsn(to=VERP, recipient="p1@example.org", original_head=ORIGINAL_HEAD),
    arf(original=ORIGINAL_HEAD.encode() + b"\n\nbody\n"),
    exim_delay(to=VERP, recipient="p3@example.org"),
    qmail_bounce(to=VERP, recipient="p1@example.org", original=ORIGINAL_HEAD.encode()),
    mailto_unsubscribe(sender="ana@example.org", token=TOKEN),
]


FRAGMENTS = [
    b"Content-Type: multipart/report; report-type=delivery-status; boundary=B",
    b"Content-Type: multipart/mixed; boundary=B",
    b"--B",
    b"--B--",
    b"",
    b"Content-Type: message/delivery-status",
    b"Content-Type: message/global-delivery-status",
    b"Content-Type: message/feedback-report",
    b"Content-Type: message/rfc822",
    b"Content-Type: text/rfc822-headers",
    b"Content-Type: text/plain; charset=bogus",
    b"Content-Transfer-Encoding: base64",
    b"Content-Transfer-Encoding: quoted-printable",
    b"Action: failed",
    b"Status: 5.1.1",
    b"Diagnostic-Code: smtp; 550 5.1.1 x",
    b"Feedback-Type: abuse",
    b"From: MAILER-DAEMON@example.net",
    b"Subject: =?utf-8?b?w6k=?= failure notice",
    b"Subject: =?bogus?q?x?=",
    b"Message-ID: <1.2.ab@example.org>",
    b"--- Below this line is a copy of the message.",
    b"\xff\xfe\x80",
]
