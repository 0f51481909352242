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
from mailer.send import shared_rate
from mailer.store import Blast, BlastStatus, Delivery, DeliveryState, Event

CANCELLED_TEXT = "not sent: blast cancelled"


def pause(session: Session, blast: Blast, *, actor: str, now: datetime) -> None:
    if blast.status not in (BlastStatus.SENDING, BlastStatus.SCHEDULED):
        raise InvalidState(
            f"blast {blast.name!r} is {blast.status}; "
            "only a sending or scheduled blast can be paused"
        )
    blast.status = BlastStatus.PAUSED
    blast.last_error = f"paused by {actor}"
    session.add(blast)
    session.add(
        Event(at=now, actor=actor, action="blast.paused", blast_id=blast.id, detail={"by": actor})
    )


def cancel(session: Session, blast: Blast, *, actor: str, now: datetime) -> int:
    """Cancel for good; deliveries not yet sent become ``skipped``. Returns how many."""
    if blast.status in (BlastStatus.DONE, BlastStatus.CANCELLED):
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
    blast.status = BlastStatus.CANCELLED
    blast.finished_at = now
    session.add(blast)
    assert blast.id is not None
    shared_rate.forget(session, blast.id)  # its senders' rate buckets
    count: int = skipped.rowcount or 0  # type: ignore[attr-defined]
    session.add(
        Event(
            at=now,
            actor=actor,
            action="blast.cancelled",
            blast_id=blast.id,
            detail={"skipped": count},
        )
    )
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
    if count and blast.status is not BlastStatus.SENDING:
        blast.status = BlastStatus.PAUSED
        blast.finished_at = None
        blast.last_error = f"{count} in-doubt deliveries requeued; resume to send them"
        session.add(blast)
    session.add(
        Event(
            at=now,
            actor=actor,
            action="blast.requeued_unknown",
            blast_id=blast.id,
            detail={"requeued": count},
        )
    )
    return count


def release(session: Session, blast: Blast, *, actor: str, now: datetime) -> None:
    """Let a paused blast go on: a running service (`mailer run`) resumes sending it.

    The CLI's ``blast resume`` sends in its own process instead; this is for
    the web admin and the API, which leave the sending to the service.
    """
    if blast.status is not BlastStatus.PAUSED:
        raise InvalidState(f"blast {blast.name!r} is {blast.status}; only a paused blast resumes")
    blast.status = BlastStatus.SENDING
    blast.last_error = ""
    session.add(blast)
    session.add(
        Event(
            at=now,
            actor=actor,
            action="blast.resume_requested",
            blast_id=blast.id,
            detail={"by": actor},
        )
    )
