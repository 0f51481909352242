"""The web admin (``/admin``) and its JSON API (``/api``), served by the same app.

See docs/admin.md for roles, pages, the API and the security choices.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.routing import BaseRoute

from mailer.config import Settings
from mailer.store import Database
from mailer.store.models import utcnow


def admin_routes(
    db: Database, settings: Settings, *, clock: Callable[[], datetime] = utcnow
) -> list[BaseRoute]:
    """The routes of the admin pages and the JSON API."""
    from mailer.web.admin.api import AdminApi
    from mailer.web.admin.pages import AdminPages

    pages = Environment(
        loader=PackageLoader("mailer.web", "templates"), autoescape=select_autoescape(["html"])
    )
    admin = AdminPages(db, settings, pages, clock)
    return [*admin.routes(), *AdminApi(db, settings, admin.guard, clock).routes()]
