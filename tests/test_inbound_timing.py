"""No report lost to timing, and one parse per inbound message.

A relay that bounces an unknown user within milliseconds sends its report
while the sender is still waiting for the relay's own ``250``: the delivery is
``sending``. The listener answers ``451`` and the relay delivers the report
again later; the delivery log, the blast report and the supporter agree.
"""

from __future__ import annotations

import asyncio
import mailbox
import smtplib
import time
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlmodel import col, select

from mailer.blasts import create_blast, send_now
from mailer.config import Settings
from mailer.inbound import InboundServer, import_mailbox
from mailer.inbound.listener import MAX_RECIPIENTS
from mailer.report import blast_report
from mailer.store import Database, Delivery, DeliveryState, Supporter, SupporterStatus
from tests.conftest import make_settings
from tests.factories import Person, add_people, people
from tests.smtpserver import RecordingHandler, SmtpTestServer
from tests.test_inbound import Sent, crlf, dsn, events, send_blast


class BouncingRelay(RecordingHandler):
    """A relay that bounces every ``nobody…`` recipient at once, before answering DATA,
    and retries a report the listener answered with a temporary failure later."""

    def __init__(self, listener: InboundServer) -> None:
        super().__init__()
        self.listener = listener
        self.replies: list[int] = []  # the listener's reply to each report handed over
        self.queue: list[tuple[str, bytes]] = []  # reports to retry: (rcpt, data)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        rcpt = envelope.rcpt_tos[0]
        if rcpt.startswith("nobody"):
            report = dsn(to=envelope.mail_from or "", recipient=rcpt, report_id=f"<r.{rcpt}>")
            code = await asyncio.to_thread(self.hand_over, envelope.mail_from or "", report)
            if code // 100 == 4:
                self.queue.append((envelope.mail_from or "", report))
        return await super().handle_DATA(server, session, envelope)

    def hand_over(self, rcpt: str, report: bytes) -> int:
        with smtplib.SMTP(self.listener.host, self.listener.port, timeout=10) as client:
            client.ehlo("relay.example.net")
            client.mail("")
            client.rcpt(rcpt)
            try:
                code, _ = client.data(crlf(report))
            except smtplib.SMTPDataError as refused:
                code = refused.smtp_code
        self.replies.append(code)
        return code

    def retry(self) -> None:
        queued, self.queue = self.queue, []
        for rcpt, report in queued:
            if self.hand_over(rcpt, report) // 100 == 4:
                self.queue.append((rcpt, report))


def test_a_bounce_that_arrives_while_its_delivery_is_sending_is_not_lost(
    db: Database, tmp_path: Path
) -> None:
    relay = SmtpTestServer()
    settings = make_settings(
        smtp_port=relay.port, sender={"verp": True, "return_path": "bounces@example.org"}
    )
    with InboundServer(db, settings, port=0) as listener:
        handler = BouncingRelay(listener)
        relay.controller.handler = handler
        relay.start()
        try:
            add_people(db, "members", people(4))
            add_people(db, "members", [Person(f"nobody{i}@example.org") for i in range(6)])
            blast = create_blast(
                db, settings, name="alert", template="executive-orders", list_names=["members"]
            )
            assert blast.id is not None
            send_now(db, settings, blast.id)
            # Every report came while its delivery was still sending: all asked to retry.
            assert handler.replies == [451] * 6
            assert len(handler.queue) == 6
            handler.retry()  # the relay's queue run, minutes later in real life
        finally:
            relay.stop()
    assert handler.queue == []
    assert handler.replies[6:] == [250] * 6
    with db.session() as session:
        rows = session.exec(
            select(Supporter.email, Supporter.status, Delivery.state)
            .join(Delivery, col(Delivery.supporter_id) == Supporter.id)
            .where(Delivery.blast_id == blast.id)
        ).all()
    bounced = {email for email, _, state in rows if state is DeliveryState.BOUNCED}
    stopped = {email for email, status, _ in rows if status is SupporterStatus.BOUNCED}
    nobody = {f"nobody{i}@example.org" for i in range(6)}
    assert bounced == stopped == nobody  # the log and the list agree
    report = blast_report(db, blast.id)
    assert (report["bounced"], report["sent"]) == (6, 4)  # and so does the report
    assert len(events(db, "delivery.bounced")) == 6


