"""Helpers for petition tests: a petition, a blast linked to it, sent to a real SMTP server."""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

from mailer.blasts import create_blast, send_now
from mailer.config import Settings
from mailer.petitions.store import create_petition
from mailer.store import Database
from mailer.store.models import Petition
from tests.factories import Person, add_people
from tests.smtpserver import SmtpTestServer

BASE = "http://127.0.0.1:8000"
TARGET = "https://www.whitehouse.gov/contact/"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass(frozen=True)
class SentPetition:
    petition: Petition
    blast_id: int
    server: SmtpTestServer


def send_petition_blast(
    db: Database,
    settings: Settings,
    server: SmtpTestServer,
    people: list[Person],
    *,
    name: str = "alert",
    petition: str = "executive-orders",
    goal: int = 100,
) -> SentPetition:
    add_people(db, "members", people)
    created = create_petition(db, settings, name=petition, goal=goal, target_url=TARGET)
    blast = create_blast(
        db,
        settings,
        name=name,
        template="executive-orders",
        list_names=["members"],
        petition=petition,
    )
    assert blast.id is not None
    send_now(db, settings, blast.id)
    return SentPetition(created, blast.id, server)


def click_paths(server: SmtpTestServer, address: str) -> list[str]:
    """The tracked links (paths) of the text part of the message ``address`` received."""
    text = server.handler.to(address)[0].message().get_body(preferencelist=("plain",))
    assert text is not None
    return re.findall(rf"{re.escape(BASE)}(/c/[A-Za-z0-9_-]+)", text.get_content())


def cta_path(server: SmtpTestServer, address: str) -> str:
    """The call-to-action click link: the first tracked link of the alert's text part."""
    return click_paths(server, address)[0]


def csrf_of(page: httpx.Response) -> str:
    found = CSRF.search(page.text)
    assert found is not None, "the page has no CSRF field"
    return found.group(1)
