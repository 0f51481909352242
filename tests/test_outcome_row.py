"""What the sender records for one delivery's outcome (``BlastSender.outcome_row``).

The row written after a relay's reply: the state, the attempt counted, the
reply kept (cut to 1,000 characters), and for a temporary failure either the
time of the next attempt (``retry_base`` doubled per earlier attempt, ±20%)
or, past ``max_attempts`` or ``max_retry_age``, a failure that says why. The
sender's database is never touched: the row is only built here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailer.compose.alert import Recipient
from mailer.config import SendingSettings
from mailer.errors import TransportError
from mailer.send.engine import BlastSender, Claimed
from mailer.send.outcome import Outcome, Verdict
from mailer.send.transport import Transport
from mailer.store import Database, SupporterStatus

NOW = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
SENDING = SendingSettings(max_attempts=3, retry_base=60.0, max_retry_age=3600.0)


def no_transport() -> Transport:
    raise TransportError("outcome_row never sends")


@pytest.fixture
def sender(sqlite_db: Database) -> BlastSender:
    return BlastSender(sqlite_db, no_transport, sending=SENDING, clock=lambda: NOW)


def claimed(attempts: int = 0, age: timedelta = timedelta(0)) -> Claimed:
    return Claimed(
        delivery_id=7,
        attempts=attempts,
        created_at=NOW - age,
        status=SupporterStatus.ACTIVE,
        recipient=Recipient(email="ana@example.org"),
    )


def test_a_sent_message_is_recorded_with_the_reply_and_its_time(sender: BlastSender) -> None:
    row = sender.outcome_row(claimed(), Outcome(Verdict.SENT, 250, "2.0.0 queued"), "<m@x>")
    assert row == {
        "d_id": 7,
        "state": "sent",
        "attempts": 1,
        "reply_code": 250,
        "reply_text": "2.0.0 queued",
        "message_id": "<m@x>",
        "next_attempt_at": None,
        "sent_at": NOW,
        "updated_at": NOW,
    }


def test_a_permanent_failure_is_final_at_once(sender: BlastSender) -> None:
    outcome = Outcome(Verdict.FAILED, 550, "5.1.1 no such user")
    row = sender.outcome_row(claimed(attempts=1), outcome, "<m@x>")
    assert (row["state"], row["attempts"], row["reply_code"]) == ("failed", 2, 550)
    assert row["reply_text"] == "5.1.1 no such user"
    assert row["next_attempt_at"] is None and row["sent_at"] is None


@pytest.mark.parametrize(("attempts", "base_delay"), [(0, 60.0), (1, 120.0)])
def test_a_temporary_failure_is_deferred_with_a_growing_delay(
    sender: BlastSender, attempts: int, base_delay: float
) -> None:
    outcome = Outcome(Verdict.RETRY, 451, "4.3.0 try later")
    row = sender.outcome_row(claimed(attempts=attempts), outcome, "<m@x>")
    assert (row["state"], row["attempts"], row["sent_at"]) == ("deferred", attempts + 1, None)
    assert row["reply_text"] == "4.3.0 try later"
    wait = (row["next_attempt_at"] - NOW).total_seconds()
    assert 0.8 * base_delay <= wait <= 1.2 * base_delay


def test_the_last_allowed_attempt_fails_and_says_why(sender: BlastSender) -> None:
    outcome = Outcome(Verdict.RETRY, 421, "4.7.0 too many connections")
    row = sender.outcome_row(claimed(attempts=2), outcome, "<m@x>")
    assert (row["state"], row["attempts"], row["next_attempt_at"]) == ("failed", 3, None)
    assert row["reply_text"] == ("gave up after 3 attempts; last reply: 4.7.0 too many connections")


def test_a_delivery_retried_for_longer_than_the_retry_age_fails(sender: BlastSender) -> None:
    outcome = Outcome(Verdict.RETRY, None, "connection lost")
    row = sender.outcome_row(claimed(attempts=1, age=timedelta(hours=1)), outcome, "<m@x>")
    assert (row["state"], row["reply_code"], row["next_attempt_at"]) == ("failed", None, None)
    assert row["reply_text"] == "gave up after 1:00:00 of retrying; last reply: connection lost"


def test_a_long_reply_is_cut_to_1000_characters(sender: BlastSender) -> None:
    outcome = Outcome(Verdict.FAILED, 554, "x" * 5000)
    row = sender.outcome_row(claimed(), outcome, "<m@x>")
    assert row["reply_text"] == "x" * 1000
