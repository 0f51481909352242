"""A petition's signatures for delivery: CSV, and a printable HTML document.

Both stream the signatures in id order, ``chunk`` rows at a time. Neither
contains signers' email addresses unless asked (``with_email``, for the
organization's own records): what goes to the target is names, places and
messages. In the CSV a cell that a spreadsheet would run as a formula (one
starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return) is prefixed
with ``'``; the HTML document escapes everything.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any

from jinja2 import Environment, PackageLoader, select_autoescape
from sqlmodel import col, select

from mailer import csvsafe
from mailer.petitions.store import find_petition, signature_count
from mailer.store import Database
from mailer.store.models import Petition, Signature, utcnow

COLUMNS = (
    "signed_at",
    "first_name",
    "last_name",
    "city",
    "region",
    "zip",
    "message",
    "language",
    "source",
)


def signatures(db: Database, petition_id: int, *, chunk: int = 1000) -> Iterator[Signature]:
    after = 0
    while True:
        with db.session() as session:
            rows = session.exec(
                select(Signature)
                .where(Signature.petition_id == petition_id, col(Signature.id) > after)
                .order_by(col(Signature.id))
                .limit(chunk)
            ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].id
        assert last is not None
        after = last


def row_of(signature: Signature, *, with_email: bool = False) -> dict[str, str]:
    created = signature.created_at
    row = {
        "signed_at": created.isoformat(timespec="seconds") if created else "",
        "first_name": signature.first_name,
        "last_name": signature.last_name,
        "city": signature.city,
        "region": signature.region,
        "zip": signature.zip,
        "message": signature.message,
        "language": signature.language,
        "source": signature.source,
    }
    if with_email:
        row["email"] = signature.email
    return row


def write_csv(db: Database, ref: str | int, out: IO[str], *, with_email: bool = False) -> int:
    """Write the petition's signatures as CSV to ``out``; return how many."""
    with db.session() as session:
        petition = find_petition(session, ref)
    assert petition.id is not None
    columns = [*COLUMNS, "email"] if with_email else list(COLUMNS)
    writer = csvsafe.DictWriter(out, fieldnames=columns, lineterminator="\r\n")
    writer.writeheader()
    count = 0
    for signature in signatures(db, petition.id):
        writer.writerow(row_of(signature, with_email=with_email))
        count += 1
    return count


_pages = Environment(
    loader=PackageLoader("mailer.petitions", "templates"),
    autoescape=select_autoescape(["html"]),
)


def delivery_document(
    db: Database,
    ref: str | int,
    *,
    organization_name: str = "",
    language: str = "en",
    now: datetime | None = None,
) -> str:
    """The printable delivery document (HTML, ready to print to PDF)."""
    with db.session() as session:
        petition = find_petition(session, ref)
        assert petition.id is not None
        total = signature_count(session, petition.id)
    texts = _texts(petition, language)
    return _pages.get_template("delivery.html").render(
        petition=petition,
        title=texts.get("title", petition.name),
        message=texts.get("message", ""),
        organization_name=organization_name,
        total=total,
        generated=(now or utcnow()).strftime("%Y-%m-%d %H:%M UTC"),
        rows=(_display(s) for s in signatures(db, petition.id)),
    )


def _texts(petition: Petition, language: str) -> dict[str, str]:
    texts: dict[str, dict[str, str]] = petition.texts
    return texts.get(language) or texts.get(petition.default_language) or {}


def _display(signature: Signature) -> dict[str, Any]:
    name = f"{signature.first_name} {signature.last_name}".strip()
    place = ", ".join(p for p in (signature.city, signature.region) if p)
    if signature.zip:
        place = f"{place} {signature.zip}".strip()
    created = signature.created_at
    return {
        "name": name,
        "place": place,
        "message": signature.message,
        "day": created.strftime("%Y-%m-%d") if created else "",
    }
