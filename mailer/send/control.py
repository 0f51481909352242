"""Organizers' controls over a blast: pause, cancel, requeue what is in doubt.

Each is one transaction with its audit event. A running sender notices a
pause or cancel at its next status check (``sending.control_interval``),
lets in-flight messages finish and stops.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col

from mailer.errors import InvalidState
from mailer.lifecycle import allowed, audit, transition
from mailer.send import shared_rate
from mailer.store import Blast, BlastStatus, Delivery, DeliveryState

CANCELLED_TEXT = "not sent: blast cancelled"


def pause(session: Session, blast: Blast, *, actor: str, now: datetime) -> None:
    if blast.status not in (BlastStatus.SENDING, BlastStatus.SCHEDULED):
        raise InvalidState(
            f"blast {blast.name!r} is {blast.status}; "
            "only a sending or scheduled blast can be paused"
        )
    transition(
        session,
        blast,
        BlastStatus.PAUSED,
        action="blast.paused",
        actor=actor,
        now=now,
        detail={"by": actor},
    )
    blast.last_error = f"paused by {actor}"


def cancel(session: Session, blast: Blast, *, actor: str, now: datetime) -> int:
    """Cancel for good; deliveries not yet sent become ``skipped``. Returns how many."""
    if not allowed(blast.status, BlastStatus.CANCELLED):  # done or cancelled
        raise InvalidState(f"blast {blast.name!r} is {blast.status} already")
    skipped = session.execute(
        update(Delivery)
        .where(
            col(Delivery.blast_id) == blast.id,
            col(Delivery.state).in_((DeliveryState.QUEUED, DeliveryState.DEFERRED)),
        )
        .values(
            state=DeliveryState.SKIPPED,
            worker="",
            reply_text=CANCELLED_TEXT,
            next_attempt_at=None,
            updated_at=now,
        )
    )
    count: int = skipped.rowcount or 0  # type: ignore[attr-defined]
    transition(
        session,
        blast,
        BlastStatus.CANCELLED,
        action="blast.cancelled",
        actor=actor,
        now=now,
        detail={"skipped": count},
    )
    blast.finished_at = now
    assert blast.id is not None
    shared_rate.forget(session, blast.id)  # its senders' rate buckets
    return count


def requeue_unknown(session: Session, blast: Blast, *, actor: str, now: datetime) -> int:
    """Queue the in-doubt deliveries again, on purpose; the blast waits paused for a resume."""
    if blast.status in (BlastStatus.CANCELLED, BlastStatus.DRAFT):
        raise InvalidState(f"blast {blast.name!r} is {blast.status}; nothing to requeue")
    requeued = session.execute(
        update(Delivery)
        .where(col(Delivery.blast_id) == blast.id, col(Delivery.state) == DeliveryState.UNKNOWN)
        .values(
            state=DeliveryState.QUEUED,
            worker="",
            updated_at=now,
            reply_text="requeued by an organizer after being in doubt",
        )
    )
    count: int = requeued.rowcount or 0  # type: ignore[attr-defined]
    detail = {"requeued": count}
    if count and blast.status is not BlastStatus.SENDING:
        transition(
            session,
            blast,
            BlastStatus.PAUSED,
            action="blast.requeued_unknown",
            actor=actor,
            now=now,
            detail=detail,
        )
        blast.finished_at = None
        blast.last_error = f"{count} in-doubt deliveries requeued; resume to send them"
    else:  # a sending blast's senders take them up; nothing requeued changes nothing
        audit(
            session,
            "blast.requeued_unknown",
            actor=actor,
            now=now,
            blast_id=blast.id,
            detail=detail,
        )
    return count


def release(session: Session, blast: Blast, *, actor: str, now: datetime) -> None:
    """Let a paused blast go on: a running service (`mailer run`) resumes sending it.

    The CLI's ``blast resume`` sends in its own process instead; this is for
    the web admin and the API, which leave the sending to the service.
    """
    if blast.status is not BlastStatus.PAUSED:
        raise InvalidState(f"blast {blast.name!r} is {blast.status}; only a paused blast resumes")
    transition(
        session,
        blast,
        BlastStatus.SENDING,
        action="blast.resume_requested",
        actor=actor,
        now=now,
        detail={"by": actor},
    )
    blast.last_error = ""
