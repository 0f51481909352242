"""The web admin (``/admin``) and its JSON API (``/api``), served by the same app.

One :class:`~mailer.web.admin.site.Site` (settings, database, clock, guard,
rendering) is shared by the page modules; each module's ``routes(site)``
lists its URLs with the role each needs, and :func:`admin_routes` mounts them
in order. See docs/admin.md for roles, pages, the API and the security choices.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from starlette.routing import BaseRoute

from mailer.config import Settings
from mailer.store import Database
from mailer.store.models import utcnow
from mailer.web.admin import (
    api,
    blasts,
    bounces,
    home,
    lists,
    logs,
    people,
    petitions,
    preview,
    sending,
    studio,
    users,
)
from mailer.web.admin.site import Site

# Route order matters where paths overlap: /admin/blasts/new before /admin/blasts/{ref}.
MODULES = (
    *(home, blasts, logs, people, lists, petitions, bounces),
    *(users, studio, preview, sending, api),
)


def admin_routes(
    db: Database, settings: Settings, *, clock: Callable[[], datetime] = utcnow
) -> list[BaseRoute]:
    """The routes of the admin pages and the JSON API."""
    site = Site(db, settings, clock)
    return [route for module in MODULES for route in module.routes(site)]
