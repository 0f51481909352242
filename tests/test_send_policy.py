"""The sender's pure rules: retry delays, and the row each kind of outcome writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailer.compose.alert import Recipient
from mailer.config import SendingSettings
from mailer.send.outcome import Outcome, Verdict, classify, connection_lost
from mailer.send.policy import (
    REPLY_TEXT_MAX,
    Claimed,
    outcome_row,
    retry_delay,
    skipped_row,
    unbuildable_row,
)
from mailer.store import DeliveryState, SupporterStatus

NOW = datetime(2025, 1, 27, 12, 0, tzinfo=UTC)
RULES = SendingSettings(max_attempts=5, retry_base=300.0, max_retry_age=172800.0)


def claimed(
    attempts: int = 0,
    *,
    age: timedelta | None = timedelta(minutes=1),
    status: SupporterStatus = SupporterStatus.ACTIVE,
    suppressed: bool = False,
    email: str = "ana@Example.ORG",
) -> Claimed:
    return Claimed(
        delivery_id=7,
        attempts=attempts,
        created_at=None if age is None else NOW - age,
        status=status,
        recipient=Recipient(email=email, first_name="Ana"),
        suppressed=suppressed,
    )


def test_retry_delay_grows_with_jitter() -> None:
    assert retry_delay(1, 300, rng=lambda: 0.5) == timedelta(seconds=300)
    assert retry_delay(3, 300, rng=lambda: 0.5) == timedelta(seconds=1200)
    assert retry_delay(2, 300, rng=lambda: 0.0) == timedelta(seconds=480)
    assert retry_delay(2, 300, rng=lambda: 1.0) == timedelta(seconds=720)


@given(
    attempts=st.integers(min_value=0, max_value=20),
    base=st.floats(min_value=1.0, max_value=3600.0),
    jitter=st.floats(min_value=0.0, max_value=1.0),
)
def test_retry_delay_is_within_20_percent_of_the_doubled_base(
    attempts: int, base: float, jitter: float
) -> None:
    nominal = base * 2 ** max(0, attempts - 1)
    delay = retry_delay(attempts, base, rng=lambda: jitter).total_seconds()
    assert nominal * 0.8 - 1e-6 <= delay <= nominal * 1.2 + 1e-6
    later = retry_delay(attempts + 1, base, rng=lambda: jitter).total_seconds()
    assert later >= delay  # never sooner after one more failure


def test_claimed_knows_its_domain_and_whether_it_may_be_sent() -> None:
    assert claimed().domain == "example.org"
    assert claimed().sendable
    assert not claimed(status=SupporterStatus.UNSUBSCRIBED).sendable
    assert not claimed(suppressed=True).sendable


def test_an_accepted_message_is_sent_with_its_reply_and_time() -> None:
    row = outcome_row(claimed(1), classify(250, "2.0.0 OK"), "<m@x>", now=NOW, rules=RULES)
    assert row.delivery_id == 7 and row.state is DeliveryState.SENT
    assert row.attempts == 2 and row.reply_code == 250 and row.reply_text == "2.0.0 OK"
    assert row.message_id == "<m@x>"
    assert row.sent_at == NOW and row.updated_at == NOW and row.next_attempt_at is None


def test_a_permanent_refusal_fails_at_once() -> None:
    row = outcome_row(claimed(), classify(550, "5.1.1 No such user"), "<m@x>", now=NOW, rules=RULES)
    assert row.state is DeliveryState.FAILED and row.reply_code == 550
    assert row.reply_text == "5.1.1 No such user"
    assert row.next_attempt_at is None and row.sent_at is None


def test_a_temporary_failure_is_deferred_by_the_retry_delay() -> None:
    row = outcome_row(
        claimed(2), classify(451, "4.3.0 try again"), "<m@x>", now=NOW, rules=RULES, rng=lambda: 0.5
    )
    assert row.state is DeliveryState.DEFERRED and row.attempts == 3
    assert row.next_attempt_at == NOW + timedelta(seconds=1200)  # 300 s doubled twice
    assert row.reply_text == "4.3.0 try again" and row.sent_at is None


def test_the_last_allowed_attempt_fails_with_the_last_reply() -> None:
    row = outcome_row(claimed(4), connection_lost("timed out"), "<m@x>", now=NOW, rules=RULES)
    assert row.state is DeliveryState.FAILED and row.attempts == 5
    assert row.reply_text == "gave up after 5 attempts; last reply: timed out"
    assert row.reply_code is None and row.next_attempt_at is None


def test_a_delivery_retried_too_long_fails() -> None:
    old = claimed(1, age=timedelta(days=2, seconds=1))
    row = outcome_row(old, classify(421, "4.7.0 slow down"), "<m@x>", now=NOW, rules=RULES)
    assert row.state is DeliveryState.FAILED
    assert (
        row.reply_text == "gave up after 2 days, 0:00:01 of retrying; last reply: 4.7.0 slow down"
    )


def test_long_replies_are_cut_to_the_column() -> None:
    row = outcome_row(claimed(), classify(550, "x" * 5000), "<m@x>", now=NOW, rules=RULES)
    assert len(row.reply_text) == REPLY_TEXT_MAX
    unbuildable = unbuildable_row(claimed(), ValueError("y" * 5000), now=NOW)
    assert len(unbuildable.reply_text) == REPLY_TEXT_MAX


def test_rows_are_frozen() -> None:
    row = skipped_row(claimed(), now=NOW)
    with pytest.raises(AttributeError):
        row.state = DeliveryState.SENT  # type: ignore[misc]


@pytest.mark.parametrize(
    ("status", "suppressed", "text"),
    [
        (SupporterStatus.UNSUBSCRIBED, False, "not sent: supporter is unsubscribed at build time"),
        (SupporterStatus.BOUNCED, False, "not sent: supporter is bounced at build time"),
        (SupporterStatus.ACTIVE, True, "not sent: the address is on the suppression list"),
    ],
)
def test_a_skipped_row_says_why_and_counts_no_attempt(
    status: SupporterStatus, suppressed: bool, text: str
) -> None:
    row = skipped_row(claimed(3, status=status, suppressed=suppressed), now=NOW)
    assert row.state is DeliveryState.SKIPPED and row.reply_text == text
    assert row.attempts == 3 and row.reply_code is None and row.message_id == ""
    assert row.sent_at is None and row.next_attempt_at is None and row.updated_at == NOW


def test_an_unbuildable_message_fails_alone_without_an_attempt() -> None:
    row = unbuildable_row(claimed(1), ValueError("bad address"), now=NOW)
    assert row.state is DeliveryState.FAILED and row.attempts == 1
    assert row.reply_text == "not sent: the message could not be built: bad address"
    assert row.reply_code is None and row.message_id == "" and row.sent_at is None


outcomes = st.builds(
    Outcome,
    verdict=st.sampled_from(Verdict),
    code=st.one_of(st.none(), st.integers(min_value=200, max_value=599)),
    text=st.text(max_size=1200),
)


@given(
    outcome=outcomes,
    attempts=st.integers(min_value=0, max_value=10),
    age=st.one_of(st.none(), st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=5))),
    max_attempts=st.integers(min_value=1, max_value=8),
    jitter=st.floats(min_value=0.0, max_value=1.0),
)
def test_every_outcome_row_is_definite(
    outcome: Outcome,
    attempts: int,
    age: timedelta | None,
    max_attempts: int,
    jitter: float,
) -> None:
    """Invariant 3: every attempt ends in one definite state, and its fields agree with it."""
    rules = SendingSettings(max_attempts=max_attempts, retry_base=60.0, max_retry_age=86400.0)
    item = claimed(attempts, age=age)
    row = outcome_row(item, outcome, "<m@x>", now=NOW, rules=rules, rng=lambda: jitter)
    assert row.attempts == attempts + 1 and row.updated_at == NOW
    assert row.reply_code == outcome.code and len(row.reply_text) <= REPLY_TEXT_MAX
    assert (row.sent_at is not None) == (row.state is DeliveryState.SENT)
    assert (row.next_attempt_at is not None) == (row.state is DeliveryState.DEFERRED)
    if outcome.verdict is Verdict.SENT:
        assert row.state is DeliveryState.SENT and row.reply_text == outcome.text[:REPLY_TEXT_MAX]
    elif outcome.verdict is Verdict.FAILED:
        assert row.state is DeliveryState.FAILED
    else:
        too_old = age is not None and age.total_seconds() >= rules.max_retry_age
        gives_up = attempts + 1 >= max_attempts or too_old
        assert row.state is (DeliveryState.FAILED if gives_up else DeliveryState.DEFERRED)
        if gives_up:
            assert row.reply_text.startswith("gave up after ")
        else:
            assert row.next_attempt_at is not None and row.next_attempt_at > NOW
