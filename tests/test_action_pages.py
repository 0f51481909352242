"""Action pages over real HTTP: click -> /a/<token>, sign, thank-you; the public /p/ form."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import httpx
import pytest
from sqlmodel import func, select

from mailer.compose.tokens import TokenSigner
from mailer.config import PetitionsSettings, Settings, TrackingSettings
from mailer.devsmtp import free_port
from mailer.report import blast_report
from mailer.store import (
    Click,
    Database,
    Delivery,
    MailingList,
    Membership,
    Supporter,
    SupporterStatus,
)
from mailer.store.models import Signature
from mailer.web import create_app
from mailer.web.csrf import COOKIE
from mailer.web.server import BackgroundServer
from tests.conftest import TEST_SECRET
from tests.factories import Person
from tests.petitionkit import TARGET, SentPetition, csrf_of, cta_path, send_petition_blast
from tests.smtpserver import SmtpTestServer

ANA = Person(email="ana@example.org", first_name="Ana", language="es")
BEN = Person(email="ben@example.org", first_name="Ben")


def serve(db: Database, **kwargs: object) -> BackgroundServer:
    app = create_app(db, TEST_SECRET, organization_name="Rights Network", **kwargs)  # type: ignore[arg-type]
    return BackgroundServer(app, port=free_port())


@pytest.fixture
def client(db: Database) -> Iterator[httpx.Client]:
    tracking = TrackingSettings(scanner_window=0)
    with serve(db, tracking=tracking) as server, httpx.Client(base_url=server.url) as c:
        yield c


@pytest.fixture
def sent(db: Database, settings: Settings, smtp_server: SmtpTestServer) -> SentPetition:
    return send_petition_blast(db, settings, smtp_server, [ANA, BEN])


def signatures(db: Database) -> list[Signature]:
    with db.session() as session:
        return list(session.exec(select(Signature).order_by(Signature.id)))  # type: ignore[arg-type]


def action_page(client: httpx.Client, sent: SentPetition, address: str) -> httpx.Response:
    redirect = client.get(cta_path(sent.server, address), follow_redirects=False)
    assert redirect.status_code == 302
    location = redirect.headers["location"]
    assert re.fullmatch(r"/a/[A-Za-z0-9_-]+", location), location
    page = client.get(location)
    assert page.status_code == 200
    return page


def test_click_on_the_call_to_action_is_counted_and_leads_to_the_action_page(
    db: Database, client: httpx.Client, sent: SentPetition
) -> None:
    page = action_page(client, sent, "ben@example.org")
    with db.session() as session:
        assert session.exec(select(func.count()).select_from(Click)).one() == 1
    assert 'name="first_name" value="Ben"' in page.text
    assert "Sign and send" in page.text
    assert "ben@example.org" not in page.text  # the address is never shown back
    assert "I oppose the executive orders" in page.text  # the suggested message
    assert '<strong class="count">0</strong>' in page.text
    # Other links of the alert still go where the template says.
    others = [
        client.get(p, follow_redirects=False).headers["location"]
        for p in cta_path_all(sent, "ben@example.org")[1:]
    ]
    assert others and all(not loc.startswith("/a/") for loc in others)


def cta_path_all(sent: SentPetition, address: str) -> list[str]:
    from tests.petitionkit import click_paths

    return click_paths(sent.server, address)


def test_the_page_speaks_the_supporters_language(client: httpx.Client, sent: SentPetition) -> None:
    page = action_page(client, sent, "ana@example.org")
    assert 'lang="es"' in page.text and "Firmar y enviar" in page.text
    assert 'value="Ana"' in page.text and "Me opongo" in page.text


def test_sign_then_thank_you_with_the_target_and_the_message(
    db: Database, client: httpx.Client, sent: SentPetition
) -> None:
    page = action_page(client, sent, "ben@example.org")
    path = str(page.url.path)
    form = {
        "csrf": csrf_of(page),
        "first_name": "Ben",
        "last_name": "Okafor",
        "message": "Withdraw these orders.\r\nImmigrants are welcome.",
        "website": "",
    }
    thanks = client.post(path, data=form)
    assert thanks.status_code == 200, thanks.text
    assert f'href="{TARGET}"' in thanks.text
    assert "Open the contact form of the White House" in thanks.text
    assert "Withdraw these orders.\nImmigrants are welcome." in thanks.text
    assert '<strong class="count">1</strong>' in thanks.text
    [signature] = signatures(db)
    with db.session() as session:
        delivery = session.exec(select(Delivery).where(Delivery.id == signature.delivery_id)).one()
        supporter = session.get(Supporter, delivery.supporter_id)
    assert supporter is not None and supporter.email == "ben@example.org"
    assert signature.source == "alert" and signature.blast_id == sent.blast_id
    assert signature.petition_id == sent.petition.id and signature.supporter_id == supporter.id
    assert signature.message == "Withdraw these orders.\nImmigrants are welcome."
    assert signature.ip == ""  # tracking.store_ip is "none"
    report = blast_report(db, sent.blast_id)
    assert report["actions"] == 1 and report["action_rate"] == 0.5
    assert report["clicks_unique"] == 1 and report["actions_per_click"] == 1.0

    # Again (a reload, an edit): the signature is updated, never counted twice.
    again_page = client.get(path)
    assert "You have signed already" in again_page.text
    assert "Immigrants are welcome." in again_page.text
    form["csrf"] = csrf_of(again_page)
    form["message"] = "Changed my words."
    second = client.post(path, data=form)
    assert second.status_code == 200 and '<strong class="count">1</strong>' in second.text
    [updated] = signatures(db)
    assert updated.message == "Changed my words." and updated.created_at == signature.created_at
    assert blast_report(db, sent.blast_id)["actions"] == 1


def test_markup_in_the_message_is_stored_as_text_and_shown_escaped(
    db: Database, client: httpx.Client, sent: SentPetition
) -> None:
    page = action_page(client, sent, "ben@example.org")
    markup = '<script>alert("x")</script><b>bold</b>'
    response = client.post(
        str(page.url.path),
        data={"csrf": csrf_of(page), "first_name": "<i>Ben</i>", "message": markup},
    )
    assert response.status_code == 200
    assert "<script>alert" not in response.text and "<b>bold" not in response.text
    assert html.escape(markup, quote=False) in response.text.replace("&#34;", '"')
    [signature] = signatures(db)
    assert signature.message == markup and signature.first_name == "<i>Ben</i>"
    assert "<i>Ben</i>" not in client.get(str(page.url.path)).text


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("first_name", "   ", "Please enter your first name."),
        ("message", "x" * 2001, "Your message is too long (at most 2000 characters)."),
        ("message", "", "Please write a message."),
    ],
)
def test_a_bad_field_gets_the_form_again_and_stores_nothing(
    db: Database, client: httpx.Client, sent: SentPetition, field: str, value: str, problem: str
) -> None:
    page = action_page(client, sent, "ben@example.org")
    form = {"csrf": csrf_of(page), "first_name": "Ben", "message": "Welcome them."}
    form[field] = value
    response = client.post(str(page.url.path), data=form)
    assert response.status_code == 400
    assert problem in response.text
    assert signatures(db) == []


@pytest.mark.parametrize("csrf", ["missing", "forged", "other-cookie", "other-page"])
def test_the_action_form_needs_its_csrf_token(
    db: Database, client: httpx.Client, sent: SentPetition, csrf: str
) -> None:
    page = action_page(client, sent, "ben@example.org")
    path = str(page.url.path)
    form = {"first_name": "Ben", "message": "Welcome them."}
    token = csrf_of(page)
    if csrf == "forged":
        form["csrf"] = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    elif csrf == "other-cookie":
        form["csrf"] = token
        client.cookies.set(COOKIE, "x" * 43)
    elif csrf == "other-page":  # a token issued for another form's path
        public = client.get(f"/p/{sent.petition.slug}")
        form["csrf"] = csrf_of(public)
    response = client.post(path, data=form)
    assert response.status_code == 403
    assert "This form has expired" in response.text
    assert signatures(db) == []


def test_action_tokens_that_are_altered_or_name_another_petition_get_404(
    db: Database, client: httpx.Client, sent: SentPetition
) -> None:
    page = action_page(client, sent, "ben@example.org")
    token = str(page.url.path).rsplit("/", 1)[1]
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert client.get(f"/a/{flipped}").status_code == 404
    signer = TokenSigner(TEST_SECRET)
    with db.session() as session:
        delivery = session.exec(select(Delivery).where(Delivery.blast_id == sent.blast_id)).first()
    assert delivery is not None and delivery.id is not None and sent.petition.id is not None
    assert client.get(f"/a/{signer.action(delivery.id, sent.petition.id + 1)}").status_code == 404
    assert client.get(f"/a/{signer.click(delivery.id, sent.petition.id)}").status_code == 404
    assert client.post(f"/a/{flipped}", data={"csrf": csrf_of(page)}).status_code == 404
    assert signatures(db) == []


def public_form(client: httpx.Client, slug: str, **fields: str) -> tuple[str, dict[str, str]]:
    page = client.get(f"/p/{slug}")
    assert page.status_code == 200
    form = {
        "csrf": csrf_of(page),
        "first_name": "Carla",
        "last_name": "Diaz",
        "email": "Carla.Diaz@Example.org",
        "zip": "94612",
        "message": "",
        "website": "",
    }
    form.update(fields)
    return f"/p/{slug}", form


def test_public_page_signs_without_subscribing(
    db: Database, client: httpx.Client, sent: SentPetition
) -> None:
    page = client.get(f"/p/{sent.petition.slug}")
    assert 'type="checkbox" name="opt_in" value="1">' in page.text  # unticked
    path, form = public_form(client, sent.petition.slug)
    response = client.post(path, data=form)
    assert response.status_code == 200 and "Thank you, Carla!" in response.text
    [signature] = signatures(db)
    assert signature.email == "carla.diaz@example.org"
    assert (signature.source, signature.opted_in, signature.supporter_id) == ("public", False, None)
    assert (signature.city, signature.region, signature.zip) == ("Oakland", "CA", "94612")
    with db.session() as session:
        assert (
            session.exec(
                select(Supporter).where(Supporter.email == "carla.diaz@example.org")
            ).first()
            is None
        )
    # The same address again, spelled differently: one signature, unchanged (anyone can
    # type anyone's address here; test_security_signatures.py has the rest).
    path, form = public_form(
        client, sent.petition.slug, email="carla.diaz@EXAMPLE.org", message="Second words"
    )
    assert client.post(path, data=form).status_code == 200
    [kept] = signatures(db)
    assert kept.id == signature.id and kept.message == ""


def test_public_opt_in_makes_a_pending_supporter_on_the_opt_in_list(
    db: Database, client: httpx.Client, sent: SentPetition
) -> None:
    # Pending until the address confirms (test_optin.py).
    path, form = public_form(client, sent.petition.slug, opt_in="1")
    assert client.post(path, data=form).status_code == 200
    [signature] = signatures(db)
    assert signature.opted_in
    with db.session() as session:
        supporter = session.exec(
            select(Supporter).where(Supporter.email == "carla.diaz@example.org")
        ).one()
        listed = session.exec(
            select(MailingList.name)
            .join(Membership, Membership.list_id == MailingList.id)  # type: ignore[arg-type]
            .where(Membership.supporter_id == supporter.id)
        ).all()
    assert signature.supporter_id == supporter.id and supporter.region == "CA"
    assert supporter.status == SupporterStatus.PENDING
    assert listed == [f"petition-{sent.petition.slug}"]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"first_name": ""}, "Please enter your first name."),
        ({"email": "not an address"}, "This does not look like an email address."),
        ({"email": "someone@"}, "This does not look like an email address."),
        # Not ASCII: without SMTPUTF8 no message could ever reach it (as on import).
        ({"email": "zoë@example.org"}, "This does not look like an email address."),
        ({"email": ""}, "Please enter your email address."),
        ({"zip": "9461"}, "Please enter a 5-digit ZIP code."),
        ({"message": "y" * 2001}, "Your message is too long"),
    ],
)
def test_public_form_problems(
    db: Database, client: httpx.Client, sent: SentPetition, fields: dict[str, str], problem: str
) -> None:
    path, form = public_form(client, sent.petition.slug, **fields)
    response = client.post(path, data=form)
    assert response.status_code == 400 and problem in response.text
    assert signatures(db) == []


def test_public_form_in_spanish(client: httpx.Client, sent: SentPetition) -> None:
    page = client.get(f"/p/{sent.petition.slug}", headers={"Accept-Language": "es-MX,es;q=0.9"})
    assert "Firmar y enviar" in page.text and "Quiero recibir futuras alertas" in page.text
    assert "Sign and send" in client.get(f"/p/{sent.petition.slug}?lang=en").text


def test_public_form_needs_its_csrf_token(
    db: Database, client: httpx.Client, sent: SentPetition
) -> None:
    path, form = public_form(client, sent.petition.slug)
    del form["csrf"]
    assert client.post(path, data=form).status_code == 403
    client.cookies.clear()
    path, form = public_form(client, sent.petition.slug)
    client.cookies.clear()  # the token without the cookie it was made for
    assert client.post(path, data=form).status_code == 403
    assert signatures(db) == []


def test_honeypot_gets_a_thank_you_and_stores_nothing(
    db: Database, client: httpx.Client, sent: SentPetition
) -> None:
    path, form = public_form(client, sent.petition.slug, website="http://spam.example")
    response = client.post(path, data=form)
    assert response.status_code == 200 and "Thank you" in response.text
    page = action_page(client, sent, "ben@example.org")
    response = client.post(
        str(page.url.path),
        data={"csrf": csrf_of(page), "first_name": "Ben", "message": "x", "website": "x"},
    )
    assert response.status_code == 200
    assert signatures(db) == []


def test_unknown_petition_slug_is_404(client: httpx.Client, sent: SentPetition) -> None:
    assert client.get("/p/no-such-petition").status_code == 404


def test_submissions_are_rate_limited_per_client(db: Database, sent: SentPetition) -> None:
    limited = PetitionsSettings(rate_limit="2/minute")
    with serve(db, petitions=limited) as server, httpx.Client(base_url=server.url) as c:
        codes = []
        for n in range(3):
            path, form = public_form(c, sent.petition.slug, email=f"n{n}@example.org")
            response = c.post(path, data=form)
            codes.append(response.status_code)
        assert codes == [200, 200, 429]
        assert int(response.headers["retry-after"]) > 0
        assert "Too many submissions" in response.text
        assert c.get(f"/p/{sent.petition.slug}").status_code == 200  # reading is not limited
    assert [s.email for s in signatures(db)] == ["n0@example.org", "n1@example.org"]


def test_a_bad_rate_limit_setting_names_the_key(db: Database) -> None:
    from mailer.errors import ConfigError

    with pytest.raises(ConfigError, match=r"petitions\.rate_limit"):
        create_app(db, TEST_SECRET, petitions=PetitionsSettings(rate_limit="lots"))


def test_signer_ip_is_kept_only_truncated_when_asked(db: Database, sent: SentPetition) -> None:
    tracking = TrackingSettings(store_ip="truncated")
    with serve(db, tracking=tracking) as server, httpx.Client(base_url=server.url) as c:
        path, form = public_form(c, sent.petition.slug)
        assert c.post(path, data=form).status_code == 200
    [signature] = signatures(db)
    assert signature.ip == "127.0.0.0"
