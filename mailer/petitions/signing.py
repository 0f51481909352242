"""A submitted petition form: checked, then stored as one signature per address.

:func:`clean_form` turns the raw form into clean values or a set of problems
(named by field, with a code the pages translate). :func:`sign` stores the
signature with one ``INSERT ... ON CONFLICT`` on the unique (petition, email)
pair, so two submissions at once can never count twice. Only the signer's own
alert link (``source="alert"``) may change an existing signature; a public
submission for an address that has signed changes nothing, and the caller
answers it like a first signature, so the public page neither lets anyone
rewrite someone else's words nor tells who has signed. Messages are kept as the plain
text typed (line ends normalized, control characters removed); the pages
escape them wherever they are shown.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import zipcodes
from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, select

from mailer.store.models import Petition, Signature
from mailer.supporters.columns import normalize_email

MAX_NAME = 100
# A name with a web address in it is refused: names go into messages, and a URL
# there would be a link in the organization's mail that it never wrote.
URL_MARK = "://"
_ZIP = re.compile(r"^([0-9]{5})(?:-?[0-9]{4})?$")  # ASCII digits only: not "١٢٣٤٥"


@dataclass(frozen=True)
class Signer:
    """The cleaned values of one form."""

    first_name: str
    last_name: str
    message: str
    email: str = ""
    zip: str = ""
    opt_in: bool = False


def clean_line(text: str) -> str:
    """One line of text: control and format characters dropped, spaces collapsed."""
    kept = "".join(" " if unicodedata.category(ch)[0] in "CZ" else ch for ch in text)
    return " ".join(kept.split())


def clean_message(text: str) -> str:
    """Multi-line text: CRLF/CR become LF, other control characters are dropped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    kept = "".join(
        ch for ch in text if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs")
    )
    return kept.strip()


def clean_form(
    form: Mapping[str, str], *, public: bool, max_message: int, require_message: bool
) -> tuple[Signer | None, dict[str, str]]:
    """The signer the form describes, or the problems by field (codes, see the pages)."""
    problems: dict[str, str] = {}
    first = clean_line(form.get("first_name", ""))
    last = clean_line(form.get("last_name", ""))
    if not first:
        problems["first_name"] = "missing"
    elif len(first) > MAX_NAME:
        problems["first_name"] = "too_long"
    elif URL_MARK in first:
        problems["first_name"] = "url"
    if len(last) > MAX_NAME:
        problems["last_name"] = "too_long"
    elif URL_MARK in last:
        problems["last_name"] = "url"
    message = clean_message(form.get("message", ""))
    if len(message) > max_message:
        problems["message"] = "too_long"
    elif require_message and not message:
        problems["message"] = "missing"
    email = zip_code = ""
    if public:
        raw = form.get("email", "").strip()
        if not raw:
            problems["email"] = "missing"
        else:
            # The form every path stores (ASCII, lowercased; no SMTPUTF8, as on import),
            # so a suppressed IDN address is the same address here.
            email, problem = normalize_email(raw)
            if problem:
                problems["email"] = "invalid"
        found = _ZIP.match(form.get("zip", "").strip())
        if found is None:
            problems["zip"] = "invalid"
        else:
            zip_code = found.group(1)
    if problems:
        return None, problems
    return (
        Signer(
            first_name=first,
            last_name=last,
            message=message,
            email=email,
            zip=zip_code,
            opt_in=public and form.get("opt_in") == "1",
        ),
        {},
    )


def place_of(zip_code: str) -> tuple[str, str]:
    """(city, state) of a US ZIP code, or ("", "") when it is not a known ZIP."""
    found = _ZIP.match(zip_code.strip())
    if found is None:
        return "", ""
    try:
        matches = zipcodes.matching(found.group(1))  # type: ignore[no-untyped-call]
    except (TypeError, ValueError):
        return "", ""
    if not matches:
        return "", ""
    return str(matches[0]["city"]), str(matches[0]["state"])


def sign(
    session: Session,
    petition: Petition,
    *,
    email: str,
    first_name: str,
    last_name: str,
    zip_code: str,
    region: str,
    language: str,
    message: str,
    source: str,
    now: datetime,
    supporter_id: int | None = None,
    blast_id: int | None = None,
    delivery_id: int | None = None,
    opted_in: bool = False,
    ip: str = "",
) -> bool:
    """Store the signature of ``email``; True when it is new.

    A public submission (``source="public"``) for an address that has signed
    already changes nothing: anyone can type anyone's address into that form.
    From the alert's own link an existing signature is updated: name, place
    and message change, the first signature's time, source and blast stay
    (the action is credited once); once opted in, a signer stays opted in.
    """
    assert petition.id is not None
    city, zip_region = place_of(zip_code)
    values = {
        "petition_id": petition.id,
        "email": email,
        "first_name": first_name,
        "last_name": last_name,
        "zip": zip_code[:20],
        "city": city,
        "region": region or zip_region,
        "language": language,
        "message": message,
        "source": source,
        "supporter_id": supporter_id,
        "blast_id": blast_id,
        "delivery_id": delivery_id,
        "opted_in": opted_in,
        "ip": ip,
        "created_at": now,
        "updated_at": now,
    }
    existed = session.exec(
        select(Signature.id).where(Signature.petition_id == petition.id, Signature.email == email)
    ).first()
    table = Signature.__table__  # type: ignore[attr-defined]
    insert = sqlite_insert if session.get_bind().dialect.name == "sqlite" else pg_insert
    stmt = insert(table).values(**values)
    if source != "alert":
        session.execute(stmt.on_conflict_do_nothing(index_elements=["petition_id", "email"]))
        return existed is None
    stmt = stmt.on_conflict_do_update(
        index_elements=["petition_id", "email"],
        set_={
            "first_name": stmt.excluded.first_name,
            "last_name": stmt.excluded.last_name,
            "zip": stmt.excluded.zip,
            "city": stmt.excluded.city,
            "region": stmt.excluded.region,
            "language": stmt.excluded.language,
            "message": stmt.excluded.message,
            "opted_in": table.c.opted_in | stmt.excluded.opted_in,
            "supporter_id": func.coalesce(table.c.supporter_id, stmt.excluded.supporter_id),
            "updated_at": stmt.excluded.updated_at,
        },
    )
    session.execute(stmt)
    return existed is None
