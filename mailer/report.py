"""The figures of a blast, computed once for the CLI and the web app alike.

Definitions (the same everywhere they are shown):

- ``recipients``: deliveries in the audience snapshot (one per supporter).
- ``sent``: deliveries the relay accepted. ``failed``: permanent failures and
  retries given up. The other delivery states are counted under their names.
- ``clicks_total``: every recorded click on a tracked link of the blast (raw).
- ``clicks_flagged``: clicks within ``tracking.scanner_window`` seconds of the
  message being sent. Security scanners at the receiving end follow every
  link of a message as it arrives; people do not click that fast. The rule:
  such clicks are kept and counted here but never make a recipient a clicker.
- ``clicks_unique``: recipients with at least one click that is not flagged.
- ``click_rate``: ``clicks_unique / sent`` (0 when nothing was sent).
- ``opens_unique`` / ``opens_total``: pixel fetches (only with ``tracking.opens``;
  unreliable: many clients block images, some fetch them for every message).
- ``unsubscribed``: supporters who unsubscribed through this blast's link.
- ``petition``: the petition the blast is linked to (None when none).
- ``actions``: recipients who signed the petition on their action page
  reached from this blast (a signature is credited to the blast it first came
  through; a second submission updates it and counts once).
- ``action_rate``: ``actions / recipients`` (0 when there are no recipients).
- ``actions_per_click``: ``actions / clicks_unique`` (0 when nobody clicked).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, ScalarSelect, case, distinct, func
from sqlalchemy import cast as sql_cast
from sqlalchemy import select as sa_select
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, col, select

from mailer.send.ledger import delivery_counts
from mailer.store import (
    Click,
    Database,
    Delivery,
    DeliveryState,
    Event,
    Link,
    Open,
    Supporter,
    blast_lists,
    find_blast,
)
from mailer.store.models import AlertRevision, Petition, Signature

UNSUBSCRIBE_ACTION = "supporter.unsubscribed"


def blast_report(db: Database, ref: str | int) -> dict[str, Any]:
    with db.session() as session:
        blast = find_blast(session, ref)
        assert blast.id is not None
        lists = [lst.name for lst in blast_lists(session, blast.id)]
        clicks_total, clicks_flagged = session.exec(
            select(_click_sum(), _click_sum(flagged=True)).where(Click.blast_id == blast.id)
        ).one()
        clicks_unique = session.exec(
            select(func.count(distinct(col(Click.delivery_id)))).where(
                Click.blast_id == blast.id, col(Click.suspected_bot).is_(False)
            )
        ).one()
        opens_total, opens_unique = session.exec(
            select(func.count(), func.count(distinct(col(Open.delivery_id)))).where(
                Open.blast_id == blast.id
            )
        ).one()
        unsubscribed = session.exec(
            select(func.count(distinct(col(Event.supporter_id)))).where(
                Event.blast_id == blast.id, Event.action == UNSUBSCRIBE_ACTION
            )
        ).one()
        actions = session.exec(
            select(func.count()).select_from(Signature).where(Signature.blast_id == blast.id)
        ).one()
        petition = session.get(Petition, blast.petition_id) if blast.petition_id else None
        pinned = (
            session.get(AlertRevision, blast.alert_revision_id) if blast.alert_revision_id else None
        )
    counts = delivery_counts(db, blast.id)
    blocked = blocked_by_domain(db, blast_id=blast.id)
    sent = counts["sent"]
    recipients = sum(counts.values())
    return {
        "blast": blast.name,
        "id": blast.id,
        "status": str(blast.status),
        "template": blast.template,
        # the stored alert's revision it sends (None: sent from the template folder)
        "alert_revision": pinned.number if pinned is not None else None,
        "lists": lists,
        "cta_url": blast.cta_url,
        "started_at": blast.started_at.isoformat() if blast.started_at else None,
        "finished_at": blast.finished_at.isoformat() if blast.finished_at else None,
        "recipients": recipients,
        **counts,
        "clicks_unique": clicks_unique,
        "clicks_total": clicks_total,
        "clicks_flagged": clicks_flagged,
        "click_rate": round(clicks_unique / sent, 4) if sent else 0.0,
        "unsubscribed": unsubscribed,
        "blocked": sum(row["blocked"] for row in blocked),
        "blocked_by_domain": blocked,
        "opens_unique": opens_unique,
        "opens_total": opens_total,
        "petition": petition.name if petition is not None else None,
        "actions": actions,
        "action_rate": round(actions / recipients, 4) if recipients else 0.0,
        "actions_per_click": round(actions / clicks_unique, 4) if clicks_unique else 0.0,
        "last_error": blast.last_error,
    }


LOG_COLUMNS = (
    "delivery",
    "email",
    "state",
    "attempts",
    "reply_code",
    "reply_text",
    "message_id",
    "sent_at",
    "next_attempt_at",
    "updated_at",
    "clicks",
    "clicks_flagged",
)


def delivery_log(
    db: Database,
    blast_id: int,
    *,
    state: DeliveryState | None = None,
    chunk: int = 1000,
    after: int = 0,
    domain: str = "",
    reply_code: int | None = None,
    address: str = "",
) -> Iterator[dict[str, Any]]:
    """Every delivery of a blast with its outcome, streamed ``chunk`` rows at a time.

    Rows come in delivery id order, starting after id ``after`` (keyset
    pagination: each chunk is one indexed range read, however deep). Filters:
    ``state``, ``domain`` (of the address), ``reply_code``, and ``address``
    (addresses starting with it).
    """
    while True:
        # Columns, not the Delivery entity: no ORM object per row (an export reads them all).
        query = (
            sa_select(
                col(Delivery.id),
                col(Supporter.email),
                col(Delivery.state),
                col(Delivery.attempts),
                col(Delivery.reply_code),
                col(Delivery.reply_text),
                col(Delivery.message_id),
                col(Delivery.sent_at),
                col(Delivery.next_attempt_at),
                col(Delivery.updated_at),
                _clicks(flagged=False),
                _clicks(flagged=True),
            )
            .join(Supporter, col(Supporter.id) == Delivery.supporter_id)
            .where(col(Delivery.blast_id) == blast_id, col(Delivery.id) > after)
            .order_by(col(Delivery.id))
            .limit(chunk)
        )
        if state is not None:
            query = query.where(col(Delivery.state) == state)
        if domain:
            query = query.where(
                col(Supporter.email).like(f"%@{like_escape(domain.lower())}", escape="\\")
            )
        if reply_code is not None:
            query = query.where(col(Delivery.reply_code) == reply_code)
        if address:
            prefix = like_escape(address.strip().lower())
            query = query.where(col(Supporter.email).like(f"{prefix}%", escape="\\"))
        with db.session() as session:
            rows = session.execute(query).all()
        if not rows:
            return
        for row in rows:
            yield {
                "delivery": row[0],
                "email": row[1],
                "state": str(row[2]),
                "attempts": row[3],
                "reply_code": row[4],
                "reply_text": row[5],
                "message_id": row[6],
                "sent_at": _iso(row[7]),
                "next_attempt_at": _iso(row[8]),
                "updated_at": _iso(row[9]),
                "clicks": row[10],
                "clicks_flagged": row[11],
            }
        after = rows[-1][0]


def like_escape(text: str) -> str:
    """``text`` with LIKE's wildcards escaped (escape character: backslash)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _clicks(*, flagged: bool) -> ScalarSelect[int]:
    """The number of (flagged or unflagged) clicks of the delivery in the outer query."""
    return (
        select(_click_sum())
        .select_from(Click)
        .where(col(Click.delivery_id) == Delivery.id, col(Click.suspected_bot).is_(flagged))
        .scalar_subquery()
    )


