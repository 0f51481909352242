"""Putting blasts on the calendar: schedule, unschedule, follow-ups, missed starts.

The blast row is the truth (``status`` ``scheduled`` and ``scheduled_at`` in
UTC); the running service mirrors it into APScheduler's persistent job store
within ``schedule.poll_interval`` seconds. Starting is one conditional update
(``scheduled`` → ``sending``), so two services can never both start the same
blast.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlalchemy import update
from sqlmodel import Session, col, select

from mailer.errors import InvalidState
from mailer.send.audience import snapshot_of
from mailer.store import Blast, BlastStatus, Event

SCHEDULABLE = (BlastStatus.DRAFT, BlastStatus.SCHEDULED, BlastStatus.MISSED)
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``48h`` or ``2d`` as a timedelta."""
    m = _DURATION.match(text.lower())
    if m is None:
        raise InvalidState(f"cannot read the duration {text!r}; write it like 48h, 30m or 2d")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2)])


def schedule(session: Session, blast: Blast, at: datetime, *, actor: str, now: datetime) -> None:
    if blast.status not in SCHEDULABLE:
        raise InvalidState(f"blast {blast.name!r} is {blast.status}; it cannot be scheduled")
    if at <= now:
        raise InvalidState(f"{at.isoformat(timespec='minutes')} is in the past")
    blast.status = BlastStatus.SCHEDULED
    blast.scheduled_at = at
    blast.last_error = ""
    session.add(blast)
    session.add(
        Event(
            at=now,
            actor=actor,
            action="blast.scheduled",
            blast_id=blast.id,
            detail={"at": at.isoformat()},
        )
    )


def unschedule(session: Session, blast: Blast, *, actor: str, now: datetime) -> None:
    if blast.status is not BlastStatus.SCHEDULED:
        raise InvalidState(f"blast {blast.name!r} is {blast.status}, not scheduled")
    blast.status = BlastStatus.DRAFT
    blast.scheduled_at = None
    session.add(blast)
    session.add(Event(at=now, actor=actor, action="blast.unscheduled", blast_id=blast.id))


def claim_start(session: Session, blast_id: int) -> bool:
    """``scheduled`` → ``sending`` in one statement; False if someone else started it."""
    result = session.execute(
        update(Blast)
        .where(col(Blast.id) == blast_id, col(Blast.status) == BlastStatus.SCHEDULED)
        .values(status=BlastStatus.SENDING)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def start_due(session: Session, blast_id: int, *, now: datetime, dialect: str, actor: str) -> bool:
    """Start a due blast for workers to send: ``scheduled`` → ``sending`` with its audience.

    What a scheduler that does not send (``mailer scheduler``) does when a
    blast is due: the conditional update (one winner), then the audience
    snapshot, in one transaction. A worker (``mailer worker``) picks the blast
    up from there. False if someone else started it.
    """
    if not claim_start(session, blast_id):
        return False
    blast = session.get(Blast, blast_id)
    assert blast is not None
    added = 0
    if blast.started_at is None:
        added = snapshot_of(session, blast, now, dialect=dialect)
        blast.started_at = now
    blast.last_error = ""
    session.add(blast)
    session.add(
        Event(
            at=now,
            actor=actor,
            action="blast.started",
            blast_id=blast_id,
            detail={"recipients": added, "by": "scheduler"},
        )
    )
    return True


def mark_missed(session: Session, blast_id: int, reason: str, *, now: datetime) -> bool:
    blast = session.get(Blast, blast_id)
    if blast is None or blast.status is not BlastStatus.SCHEDULED:
        return False
    blast.status = BlastStatus.MISSED
    blast.last_error = reason
    session.add(blast)
    session.add(
        Event(
            at=now,
            actor="service",
            action="blast.missed",
            blast_id=blast_id,
            detail={"reason": reason},
        )
    )
    return True


def place_follow_ups(session: Session) -> list[Blast]:
    """Give waiting follow-ups their time once their original has finished."""
    waiting = session.exec(
        select(Blast).where(
            Blast.status == BlastStatus.SCHEDULED,
            col(Blast.scheduled_at).is_(None),
            col(Blast.follow_up_of).is_not(None),
        )
    ).all()
    placed = []
    for follow_up in waiting:
        original = session.get(Blast, follow_up.follow_up_of)
        if original is None or original.finished_at is None:
            continue
        if original.status is BlastStatus.CANCELLED:
            follow_up.status = BlastStatus.DRAFT
            follow_up.last_error = "the original blast was cancelled"
        else:
            follow_up.scheduled_at = original.finished_at + timedelta(
                seconds=follow_up.follow_up_after or 0
            )
            placed.append(follow_up)
        session.add(follow_up)
    return placed
