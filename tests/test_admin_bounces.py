"""The admin's bounce page: who was stopped and why, refusals by domain, undo by admins only.

Real reports are applied to a real blast's deliveries (as ``mailer inbound``
does), then the pages are read and posted over HTTP like a browser would.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from mailer.config import Settings
from mailer.store import Database, SupporterStatus, open_database
from tests.admin_helpers import add_users, serve, sign_in
from tests.conftest import make_settings
from tests.factories import add_people, people
from tests.smtpserver import SmtpTestServer
from tests.test_bounce_rules import apply_report
from tests.test_inbound import send_blast, state_of


@pytest.fixture
def verp(smtp_server: SmtpTestServer) -> Settings:
    return make_settings(
        smtp_port=smtp_server.port, sender={"verp": True, "return_path": "bounces@example.org"}
    )


def test_the_page_shows_stops_and_refusals_and_an_admin_undoes_a_rule(
    db: Database, verp: Settings, smtp_server: SmtpTestServer
) -> None:
    add_people(db, "members", people(3))
    add_users(db)
    sent = send_blast(db, verp, smtp_server)
    apply_report(db, verp, sent["p0@example.org"], "5.1.1", "smtp; 550 5.1.1 user unknown", 1)
    apply_report(
        db, verp, sent["p1@example.org"], "5.7.1", "smtp; 550 5.7.1 message refused as spam", 2
    )
    with serve(db, verp) as url, httpx.Client(base_url=url) as client:
        sign_in(client, "viewer")
        page = client.get("/admin/bounces")
        assert page.status_code == 200
        assert "p0@example.org" in page.text and "words:no-mailbox" in page.text
        assert "p1@example.org" not in page.text.split('id="stopped"')[1]  # blocked: not stopped
        assert "example.org" in page.text.split('id="blocked"')[1].split("</table>")[0]
        assert "Undo these bounces" not in page.text  # viewers read only
        blast = client.get("/admin/blasts/1").text
        assert ("Refused as blocked" in blast and "5.7.1" in blast) or "spam" in blast

    with serve(db, verp) as url, httpx.Client(base_url=url) as client:
        csrf = sign_in(client, "admin")
        refused = client.post("/admin/bounces/undo", data={"csrf": csrf})
        assert refused.status_code == 400 and "choose a rule or a time range" in refused.text
        assert state_of(db, sent["p0@example.org"])[1] is SupporterStatus.BOUNCED
        done = client.post("/admin/bounces/undo", data={"csrf": csrf, "rule": "words:no-mailbox"})
        assert done.status_code == 303
        assert "1 supporter(s) made active again" in client.get(done.headers["location"]).text
    assert state_of(db, sent["p0@example.org"])[1] is SupporterStatus.ACTIVE


def test_organizers_cannot_undo_and_forged_posts_change_nothing(
    sqlite_db: Database, verp: Settings, smtp_server: SmtpTestServer
) -> None:
    add_people(sqlite_db, "members", people(1))
    add_users(sqlite_db)
    sent = send_blast(sqlite_db, verp, smtp_server)
    apply_report(sqlite_db, verp, sent["p0@example.org"], "5.1.1", "smtp; 550 5.1.1 unknown", 1)
    with serve(sqlite_db, verp) as url, httpx.Client(base_url=url) as client:
        csrf = sign_in(client, "organizer")
        denied = client.post("/admin/bounces/undo", data={"csrf": csrf, "rule": "words:"})
        assert denied.status_code == 403
    with serve(sqlite_db, verp) as url, httpx.Client(base_url=url) as client:
        sign_in(client, "admin")
        forged = client.post("/admin/bounces/undo", data={"csrf": "x" * 40, "rule": "words:"})
        assert forged.status_code == 403
    assert state_of(sqlite_db, sent["p0@example.org"])[1] is SupporterStatus.BOUNCED


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[httpx.Client, str]]:
    db = open_database(f"sqlite:///{tmp_path_factory.mktemp('b') / 'm.db'}", create=True)
    add_users(db)
    with serve(db, make_settings()) as url, httpx.Client(base_url=url) as client:
        csrf = sign_in(client, "admin")
        yield client, csrf
    db.dispose()


@hypothesis_settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rule=st.text(max_size=300), since=st.text(max_size=40), until=st.text(max_size=40))
def test_random_filters_and_undo_posts_never_fail(
    hostile: tuple[httpx.Client, str], rule: str, since: str, until: str
) -> None:
    client, csrf = hostile
    shown = client.get("/admin/bounces", params={"rule": rule, "since": since, "until": until})
    assert shown.status_code in (200, 400)
    posted = client.post(
        "/admin/bounces/undo", data={"csrf": csrf, "rule": rule, "since": since, "until": until}
    )
    assert posted.status_code in (303, 400)
