"""What the admin pages and the JSON API do to blasts and supporters, in one place.

Each function calls the same code the CLI calls (mailer.blasts, send.control,
schedule.planner, supporters.suppression) with the signed-in user's name as
the actor, so the audit log says who did it. Bad input raises a MailerError
whose message is shown to the user as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlmodel import Session

from mailer.blasts import create_blast, send_test
from mailer.check import gate
from mailer.config import Settings
from mailer.errors import InvalidState, NotFound
from mailer.schedule import planner
from mailer.schedule.times import parse_local, show
from mailer.send import control
from mailer.send.audience import parse_segment
from mailer.store import Blast, Database, Supporter, find_blast
from mailer.supporters.suppression import unsubscribe_supporter

BLAST_ACTIONS = ("pause", "resume", "cancel", "unschedule")


def create(db: Database, settings: Settings, actor: str, fields: dict[str, Any]) -> Blast:
    """A draft blast from form or JSON fields: name, template, lists, cta_url, segment."""
    lists = _names(fields, "lists")
    segment = _names(fields, "segment")
    return create_blast(
        db,
        settings,
        name=str(fields.get("name", "")),
        template=str(fields.get("template", "")).strip(),
        list_names=lists,
        cta_url=str(fields.get("cta_url") or "").strip() or None,
        segment=parse_segment(segment),
        actor=actor,
    )


def _names(fields: dict[str, Any], key: str) -> list[str]:
    """A field given as a list of strings or as one comma-separated string."""
    value = fields.get(key) or []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise InvalidState(f"{key} must be a list of names or a comma-separated string")
    return [str(v) for v in value]


def _change(
    db: Database, ref: str, act: Callable[[Session, Blast, datetime], str], now: datetime
) -> str:
    with db.session() as session:
        blast = find_blast(session, ref)
        return act(session, blast, now)


def blast_action(db: Database, actor: str, ref: str, action: str, *, now: datetime) -> str:
    """pause, resume, cancel or unschedule blast ``ref``; returns what happened."""

    def act(session: Session, blast: Blast, when: datetime) -> str:
        if action == "pause":
            control.pause(session, blast, actor=actor, now=when)
            return f"Blast {blast.name!r} paused."
        if action == "resume":
            control.release(session, blast, actor=actor, now=when)
            return f"Blast {blast.name!r} will go on sending (the running service picks it up)."
        if action == "cancel":
            skipped = control.cancel(session, blast, actor=actor, now=when)
            return f"Blast {blast.name!r} cancelled; {skipped} deliveries not sent."
        if action == "unschedule":
            planner.unschedule(session, blast, actor=actor, now=when)
            return f"Blast {blast.name!r} is a draft again."
        raise NotFound(f"no action {action!r}; one of {', '.join(BLAST_ACTIONS)}")

    return _change(db, ref, act, now)


def schedule(
    db: Database,
    settings: Settings,
    actor: str,
    ref: str,
    *,
    date: str,
    time: str,
    zone: str,
    force: bool,
    now: datetime,
) -> str:
    """Schedule (or reschedule) blast ``ref`` at a wall-clock ``date`` ``time`` in ``zone``."""
    zone_name = zone.strip() or settings.schedule.timezone
    if not date.strip() or not time.strip():
        raise InvalidState("give the date and the time to start")
    moment = parse_local(f"{date.strip()} {time.strip()}", zone_name)
    gate(db, settings, ref, force=force, actor=actor)

    def act(session: Session, blast: Blast, when: datetime) -> str:
        planner.schedule(session, blast, moment, actor=actor, now=when)
        return f"Blast {blast.name!r} scheduled for {show(moment, zone_name)}."

    return _change(db, ref, act, now)


def test_send(db: Database, settings: Settings, actor: str, ref: str, to: str) -> str:
    addresses = [a for a in (part.strip() for part in to.replace(";", ",").split(",")) if a]
    if not addresses:
        raise InvalidState("give at least one address to send the test to")
    results = send_test(db, settings, ref, addresses, actor=actor)
    return "; ".join(f"{address}: {outcome.code} {outcome.text}" for address, outcome in results)


def unsubscribe(db: Database, actor: str, supporter_id: int, *, reason: str, now: datetime) -> str:
    with db.session() as session:
        supporter = session.get(Supporter, supporter_id)
        if supporter is None:
            raise NotFound(f"no supporter {supporter_id}")
        changed = unsubscribe_supporter(
            session, supporter, actor=actor, reason=reason or "by an admin", now=now
        )
        email, status = supporter.email, supporter.status
    if not changed:
        return f"{email} is {status} already; nothing changed."
    return f"{email} is unsubscribed."
