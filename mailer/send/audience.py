"""The audience snapshot: one delivery row per recipient, made when a blast starts.

One set-based ``INSERT ... SELECT`` copies the active members of the blast's
lists into ``delivery``; ``ON CONFLICT DO NOTHING`` on the unique
(blast_id, supporter_id) pair makes a second snapshot (a restart, a resume)
add nobody twice. A supporter on several of the blast's lists appears once
(``DISTINCT``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, literal
from sqlalchemy import select as sa_select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from mailer.store.models import (
    BlastList,
    Delivery,
    DeliveryState,
    Membership,
    Supporter,
    SupporterStatus,
    UTCDateTime,
)


def snapshot_audience(session: Session, blast_id: int, now: datetime, *, dialect: str) -> int:
    """Create the queued deliveries of ``blast_id``; return how many were added."""
    audience = (
        sa_select(
            literal(blast_id).label("blast_id"),
            col(Supporter.id),
            literal(DeliveryState.QUEUED.value).label("state"),
            literal(0).label("attempts"),
            literal(now, UTCDateTime()).label("created_at"),
            literal(now, UTCDateTime()).label("updated_at"),
        )
        .distinct()
        .join(Membership, col(Membership.supporter_id) == Supporter.id)
        .join(BlastList, col(BlastList.list_id) == Membership.list_id)
        .where(col(BlastList.blast_id) == blast_id, col(Supporter.status) == SupporterStatus.ACTIVE)
        .order_by(col(Supporter.id))
    )
    insert = sqlite_insert if dialect == "sqlite" else pg_insert
    before = _count(session, blast_id)
    stmt = insert(Delivery).from_select(
        ["blast_id", "supporter_id", "state", "attempts", "created_at", "updated_at"], audience
    )
    session.execute(stmt.on_conflict_do_nothing(index_elements=["blast_id", "supporter_id"]))
    return _count(session, blast_id) - before


def _count(session: Session, blast_id: int) -> int:
    return session.exec(
        select(func.count()).select_from(Delivery).where(Delivery.blast_id == blast_id)
    ).one()
