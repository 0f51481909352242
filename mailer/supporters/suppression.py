"""Who may not be mailed: unsubscribes, and the suppression list.

The suppression list holds addresses that must never be mailed, supporters or
not (e.g. carried over from another tool); every audience snapshot leaves them
out, and the sender checks again as it builds each message.

A status change is one transaction with its audit event. It takes effect for
every later message at once, because the sender checks the status at the
moment it builds each message.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlmodel import Session, col, select

from mailer.errors import ImportFileError, InvalidState, NotFound
from mailer.lifecycle import audit
from mailer.store import Database, Delivery, Supporter, SupporterStatus, Suppression
from mailer.supporters.columns import ALIASES, normalize_email, normalize_header

UNSUBSCRIBED = "supporter.unsubscribed"


def unsubscribe_delivery(session: Session, delivery: Delivery, *, via: str, now: datetime) -> bool:
    """Unsubscribe the supporter ``delivery`` went to; False when nothing changes.

    A supporter already unsubscribed, or who complained (a stronger no), stays as is.
    """
    supporter = session.get(Supporter, delivery.supporter_id)
    assert supporter is not None
    return _unsubscribe(
        session,
        supporter,
        now,
        actor="supporter",
        blast_id=delivery.blast_id,
        delivery_id=delivery.id,
        detail={"via": via},
    )


def _unsubscribe(
    session: Session,
    supporter: Supporter,
    now: datetime,
    *,
    actor: str,
    detail: dict[str, str],
    blast_id: int | None = None,
    delivery_id: int | None = None,
) -> bool:
    """Mark ``supporter`` unsubscribed and log it; False (nothing changes) when they are
    unsubscribed already or complained (a stronger no)."""
    if supporter.status in (SupporterStatus.UNSUBSCRIBED, SupporterStatus.COMPLAINED):
        return False
    previous = supporter.status
    supporter.status = SupporterStatus.UNSUBSCRIBED
    supporter.status_changed_at = now
    supporter.updated_at = now
    session.add(supporter)
    audit(
        session,
        UNSUBSCRIBED,
        actor=actor,
        now=now,
        blast_id=blast_id,
        supporter_id=supporter.id,
        delivery_id=delivery_id,
        detail={**detail, "previous": str(previous)},
    )
    return True


# -- the suppression list ---------------------------------------------------------------


@dataclass
class SuppressionImport:
    added: int = 0
    already: int = 0
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # (line, value, reason)


def _addresses(path: Path) -> Iterator[tuple[int, str]]:
    """(line, address) from a CSV with an email column, or a file of one address a line."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise ImportFileError(f"{path}: cannot read the file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        line = text_line(path, exc.start)
        raise ImportFileError(f"{path}, line {line}: not UTF-8 text; save it as UTF-8") from None
    rows = list(csv.reader(io.StringIO(text, newline="")))
    column = 0
    start = 0
    titles = [ALIASES.get(normalize_header(cell)) for cell in rows[0]] if rows else []
    if "email" in titles:
        column, start = titles.index("email"), 1
    for number, row in enumerate(rows[start:], start=start + 1):
        if row and len(row) > column and row[column].strip():
            yield number, row[column]


def text_line(path: Path, offset: int) -> int:
    return path.read_bytes()[:offset].count(b"\n") + 1


def import_suppressions(
    db: Database, path: Path, *, reason: str, actor: str, now: datetime
) -> SuppressionImport:
    """Add the addresses in ``path`` to the suppression list (in one transaction)."""
    result = SuppressionImport()
    seen: set[str] = set()
    with db.session() as session:
        existing = set(session.exec(select(Suppression.email)).all())
        for line, value in _addresses(path):
            address, problem = normalize_email(value)
            if problem:
                result.rejected.append((line, value, problem))
                continue
            if address in existing or address in seen:
                result.already += 1
                continue
            seen.add(address)
            session.add(Suppression(email=address, reason=reason, source=str(path), created_at=now))
            result.added += 1
        audit(
            session,
            "suppression.imported",
            actor=actor,
            now=now,
            detail={
                "file": str(path),
                "added": result.added,
                "already": result.already,
                "rejected": len(result.rejected),
                "reason": reason,
            },
        )
    return result


def export_suppressions(db: Database) -> Iterator[Suppression]:
    with db.session() as session:
        yield from session.exec(select(Suppression).order_by(col(Suppression.email))).all()


RESUBSCRIBED = "supporter.resubscribed"


def resubscribe(
    session: Session, address: str, *, actor: str, reason: str, now: datetime
) -> Supporter:
    """Make an unsubscribed supporter active again: only ever an organizer's deliberate act.

    Bounced and complained supporters are not resubscribed this way: a bounce
    means the address does not work, a complaint that mail was unwanted.
    """
    email, problem = normalize_email(address)
    if problem:
        raise InvalidState(problem)
    supporter = session.exec(select(Supporter).where(Supporter.email == email)).first()
    if supporter is None:
        raise NotFound(f"no supporter {email!r}")
    if supporter.status is not SupporterStatus.UNSUBSCRIBED:
        raise InvalidState(
            f"{email} is {supporter.status}; only an unsubscribed supporter can be resubscribed"
        )
    supporter.status = SupporterStatus.ACTIVE
    supporter.status_changed_at = now
    supporter.updated_at = now
    session.add(supporter)
    audit(
        session,
        RESUBSCRIBED,
        actor=actor,
        now=now,
        supporter_id=supporter.id,
        detail={"reason": reason},
    )
    return supporter


def unsubscribe_supporter(
    session: Session, supporter: Supporter, *, actor: str, reason: str, now: datetime
) -> bool:
    """Unsubscribe ``supporter`` on their behalf (an admin's act); False when nothing changes."""
    return _unsubscribe(
        session, supporter, now, actor=actor, detail={"via": "admin", "reason": reason}
    )


def suppress_address(
    session: Session, address: str, *, reason: str, actor: str, now: datetime
) -> bool:
    """Put one address on the suppression list; False when it is there already."""
    email, problem = normalize_email(address)
    if problem:
        raise InvalidState(f"{address!r}: {problem}")
    if session.exec(select(Suppression).where(Suppression.email == email)).first() is not None:
        return False
    session.add(Suppression(email=email, reason=reason, source=f"added by {actor}", created_at=now))
    audit(
        session,
        "suppression.added",
        actor=actor,
        now=now,
        detail={"email": email, "reason": reason},
    )
    return True
