"""The JSON API under /api: tokens from the CLI, roles, CSRF for sessions, schema."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from starlette.routing import Route

from mailer import accounts
from mailer.blasts import create_blast, send_now
from mailer.config import Settings
from mailer.store import Database, open_database
from mailer.store.models import UserRole, utcnow
from mailer.web.admin import admin_routes
from mailer.web.admin.api import ENDPOINTS
from tests.admin_helpers import add_users, serve, sign_in
from tests.conftest import make_settings
from tests.factories import add_people, people
from tests.processes import run_mailer
from tests.smtpserver import S550_NO_SUCH_USER, SmtpTestServer

FUTURE = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%d")


def token_for(db: Database, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {accounts.new_api_token(db, name, actor='test')}"}


@pytest.fixture
def api(sqlite_db: Database, settings: Settings) -> Iterator[httpx.Client]:
    add_people(sqlite_db, "members", people(4))
    add_users(sqlite_db)
    with serve(sqlite_db, settings) as url, httpx.Client(base_url=url) as client:
        yield client


def test_schema_lists_every_api_route(api: httpx.Client, sqlite_db: Database) -> None:
    schema = api.get("/api/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, ops in schema["paths"].items() for method in ops}
    served = {
        (route.path, method)
        for route in admin_routes(sqlite_db, make_settings())
        if isinstance(route, Route) and route.path.startswith("/api/") and route.methods
        for method in route.methods
        if method != "HEAD" and route.path not in ("/api/openapi.json", "/api/docs")
    }
    assert documented == served == {(ep.path, ep.method) for ep in ENDPOINTS}
    assert "Bearer" in api.get("/api/docs").text


def test_no_or_bad_token_is_401(api: httpx.Client) -> None:
    assert api.get("/api/blasts").status_code == 401
    bad = api.get("/api/blasts", headers={"Authorization": "Bearer mlr_forged"})
    assert bad.status_code == 401 and bad.json()["error"]


def test_roles_and_actions_through_tokens(api: httpx.Client, sqlite_db: Database) -> None:
    viewer, organizer, admin = (token_for(sqlite_db, str(r)) for r in UserRole)
    created = api.post(
        "/api/blasts",
        headers=viewer,
        json={"name": "alert", "template": "executive-orders", "lists": ["members"]},
    )
    assert created.status_code == 403
    created = api.post(
        "/api/blasts",
        headers=organizer,
        json={"name": "alert", "template": "executive-orders", "lists": ["members"]},
    )
    assert created.status_code == 201, created.text
    blast_id = created.json()["id"]
    assert created.json()["status"] == "draft"

    listed = api.get("/api/blasts", headers=viewer).json()["blasts"]
    assert [b["blast"] for b in listed] == ["alert"]
    assert api.post(f"/api/blasts/{blast_id}/pause", headers=viewer).status_code == 403

    past = api.post(
        f"/api/blasts/{blast_id}/schedule",
        headers=organizer,
        json={"date": "2020-01-01", "time": "09:00", "zone": "UTC"},
    )
    assert past.status_code == 400 and "in the past" in past.json()["error"]
    scheduled = api.post(
        f"/api/blasts/{blast_id}/schedule",
        headers=organizer,
        json={"date": FUTURE, "time": "09:00", "zone": "America/Chicago"},
    )
    assert scheduled.status_code == 200 and scheduled.json()["status"] == "scheduled"
    paused = api.post(f"/api/blasts/{blast_id}/pause", headers=organizer)
    assert paused.json()["status"] == "paused"
    assert api.post("/api/blasts/nope/cancel", headers=organizer).status_code == 404
    assert api.post(f"/api/blasts/{blast_id}/explode", headers=organizer).status_code in (404, 405)
    cancelled = api.post(f"/api/blasts/{blast_id}/cancel", headers=organizer)
    assert cancelled.json()["status"] == "cancelled"

    supporter = api.get("/api/supporters/1", headers=viewer).json()
    assert supporter["supporter"]["email"] == "p0@example.org"
    assert supporter["lists"] == ["members"] and supporter["deliveries"] == []
    found = api.get("/api/supporters", params={"q": "p1@"}, headers=viewer).json()
    assert [s["email"] for s in found["supporters"]] == ["p1@example.org"]
    assert api.post("/api/supporters/1/unsubscribe", headers=organizer).status_code == 403
    done = api.post("/api/supporters/1/unsubscribe", headers=admin, json={"reason": "phone"})
    assert done.status_code == 200
    after = api.get("/api/supporters/1", headers=viewer).json()
    assert after["supporter"]["status"] == "unsubscribed"
    assert after["events"][0]["action"] == "supporter.unsubscribed"
    assert after["events"][0]["actor"] == "admin"
    body = {"email": "Someone@Example.org", "reason": "asked"}
    assert api.post("/api/suppressions", headers=organizer, json=body).status_code == 403
    assert api.post("/api/suppressions", headers=admin, json=body).json() == {"added": True}
    assert api.post("/api/suppressions", headers=admin, json=body).json() == {"added": False}
    bad = api.post("/api/suppressions", headers=admin, json={"email": "not an address"})
    assert bad.status_code == 400 and "not an address" in bad.json()["error"]
    bad_json = api.post(
        f"/api/blasts/{blast_id}/schedule",
        headers={**organizer, "content-type": "application/json"},
        content=b"{not json",
    )
    assert bad_json.status_code == 400


def test_a_browser_session_needs_the_csrf_header_to_write(
    api: httpx.Client, sqlite_db: Database, settings: Settings
) -> None:
    blast = create_blast(
        sqlite_db, settings, name="alert", template="executive-orders", list_names=["members"]
    )
    csrf = sign_in(api, "organizer")
    assert api.get("/api/blasts").status_code == 200  # reads need no header
    body = {"date": FUTURE, "time": "09:00", "zone": "UTC"}
    refused = api.post(f"/api/blasts/{blast.id}/schedule", json=body)
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
    forged = api.post(
        f"/api/blasts/{blast.id}/schedule", json=body, headers={"X-CSRF-Token": "forged"}
    )
    assert forged.status_code == 403
    ok = api.post(f"/api/blasts/{blast.id}/schedule", json=body, headers={"X-CSRF-Token": csrf})
    assert ok.status_code == 200, ok.text


def test_send_log_pages_and_filters(
    db: Database, settings: Settings, smtp_server: SmtpTestServer
) -> None:
    add_people(db, "members", people(12))
    smtp_server.handler.refuse["p3@example.org"] = S550_NO_SUCH_USER
    add_users(db)
    blast = create_blast(
        db, settings, name="alert", template="executive-orders", list_names=["members"]
    )
    assert blast.id is not None
    send_now(db, settings, blast.id)
    headers = token_for(db, "viewer")
    with serve(db, settings) as url, httpx.Client(base_url=url, headers=headers) as client:
        seen: list[str] = []
        after: int | None = 0
        while after is not None:
            page = client.get(f"/api/blasts/{blast.id}/log", params={"limit": 5, "after": after})
            data = page.json()
            seen += [row["email"] for row in data["deliveries"]]
            after = data["next_after"]
        assert sorted(seen) == sorted(p.email for p in people(12))
        failed = client.get(
            f"/api/blasts/{blast.id}/log", params={"state": "failed", "reply_code": 550}
        ).json()["deliveries"]
        assert [row["email"] for row in failed] == ["p3@example.org"]
        assert client.get(f"/api/blasts/{blast.id}/log", params={"state": "x"}).status_code == 404
        report = client.get(f"/api/blasts/{blast.id}").json()
        assert report["sent"] == 11 and report["failed"] == 1
        assert report["failures"]["by_reply_code"] == [{"reply_code": 550, "count": 1}]
        assert sum(row["sent"] for row in report["timeline"]) == 11


def test_cli_adds_users_and_prints_tokens(tmp_path: Path, settings: Settings) -> None:
    db_path = tmp_path / "m.db"
    (tmp_path / "mailer.toml").write_text(f'[database]\nurl = "sqlite:///{db_path}"\n', "utf-8")

    def mailer(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return run_mailer(tmp_path, *args, config=tmp_path / "mailer.toml", input=stdin, timeout=60)

    added = mailer("user", "add", "Ana", "--role", "admin", "--password-stdin", stdin="x" * 12)
    assert added.returncode == 0, added.stderr
    short = mailer("user", "add", "bo", "--role", "viewer", "--password-stdin", stdin="short")
    assert short.returncode == 1 and "at least 10 characters" in short.stderr
    token = mailer("user", "token", "ana").stdout.strip()
    assert token.startswith("mlr_")
    assert "ana" in mailer("user", "list").stdout
    db = open_database(f"sqlite:///{db_path}")
    try:
        caller = accounts.token_caller(db, token, now=utcnow())
        assert caller is not None and caller.user.role is UserRole.ADMIN
        with serve(db, settings) as url:
            got = httpx.get(f"{url}/api/blasts", headers={"Authorization": f"Bearer {token}"})
            assert got.status_code == 200 and got.json() == {"blasts": []}
        # Another admin first: the last active admin cannot be disabled.
        accounts.add_user(db, "cy", UserRole.ADMIN, "y" * 12, actor="t", now=utcnow())
        assert mailer("user", "disable", "ana").returncode == 0
        assert accounts.token_caller(db, token, now=utcnow()) is None
    finally:
        db.dispose()
