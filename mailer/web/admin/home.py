"""Signing in and out, and the dashboard."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlmodel import col, desc, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from mailer import accounts
from mailer.accounts import sign_in, start_session
from mailer.report import blast_report
from mailer.schedule.times import show
from mailer.store import Blast, BlastStatus
from mailer.web.admin.guard import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Call,
    TooLarge,
    parse_form,
    read_body,
)
from mailer.web.admin.site import Site
from mailer.web.csrf import Csrf

LOGIN_PATH = "/admin/login"
LIVE_REFRESH = 5  # seconds between reloads of the dashboard while something sends
RECENT = 20


class HomePages(Site):
    @functools.cached_property
    def login_csrf(self) -> Csrf:
        """The sign-in form's token is an HMAC of its cookie (see mailer/web/csrf.py): a
        cookie planted from a sibling domain, with the same value in the form, fails."""
        return Csrf(self.settings.security.secret_key)

    def login_form(self, request: Request, *, error: str = "", status: int = 200) -> Response:
        token = self.login_csrf.new_cookie(request.cookies.get(LOGIN_CSRF_COOKIE, ""))
        response = self.render(
            "login.html",
            None,
            status=status,
            login_csrf=self.login_csrf.form_token(token, LOGIN_PATH),
            next=_safe_next(request.query_params.get("next", "/admin/")),
            name="",
            error=error,
        )
        self._cookie(response, LOGIN_CSRF_COOKIE, token, 3600)
        return response

    async def login(self, request: Request) -> Response:
        try:
            form, _ = parse_form(await read_body(request))
        except TooLarge:
            return Response("form too large", status_code=413)
        cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not self.login_csrf.matches(cookie, LOGIN_PATH, form.get("csrf", "")):
            return self.login_form(
                request,
                error="The sign-in form expired or came from elsewhere; try again.",
                status=403,
            )
        result = await run_in_threadpool(
            sign_in, self.db, form.get("name", ""), form.get("password", ""), now=self.clock()
        )
        if result.user is None:
            if result.locked_until is not None:
                wait = max(int((result.locked_until - self.clock()).total_seconds()), 1)
                error = f"Too many failed sign-ins for this name; try again in {wait} seconds."
                return self.login_form(request, error=error, status=429)
            return self.login_form(request, error="Wrong name or password.", status=401)
        token, _ = await run_in_threadpool(start_session, self.db, result.user, now=self.clock())
        response = RedirectResponse(_safe_next(form.get("next", "/admin/")), status_code=303)
        self._cookie(
            response, SESSION_COOKIE, token, int(accounts.SESSION_LIFETIME.total_seconds())
        )
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
        return response

    def logout(self, call: Call) -> Response:
        accounts.end_session(
            self.db,
            call.request.cookies.get(SESSION_COOKIE, ""),
            actor=call.caller.name,
            now=self.clock(),
        )
        response = RedirectResponse("/admin/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, secure=self.secure)
        return response

    # -- dashboard ----------------------------------------------------------------------

    def dashboard(self, call: Call) -> Response:
        with self.db.session() as session:
            live = session.exec(
                select(Blast)
                .where(col(Blast.status).in_((BlastStatus.SENDING, BlastStatus.PAUSED)))
                .order_by(col(Blast.id))
            ).all()
            scheduled = session.exec(
                select(Blast)
                .where(Blast.status == BlastStatus.SCHEDULED)
                .order_by(col(Blast.scheduled_at))
            ).all()
            recent = session.exec(
                select(Blast)
                .where(
                    col(Blast.status).not_in(
                        (BlastStatus.SENDING, BlastStatus.PAUSED, BlastStatus.SCHEDULED)
                    )
                )
                .order_by(desc(col(Blast.id)))
                .limit(RECENT)
            ).all()

        def rows(blasts: Any, when: Callable[[Blast], datetime | None]) -> list[dict[str, Any]]:
            out = []
            for blast in blasts:
                report = blast_report(self.db, blast.id)
                pending = sum(report.get(s, 0) for s in ("queued", "sending", "deferred"))
                moment = when(blast)
                out.append(
                    {
                        "report": report,
                        "done": report["recipients"] - pending,
                        "when": show(moment, self.zone) if moment else "after the original",
                    }
                )
            return out

        return self.render(
            "dashboard.html",
            call.caller,
            request=call.request,
            live=rows(live, lambda b: b.started_at or b.scheduled_at),
            scheduled=rows(scheduled, lambda b: b.scheduled_at),
            recent=rows(recent, lambda b: b.finished_at or b.created_at),
            zone=self.zone,
            refresh=LIVE_REFRESH if live else 0,
        )


def _safe_next(target: str) -> str:
    """Only our own admin pages are places to go after signing in (no open redirect)."""
    if target.startswith("/admin") and not target.startswith("//") and "\\" not in target:
        return target
    return "/admin/"
