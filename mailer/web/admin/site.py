"""The admin pages' common ground: rendering with the signed-in caller, headers, cookies."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from mailer import notices
from mailer.accounts import Caller, Permission
from mailer.config import Settings
from mailer.schedule.times import show
from mailer.store import Database
from mailer.web.admin.guard import LOGIN_CSRF_COOKIE, Guard

STATIC = Path(__file__).resolve().parents[1] / "static"
# Admin pages: nothing from elsewhere, no scripts; frame-ancestors 'none' is added to every
# response of the app in one place (mailer/web/framing.py).
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-src 'self'; "
    "form-action 'self'; base-uri 'none'"
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
        response = HTMLResponse(html, status_code=status, headers=HEADERS)
        if sealed:  # shown once
            response.delete_cookie(notices.COOKIE, path="/admin")
        return response

    def forbidden(self, request: Request, caller: Caller, text: str) -> Response:
        return self.render(
            "message.html", caller, status=403, heading="Not allowed", text=text, request=None
        )

    def back(self, path: str, notice: str) -> Response:
        """Back to ``path`` (303), which then shows ``notice`` once."""
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
