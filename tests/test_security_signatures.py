"""Issue 15, item 1: a public form never rewrites a signature someone already made."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete
from sqlmodel import select

from mailer.petitions.signing import clean_form, sign
from mailer.petitions.store import create_petition
from mailer.store import Database
from mailer.store.models import Petition, Signature, utcnow
from tests.conftest import make_settings
from tests.petitionkit import SentPetition, csrf_of
from tests.test_action_pages import (
    BEN,
    action_page,
    public_form,
    signatures,
)
from tests.test_action_pages import client as client
from tests.test_action_pages import sent as sent


def test_a_public_post_with_a_signers_address_changes_nothing_and_looks_like_a_first_signature(
    db: Database, client: httpx.Client, sent: SentPetition
) -> None:
    page = action_page(client, sent, BEN.email)
    own = {"csrf": csrf_of(page), "first_name": "Ben", "message": "My own words", "website": ""}
    assert client.post(str(page.url.path), data=own).status_code == 200
    [before] = signatures(db)

    path, form = public_form(
        client,
        sent.petition.slug,
        email="BEN@example.org",
        first_name="Mallory",
        last_name="Impostor",
        zip="10001",
        message="Words Ben never wrote",
    )
    repeat = client.post(path, data=form)
    path, fresh = public_form(
        client, sent.petition.slug, email="new@example.org", first_name="Mallory"
    )
    first = client.post(path, data=fresh)
    assert repeat.status_code == first.status_code == 200
    assert "Thank you, Mallory!" in repeat.text and "Thank you, Mallory!" in first.text
    after = signatures(db)[0]
    assert after.model_dump() == before.model_dump()

    # The signer's own link may still change their words.
    page = action_page(client, sent, BEN.email)
    own.update(csrf=csrf_of(page), message="Second thoughts")
    assert client.post(str(page.url.path), data=own).status_code == 200
    assert signatures(db)[0].message == "Second thoughts"


@pytest.fixture
def petition(db: Database) -> Petition:
    return create_petition(
        db, make_settings(), name="executive-orders", goal=10, target_url="https://example.org/"
    )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    first=st.text(min_size=1, max_size=100),
    last=st.text(max_size=100),
    message=st.text(max_size=300),
    zip_code=st.from_regex(r"\A[0-9]{5}\Z"),
)
def test_public_sign_over_any_existing_signature_keeps_it(
    db: Database, petition: Petition, first: str, last: str, message: str, zip_code: str
) -> None:
    with db.session() as session:
        session.execute(delete(Signature))
    now = utcnow()
    with db.session() as session:
        sign(
            session,
            petition,
            email="ana@example.org",
            first_name="Ana",
            last_name="Lee",
            zip_code="94612",
            region="",
            language="en",
            message="Mine",
            source="alert",
            now=now,
        )
    # The values as the public form cleans them (control characters dropped).
    form = {"first_name": first, "last_name": last, "message": message, "zip": zip_code}
    signer, _ = clean_form(
        {**form, "email": "ANA@example.org", "opt_in": "1"},
        public=True,
        max_message=2000,
        require_message=False,
    )
    assume(signer is not None)
    assert signer is not None
    with db.session() as session:
        new = sign(
            session,
            petition,
            email=signer.email,
            first_name=signer.first_name,
            last_name=signer.last_name,
            zip_code=signer.zip,
            region="",
            language="es",
            message=signer.message,
            source="public",
            now=now,
            opted_in=signer.opt_in,
        )
    assert new is False
    with db.session() as session:
        [kept] = session.exec(select(Signature)).all()
    assert (kept.first_name, kept.last_name, kept.zip, kept.message, kept.opted_in) == (
        "Ana",
        "Lee",
        "94612",
        "Mine",
        False,
    )
    assert (kept.language, kept.source) == ("en", "alert")
