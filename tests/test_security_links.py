"""Issue 15, item 2: only the template's links are tracked; names cannot carry URLs."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import select

from mailer.assemble import composer_for
from mailer.blasts import create_blast, send_now
from mailer.compose.alert import Recipient
from mailer.compose.tokens import TokenSigner
from mailer.config import Settings
from mailer.store import Database, Link
from mailer.store.models import Blast
from mailer.supporters.importer import import_csv
from tests.conftest import TEST_SECRET, make_settings
from tests.factories import Person, add_people
from tests.smtpserver import SmtpTestServer
from tests.test_action_pages import client as client
from tests.test_action_pages import public_form
from tests.test_action_pages import sent as sent

EVIL = "https://evil.example/phish"
TOKEN = re.compile(r"http://127\.0\.0\.1:8000/c/([A-Za-z0-9_-]+)")


def stored_links(db: Database, blast_id: int) -> set[str]:
    with db.session() as session:
        return set(session.exec(select(Link.url).where(Link.blast_id == blast_id)).all())


def new_blast(db: Database, settings: Settings) -> int:
    blast = create_blast(
        db, settings, name="alert", template="executive-orders", list_names=["members"]
    )
    assert blast.id is not None
    return blast.id


def test_a_url_in_a_name_stays_text_and_is_never_stored_as_a_link(
    db: Database, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    # Hostile data already in the database (imported before names were checked).
    add_people(db, "members", [Person("eve@example.org", first_name=f"Eve {EVIL}")])
    blast_id = new_blast(db, settings)
    registered = stored_links(db, blast_id)
    assert registered and "https://www.example.org/statements/executive-orders" in registered
    send_now(db, settings, blast_id)
    text = smtp_server.handler.to("eve@example.org")[0].message().get_body(("plain",))
    assert text is not None
    body = text.get_content()
    assert f"Dear Eve {EVIL}," in body  # as typed, not a tracked link
    assert stored_links(db, blast_id) == registered
    signer = TokenSigner(TEST_SECRET)
    with db.session() as session:
        ids = {link.id for link in session.exec(select(Link).where(Link.blast_id == blast_id))}
    tokens = TOKEN.findall(body)
    assert tokens and {signer.read_click(t).link_id for t in tokens} <= ids


@pytest.fixture
def composer_blast(db: Database) -> Blast:
    add_people(db, "members", [Person("a@example.org")])
    settings = make_settings()
    blast_id = new_blast(db, settings)
    with db.session() as session:
        blast = session.get(Blast, blast_id)
    assert blast is not None
    return blast


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    name=st.text(max_size=20),
    url=st.from_regex(r"\Ahttps?://[a-z0-9.-]{1,20}(/[a-z0-9/?=&.-]{0,20})?\Z"),
    language=st.sampled_from(["en", "es"]),
)
def test_no_supporter_value_adds_or_changes_a_tracked_link(
    db: Database, composer_blast: Blast, name: str, url: str, language: str
) -> None:
    assert composer_blast.id is not None
    registered = stored_links(db, composer_blast.id)
    composer = composer_for(db, make_settings(), composer_blast)
    recipient = Recipient(
        email="a@example.org",
        first_name=f"{name} {url}",
        last_name=url,
        zip=url,
        region=url,
        language=language,
        custom={"note": url},
    )
    composed = composer.compose(7, recipient)
    signer = TokenSigner(TEST_SECRET)
    with db.session() as session:
        by_id = {
            link.id: link.url
            for link in session.exec(select(Link).where(Link.blast_id == composer_blast.id))
        }
    for token in TOKEN.findall(composed.alert.text + composed.alert.html):
        assert by_id[signer.read_click(token).link_id] in registered
    assert stored_links(db, composer_blast.id) == registered


def test_import_refuses_urls_in_names(db: Database, tmp_path: Path) -> None:
    path = tmp_path / "people.csv"
    path.write_text(
        "email,first_name,last_name\n"
        f"a@example.org,Ann {EVIL},Lee\n"
        "b@example.org,Bo,ftp://files.example\n"
        "c@example.org,Cy,Ng\n",
        encoding="utf-8",
    )
    summary = import_csv(db, path, "members")
    assert summary.added == 1
    reasons = {r.line: r.reason for r in summary.rejects}
    assert set(reasons) == {2, 3}
    assert "first_name" in reasons[2] and "://" in reasons[2]
    assert "last_name" in reasons[3]


@pytest.mark.parametrize("field", ["first_name", "last_name"])
def test_the_public_form_refuses_urls_in_names(
    client: httpx.Client, sent: object, field: str
) -> None:
    slug = sent.petition.slug  # type: ignore[attr-defined]
    path, form = public_form(client, slug, **{field: f"Click {EVIL}"})
    response = client.post(path, data=form)
    assert response.status_code == 400
    assert "web address" in response.text
