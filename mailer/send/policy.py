"""The sender's rules, pure: a claimed delivery, when to retry, what each attempt records.

Nothing here touches the database, the network or a clock of its own: the
time comes in as ``now``, the randomness of the retry jitter as ``rng``. The
ledger (:mod:`mailer.send.ledger`) writes the rows built here; the run
(:mod:`mailer.send.run`) decides which one an attempt gets.

An attempt ends in one :class:`OutcomeRow`:

- the relay answered (:func:`outcome_row`): ``sent``; ``failed`` for good;
  or, for a temporary failure, ``deferred`` until :func:`retry_delay` has
  passed — unless ``max_attempts`` or ``max_retry_age`` is reached, when it
  is ``failed`` with the last reply;
- the supporter is no longer active, or the address is suppressed, when the
  message is built (:func:`skipped_row`): ``skipped``, never sent;
- this recipient's data cannot make a valid message (:func:`unbuildable_row`):
  ``failed`` alone, without an attempt.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from mailer.compose.alert import Recipient
from mailer.compose.message import domain_of
from mailer.config import SendingSettings
from mailer.send.outcome import Outcome, Verdict
from mailer.store.models import DeliveryState, SupporterStatus

REPLY_TEXT_MAX = 1000  # characters of a reply kept (the column's length)

# ``[sending] connections = 0``: this many SMTP connections from the host in all, shared
# by the blast's sender processes, at most AUTO_CONNECTIONS_MAX each: 16 each for one or
# two processes, 8 for four, 4 for eight. Below Postfix's default limit of 50 connections
# from one client (smtpd_client_connection_count_limit), with room for a second blast.
AUTO_CONNECTIONS_PER_HOST = 32
AUTO_CONNECTIONS_MAX = 16


def connections_for(configured: int, processes: int) -> int:
    """SMTP connections each of ``processes`` sender processes opens.

    ``configured`` is ``[sending] connections``: a positive number is taken as
    it is; 0 shares :data:`AUTO_CONNECTIONS_PER_HOST` over the processes, at most
    :data:`AUTO_CONNECTIONS_MAX` and at least 1 each.
    """
    if configured > 0:
        return configured
    return max(1, min(AUTO_CONNECTIONS_MAX, AUTO_CONNECTIONS_PER_HOST // max(1, processes)))


@dataclass(frozen=True)
class Claimed:
    """A delivery this sender has claimed, with what its message is built from."""

    delivery_id: int
    attempts: int  # attempts made before this one
    created_at: datetime | None  # when the delivery was queued: the age of its retries
    status: SupporterStatus  # the supporter's status when claimed
    recipient: Recipient
    suppressed: bool = False  # the address is on the suppression list

    @property
    def sendable(self) -> bool:
        return self.status is SupporterStatus.ACTIVE and not self.suppressed

    @property
    def domain(self) -> str:
        return domain_of(self.recipient.email)


@dataclass(frozen=True, slots=True)
class OutcomeRow:
    """What one delivery row becomes when its attempt is over; written by the ledger."""

    delivery_id: int
    state: DeliveryState
    attempts: int
    reply_code: int | None  # None when no server replied (connection failed, not attempted)
    reply_text: str  # at most REPLY_TEXT_MAX characters
    message_id: str  # "" when no message went out
    next_attempt_at: datetime | None  # set exactly when the state is ``deferred``
    sent_at: datetime | None  # set exactly when the state is ``sent``
    updated_at: datetime


@dataclass(frozen=True)
class StopReason:
    """Why a run stopped before its blast was done, and what that does to the blast."""

    reason: str
    pause_blast: bool = False  # leave the blast paused (signal, down relay, template error)
    if_alone: bool = False  # ... but only when no other sender is on the blast (signal)
    lease_lost: bool = False  # other senders took over what this one held: touch nothing


def retry_delay(attempts: int, base: float, rng: Callable[[], float] = random.random) -> timedelta:
    """``base`` seconds doubled per earlier attempt, with ±20% jitter so retries spread out."""
    return timedelta(seconds=base * (1 << max(0, attempts - 1)) * (0.8 + 0.4 * rng()))


def outcome_row(
    item: Claimed,
    outcome: Outcome,
    message_id: str,
    *,
    now: datetime,
    rules: SendingSettings,
    rng: Callable[[], float] = random.random,
) -> OutcomeRow:
    """The row of an attempt the relay answered (or the connection failed) with ``outcome``.

    A temporary failure is retried after :func:`retry_delay`; it fails for
    good once ``rules.max_attempts`` attempts are made or the delivery is
    ``rules.max_retry_age`` seconds old, keeping the last reply.
    """
    attempts = item.attempts + 1
    state = outcome.state
    next_at = None
    text = outcome.text
    if outcome.verdict is Verdict.RETRY:
        age = now - item.created_at if item.created_at else timedelta(0)
        if attempts >= rules.max_attempts:
            state = DeliveryState.FAILED
            text = f"gave up after {attempts} attempts; last reply: {outcome.text}"
        elif age.total_seconds() >= rules.max_retry_age:
            state = DeliveryState.FAILED
            text = f"gave up after {age} of retrying; last reply: {outcome.text}"
        else:
            next_at = now + retry_delay(attempts, rules.retry_base, rng)
    return OutcomeRow(
        delivery_id=item.delivery_id,
        state=state,
        attempts=attempts,
        reply_code=outcome.code,
        reply_text=text[:REPLY_TEXT_MAX],
        message_id=message_id,
        next_attempt_at=next_at,
        sent_at=now if state is DeliveryState.SENT else None,
        updated_at=now,
    )


def unbuildable_row(item: Claimed, exc: Exception, *, now: datetime) -> OutcomeRow:
    """This recipient's data cannot make a valid message: failed, without an attempt."""
    return OutcomeRow(
        delivery_id=item.delivery_id,
        state=DeliveryState.FAILED,
        attempts=item.attempts,
        reply_code=None,
        reply_text=f"not sent: the message could not be built: {exc}"[:REPLY_TEXT_MAX],
        message_id="",
        next_attempt_at=None,
        sent_at=None,
        updated_at=now,
    )


def skipped_row(item: Claimed, *, now: datetime) -> OutcomeRow:
    """Not sendable when its message was to be built: skipped, saying why."""
    return OutcomeRow(
        delivery_id=item.delivery_id,
        state=DeliveryState.SKIPPED,
        attempts=item.attempts,
        reply_code=None,
        reply_text=(
            "not sent: the address is on the suppression list"
            if item.suppressed
            else f"not sent: supporter is {item.status} at build time"
        ),
        message_id="",
        next_attempt_at=None,
        sent_at=None,
        updated_at=now,
    )
