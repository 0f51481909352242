"""The audience snapshot: one delivery row per recipient, made when a blast starts.

One set-based ``INSERT ... SELECT`` copies the active members of the blast's
lists, narrowed by the blast's segment, into ``delivery``; ``ON CONFLICT DO
NOTHING`` on the unique (blast_id, supporter_id) pair makes a second snapshot
(a restart, a resume) add nobody twice. A supporter on several of the blast's
lists appears once (``DISTINCT``). Unsubscribed, bounced and complained
supporters are never in it.

A segment is a small JSON object stored with the blast; every key narrows the
audience (all must match)::

    {"language": ["es"], "region": ["CA", "NY"], "custom": {"county": ["Cook"]}}

``language`` and ``region`` match the supporter's columns; ``custom.<field>``
matches a field of the supporter's imported extra columns. Values are lists
(any of them matches).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Exists, func, literal
from sqlalchemy import select as sa_select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import aliased
from sqlmodel import Session, col, select

from mailer.errors import InvalidState
from mailer.store.models import (
    Blast,
    BlastList,
    Click,
    Delivery,
    DeliveryState,
    Membership,
    Signature,
    Supporter,
    SupporterStatus,
    Suppression,
    UTCDateTime,
)

SEGMENT_KEYS = ("language", "region", "custom")


def parse_segment(terms: list[str]) -> dict[str, Any] | None:
    """``["language=es", "region=CA", "region=NY", "custom.county=Cook"]`` as a segment."""
    if not terms:
        return None
    segment: dict[str, Any] = {}
    for term in terms:
        key, sep, value = term.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            raise InvalidState(f"segment term {term!r} must look like key=value")
        if key.startswith("custom."):
            field = key.removeprefix("custom.")
            segment.setdefault("custom", {}).setdefault(field, []).append(value)
        elif key in ("language", "region"):
            segment.setdefault(key, []).append(value.lower() if key == "language" else value)
        else:
            raise InvalidState(
                f"segment key {key!r} is not known (language, region, custom.<field>)"
            )
    return segment


def segment_filters(segment: dict[str, Any] | None) -> list[ColumnElement[bool]]:
    """The WHERE terms on ``supporter`` that ``segment`` stands for (none without one)."""
    if not segment:
        return []
    filters: list[ColumnElement[bool]] = []
    for key, values in segment.items():
        if key == "language":
            filters.append(col(Supporter.language).in_(values))
        elif key == "region":
            filters.append(col(Supporter.region).in_(values))
        elif key == "custom":
            custom: Any = Supporter.__table__.c.custom  # type: ignore[attr-defined]
            for field, wanted in values.items():
                filters.append(custom[field].as_string().in_([str(v) for v in wanted]))
        else:
            raise InvalidState(f"segment key {key!r} is not known")
    return filters


def suppressed() -> Exists:
    """True for a supporter whose address is on the suppression list."""
    return sa_select(col(Suppression.id)).where(col(Suppression.email) == Supporter.email).exists()


def snapshot_of(session: Session, blast: Blast, now: datetime, *, dialect: str) -> int:
    """Take ``blast``'s audience snapshot as the blast describes it; return how many.

    Its segment, the original of a follow-up, and for a ``no-action``
    follow-up the petition its recipients must not have signed: every start
    of a blast (a sender's, or a scheduler's that leaves the sending to
    workers) goes through here, so they cannot disagree.
    """
    assert blast.id is not None
    return snapshot_audience(
        session,
        blast.id,
        now,
        dialect=dialect,
        segment=blast.segment,
        follow_up_of=blast.follow_up_of,
        not_acted_on=blast.petition_id if blast.follow_up_audience == "no-action" else None,
    )


def snapshot_audience(
    session: Session,
    blast_id: int,
    now: datetime,
    *,
    dialect: str,
    segment: dict[str, Any] | None = None,
    follow_up_of: int | None = None,
    not_acted_on: int | None = None,
) -> int:
    """Create the queued deliveries of ``blast_id``; return how many were added.

    A follow-up's audience is the original's recipients who were sent the alert
    and have not clicked it, computed now (at the follow-up's start); with
    ``not_acted_on`` (a petition id) it is instead those who have not signed
    that petition, by any route (their alert's action page or the public page,
    matched by supporter or address), whether they clicked or not. Like every
    audience it holds active supporters only, so whoever unsubscribed since is
    left out.
    """
    columns = (
        literal(blast_id).label("blast_id"),
        col(Supporter.id),
        literal(DeliveryState.QUEUED.value).label("state"),
        literal(0).label("attempts"),
        literal(now, UTCDateTime()).label("created_at"),
        literal(now, UTCDateTime()).label("updated_at"),
    )
    if follow_up_of is None:
        audience = (
            sa_select(*columns)
            .distinct()
            .join(Membership, col(Membership.supporter_id) == Supporter.id)
            .join(BlastList, col(BlastList.list_id) == Membership.list_id)
            .where(col(BlastList.blast_id) == blast_id)
        )
    else:
        original = aliased(Delivery)
        clicked = (
            sa_select(col(Click.id)).where(col(Click.delivery_id) == col(original.id)).exists()
        )
        if not_acted_on is not None:
            left_out = (
                sa_select(col(Signature.id))
                .where(
                    col(Signature.petition_id) == not_acted_on,
                    (col(Signature.supporter_id) == Supporter.id)
                    | (col(Signature.email) == Supporter.email),
                )
                .exists()
            )
        else:
            left_out = clicked
        audience = (
            sa_select(*columns)
            .join(original, col(original.supporter_id) == Supporter.id)
            .where(
                col(original.blast_id) == follow_up_of,
                col(original.state) == DeliveryState.SENT,
                ~left_out,
            )
        )
    audience = audience.where(
        col(Supporter.status) == SupporterStatus.ACTIVE,
        ~suppressed(),
        *segment_filters(segment),
    ).order_by(col(Supporter.id))
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


def open_bound(session: Session, blast: Blast) -> int:
    """At most how many messages a send of ``blast`` has left, cheaply counted.

    Before its start: the memberships of its lists (a supporter on two lists,
    an inactive or a suppressed one, one outside the segment count too);
    after: its deliveries still queued, deferred or in flight. Used only to
    decide how many sender processes are worth starting.
    """
    assert blast.id is not None
    if blast.started_at is None:
        members = (
            select(func.count())
            .select_from(Membership)
            .join(BlastList, col(BlastList.list_id) == Membership.list_id)
            .where(col(BlastList.blast_id) == blast.id)
        )
        if blast.follow_up_of is not None:
            members = (
                select(func.count())
                .select_from(Delivery)
                .where(Delivery.blast_id == blast.follow_up_of)
            )
        return session.exec(members).one()
    open_states = (DeliveryState.QUEUED, DeliveryState.DEFERRED, DeliveryState.SENDING)
    return session.exec(
        select(func.count())
        .select_from(Delivery)
        .where(Delivery.blast_id == blast.id, col(Delivery.state).in_(open_states))
    ).one()
