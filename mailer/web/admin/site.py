"""The admin pages' common ground: rendering with the signed-in caller, headers, cookies."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from mailer.accounts import Caller, Permission
from mailer.clients import ClientLimit
from mailer.config import Settings
from mailer.schedule.times import show
from mailer.store import Database
from mailer.web.admin.guard import LOGIN_CSRF_COOKIE, Guard

STATIC = Path(__file__).resolve().parents[1] / "static"
# Admin pages: nothing from elsewhere, no scripts, not framed by other sites.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": CSP,
}


class Site:
    """What every admin page needs: settings, the database, rendering, redirects."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        pages: Environment,
        clock: Callable[[], datetime],
    ) -> None:
        self.db = db
        self.settings = settings
        self.pages = pages
        self.clock = clock
        self.secure = settings.web.base_url.startswith("https://")
        self.zone = settings.schedule.timezone
        self.guard = Guard(db, clock, self.forbidden)
        self.login_limit = ClientLimit("web.login_rate_limit", settings.web.login_rate_limit)

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
        notice = request.query_params.get("notice", "")[:300] if request else ""
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
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    def forbidden(self, request: Request, caller: Caller, text: str) -> Response:
        return self.render(
            "message.html", caller, status=403, heading="Not allowed", text=text, request=None
        )

    def back(self, path: str, notice: str) -> Response:
        return RedirectResponse(f"{path}?{urlencode({'notice': notice})}", status_code=303)

    # -- sign in and out ----------------------------------------------------------------

    def _cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            httponly=True,
            samesite="strict" if name == LOGIN_CSRF_COOKIE else "lax",
            secure=self.secure,
        )
