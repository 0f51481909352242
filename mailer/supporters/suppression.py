"""Changing whether a supporter may be mailed: unsubscribe (and later bounce, complaint).

A status change is one transaction with its audit event. It takes effect for
every later message at once, because the sender checks the status at the
moment it builds each message.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from mailer.store import Delivery, Event, Supporter, SupporterStatus

UNSUBSCRIBED = "supporter.unsubscribed"


def unsubscribe_delivery(session: Session, delivery: Delivery, *, via: str, now: datetime) -> bool:
    """Unsubscribe the supporter ``delivery`` went to; False when they already were."""
    supporter = session.get(Supporter, delivery.supporter_id)
    assert supporter is not None
    if supporter.status == SupporterStatus.UNSUBSCRIBED:
        return False
    previous = supporter.status
    supporter.status = SupporterStatus.UNSUBSCRIBED
    supporter.status_changed_at = now
    supporter.updated_at = now
    session.add(supporter)
    session.add(
        Event(
            at=now,
            actor="supporter",
            action=UNSUBSCRIBED,
            blast_id=delivery.blast_id,
            supporter_id=supporter.id,
            delivery_id=delivery.id,
            detail={"via": via, "previous": str(previous)},
        )
    )
    return True
