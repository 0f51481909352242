"""Petitions in the browser: create, edit and link to a blast without a petition.toml."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlmodel import select

from mailer.blasts import create_blast, send_now
from mailer.errors import InvalidState
from mailer.petitions.store import refresh_texts
from mailer.store import Blast, Database, Event, open_database
from mailer.store.models import Petition
from tests.admin_helpers import add_users, serve, sign_in
from tests.conftest import make_settings
from tests.factories import add_people, people
from tests.smtpserver import SmtpTestServer

FORM = {
    "name": "Stop the orders",
    "goal": "5,000",
    "target_url": "https://www.whitehouse.gov/contact/",
    "en_title": "Tell the White House: stop the orders",
    "en_intro": "Two orders signed today <b>hurt</b> families.",
    "en_message": "I ask you to withdraw both orders.",
    "en_target": "the White House",
    "es_title": "Dígale a la Casa Blanca: detenga las órdenes",
    "es_intro": "Dos órdenes firmadas hoy dañan a familias.",
    "es_message": "Le pido que retire ambas órdenes.",
    "es_target": "",
}


@pytest.fixture
def site(db: Database) -> Iterator[tuple[str, Database]]:
    add_users(db)
    add_people(db, "members", people(2))
    with serve(db, make_settings()) as url:
        yield url, db


def petition_named(db: Database, name: str) -> Petition:
    with db.session() as session:
        return session.exec(select(Petition).where(Petition.name == name)).one()


def test_an_organizer_creates_edits_and_links_a_petition(site: tuple[str, Database]) -> None:
    url, db = site
    blast = create_blast(
        db, make_settings(), name="eo", template="executive-orders", list_names=["members"]
    )
    with httpx.Client(base_url=url) as client:
        csrf = sign_in(client, "organizer")
        assert 'href="/admin/petitions"' in client.get("/admin/").text
        form = client.get("/admin/petitions/new")
        assert form.status_code == 200 and 'name="es_message"' in form.text
        created = client.post("/admin/petitions", data={"csrf": csrf, **FORM})
        assert created.status_code == 303, created.text
        petition = petition_named(db, "Stop the orders")
        assert created.headers["location"] == f"/admin/petitions/{petition.id}"
        assert (petition.slug, petition.goal, petition.template) == ("stop-the-orders", 5000, "")
        assert petition.texts == {
            "en": {
                "title": FORM["en_title"],
                "intro": FORM["en_intro"],
                "message": FORM["en_message"],
                "target": "the White House",
            },
            "es": {
                "title": FORM["es_title"],
                "intro": FORM["es_intro"],
                "message": FORM["es_message"],
            },
        }
        # The public page speaks both languages and escapes what was typed.
        public = client.get("/p/stop-the-orders?lang=es")
        assert public.status_code == 200 and FORM["es_title"] in public.text
        assert "&lt;b&gt;hurt" in client.get("/p/stop-the-orders?lang=en").text

        edit = client.get(f"/admin/petitions/{petition.id}")
        assert FORM["es_message"] in edit.text and "eo</option>" in edit.text
        changed = {**FORM, "goal": "8000", "es_title": "", "es_intro": "", "es_message": ""}
        saved = client.post(f"/admin/petitions/{petition.id}", data={"csrf": csrf, **changed})
        assert saved.status_code == 303, saved.text
        edited = petition_named(db, "Stop the orders")
        assert (edited.goal, sorted(edited.texts), edited.slug) == (8000, ["en"], "stop-the-orders")

        linked = client.post(
            f"/admin/petitions/{petition.id}/link", data={"csrf": csrf, "blast": str(blast.id)}
        )
        assert "now leads to this petition" in client.get(linked.headers["location"]).text
        assert "Stop the orders" in client.get("/admin/petitions").text
    with db.session() as session:
        stored = session.get(Blast, blast.id)
        assert stored is not None and stored.petition_id == petition.id
        events = {
            e.action: (e.actor, e.detail)
            for e in session.exec(select(Event).where(Event.actor == "organizer"))
        }
    assert events["petition.created"][1]["name"] == "Stop the orders"
    assert events["petition.updated"][1]["goal"] == 8000
    assert events["petition.updated"][1]["languages"] == ["en"]
    assert events["blast.petition_linked"][1]["petition"] == petition.id
    with pytest.raises(InvalidState, match="written in the web admin"):
        refresh_texts(db, make_settings(), petition.id or 0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"goal": "lots"}, "the goal must be a number"),
        ({"goal": "0"}, "the goal must be a number"),
        ({"target_url": "javascript:alert(1)"}, "the target URL must be an http(s) URL"),
        ({"es_message": ""}, "es: the message is empty"),
        ({"name": "   "}, "a petition needs a name"),
        ({"en_title": "x" * 5001}, "en: the title is longer than 5000"),
        (
            {k: "" for k in FORM if k[:3] in ("en_", "es_")},
            "in at least one language",
        ),
    ],
)
def test_bad_input_is_named_and_nothing_is_stored(
    site: tuple[str, Database], change: dict[str, str], message: str
) -> None:
    url, db = site
    with httpx.Client(base_url=url) as client:
        csrf = sign_in(client, "organizer")
        refused = client.post("/admin/petitions", data={"csrf": csrf, **FORM, **change})
    assert refused.status_code == 400
    assert message in refused.text.replace("&#39;", "'")
    assert 'value="Stop the orders"' in refused.text or change.get("name")  # the form is kept
    with db.session() as session:
        assert session.exec(select(Petition)).all() == []


def test_a_blast_that_has_started_cannot_be_linked(
    sqlite_db: Database, smtp_server: SmtpTestServer
) -> None:
    add_users(sqlite_db)
    add_people(sqlite_db, "members", people(1))
    settings = make_settings(smtp_port=smtp_server.port)
    blast = create_blast(
        sqlite_db, settings, name="sent", template="executive-orders", list_names=["members"]
    )
    send_now(sqlite_db, settings, blast.id or 0)
    with serve(sqlite_db, settings) as url, httpx.Client(base_url=url) as client:
        csrf = sign_in(client, "organizer")
        client.post("/admin/petitions", data={"csrf": csrf, **FORM})
        petition = petition_named(sqlite_db, "Stop the orders")
        refused = client.post(
            f"/admin/petitions/{petition.id}/link", data={"csrf": csrf, "blast": str(blast.id)}
        )
        assert "has not started sending" in client.get(refused.headers["location"]).text
        assert "sent</option>" not in client.get(f"/admin/petitions/{petition.id}").text


def test_viewers_read_the_list_but_may_not_write(site: tuple[str, Database]) -> None:
    url, db = site
    with httpx.Client(base_url=url) as client:
        csrf = sign_in(client, "viewer")
        listing = client.get("/admin/petitions")
        assert listing.status_code == 200 and "New petition" not in listing.text
        assert client.get("/admin/petitions/new").status_code == 403
        assert client.post("/admin/petitions", data={"csrf": csrf, **FORM}).status_code == 403
    with httpx.Client(base_url=url) as client:
        sign_in(client, "organizer")
        forged = client.post("/admin/petitions", data={"csrf": "forged", **FORM})
        assert forged.status_code == 403
        assert client.get("/admin/petitions/99").status_code == 404
        assert client.get("/admin/petitions/abc").status_code == 404
    with db.session() as session:
        assert session.exec(select(Petition)).all() == []


@pytest.fixture(scope="module")
def organizer() -> Iterator[tuple[str, httpx.Client]]:
    from tempfile import TemporaryDirectory

    with TemporaryDirectory() as folder:
        db = open_database(f"sqlite:///{folder}/m.db", create=True)
        add_users(db)
        add_people(db, "members", people(1))
        create_blast(
            db, make_settings(), name="b", template="executive-orders", list_names=["members"]
        )
        with serve(db, make_settings()) as url, httpx.Client(base_url=url) as client:
            yield sign_in(client, "organizer"), client
        db.dispose()


FIELDS = ["name", "goal", "target_url", "slug", "blast"] + [
    f"{lang}_{key}" for lang in ("en", "es") for key in ("title", "intro", "message", "target")
]


@given(
    values=st.dictionaries(st.sampled_from(FIELDS), st.text(max_size=60), max_size=len(FIELDS)),
    target=st.sampled_from(["/admin/petitions", "/admin/petitions/1", "/admin/petitions/1/link"]),
)
@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_random_form_values_never_fail_the_server(
    organizer: tuple[str, httpx.Client], values: dict[str, str], target: str
) -> None:
    csrf, client = organizer
    answer = client.post(target, data={"csrf": csrf, **values})
    assert answer.status_code in (303, 400, 404), answer.text
    assert re.search(r"Internal Server Error|Traceback", answer.text) is None
