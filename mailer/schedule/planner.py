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

from sqlmodel import Session, col, select

from mailer.errors import InvalidState
from mailer.lifecycle import transition, transition_where
from mailer.send.audience import snapshot_of
from mailer.store import Blast, BlastStatus

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
    transition(
        session,
        blast,
        BlastStatus.SCHEDULED,
        action="blast.scheduled",
        actor=actor,
        now=now,
        detail={"at": at.isoformat()},
    )
    blast.scheduled_at = at
    blast.last_error = ""


def unschedule(session: Session, blast: Blast, *, actor: str, now: datetime) -> None:
    if blast.status is not BlastStatus.SCHEDULED:
        raise InvalidState(f"blast {blast.name!r} is {blast.status}, not scheduled")
    transition(session, blast, BlastStatus.DRAFT, action="blast.unscheduled", actor=actor, now=now)
    blast.scheduled_at = None


def claim_start(session: Session, blast_id: int, *, action: str, actor: str, now: datetime) -> bool:
    """``scheduled`` → ``sending`` in one statement, recorded as ``action``; False if
    someone else started it."""
    event = transition_where(
        session,
        blast_id,
        BlastStatus.SCHEDULED,
        BlastStatus.SENDING,
        action=action,
        actor=actor,
        now=now,
    )
    return event is not None


def start_due(session: Session, blast_id: int, *, now: datetime, dialect: str, actor: str) -> bool:
    """Start a due blast for workers to send: ``scheduled`` → ``sending`` with its audience.

    What a scheduler that does not send (``mailer scheduler``) does when a
    blast is due: the conditional update (one winner), then the audience
    snapshot, in one transaction. A worker (``mailer worker``) picks the blast
    up from there. False if someone else started it.
    """
    event = transition_where(
        session,
        blast_id,
        BlastStatus.SCHEDULED,
        BlastStatus.SENDING,
        action="blast.started",
        actor=actor,
        now=now,
        values={"last_error": ""},
    )
    if event is None:
        return False
    blast = session.get(Blast, blast_id)
    assert blast is not None
    added = 0
    if blast.started_at is None:
        added = snapshot_of(session, blast, now, dialect=dialect)
        blast.started_at = now
        session.add(blast)
    event.detail = {"recipients": added, "by": "scheduler"}
    return True


def mark_missed(session: Session, blast_id: int, reason: str, *, now: datetime) -> bool:
    blast = session.get(Blast, blast_id)
    if blast is None or blast.status is not BlastStatus.SCHEDULED:
        return False
    transition(
        session,
        blast,
        BlastStatus.MISSED,
        action="blast.missed",
        actor="service",
        now=now,
        detail={"reason": reason},
    )
    blast.last_error = reason
    return True


def place_follow_ups(session: Session, *, now: datetime) -> list[Blast]:
    """Give waiting follow-ups their time once their original has finished.

    A follow-up of a cancelled blast goes back to draft instead, with the reason.
    """
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
            reason = "the original blast was cancelled"
            transition(
                session,
                follow_up,
                BlastStatus.DRAFT,
                action="blast.unscheduled",
                actor="service",
                now=now,
                detail={"reason": reason},
            )
            follow_up.last_error = reason
        else:
            follow_up.scheduled_at = original.finished_at + timedelta(
                seconds=follow_up.follow_up_after or 0
            )
            placed.append(follow_up)
        session.add(follow_up)
    return placed