def _click_sum(*, flagged: bool = False) -> Any:
    """The clicks counted (a row counts its replays, see ``tracking.click_dedup_window``);
    with ``flagged``, only those flagged as a link scanner's."""
    counted = case((col(Click.suspected_bot), Click.clicks), else_=0) if flagged else Click.clicks
    return func.coalesce(func.sum(counted), 0)


def _iso(value: datetime | None) -> str:
    return value.isoformat(timespec="seconds") if value else ""


def link_report(db: Database, blast_id: int) -> list[dict[str, Any]]:
    """Clicks per link of a blast: total (raw), unique clickers, flagged."""
    with db.session() as session:
        rows = session.exec(
            select(
                Link.url,
                _click_sum(),
                func.count(
                    distinct(case((col(Click.suspected_bot).is_(False), Click.delivery_id)))
                ),
                _click_sum(flagged=True),
            )
            .outerjoin(Click, col(Click.link_id) == Link.id)
            .where(Link.blast_id == blast_id)
            .group_by(col(Link.id), col(Link.url))
            .order_by(col(Link.id))
        ).all()
    return [
        {"url": url, "clicks_total": total, "clicks_unique": unique, "clicks_flagged": flagged}
        for url, total, unique, flagged in rows
    ]


def timeline(db: Database, blast_id: int, *, buckets: int = 24) -> list[dict[str, Any]]:
    """Sends and (unflagged) clicks of a blast over time, in ``buckets`` equal steps.

    From the first send to the last send or click; each row has the bucket's
    ``start`` (ISO), ``sent`` and ``clicks``. Empty when nothing was sent.
    Counted in the database, grouped by whole seconds since the first send.
    """
    with db.session() as session:
        first, last_sent = session.exec(
            select(func.min(Delivery.sent_at), func.max(Delivery.sent_at)).where(
                Delivery.blast_id == blast_id, col(Delivery.sent_at).is_not(None)
            )
        ).one()
        if first is None or last_sent is None:
            return []
        last_click = session.exec(
            select(func.max(Click.clicked_at)).where(
                Click.blast_id == blast_id, col(Click.suspected_bot).is_(False)
            )
        ).one()
        last = max(last_sent, last_click or last_sent)
        span = max((last - first).total_seconds(), 1.0)
        width = max(int(span // buckets) + 1, 1)
        sent = _per_bucket(
            db,
            session,
            col(Delivery.sent_at),
            first,
            width,
            [Delivery.blast_id == blast_id, col(Delivery.sent_at).is_not(None)],
        )
        clicks = _per_bucket(
            db,
            session,
            col(Click.clicked_at),
            first,
            width,
            [
                Click.blast_id == blast_id,
                col(Click.suspected_bot).is_(False),
                col(Click.clicked_at) >= first,
            ],
            counted=Click.clicks,
        )
    count = int(span // width) + 1
    return [
        {
            "start": (first + timedelta(seconds=i * width)).isoformat(timespec="seconds"),
            "seconds": width,
            "sent": sent.get(i, 0),
            "clicks": clicks.get(i, 0),
        }
        for i in range(count)
    ]


def _per_bucket(
    db: Database,
    session: Session,
    column: Any,
    first: datetime,
    width: int,
    where: list[Any],
    counted: Any = None,
) -> dict[int, int]:
    """Rows (or the sum of ``counted``) per bucket of ``width`` seconds from ``first``."""
    if db.is_sqlite:
        seconds = func.strftime("%s", column) - func.strftime("%s", first.replace(tzinfo=None))
        bucket = sql_cast(seconds, Integer) / width
    else:
        seconds = func.extract("epoch", column - first)
        bucket = func.floor(seconds / width)
    amount = func.count() if counted is None else func.sum(counted)
    rows = session.exec(select(bucket, amount).where(*where).group_by(bucket)).all()
    return {int(b): int(n) for b, n in rows if b is not None}


FAILED_STATES = (DeliveryState.FAILED, DeliveryState.BOUNCED, DeliveryState.UNKNOWN)


def failure_breakdown(db: Database, blast_id: int) -> dict[str, list[dict[str, Any]]]:
    """Failed, bounced and in-doubt deliveries by reply code and by recipient domain."""
    with db.session() as session:
        by_code = session.exec(
            select(Delivery.reply_code, func.count())
            .where(Delivery.blast_id == blast_id, col(Delivery.state).in_(FAILED_STATES))
            .group_by(col(Delivery.reply_code))
            .order_by(func.count().desc())
        ).all()
    domains: Counter[str] = Counter()
    for row in _failed_addresses(db, blast_id):
        domains[row.rpartition("@")[2]] += 1
    return {
        "by_reply_code": [{"reply_code": code, "count": n} for code, n in by_code],
        "by_domain": [{"domain": d, "count": n} for d, n in domains.most_common(20)],
    }


def _failed_addresses(db: Database, blast_id: int, chunk: int = 5000) -> Iterator[str]:
    after = 0
    while True:
        with db.session() as session:
            rows = session.exec(
                select(Delivery.id, Supporter.email)
                .join(Supporter, col(Supporter.id) == Delivery.supporter_id)
                .where(
                    Delivery.blast_id == blast_id,
                    col(Delivery.state).in_(FAILED_STATES),
                    col(Delivery.id) > after,
                )
                .order_by(col(Delivery.id))
                .limit(chunk)
            ).all()
        if not rows:
            return
        for _, email in rows:
            yield email
        last = rows[-1][0]
        assert last is not None
        after = last


BLOCKED_ACTION = "delivery.blocked"  # written by mailer.inbound.apply


def blocked_by_domain(
    db: Database,
    *,
    blast_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[dict[str, Any]]:
    """Messages refused as blocked (spam, policy, reputation, authentication), by the
    recipients' domain, most first: a deliverability alarm, not a list problem.

    Each row: domain, blocked (distinct deliveries), the rules that decided and
    how often, first and last report time. For one blast (``blast_id``) or for
    every blast in a time range (``since`` inclusive, ``until`` exclusive).
    """
    where: list[ColumnElement[bool]] = [col(Event.action) == BLOCKED_ACTION]
    if blast_id is not None:
        where.append(col(Event.blast_id) == blast_id)
    if since is not None:
        where.append(col(Event.at) >= since)
    if until is not None:
        where.append(col(Event.at) < until)
    with db.session() as session:
        rows = session.exec(select(Event.delivery_id, Event.at, Event.detail).where(*where)).all()
    seen: set[int | None] = set()
    by_domain: dict[str, dict[str, Any]] = {}
    for delivery_id, at, detail in rows:
        if delivery_id in seen:
            continue  # the same message reported twice counts once
        seen.add(delivery_id)
        domain = str(detail.get("domain", "")) or "?"
        rule = str((detail.get("evidence") or {}).get("rule", "")) or "?"
        row = by_domain.setdefault(
            domain, {"domain": domain, "blocked": 0, "rules": Counter(), "first": at, "last": at}
        )
        row["blocked"] += 1
        row["rules"][rule] += 1
        if at is not None:
            row["first"] = min(row["first"] or at, at)
            row["last"] = max(row["last"] or at, at)
    result = sorted(by_domain.values(), key=lambda r: (-r["blocked"], r["domain"]))
    return [
        {
            **row,
            "rules": dict(row["rules"].most_common()),
            "first": _iso(row["first"]),
            "last": _iso(row["last"]),
        }
        for row in result
    ]
