"""The figures of a blast, computed once for the CLI and the web app alike.

Definitions (the same everywhere they are shown):

- ``recipients``: deliveries in the audience snapshot (one per supporter).
- ``sent``: deliveries the relay accepted. ``failed``: permanent failures and
  retries given up. The other delivery states are counted under their names.
- ``clicks_total``: every recorded click on a tracked link of the blast.
- ``clicks_unique``: recipients who clicked at least once.
- ``click_rate``: ``clicks_unique / sent`` (0 when nothing was sent).
- ``unsubscribed``: supporters who unsubscribed through this blast's link.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import distinct, func
from sqlmodel import col, select

from mailer.blasts import blast_lists, find_blast
from mailer.send.engine import delivery_counts
from mailer.store import Click, Database, Event

UNSUBSCRIBE_ACTION = "supporter.unsubscribed"


def blast_report(db: Database, ref: str | int) -> dict[str, Any]:
    with db.session() as session:
        blast = find_blast(session, ref)
        assert blast.id is not None
        lists = [lst.name for lst in blast_lists(session, blast.id)]
        clicks_total, clicks_unique = session.exec(
            select(func.count(), func.count(distinct(col(Click.delivery_id)))).where(
                Click.blast_id == blast.id
            )
        ).one()
        unsubscribed = session.exec(
            select(func.count(distinct(col(Event.supporter_id)))).where(
                Event.blast_id == blast.id, Event.action == UNSUBSCRIBE_ACTION
            )
        ).one()
    counts = delivery_counts(db, blast.id)
    sent = counts["sent"]
    return {
        "blast": blast.name,
        "id": blast.id,
        "status": str(blast.status),
        "template": blast.template,
        "lists": lists,
        "cta_url": blast.cta_url,
        "started_at": blast.started_at.isoformat() if blast.started_at else None,
        "finished_at": blast.finished_at.isoformat() if blast.finished_at else None,
        "recipients": sum(counts.values()),
        **counts,
        "clicks_unique": clicks_unique,
        "clicks_total": clicks_total,
        "click_rate": round(clicks_unique / sent, 4) if sent else 0.0,
        "unsubscribed": unsubscribed,
        "last_error": blast.last_error,
    }
