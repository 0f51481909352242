"""The web admin: accounts, sign-in, sessions, CSRF, lockout, roles, audit, pages, send log."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlmodel import select

from mailer import accounts
from mailer.blasts import create_blast, send_now
from mailer.config import Settings
from mailer.errors import InvalidState
from mailer.store import (
    Blast,
    BlastStatus,
    Database,
    Event,
    Supporter,
    SupporterStatus,
    Suppression,
)
from mailer.store.models import AdminSession, ApiToken, UserRole, utcnow
from tests.admin_helpers import PASSWORD, ROLES, add_users, hidden, serve, sign_in
from tests.conftest import make_settings
from tests.factories import add_people, people
from tests.smtpserver import S550_NO_SUCH_USER, SmtpTestServer


@pytest.fixture
def site(sqlite_db: Database, settings: Settings) -> Iterator[str]:
    add_people(sqlite_db, "members", people(3))
    add_users(sqlite_db)
    with serve(sqlite_db, settings) as url:
        yield url


def new_blast(db: Database, settings: Settings, name: str) -> int:
    blast = create_blast(
        db, settings, name=name, template="executive-orders", list_names=["members"]
    )
    assert blast.id is not None
    return blast.id


def status(db: Database, blast_id: int) -> BlastStatus:
    with db.session() as session:
        blast = session.get(Blast, blast_id)
        assert blast is not None
        return blast.status


# -- accounts ---------------------------------------------------------------------------


def test_passwords_are_stored_as_argon2_hashes(sqlite_db: Database) -> None:
    user = accounts.add_user(sqlite_db, "Ana", UserRole.ADMIN, PASSWORD, actor="test", now=utcnow())
    assert user.name == "ana"
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in user.password_hash
    with pytest.raises(InvalidState, match="at least 10"):
        accounts.add_user(sqlite_db, "bo", UserRole.VIEWER, "short", actor="t", now=utcnow())
    with pytest.raises(InvalidState, match="exists already"):
        accounts.add_user(sqlite_db, "ana", UserRole.VIEWER, PASSWORD, actor="t", now=utcnow())
    with pytest.raises(InvalidState, match="user name"):
        accounts.add_user(sqlite_db, "a b", UserRole.VIEWER, PASSWORD, actor="t", now=utcnow())


def test_lockout_backs_off_after_repeated_failures(sqlite_db: Database) -> None:
    accounts.add_user(sqlite_db, "ana", UserRole.ADMIN, PASSWORD, actor="t", now=utcnow())
    start = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    for i in range(accounts.MAX_FAILURES):
        result = accounts.sign_in(sqlite_db, "ana", "wrong", now=start + timedelta(seconds=i))
        assert result.user is None and result.locked_until is None
    last = start + timedelta(seconds=accounts.MAX_FAILURES - 1)
    locked = accounts.sign_in(sqlite_db, "ana", PASSWORD, now=last + timedelta(seconds=1))
    assert locked.user is None
    assert locked.locked_until == last + accounts.FIRST_WAIT
    # After the wait the right password works; one more failure then would lock for longer.
    later = last + accounts.FIRST_WAIT + timedelta(seconds=1)
    assert accounts.sign_in(sqlite_db, "ana", "wrong", now=later).user is None
    again = accounts.sign_in(sqlite_db, "ana", PASSWORD, now=later + timedelta(seconds=1))
    assert again.locked_until == later + accounts.FIRST_WAIT * 2
    ok = later + accounts.FIRST_WAIT * 2 + timedelta(seconds=1)
    assert accounts.sign_in(sqlite_db, "ana", PASSWORD, now=ok).user is not None
    # A success clears the count.
    assert accounts.sign_in(sqlite_db, "ana", "wrong", now=ok + timedelta(seconds=1)).user is None
    assert accounts.sign_in(sqlite_db, "ana", PASSWORD, now=ok + timedelta(seconds=2)).user


def test_unknown_names_are_locked_out_too(sqlite_db: Database) -> None:
    now = utcnow()
    for i in range(accounts.MAX_FAILURES + 1):
        result = accounts.sign_in(sqlite_db, "nobody", "x", now=now + timedelta(seconds=i))
    assert result.locked_until is not None


def test_api_tokens_are_stored_hashed_and_end_with_the_user(sqlite_db: Database) -> None:
    accounts.add_user(sqlite_db, "bot", UserRole.VIEWER, PASSWORD, actor="t", now=utcnow())
    token = accounts.new_api_token(sqlite_db, "bot", actor="t")
    with sqlite_db.session() as session:
        stored = session.exec(select(ApiToken)).one()
    assert stored.token_hash == accounts.digest(token) and token not in stored.token_hash
    caller = accounts.token_caller(sqlite_db, token, now=utcnow())
    assert caller is not None and caller.name == "bot"
    assert accounts.token_caller(sqlite_db, token + "x", now=utcnow()) is None
    accounts.set_disabled(sqlite_db, "bot", True, actor="t", now=utcnow())
    assert accounts.token_caller(sqlite_db, token, now=utcnow()) is None


# -- sign-in over HTTP --------------------------------------------------------------------


def test_sign_in_sets_a_strict_cookie_and_sign_out_ends_the_session(
    site: str, sqlite_db: Database
) -> None:
    with httpx.Client(base_url=site) as client:
        assert client.get("/admin/").headers["location"].startswith("/admin/login")
        form = client.get("/admin/login")
        done = client.post(
            "/admin/login",
            data={"csrf": hidden(form.text), "name": "viewer", "password": PASSWORD},
        )
        assert done.status_code == 303
        cookie = done.headers["set-cookie"]
        assert "mailer_session=" in cookie and "HttpOnly" in cookie
        assert "SameSite=lax" in cookie and "Secure" not in cookie
        token = client.cookies["mailer_session"]
        with sqlite_db.session() as session:
            row = session.exec(select(AdminSession)).one()
        assert row.token_hash == accounts.digest(token)  # only the hash is stored
        page = client.get("/admin/")
        assert page.status_code == 200 and "viewer (viewer)" in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert client.post("/admin/logout", data={"csrf": hidden(page.text)}).status_code == 303
    with httpx.Client(base_url=site, cookies={"mailer_session": token}) as stale:
        assert stale.get("/admin/").status_code == 303  # back to the sign-in form
    with sqlite_db.session() as session:
        actions = [e.action for e in session.exec(select(Event).where(Event.actor == "viewer"))]
    assert "user.logged_in" in actions and "user.logged_out" in actions


def test_cookie_is_secure_when_the_base_url_is_https(sqlite_db: Database) -> None:
    settings = make_settings(base_url="https://act.example.org")
    add_users(sqlite_db)
    with serve(sqlite_db, settings) as url, httpx.Client(base_url=url) as client:
        form = client.get("/admin/login")
        assert "Secure" in form.headers["set-cookie"]
        done = client.post(
            "/admin/login", data={"csrf": hidden(form.text), "name": "admin", "password": PASSWORD}
        )
        assert "Secure" in done.headers["set-cookie"]


def test_wrong_password_forged_login_csrf_lockout_and_safe_next(site: str) -> None:
    with httpx.Client(base_url=site) as client:
        form = client.get("/admin/login")
        csrf = hidden(form.text)
        forged = client.post(
            "/admin/login", data={"csrf": "forged", "name": "admin", "password": PASSWORD}
        )
        assert forged.status_code == 403 and "mailer_session" not in client.cookies
        odd = client.post("/admin/login", data={"csrf": "jeton-é", "name": "a", "password": "b"})
        assert odd.status_code == 403
        for _ in range(accounts.MAX_FAILURES):
            wrong = client.post(
                "/admin/login", data={"csrf": csrf, "name": "viewer", "password": "nope"}
            )
            assert wrong.status_code == 401 and "Wrong name or password" in wrong.text
        locked = client.post(
            "/admin/login", data={"csrf": csrf, "name": "viewer", "password": PASSWORD}
        )
        assert locked.status_code == 429 and "Too many failed sign-ins" in locked.text
        away = client.post(
            "/admin/login",
            data={
                "csrf": csrf,
                "name": "admin",
                "password": PASSWORD,
                "next": "//evil.example/admin",
            },
        )
        assert away.status_code == 303 and away.headers["location"] == "/admin/"


# -- roles against actions ----------------------------------------------------------------

# action -> (minimum role, how to call it); blast actions get a fresh blast in a fitting state.
ORGANIZER_FORMS = ("create", "schedule", "pause", "cancel", "test")
ADMIN_FORMS = ("unsubscribe", "add_user", "suppress")
ALLOWED = {
    UserRole.VIEWER: set[str](),
    UserRole.ORGANIZER: set(ORGANIZER_FORMS),
    UserRole.ADMIN: set(ORGANIZER_FORMS) | set(ADMIN_FORMS),
}
FUTURE = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%d")


def _post(
    client: httpx.Client,
    db: Database,
    settings: Settings,
    action: str,
    role: UserRole,
    csrf: str,
) -> tuple[httpx.Response, object]:
    """Do ``action``; return the response and what it changes (read again afterwards)."""
    tag = f"{role}-{action}-{'forged' if csrf == 'forged-token' else 'real'}"
    if action == "create":
        data = {"name": f"new-{tag}", "template": "executive-orders", "lists": "members"}
        return client.post("/admin/blasts", data={**data, "csrf": csrf}), (
            lambda: _blast_named(db, f"new-{tag}")
        )
    if action in ("schedule", "pause", "cancel", "test"):
        blast_id = new_blast(db, settings, tag)
        if action == "pause":
            _schedule(db, blast_id)
        if action == "schedule":
            data = {"date": FUTURE, "time": "09:00", "zone": "UTC"}
        elif action == "test":
            data = {"to": "seed@example.org"}
        else:
            data = {}
        response = client.post(f"/admin/blasts/{blast_id}/{action}", data={**data, "csrf": csrf})
        return response, (lambda: status(db, blast_id))
    if action == "unsubscribe":
        with db.session() as session:
            person = session.exec(select(Supporter).where(Supporter.email == "p0@example.org"))
            supporter = person.one()
        response = client.post(
            f"/admin/supporters/{supporter.id}/unsubscribe", data={"csrf": csrf, "reason": tag}
        )
        return response, (lambda: _status_of(db, "p0@example.org"))
    if action == "suppress":
        address = f"{tag}@blocked.example"
        response = client.post(
            "/admin/suppressions", data={"csrf": csrf, "email": address, "reason": "test"}
        )
        return response, (lambda: _suppressed(db, address))
    assert action == "add_user"
    response = client.post(
        "/admin/users",
        data={"csrf": csrf, "name": f"u-{role}", "role": "viewer", "password": PASSWORD},
    )
    return response, (lambda: [u.name for u in accounts.list_users(db)])


def _blast_named(db: Database, name: str) -> bool:
    with db.session() as session:
        return session.exec(select(Blast).where(Blast.name == name)).first() is not None


def _suppressed(db: Database, address: str) -> bool:
    with db.session() as session:
        found = session.exec(select(Suppression).where(Suppression.email == address)).first()
        return found is not None


def _status_of(db: Database, email: str) -> SupporterStatus:
    with db.session() as session:
        return session.exec(select(Supporter).where(Supporter.email == email)).one().status


def _schedule(db: Database, blast_id: int) -> None:
    from mailer.schedule import planner

    with db.session() as session:
        blast = session.get(Blast, blast_id)
        assert blast is not None
        planner.schedule(session, blast, utcnow() + timedelta(days=1), actor="test", now=utcnow())


@pytest.mark.parametrize("role", ROLES, ids=str)
def test_each_role_against_each_action(
    role: UserRole,
    site: str,
    sqlite_db: Database,
    settings: Settings,
    smtp_server: SmtpTestServer,
) -> None:
    with httpx.Client(base_url=site) as client:
        csrf = sign_in(client, str(role))
        for path in (
            "/admin/",
            "/admin/supporters?q=p1",
            "/admin/blasts/new",
            "/admin/users",
            "/admin/suppressions",
        ):
            response = client.get(path, follow_redirects=True)
            needs = {
                "/admin/blasts/new": "create",
                "/admin/users": "add_user",
                "/admin/suppressions": "suppress",
            }.get(path)
            expected = 200 if needs is None or needs in ALLOWED[role] else 403
            assert response.status_code == expected, (role, path)
        for action in (*ORGANIZER_FORMS, *ADMIN_FORMS):
            # A forged CSRF token is refused for every role, and changes nothing.
            response, state = _post(client, sqlite_db, settings, action, role, "forged-token")
            before = state()  # type: ignore[operator]
            assert response.status_code == 403, (role, action)
            assert "security token" in response.text
            assert state() == before  # type: ignore[operator]
        for action in (*ORGANIZER_FORMS, *ADMIN_FORMS):
            response, state = _post(client, sqlite_db, settings, action, role, csrf)
            if action in ALLOWED[role]:
                assert response.status_code == 303, (role, action, response.text)
            else:
                assert response.status_code == 403, (role, action)
                assert "may not do this" in response.text
    with sqlite_db.session() as session:
        done = {e.action for e in session.exec(select(Event).where(Event.actor == str(role)))}
    if role is UserRole.VIEWER:
        assert done == {"user.logged_in"}
        assert _status_of(sqlite_db, "p0@example.org") is SupporterStatus.ACTIVE
    else:
        assert {"blast.created", "blast.scheduled", "blast.paused", "blast.cancelled"} <= done
        assert "blast.test_sent" in done
        assert smtp_server.handler.to("seed@example.org")
    if role is UserRole.ADMIN:
        assert {"supporter.unsubscribed", "user.added", "suppression.added"} <= done
        assert _status_of(sqlite_db, "p0@example.org") is SupporterStatus.UNSUBSCRIBED


def test_a_viewer_posting_to_an_organizer_form_changes_nothing(
    site: str, sqlite_db: Database, settings: Settings
) -> None:
    blast_id = new_blast(sqlite_db, settings, "alert")
    _schedule(sqlite_db, blast_id)
    with httpx.Client(base_url=site) as client:
        csrf = sign_in(client, "viewer")
        odd = client.post(f"/admin/blasts/{blast_id}/pause", data={"csrf": "jeton-é"})
        assert odd.status_code == 403
        for action in ("pause", "cancel", "unschedule"):
            refused = client.post(f"/admin/blasts/{blast_id}/{action}", data={"csrf": csrf})
            assert refused.status_code == 403
        assert status(sqlite_db, blast_id) is BlastStatus.SCHEDULED
        page = client.get(f"/admin/blasts/{blast_id}")
        assert page.status_code == 200
        assert "/pause" not in page.text  # no action buttons for a viewer


def test_bad_input_is_named_and_stores_nothing(
    site: str, sqlite_db: Database, settings: Settings
) -> None:
    blast_id = new_blast(sqlite_db, settings, "alert")
    with httpx.Client(base_url=site) as client:
        csrf = sign_in(client, "organizer")
        past = client.post(
            f"/admin/blasts/{blast_id}/schedule",
            data={"csrf": csrf, "date": "2020-01-01", "time": "09:00", "zone": "UTC"},
        )
        assert past.status_code == 400 and "is in the past" in past.text
        zone = client.post(
            f"/admin/blasts/{blast_id}/schedule",
            data={"csrf": csrf, "date": FUTURE, "time": "09:00", "zone": "Mars/Base"},
        )
        assert zone.status_code == 400 and "unknown time zone" in zone.text
        created = client.post(
            "/admin/blasts",
            data={"csrf": csrf, "name": "x", "template": "executive-orders", "lists": "nope"},
        )
        assert created.status_code == 400 and "no list" in created.text
    assert status(sqlite_db, blast_id) is BlastStatus.DRAFT
    assert not _blast_named(sqlite_db, "x")


# -- pages and the send log -------------------------------------------------------------


@pytest.fixture
def sent_blast(db: Database, settings: Settings, smtp_server: SmtpTestServer) -> int:
    add_people(db, "members", people(30))
    add_people(db, "members", people(5, domain="bad.example"))
    for i in range(5):
        smtp_server.handler.refuse[f"p{i}@bad.example"] = S550_NO_SUCH_USER
    add_users(db)
    blast_id = new_blast(db, settings, "alert")
    send_now(db, settings, blast_id)
    return blast_id


def test_blast_page_and_send_log(db: Database, settings: Settings, sent_blast: int) -> None:
    with serve(db, settings) as url, httpx.Client(base_url=url) as client:
        sign_in(client, "organizer")
        page = client.get(f"/admin/blasts/{sent_blast}")
        assert page.status_code == 200
        assert f"/admin/blasts/{sent_blast}/test" in page.text
        assert f"/admin/blasts/{sent_blast}/schedule" not in page.text  # done: not schedulable
        assert f"/admin/blasts/{sent_blast}/pause" not in page.text
        assert "<svg" in page.text and "Failures by domain" in page.text
        assert "bad.example" in page.text and "sandbox" in page.text
        preview = client.get(f"/admin/blasts/{sent_blast}/preview.html")
        assert (
            preview.status_code == 200
            and "frame-ancestors 'self'" in (preview.headers["content-security-policy"])
        )
        dashboard = client.get("/admin/")
        assert "alert" in dashboard.text and "Recent" in dashboard.text

        failed = client.get(f"/admin/blasts/{sent_blast}/log", params={"state": "failed"})
        assert failed.text.count("p0@bad.example") >= 1
        assert "p0@example.org" not in failed.text
        by_domain = client.get(
            f"/admin/blasts/{sent_blast}/log", params={"domain": "bad.example", "reply_code": 550}
        )
        assert by_domain.text.count("@bad.example</a>") == 5
        search = client.get(f"/admin/blasts/{sent_blast}/log", params={"q": "p1"})
        assert "p1@example.org" in search.text and "p2@example.org" not in search.text

        exported = client.get(f"/admin/blasts/{sent_blast}/log.csv", params={"state": "failed"})
        assert exported.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert sorted(r["email"] for r in rows) == [f"p{i}@bad.example" for i in range(5)]
        assert {r["reply_code"] for r in rows} == {"550"}


def test_send_log_pages_by_key(db: Database, settings: Settings, sent_blast: int) -> None:
    from mailer.web.admin import logs as pages

    seen: list[str] = []
    with serve(db, settings) as url, httpx.Client(base_url=url) as client:
        sign_in(client, "viewer")
        path = f"/admin/blasts/{sent_blast}/log"
        old, pages.PAGE_SIZE = pages.PAGE_SIZE, 8
        try:
            while path:
                page = client.get(path)
                seen += re.findall(r'supporters\?q=[^"]+">([^<]+)</a>', page.text)
                found = [p for p in page.text.split('"') if "after=" in p and "/log?" in p]
                path = found[0].replace("&amp;", "&") if found else ""
        finally:
            pages.PAGE_SIZE = old
    assert len(seen) == 35 and len(set(seen)) == 35


def test_supporter_page(db: Database, settings: Settings, sent_blast: int) -> None:
    with serve(db, settings) as url, httpx.Client(base_url=url) as client:
        sign_in(client, "viewer")
        found = client.get("/admin/supporters", params={"q": "p3@bad.example"})
        assert found.status_code == 303
        page = client.get(found.headers["location"])
        assert "members" in page.text and "alert" in page.text and "550" in page.text
        assert "Unsubscribe" not in page.text  # a viewer cannot
        assert client.get("/admin/supporters/99999").status_code == 404
        assert client.get("/admin/supporters/abc").status_code == 404
        listed = client.get("/admin/supporters", params={"q": "p1@e"})
        assert "p1@example.org" in listed.text and "p1@bad.example" not in listed.text
    with serve(db, settings) as url, httpx.Client(base_url=url) as client:
        csrf = sign_in(client, "admin")
        supporter_path = found.headers["location"]
        done = client.post(
            f"{supporter_path}/unsubscribe", data={"csrf": csrf, "reason": "asked by phone"}
        )
        assert done.status_code == 303
        page = client.get(done.headers["location"])
        assert "is unsubscribed" in page.text and "asked by phone" in page.text
        assert "supporter.unsubscribed" in page.text


# -- small parts ------------------------------------------------------------------------


def test_blast_page_shows_the_actions_of_a_petition_blast(
    sqlite_db: Database, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    from tests.factories import Person
    from tests.petitionkit import cta_path, send_petition_blast

    sent = send_petition_blast(
        sqlite_db, settings, smtp_server, [Person("ben@example.org", "Ben", language="en")]
    )
    add_users(sqlite_db)
    with serve(sqlite_db, settings) as url, httpx.Client(base_url=url) as client:
        page = client.get(cta_path(smtp_server, "ben@example.org"), follow_redirects=True)
        assert page.status_code == 200
        form = {"csrf": hidden(page.text), "first_name": "Ben", "message": "No.", "website": ""}
        assert client.post(str(page.url.path), data=form).status_code == 200
        sign_in(client, "viewer")
        blast_page = client.get(f"/admin/blasts/{sent.blast_id}")
    assert blast_page.status_code == 200
    assert "Actions (executive-orders)" in blast_page.text
    assert "<dt>Action rate</dt><dd>100.0%</dd>" in blast_page.text
