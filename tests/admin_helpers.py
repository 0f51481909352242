"""Shared by the admin page and API tests: an app on a real socket, users, signing in."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

import httpx

from mailer import accounts
from mailer.config import Settings
from mailer.devsmtp import free_port
from mailer.store import Database
from mailer.store.models import UserRole, utcnow
from mailer.web import create_app
from mailer.web.admin import admin_routes
from mailer.web.server import BackgroundServer

PASSWORD = "correct horse battery"
ROLES = (UserRole.VIEWER, UserRole.ORGANIZER, UserRole.ADMIN)


@contextmanager
def serve(
    db: Database, settings: Settings, *, clock: Callable[[], datetime] = utcnow
) -> Iterator[str]:
    """The whole app (public and admin routes) served by uvicorn; yields its URL."""
    app = create_app(
        db,
        settings.security.secret_key,
        extra_routes=admin_routes(db, settings, clock=clock),
    )
    with BackgroundServer(app, port=free_port()) as server:
        yield server.url


def add_users(db: Database) -> None:
    for role in ROLES:
        accounts.add_user(db, str(role), role, PASSWORD, actor="test", now=utcnow())


def hidden(html: str, name: str = "csrf") -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found is not None, f"no hidden field {name} in the page"
    return found.group(1)


def sign_in(client: httpx.Client, name: str, password: str = PASSWORD) -> str:
    """Sign in through the form; return the session's CSRF token."""
    form = client.get("/admin/login")
    assert form.status_code == 200
    done = client.post(
        "/admin/login",
        data={"csrf": hidden(form.text), "name": name, "password": password, "next": "/admin/"},
    )
    assert done.status_code == 303, done.text
    page = client.get("/admin/")
    assert page.status_code == 200
    return hidden(page.text)
