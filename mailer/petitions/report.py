"""A petition's figures, computed once for the CLI and the web app alike.

- ``signatures``: signatures stored (one per address); ``percent``: of the goal.
- ``by_day``: signatures by the UTC day they were first made, with the running total.
- ``by_language``: by the language of the page they signed on.
- ``by_region``: by state, from the supporter record or the signer's ZIP
  (``"unknown"`` when neither gives one).
- ``by_source``: ``alert`` (an action page reached from an alert) or
  ``public`` (the public page).
- ``by_blast``: signatures credited to each linked blast (its ``actions``).
- ``opt_ins``: public signers who ticked the box for future alerts.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from mailer.petitions.store import find_petition
from mailer.store import Blast, Database
from mailer.store.models import Signature


def petition_report(db: Database, ref: str | int) -> dict[str, Any]:
    with db.session() as session:
        petition = find_petition(session, ref)
        pid = petition.id
        where = Signature.petition_id == pid

        def grouped(column: Any) -> list[tuple[Any, int]]:
            return [
                (key, count)
                for key, count in session.exec(
                    select(column, func.count()).where(where).group_by(column).order_by(column)
                ).all()
            ]

        total = session.exec(select(func.count()).select_from(Signature).where(where)).one()
        day = func.date(col(Signature.created_at))
        days = grouped(day)
        languages = grouped(col(Signature.language))
        regions = grouped(col(Signature.region))
        sources = grouped(col(Signature.source))
        opt_ins = session.exec(
            select(func.count())
            .select_from(Signature)
            .where(where, col(Signature.opted_in).is_(True))
        ).one()
        blasts = session.exec(
            select(Blast.name, func.count(col(Signature.id)))
            .outerjoin(Signature, col(Signature.blast_id) == Blast.id)
            .where(Blast.petition_id == pid)
            .group_by(col(Blast.id), col(Blast.name))
            .order_by(col(Blast.id))
        ).all()
    running = 0
    by_day = []
    for when, count in days:
        running += count
        by_day.append({"day": str(when), "signatures": count, "total": running})
    by_region: dict[str, int] = {}
    for region, count in regions:
        key = region or "unknown"
        by_region[key] = by_region.get(key, 0) + count
    return {
        "petition": petition.name,
        "id": pid,
        "slug": petition.slug,
        "target_url": petition.target_url,
        "goal": petition.goal,
        "signatures": total,
        "percent": round(total * 100 / petition.goal, 1) if petition.goal else 0.0,
        "by_day": by_day,
        "by_language": dict(languages),
        "by_region": dict(sorted(by_region.items(), key=lambda kv: (-kv[1], kv[0]))),
        "by_source": dict(sources),
        "by_blast": {name: count for name, count in blasts},
        "opt_ins": opt_ins,
    }
