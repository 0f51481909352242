"""Review and undo: supporters stopped by bounces, the report that decided, and the way back.

:func:`stopped_by_bounces` lists supporters whose status is ``bounced``, each
with the ``supporter.bounced`` event that stopped them and its evidence (the
rule of :mod:`mailer.inbound.verdict` that decided, the status, the remote
server's words, the report's fingerprint). :func:`undo_bounces` makes the
ones a filter selects active again, recording ``supporter.bounce_undone``
with the event it undoes, so a classifier fix can repair an old mistake and
the audit log still tells the whole story. A supporter whose status changed
since (unsubscribed, complained) is never touched. Soft bounces recorded
before an undo no longer count toward the soft-bounce limit (see
:mod:`mailer.inbound.apply`).

Both are what ``mailer bounces review`` calls, and what an admin page would.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from mailer.lifecycle import audit
from mailer.store import Database, Event, Supporter, SupporterStatus
from mailer.store.models import utcnow

SUPPORTER_BOUNCED = "supporter.bounced"
BOUNCE_UNDONE = "supporter.bounce_undone"


@dataclass(frozen=True)
class Stopped:
    """One supporter stopped by bounces, and the report that decided it."""

    supporter_id: int
    email: str
    stopped_at: datetime | None
    event_id: int  # the supporter.bounced event
    reason: str  # "hard bounce" or "soft bounce limit"
    rule: str  # the classifier's rule, e.g. "status:5.1.1", "words:no-mailbox"
    status: str  # the enhanced status of the report
    diagnostic: str  # the remote server's words
    blast_id: int | None
    delivery_id: int | None
    fingerprint: str  # names the report (inbound message)


@dataclass(frozen=True)
class Selection:
    """Which stopped supporters: by the rule that decided (exact, or a prefix ending
    in ":" such as ``"words:"``) and by when they were stopped (``since`` inclusive,
    ``until`` exclusive)."""

    rule: str = ""
    since: datetime | None = None
    until: datetime | None = None

    @property
    def empty(self) -> bool:
        return not self.rule and self.since is None and self.until is None

    def matches(self, item: Stopped) -> bool:
        if self.rule:
            exact = item.rule == self.rule
            if not (exact or (self.rule.endswith(":") and item.rule.startswith(self.rule))):
                return False
        at = item.stopped_at
        if self.since is not None and (at is None or at < self.since):
            return False
        return not (self.until is not None and (at is None or at >= self.until))


def _stopped(session: Session, selection: Selection) -> list[Stopped]:
    rows = session.exec(
        select(Event, Supporter.email)
        .join(Supporter, col(Supporter.id) == Event.supporter_id)
        .where(Event.action == SUPPORTER_BOUNCED, Supporter.status == SupporterStatus.BOUNCED)
        .order_by(col(Event.id))
    ).all()
    latest: dict[int, Stopped] = {}
    for event, email in rows:
        assert event.id is not None and event.supporter_id is not None
        detail: dict[str, Any] = event.detail or {}
        evidence: dict[str, Any] = detail.get("evidence") or {}
        latest[event.supporter_id] = Stopped(
            supporter_id=event.supporter_id,
            email=email,
            stopped_at=event.at,
            event_id=event.id,
            reason=str(detail.get("reason", "")),
            rule=str(evidence.get("rule", "")),
            status=str(evidence.get("status", "")),
            diagnostic=str(evidence.get("diagnostic", "")),
            blast_id=event.blast_id,
            delivery_id=event.delivery_id,
            fingerprint=str(detail.get("inbound", "")),
        )
    return [item for item in latest.values() if selection.matches(item)]


def stopped_by_bounces(db: Database, selection: Selection | None = None) -> list[Stopped]:
    """Supporters now ``bounced``, with the report that stopped each (oldest first)."""
    with db.session() as session:
        return _stopped(session, selection or Selection())


def undo_bounces(
    db: Database,
    selection: Selection,
    *,
    actor: str,
    now: datetime | None = None,
) -> list[Stopped]:
    """Make the supporters ``selection`` picks active again, each with its audit event.

    Refuses an empty selection (ValueError): undoing every bounce ever is not a
    repair. Returns the supporters brought back.
    """
    if selection.empty:
        raise ValueError("choose a rule or a time range to undo")
    at = now or utcnow()
    with db.session() as session:
        chosen = _stopped(session, selection)
        for item in chosen:
            supporter = session.exec(
                select(Supporter).where(Supporter.id == item.supporter_id).with_for_update()
            ).one()
            if supporter.status is not SupporterStatus.BOUNCED:
                continue
            supporter.status = SupporterStatus.ACTIVE
            supporter.status_changed_at = at
            supporter.updated_at = at
            session.add(supporter)
            audit(
                session,
                BOUNCE_UNDONE,
                actor=actor,
                now=at,
                supporter_id=item.supporter_id,
                blast_id=item.blast_id,
                delivery_id=item.delivery_id,
                detail={
                    "undoes": item.event_id,
                    "reason": item.reason,
                    "rule": item.rule,
                    "selection": {
                        "rule": selection.rule,
                        "since": selection.since.isoformat() if selection.since else None,
                        "until": selection.until.isoformat() if selection.until else None,
                    },
                },
            )
    return chosen
