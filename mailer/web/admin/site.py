"""What every admin page shares: the context the page modules are given.

Each page module (:mod:`~mailer.web.admin.home`, :mod:`~mailer.web.admin.blasts`,
:mod:`~mailer.web.admin.logs`, :mod:`~mailer.web.admin.people`,
:mod:`~mailer.web.admin.lists`, :mod:`~mailer.web.admin.petitions`,
:mod:`~mailer.web.admin.users`, :mod:`~mailer.web.admin.api`) has a
``routes(site)`` function; its handlers are plain functions of ``(site, call)``
that :meth:`Site.page` puts behind the :class:`~mailer.web.admin.guard.Guard`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from mailer import notices
from mailer.accounts import Caller, Permission
from mailer.clients import ClientLimit
from mailer.config import Settings
from mailer.schedule.times import show
from mailer.store import Database
from mailer.web.admin.guard import LOGIN_CSRF_COOKIE, BodyReader, Call, Guard
from mailer.web.common import ADMIN_HEADERS, page_templates

STATIC = Path(__file__).resolve().parents[1] / "static"

PageHandler = Callable[["Site", Call], Response]


class Site:
    """The settings, the database, the clock, the guard, and rendering with the caller."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        clock: Callable[[], datetime],
        pages: Environment | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.pages = pages or page_templates()
        self.clock = clock
        self.secure = settings.web.base_url.startswith("https://")
        self.zone = settings.schedule.timezone
        self.guard = Guard(db, clock, self.forbidden)
        self.login_limit = ClientLimit("web.login_rate_limit", settings.web.login_rate_limit)

    # -- routes -------------------------------------------------------------------------

    def page(
        self,
        method: str,
        path: str,
        permission: Permission,
        handler: PageHandler,
        *,
        repeatable: Collection[str] = (),
        reader: BodyReader | None = None,
    ) -> Route:
        """A route to ``handler(site, call)``, for callers with ``permission``.

        ``repeatable`` names the form fields that may be sent more than once;
        ``reader`` reads an upload's body instead of the capped form reader.
        """

        def bound(call: Call) -> Response:
            return handler(self, call)

        endpoint = self.guard.page(permission, bound, repeatable=repeatable, reader=reader)
        return Route(path, endpoint, methods=[method])

    # -- rendering ----------------------------------------------------------------------

    def render(
        self,
        template: str,
        caller: Caller | None,
        *,
        status: int = 200,
        request: Request | None = None,
        **context: Any,
    ) -> HTMLResponse:
        # Only a notice this server sealed (after an action), never text from the link.
        sealed = request.cookies.get(notices.COOKIE, "") if request else ""
        notice = notices.unseal(self.settings.security.secret_key, sealed) if sealed else ""
        html = self.pages.get_template(f"admin/{template}").render(
            organization_name=self.settings.organization.name,
            caller=caller,
            csrf=caller.csrf_token if caller else "",
            can_blasts=bool(caller and caller.may(Permission.BLASTS)),
            can_manage=bool(caller and caller.may(Permission.MANAGE)),
            notice=context.pop("notice", notice),
            show=lambda moment: show(moment, self.zone),
            **context,
        )
        response = HTMLResponse(html, status_code=status, headers=ADMIN_HEADERS)
        if sealed:  # shown once
            response.delete_cookie(notices.COOKIE, path="/admin")
        return response

    def message(self, caller: Caller, status: int, heading: str, text: str) -> HTMLResponse:
        """A page with one message: not found, not done."""
        return self.render("message.html", caller, status=status, heading=heading, text=text)

    def forbidden(self, request: Request, caller: Caller, text: str) -> Response:
        return self.message(caller, 403, "Not allowed", text)

    def back(self, path: str, notice: str) -> Response:
        """Back to ``path`` (303; it may carry a query), which then shows ``notice`` once."""
        response = RedirectResponse(path, status_code=303)
        sealed = notices.seal(self.settings.security.secret_key, notice)
        response.set_cookie(
            notices.COOKIE,
            sealed,
            max_age=notices.MAX_AGE,
            path="/admin",
            httponly=True,
            samesite="lax",
            secure=self.secure,
        )
        return response

    # -- cookies ------------------------------------------------------------------------

    def set_cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            httponly=True,
            samesite="strict" if name == LOGIN_CSRF_COOKIE else "lax",
            secure=self.secure,
        )