def test_an_import_leaves_a_report_about_a_sending_delivery_for_the_next_import(
    sqlite_db: Database, tmp_path: Path
) -> None:
    db = sqlite_db
    smtp = SmtpTestServer()
    smtp.start()
    try:
        settings = make_settings(
            smtp_port=smtp.port, sender={"verp": True, "return_path": "bounces@example.org"}
        )
        add_people(db, "members", people(2))
        sent = send_blast(db, settings, smtp)
    finally:
        smtp.stop()
    first = sent["p1@example.org"]
    with db.session() as session:  # as if the sender had not yet recorded its outcome
        row = session.get(Delivery, first.delivery_id)
        assert row is not None
        row.state = DeliveryState.SENDING
        session.add(row)
    box = mailbox.mbox(tmp_path / "bounces.mbox")
    box.add(dsn(to=first.return_path, recipient=first.email))
    box.close()
    result = import_mailbox(db, settings, tmp_path / "bounces.mbox")
    assert (result.messages, result.too_early, sum(result.outcomes.values())) == (1, 1, 0)
    assert events(db) == []  # nothing recorded, not even the fingerprint
    with db.session() as session:
        row = session.get(Delivery, first.delivery_id)
        assert row is not None
        row.state = DeliveryState.SENT  # the sender's write lands
        session.add(row)
    again = import_mailbox(db, settings, tmp_path / "bounces.mbox")
    assert (again.too_early, dict(again.outcomes)) == (0, {"bounced": 1})
    with db.session() as session:
        row = session.get(Delivery, first.delivery_id)
        supporter = session.get(Supporter, first.supporter_id)
        assert row is not None and supporter is not None
        assert (row.state, supporter.status) == (DeliveryState.BOUNCED, SupporterStatus.BOUNCED)


@pytest.fixture
def sent_two(sqlite_db: Database) -> tuple[Settings, dict[str, Sent]]:
    smtp = SmtpTestServer()
    smtp.start()
    try:
        settings = make_settings(
            smtp_port=smtp.port, sender={"verp": True, "return_path": "bounces@example.org"}
        )
        add_people(sqlite_db, "members", people(2))
        return settings, send_blast(sqlite_db, settings, smtp)
    finally:
        smtp.stop()


def test_a_message_to_many_recipients_is_parsed_once_and_counted_once(
    sqlite_db: Database, sent_two: tuple[Settings, dict[str, Sent]]
) -> None:
    settings, sent = sent_two
    first = sent["p1@example.org"]
    # A 2 MB report: the returned original in full, as a big text part.
    filler = b"--B1\nContent-Type: text/plain\n\n" + (b"y" * 76 + b"\n") * 27_000
    big = dsn(to=first.return_path, recipient=first.email).replace(b"--B1--", filler + b"--B1--")
    assert len(big) > 2_000_000
    with InboundServer(sqlite_db, settings, port=0) as listener:
        started = time.process_time()
        with smtplib.SMTP(listener.host, listener.port, timeout=60) as client:
            client.ehlo("relay.example.net")
            client.mail("")
            replies = [client.rcpt(first.return_path)[0] for _ in range(40)]
            replies += [client.rcpt(f"bounces+x{i}@example.org")[0] for i in range(40)]
            code, text = client.data(crlf(big))
        cpu = time.process_time() - started
    assert code == 250, text
    assert replies[:40] == [250] * 40  # the same recipient again is accepted, and ignored
    assert replies[40:].count(452) == 40 - (MAX_RECIPIENTS - 1)
    outcomes = text.decode().partition("Recorded: ")[2].split(", ")
    assert outcomes == ["bounced"] + ["duplicate"] * (MAX_RECIPIENTS - 1)
    assert len(events(sqlite_db, "delivery.bounced")) == 1
    assert cpu < 10, f"{cpu:.1f} s of CPU for one message"
