"""The sign-in form's CSRF cookie is signed: one planted from a sibling domain does not pass."""

from __future__ import annotations

import httpx

from mailer.config import Settings
from mailer.store import Database
from mailer.web.admin.guard import LOGIN_CSRF_COOKIE
from tests.admin_helpers import PASSWORD, add_users, hidden, serve


def test_a_planted_login_csrf_cookie_does_not_pass(sqlite_db: Database, settings: Settings) -> None:
    """A sibling domain (evil.example.org next to act.example.org) can set a cookie for
    the parent domain and post a form with the same value: a plain double-submit check
    takes it, and the browser is signed in to the attacker's account."""
    add_users(sqlite_db)
    with serve(sqlite_db, settings) as url, httpx.Client(base_url=url) as client:
        client.cookies.set(LOGIN_CSRF_COOKIE, "planted-by-a-sibling-domain")
        forged = client.post(
            "/admin/login",
            data={"csrf": "planted-by-a-sibling-domain", "name": "admin", "password": PASSWORD},
        )
        assert forged.status_code == 403
        assert client.get("/admin/").status_code == 303  # not signed in
        # The form's own token, for the cookie the server set, still signs in.
        client.cookies.clear()
        form = client.get("/admin/login")
        assert hidden(form.text) != client.cookies.get(LOGIN_CSRF_COOKIE)
        done = client.post(
            "/admin/login",
            data={"csrf": hidden(form.text), "name": "admin", "password": PASSWORD},
        )
        assert done.status_code == 303 and client.get("/admin/").status_code == 200
