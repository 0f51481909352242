"""Issue 15, item 3: a public opt-in is confirmed by the supporter (double opt-in)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timedelta

import httpx
import pytest
from sqlmodel import func, select

from mailer.config import Settings
from mailer.devsmtp import free_port
from mailer.petitions.optin import ConfirmationMailer
from mailer.store import Database, Event, MailingList, Membership, Supporter, SupporterStatus
from mailer.store.models import utcnow
from mailer.web import create_app
from mailer.web.server import BackgroundServer
from tests.conftest import TEST_SECRET, make_settings
from tests.factories import Person, add_people
from tests.petitionkit import SentPetition, csrf_of, send_petition_blast
from tests.smtpserver import SmtpTestServer
from tests.test_action_pages import public_form

CONFIRM = re.compile(r"http://127\.0\.0\.1:8000(/confirm/[A-Za-z0-9_-]+)")
CARLA = "carla.diaz@example.org"


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sent(db: Database, settings: Settings, smtp_server: SmtpTestServer) -> SentPetition:
    return send_petition_blast(db, settings, smtp_server, [Person("ben@example.org", "Ben")])


@pytest.fixture
def client(
    db: Database, settings: Settings, clock: Clock, sent: SentPetition
) -> Iterator[httpx.Client]:
    app = create_app(
        db,
        TEST_SECRET,
        clock=clock,
        petitions=settings.petitions,
        confirmations=ConfirmationMailer(settings),
    )
    with BackgroundServer(app, port=free_port()) as server, httpx.Client(base_url=server.url) as c:
        yield c


def supporter(db: Database, address: str) -> Supporter | None:
    with db.session() as session:
        return session.exec(select(Supporter).where(Supporter.email == address)).first()


def opt_in(client: httpx.Client, sent: SentPetition, **fields: str) -> None:
    path, form = public_form(client, sent.petition.slug, opt_in="1", **fields)
    response = client.post(path, data=form)
    assert response.status_code == 200, response.text


def confirmation_links(server: SmtpTestServer, address: str) -> list[str]:
    found = []
    for received in server.handler.to(address):
        body = received.message().get_body(("plain",))
        assert body is not None
        found += CONFIRM.findall(body.get_content())
    return found


def confirm(client: httpx.Client, path: str) -> httpx.Response:
    page = client.get(path)
    assert page.status_code == 200
    return client.post(path, data={"csrf": csrf_of(page)})


def test_ticking_the_box_leaves_a_new_address_pending_until_it_confirms(
    db: Database, client: httpx.Client, sent: SentPetition
) -> None:
    opt_in(client, sent)
    pending = supporter(db, CARLA)
    assert pending is not None and pending.status == SupporterStatus.PENDING
    [link] = confirmation_links(sent.server, CARLA)
    # Following the link (as a link scanner does) confirms nothing by itself.
    assert client.get(link).status_code == 200
    assert supporter(db, CARLA).status == SupporterStatus.PENDING  # type: ignore[union-attr]
    done = confirm(client, link)
    assert done.status_code == 200 and "confirmed" in done.text.lower()
    confirmed = supporter(db, CARLA)
    assert confirmed is not None and confirmed.status == SupporterStatus.ACTIVE
    with db.session() as session:
        listed = session.exec(
            select(MailingList.name)
            .join(Membership, Membership.list_id == MailingList.id)  # type: ignore[arg-type]
            .where(Membership.supporter_id == confirmed.id)
        ).all()
        actions = session.exec(select(Event.action).where(Event.supporter_id == confirmed.id)).all()
    assert listed == [sent.petition.opt_in_list]
    assert "supporter.confirmed" in actions


def test_a_pending_supporter_gets_no_blast(
    db: Database, settings: Settings, client: httpx.Client, sent: SentPetition
) -> None:
    from mailer.blasts import create_blast, send_now

    opt_in(client, sent)
    blast = create_blast(
        db,
        settings,
        name="to-opt-ins",
        template="executive-orders",
        list_names=[sent.petition.opt_in_list],
    )
    assert blast.id is not None
    send_now(db, settings, blast.id)
    received = sent.server.handler.to(CARLA)
    assert len(received) == 1  # the confirmation only
    assert confirmation_links(sent.server, CARLA)


def test_an_unconfirmed_opt_in_expires(
    db: Database, settings: Settings, client: httpx.Client, clock: Clock, sent: SentPetition
) -> None:
    opt_in(client, sent)
    [link] = confirmation_links(sent.server, CARLA)
    page = client.get(link)
    clock.now += timedelta(hours=settings.petitions.opt_in_expiry_hours, minutes=1)
    late = client.post(link, data={"csrf": csrf_of(page)})
    assert late.status_code == 410
    assert supporter(db, CARLA) is None  # expired and removed
    assert client.get(link).status_code == 410


@pytest.mark.parametrize(
    "status", [SupporterStatus.ACTIVE, SupporterStatus.UNSUBSCRIBED, SupporterStatus.BOUNCED]
)
def test_the_form_never_changes_an_existing_supporters_status(
    db: Database, client: httpx.Client, sent: SentPetition, status: SupporterStatus
) -> None:
    add_people(db, "others", [Person(CARLA, "Carla", status=status)])
    opt_in(client, sent)
    found = supporter(db, CARLA)
    assert found is not None and found.status == status
    assert confirmation_links(sent.server, CARLA) == []


def test_forged_and_altered_confirmation_links_are_refused(
    db: Database, client: httpx.Client, sent: SentPetition
) -> None:
    opt_in(client, sent)
    [link] = confirmation_links(sent.server, CARLA)
    token = link.rsplit("/", 1)[1]
    altered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert client.get(f"/confirm/{altered}").status_code == 404
    assert client.get("/confirm/not-a-token").status_code == 404
    assert supporter(db, CARLA).status == SupporterStatus.PENDING  # type: ignore[union-attr]


def test_repeated_opt_ins_do_not_flood_the_address(
    db: Database, client: httpx.Client, sent: SentPetition
) -> None:
    for _ in range(3):
        opt_in(client, sent)
    assert len(confirmation_links(sent.server, CARLA)) == 1
    with db.session() as session:
        assert session.exec(select(func.count()).select_from(Supporter)).one() == 2  # Ben, Carla


def test_the_expiry_setting_is_checked() -> None:
    from mailer.errors import ConfigError

    with pytest.raises(ConfigError, match=r"petitions\.opt_in_expiry_hours"):
        make_settings(petitions={"opt_in_expiry_hours": 0})
