"""The HTTP app: clicks recorded then redirected, forged tokens refused, unsubscribes."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from sqlmodel import func, select

from mailer.blasts import create_blast, send_now, send_test
from mailer.compose.tokens import TokenSigner
from mailer.config import Settings
from mailer.devsmtp import free_port
from mailer.store import Click, Database, Delivery, Event, Link, Supporter, SupporterStatus
from mailer.web import create_app
from mailer.web.server import BackgroundServer
from tests.conftest import TEST_SECRET
from tests.factories import Person, add_people, people
from tests.smtpserver import SmtpTestServer

BASE = "http://127.0.0.1:8000"


@pytest.fixture
def sent(
    db: Database, settings: Settings, smtp_server: SmtpTestServer
) -> tuple[int, SmtpTestServer]:
    add_people(db, "members", people(3))
    blast = create_blast(
        db, settings, name="alert", template="executive-orders", list_names=["members"]
    )
    assert blast.id is not None
    send_now(db, settings, blast.id)
    return blast.id, smtp_server


@pytest.fixture
def client(db: Database) -> Iterator[httpx.Client]:
    """The app served by uvicorn on a real local socket."""
    app = create_app(db, TEST_SECRET, organization_name="Rights Network")
    with BackgroundServer(app, port=free_port()) as server, httpx.Client(base_url=server.url) as c:
        yield c


def tracking_links(server: SmtpTestServer, address: str) -> list[str]:
    text = server.handler.to(address)[0].message().get_body(preferencelist=("plain",))
    assert text is not None
    return re.findall(rf"{re.escape(BASE)}(/c/[A-Za-z0-9_-]+)", text.get_content())


def unsubscribe_path(server: SmtpTestServer, address: str) -> str:
    header = str(server.handler.to(address)[0].message()["List-Unsubscribe"])
    found = re.search(rf"<{re.escape(BASE)}(/u/[A-Za-z0-9_-]+)>", header)
    assert found is not None
    return found.group(1)


def clicks(db: Database) -> int:
    """The clicks stored (a row counts the replays of its link, tracking.click_dedup_window)."""
    with db.session() as session:
        return session.exec(select(func.coalesce(func.sum(Click.clicks), 0))).one()


def test_click_is_recorded_then_redirected_to_the_recorded_link(
    db: Database, client: httpx.Client, sent: tuple[int, SmtpTestServer]
) -> None:
    blast_id, server = sent
    paths = tracking_links(server, "p0@example.org")
    assert paths
    response = client.get(paths[0], follow_redirects=False)
    assert response.status_code == 302
    assert response.headers["location"] == "https://www.whitehouse.gov/contact/"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["content-length"] == "0" and response.content == b""
    with db.session() as session:
        click = session.exec(select(Click)).one()
        delivery = session.get(Delivery, click.delivery_id)
        supporter = session.get(Supporter, delivery.supporter_id if delivery else -1)
        link = session.get(Link, click.link_id)
    assert supporter is not None and supporter.email == "p0@example.org"
    assert click.blast_id == blast_id and link is not None and link.is_cta
    client.get(paths[0], follow_redirects=False)
    assert clicks(db) == 2  # every click counts in the total; unique counting is the report's job


@pytest.mark.parametrize("mangle", ["flip-last", "truncate", "garbage", "empty-ish"])
def test_altered_token_gets_404_and_records_nothing(
    db: Database, client: httpx.Client, sent: tuple[int, SmtpTestServer], mangle: str
) -> None:
    _, server = sent
    path = tracking_links(server, "p1@example.org")[0]
    token = path.rsplit("/", 1)[1]
    bad = {
        "flip-last": token[:-1] + ("A" if token[-1] != "A" else "B"),
        "truncate": token[:-3],
        "garbage": "not-a-token",
        "empty-ish": "A",
    }[mangle]
    response = client.get(f"/c/{bad}", follow_redirects=False)
    assert response.status_code == 404
    assert "location" not in response.headers
    assert clicks(db) == 0


def test_a_valid_token_never_redirects_outside_the_blasts_links(
    db: Database, client: httpx.Client, sent: tuple[int, SmtpTestServer]
) -> None:
    blast_id, _ = sent
    with db.session() as session:
        delivery = session.exec(select(Delivery).where(Delivery.blast_id == blast_id)).first()
        assert delivery is not None and delivery.id is not None
    signer = TokenSigner(TEST_SECRET)
    # A correctly signed token naming a link id that is not this blast's: 404, nothing stored.
    response = client.get(f"/c/{signer.click(delivery.id, 99999)}", follow_redirects=False)
    assert response.status_code == 404
    # A query string cannot steer the redirect either.
    response = client.get("/c/x?url=https://evil.example.net/", follow_redirects=False)
    assert response.status_code == 404
    assert clicks(db) == 0


def unsubscribe_events(db: Database) -> list[Event]:
    with db.session() as session:
        return list(session.exec(select(Event).where(Event.action == "supporter.unsubscribed")))


def status_of(db: Database, address: str) -> SupporterStatus:
    with db.session() as session:
        supporter = session.exec(select(Supporter).where(Supporter.email == address)).one()
        return supporter.status


def test_unsubscribe_page_then_confirm_button(
    db: Database, client: httpx.Client, sent: tuple[int, SmtpTestServer]
) -> None:
    blast_id, server = sent
    path = unsubscribe_path(server, "p0@example.org")
    page = client.get(path)
    assert page.status_code == 200
    assert (
        "p•••@example.org" in page.text  # masked: whoever holds the link learns no address
        and "p0@example.org" not in page.text
        and f'action="{path}"' in page.text
        and 'method="post"' in page.text
    )
    assert status_of(db, "p0@example.org") is SupporterStatus.ACTIVE  # a GET changes nothing
    done = client.post(path, data={"confirm": "1"}, follow_redirects=False)
    assert done.status_code == 200 and "unsubscribed" in done.text
    assert "p•••@example.org" in done.text and "p0@example.org" not in done.text
    assert status_of(db, "p0@example.org") is SupporterStatus.UNSUBSCRIBED
    [event] = unsubscribe_events(db)
    assert event.blast_id == blast_id and event.detail["via"] == "page"
    assert "You are unsubscribed" in client.get(path).text


def test_rfc8058_one_click_post(
    db: Database, client: httpx.Client, sent: tuple[int, SmtpTestServer]
) -> None:
    _, server = sent
    path = unsubscribe_path(server, "p2@example.org")
    response = client.post(
        path,
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert response.status_code == 200  # RFC 8058: no redirect
    assert status_of(db, "p2@example.org") is SupporterStatus.UNSUBSCRIBED
    again = client.post(
        path,
        content="List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert again.status_code == 200
    [event] = unsubscribe_events(db)  # the second request changed nothing
    assert event.detail["via"] == "one-click"
    assert status_of(db, "p1@example.org") is SupporterStatus.ACTIVE


def test_unsubscribe_with_a_forged_token_is_refused(
    db: Database, client: httpx.Client, sent: tuple[int, SmtpTestServer]
) -> None:
    _, server = sent
    path = unsubscribe_path(server, "p1@example.org")
    forged = path[:-2] + ("AA" if not path.endswith("AA") else "BB")
    assert client.post(forged, content="List-Unsubscribe=One-Click").status_code == 404
    assert client.get(forged).status_code == 404
    click_token = tracking_links(server, "p1@example.org")[0].rsplit("/", 1)[1]
    assert (
        client.post(f"/u/{click_token}").status_code == 404
    )  # a click token is not an unsubscribe token
    assert status_of(db, "p1@example.org") is SupporterStatus.ACTIVE
    assert unsubscribe_events(db) == []


def test_health(client: httpx.Client) -> None:
    assert client.get("/healthz").text == "ok"


def test_unsubscribe_pages_speak_the_supporters_language(
    db: Database, settings: Settings, smtp_server: SmtpTestServer, client: httpx.Client
) -> None:
    add_people(db, "members", [Person("lu@example.org", "Lu", "es")])
    blast = create_blast(
        db, settings, name="es", template="executive-orders", list_names=["members"]
    )
    assert blast.id is not None
    send_now(db, settings, blast.id)
    path = unsubscribe_path(smtp_server, "lu@example.org")
    page = client.get(path)
    assert '<html lang="es">' in page.text and "Cancelar suscripción" in page.text
    done = client.post(path, data={"confirm": "1"})
    assert "Tu suscripción está cancelada" in done.text


def test_oversized_bodies_and_unknown_paths(
    db: Database, client: httpx.Client, sent: tuple[int, SmtpTestServer]
) -> None:
    _, server = sent
    path = unsubscribe_path(server, "p0@example.org")
    assert client.post(path, content=b"x" * 10_000).status_code == 413
    assert status_of(db, "p0@example.org") is SupporterStatus.ACTIVE
    assert client.get("/admin").status_code == 404
    assert client.get("/c/").status_code == 404
    assert client.post("/c/whatever").status_code == 405


def test_rfc8058_one_click_as_multipart_form(
    db: Database, client: httpx.Client, sent: tuple[int, SmtpTestServer]
) -> None:
    _, server = sent
    path = unsubscribe_path(server, "p1@example.org")
    response = client.post(path, files={"List-Unsubscribe": (None, "One-Click")})
    assert response.status_code == 200
    assert status_of(db, "p1@example.org") is SupporterStatus.UNSUBSCRIBED
    [event] = unsubscribe_events(db)
    assert event.detail["via"] == "one-click"


def test_a_test_messages_unsubscribe_link_works_and_changes_nothing(
    db: Database, settings: Settings, client: httpx.Client, smtp_server: SmtpTestServer
) -> None:
    add_people(db, "members", people(1))
    blast = create_blast(
        db, settings, name="alert", template="executive-orders", list_names=["members"]
    )
    assert blast.id is not None
    send_test(db, settings, blast.id, ["p0@example.org"])
    path = unsubscribe_path(smtp_server, "p0@example.org")
    page = client.get(path)
    assert page.status_code == 200 and "test message" in page.text
    done = client.post(path, content=b"List-Unsubscribe=One-Click")
    assert done.status_code == 200 and "nobody was unsubscribed" in done.text
    assert status_of(db, "p0@example.org") is SupporterStatus.ACTIVE
    assert unsubscribe_events(db) == []


@pytest.mark.parametrize(
    "path", ["/healthz", "/u/forged", "/c/forged", "/p/none", "/admin/login", "/api/blasts"]
)
def test_no_page_can_be_framed_by_another_site(client: httpx.Client, path: str) -> None:
    answer = client.get(path, follow_redirects=False)
    assert "frame-ancestors 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["x-frame-options"] == "DENY"
