"""A supporter as the admin pages and the API show them: lists, deliveries, clicks, events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import col, desc, select

from mailer.errors import NotFound
from mailer.report import like_escape
from mailer.store import (
    Blast,
    Click,
    Database,
    Delivery,
    Event,
    Link,
    MailingList,
    Membership,
    Supporter,
)
from mailer.supporters.columns import lookup_form

SHOWN = 200  # the most recent deliveries, clicks and events shown of one supporter
FOUND = 50  # supporters listed for an address prefix


def find_supporters(db: Database, prefix: str) -> list[Supporter]:
    """Supporters whose address starts with ``prefix`` (at most :data:`FOUND`)."""
    escaped = like_escape(lookup_form(prefix))
    with db.session() as session:
        return list(
            session.exec(
                select(Supporter)
                .where(col(Supporter.email).like(f"{escaped}%", escape="\\"))
                .order_by(col(Supporter.email))
                .limit(FOUND)
            )
        )


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def supporter_history(db: Database, supporter_id: int) -> dict[str, Any]:
    """The supporter, their lists, and their latest deliveries, clicks and events.

    Each delivery carries its count of unflagged clicks (link-scanner clicks
    are listed among the clicks, flagged, but not counted).
    """
    with db.session() as session:
        person = session.get(Supporter, supporter_id)
        if person is None:
            raise NotFound(f"no supporter {supporter_id}")
        lists = list(
            session.exec(
                select(MailingList.name)
                .join(Membership, col(Membership.list_id) == MailingList.id)
                .where(Membership.supporter_id == person.id)
                .order_by(MailingList.name)
            )
        )
        deliveries: list[dict[str, Any]] = [
            {
                "delivery": d.id,
                "blast_id": d.blast_id,
                "blast": name,
                "state": str(d.state),
                "reply_code": d.reply_code,
                "reply_text": d.reply_text,
                "sent_at": _iso(d.sent_at),
                "clicks": 0,
            }
            for d, name in session.exec(
                select(Delivery, Blast.name)
                .join(Blast, col(Blast.id) == Delivery.blast_id)
                .where(Delivery.supporter_id == person.id)
                .order_by(desc(col(Delivery.id)))
                .limit(SHOWN)
            )
        ]
        clicks: list[dict[str, Any]] = [
            {
                "at": _iso(c.clicked_at),
                "blast": name,
                "url": url,
                "flagged": c.suspected_bot,
                "delivery": c.delivery_id,
            }
            for c, name, url in session.exec(
                select(Click, Blast.name, Link.url)
                .join(Delivery, col(Delivery.id) == Click.delivery_id)
                .join(Blast, col(Blast.id) == Click.blast_id)
                .join(Link, col(Link.id) == Click.link_id)
                .where(Delivery.supporter_id == person.id)
                .order_by(desc(col(Click.id)))
                .limit(SHOWN)
            )
        ]
        events = [
            {
                "at": _iso(e.at),
                "action": e.action,
                "actor": e.actor,
                "blast_id": e.blast_id,
                "detail": e.detail,
            }
            for e in session.exec(
                select(Event)
                .where(Event.supporter_id == person.id)
                .order_by(desc(col(Event.id)))
                .limit(SHOWN)
            )
        ]
    counted: dict[int, int] = {}
    for click in clicks:
        if not click["flagged"]:
            counted[click["delivery"]] = counted.get(click["delivery"], 0) + 1
    for delivery in deliveries:
        delivery["clicks"] = counted.get(delivery["delivery"], 0)
    return {
        "supporter": person.model_dump(mode="json"),
        "lists": lists,
        "deliveries": deliveries,
        "clicks": clicks,
        "events": events,
    }
