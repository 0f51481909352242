"""Small builders for test data, written straight to the real database."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import select

from mailer.store import Database, MailingList, Membership, Supporter, SupporterStatus
from mailer.store.models import utcnow


@dataclass(frozen=True)
class Person:
    email: str
    first_name: str = ""
    language: str = "en"
    status: SupporterStatus = SupporterStatus.ACTIVE


def add_people(db: Database, list_name: str, people: list[Person]) -> dict[str, int]:
    """Put ``people`` on ``list_name``; return their supporter ids by address."""
    now = utcnow()
    ids: dict[str, int] = {}
    with db.session() as session:
        mailing_list = session.exec(
            select(MailingList).where(MailingList.name == list_name)
        ).first()
        if mailing_list is None:
            mailing_list = MailingList(name=list_name, created_at=now)
            session.add(mailing_list)
            session.flush()
        assert mailing_list.id is not None
        for person in people:
            supporter = session.exec(
                select(Supporter).where(Supporter.email == person.email)
            ).first()
            if supporter is None:
                supporter = Supporter(
                    email=person.email,
                    first_name=person.first_name,
                    language=person.language,
                    status=person.status,
                    created_at=now,
                    updated_at=now,
                )
                session.add(supporter)
                session.flush()
            assert supporter.id is not None
            session.add(
                Membership(list_id=mailing_list.id, supporter_id=supporter.id, added_at=now)
            )
            ids[person.email] = supporter.id
    return ids


def people(count: int, domain: str = "example.org") -> list[Person]:
    return [Person(email=f"p{i}@{domain}", first_name=f"P{i}") for i in range(count)]
