"""A blast's lifecycle: which status changes exist, and the one way to make them.

Every change of ``blast.status`` goes through :func:`transition` (an ORM
object in hand) or :func:`transition_where` (one conditional UPDATE, for
changes that several processes may race for, such as starting a due blast).
Both check the change against :data:`TRANSITIONS` and write its audit event
in the same transaction, so the table below is the whole truth::

    draft ──schedule──▶ scheduled ──due──▶ sending ──finish──▶ done
      ▲  ◀──unschedule──   │  │  ▲          │  ▲ │
      │                    │  │  └─resume───┤  │ └──pause──▶ paused
      └──start (send now)──┼──┼─────────────┘  └──resume────────┘
                           │  └──miss──▶ missed ──schedule──▶ scheduled
                           └──pause──▶ paused
    any but done/cancelled ──cancel──▶ cancelled
    done, missed ──requeue in-doubt──▶ paused

A blast is born ``draft``; a follow-up moves on to ``scheduled`` at once
(with no time until its original finishes), and goes back to ``draft`` if
the original is cancelled.

A same-status "transition" (``sending`` → ``sending`` when a sender joins or
resumes, ``scheduled`` → ``scheduled`` when rescheduled) is allowed where
listed: it records what happened without changing the status.

Events that are not status changes (``blast.created``, ``blast.checks_overridden``
…) are written with :func:`audit`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col

from mailer.errors import InvalidState
from mailer.store import Blast, BlastStatus, Event

_D, _SC, _SE, _P, _DN, _C, _M = (
    BlastStatus.DRAFT,
    BlastStatus.SCHEDULED,
    BlastStatus.SENDING,
    BlastStatus.PAUSED,
    BlastStatus.DONE,
    BlastStatus.CANCELLED,
    BlastStatus.MISSED,
)

#: (from, to) → why the change happens. Anything not listed is refused.
TRANSITIONS: dict[tuple[BlastStatus, BlastStatus], str] = {
    (_D, _SC): "scheduled for a time, or a follow-up waiting for its original",
    (_SC, _SC): "rescheduled",
    (_M, _SC): "a missed blast scheduled again",
    (_SC, _D): "unscheduled, or a follow-up whose original was cancelled",
    (_D, _SE): "started by hand (send now)",
    (_SC, _SE): "due: started by the scheduler, or by hand before its time",
    (_SE, _SE): "a sender resumed or joined a blast already sending",
    (_P, _SE): "resumed",
    (_SC, _M): "its time passed while no service ran, beyond the grace",
    (_SE, _P): "paused by an organizer, or by a sender that cannot go on",
    (_SC, _P): "paused before its time",
    (_M, _P): "in-doubt deliveries requeued",
    (_DN, _P): "in-doubt deliveries requeued after the blast finished",
    (_P, _P): "in-doubt deliveries requeued while paused",
    (_SE, _DN): "every delivery reached a final state",
    (_D, _C): "cancelled",
    (_SC, _C): "cancelled",
    (_SE, _C): "cancelled",
    (_P, _C): "cancelled",
    (_M, _C): "cancelled",
}


def allowed(current: BlastStatus, to: BlastStatus) -> bool:
    return (current, to) in TRANSITIONS


def sources(to: BlastStatus) -> tuple[BlastStatus, ...]:
    """The statuses a blast may be in to move to ``to``."""
    return tuple(src for src, dst in TRANSITIONS if dst is to)


def check(blast: Blast, to: BlastStatus, *, doing: str = "") -> None:
    """Raise :class:`InvalidState` (naming the blast and both statuses) if not allowed."""
    if not allowed(blast.status, to):
        what = doing or f"move to {to}"
        raise InvalidState(f"blast {blast.name!r} is {blast.status}; it cannot {what}")


def audit(
    session: Session,
    action: str,
    *,
    actor: str,
    now: datetime,
    blast_id: int | None = None,
    supporter_id: int | None = None,
    delivery_id: int | None = None,
    detail: dict[str, Any] | None = None,
) -> Event:
    """Add one audit event to the session (committed with the caller's transaction)."""
    event = Event(
        at=now,
        actor=actor,
        action=action,
        blast_id=blast_id,
        supporter_id=supporter_id,
        delivery_id=delivery_id,
        detail=detail or {},
    )
    session.add(event)
    return event


def transition(
    session: Session,
    blast: Blast,
    to: BlastStatus,
    *,
    action: str,
    actor: str,
    now: datetime,
    detail: dict[str, Any] | None = None,
    doing: str = "",
) -> None:
    """Move ``blast`` to ``to`` and record ``action``; refuse a change not in the table.

    ``doing`` words the refusal ("be scheduled", "be sent again") for the
    organizer who asked.
    """
    check(blast, to, doing=doing)
    blast.status = to
    session.add(blast)
    audit(session, action, actor=actor, now=now, blast_id=blast.id, detail=detail)


def transition_where(
    session: Session,
    blast_id: int,
    current: BlastStatus,
    to: BlastStatus,
    *,
    action: str,
    actor: str,
    now: datetime,
    detail: dict[str, Any] | None = None,
    values: dict[str, Any] | None = None,
) -> Event | None:
    """``current`` → ``to`` as one conditional UPDATE; None if the blast was not ``current``.

    For changes several processes race for: exactly one of them wins, and
    only the winner's event is written. ``values`` are more columns of the
    blast set by the same UPDATE (such as ``last_error``). The winner gets its
    event back, to complete the detail with what it learns after winning
    (the audience snapshot's size, say).
    """
    if not allowed(current, to):
        raise InvalidState(f"a blast cannot go from {current} to {to}")
    result = session.execute(
        update(Blast)
        .where(col(Blast.id) == blast_id, col(Blast.status) == current)
        .values(**(values or {}), status=to)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return None
    return audit(session, action, actor=actor, now=now, blast_id=blast_id, detail=detail)
