"""Signing in and out, the dashboard, and the admin's stylesheet."""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlmodel import col, desc, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from mailer import accounts
from mailer.accounts import Permission, sign_in, start_session
from mailer.report import blast_report
from mailer.schedule.times import show
from mailer.store import Blast, BlastStatus
from mailer.web.admin.guard import LOGIN_CSRF_COOKIE, SESSION_COOKIE, Call
from mailer.web.admin.site import STATIC, Site
from mailer.web.common import BodyError, read_form
from mailer.web.csrf import Csrf

LIVE_REFRESH = 5  # seconds between reloads of the dashboard while something sends
RECENT = 20
LOGIN_PATH = "/admin/login"


@functools.cache
def _login_csrf(secret_key: str) -> Csrf:
    """The sign-in form's token is an HMAC of its cookie (see mailer/web/csrf.py): a
    cookie planted from a sibling domain, with the same value in the form, fails."""
    return Csrf(secret_key)


def routes(site: Site) -> list[BaseRoute]:
    def css(request: Request) -> Response:
        return FileResponse(STATIC / "admin.css", media_type="text/css")

    def script(request: Request) -> Response:
        return FileResponse(STATIC / "studio.js", media_type="text/javascript")

    def home(request: Request) -> Response:
        return RedirectResponse("/admin/", status_code=307)

    def login_page(request: Request) -> Response:
        return login_form(site, request)

    async def login_post(request: Request) -> Response:
        return await login(site, request)

    return [
        Route("/admin", home, methods=["GET"]),
        Route("/admin/static/admin.css", css, methods=["GET"]),
        Route("/admin/static/studio.js", script, methods=["GET"]),
        Route("/admin/login", login_page, methods=["GET"]),
        Route("/admin/login", login_post, methods=["POST"]),
        site.page("POST", "/admin/logout", Permission.READ, logout),
        site.page("GET", "/admin/", Permission.READ, dashboard),
    ]


def login_form(site: Site, request: Request, *, error: str = "", status: int = 200) -> Response:
    csrf = _login_csrf(site.settings.security.secret_key)
    token = csrf.new_cookie(request.cookies.get(LOGIN_CSRF_COOKIE, ""))
    response = site.render(
        "login.html",
        None,
        status=status,
        login_csrf=csrf.form_token(token, LOGIN_PATH),
        next=_safe_next(request.query_params.get("next", "/admin/")),
        name="",
        error=error,
    )
    site.set_cookie(response, LOGIN_CSRF_COOKIE, token, 3600)
    return response


async def login(site: Site, request: Request) -> Response:
    try:
        form = await read_form(request)
    except BodyError as exc:
        return PlainTextResponse(exc.message, status_code=exc.status)
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    csrf = _login_csrf(site.settings.security.secret_key)
    if not csrf.matches(cookie, LOGIN_PATH, form.get("csrf", "")):
        return login_form(
            site,
            request,
            error="The sign-in form expired or came from elsewhere; try again.",
            status=403,
        )
    wait = site.login_limit.wait(request.client.host if request.client else "")
    if wait is not None:
        response = login_form(site, request, error="Too many sign-ins; wait a minute.", status=429)
        response.headers["Retry-After"] = str(wait)
        return response
    result = await run_in_threadpool(
        sign_in, site.db, form.get("name", ""), form.get("password", ""), now=site.clock()
    )
    if result.user is None:
        if result.busy:
            error = "Too many sign-ins at this moment; try again in a minute."
            return login_form(site, request, error=error, status=503)
        if result.locked_until is not None:
            wait = max(int((result.locked_until - site.clock()).total_seconds()), 1)
            error = f"Too many failed sign-ins for this name; try again in {wait} seconds."
            return login_form(site, request, error=error, status=429)
        return login_form(site, request, error="Wrong name or password.", status=401)
    token, _ = await run_in_threadpool(start_session, site.db, result.user, now=site.clock())
    response = RedirectResponse(_safe_next(form.get("next", "/admin/")), status_code=303)
    site.set_cookie(response, SESSION_COOKIE, token, int(accounts.SESSION_LIFETIME.total_seconds()))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return response


def logout(site: Site, call: Call) -> Response:
    accounts.end_session(
        site.db,
        call.request.cookies.get(SESSION_COOKIE, ""),
        actor=call.caller.name,
        now=site.clock(),
    )
    response = RedirectResponse("/admin/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, secure=site.secure)
    return response


# -- dashboard ----------------------------------------------------------------------


def dashboard(site: Site, call: Call) -> Response:
    with site.db.session() as session:
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
            report = blast_report(site.db, blast.id)
            pending = sum(report.get(s, 0) for s in ("queued", "sending", "deferred"))
            moment = when(blast)
            out.append(
                {
                    "report": report,
                    "done": report["recipients"] - pending,
                    "when": show(moment, site.zone) if moment else "after the original",
                }
            )
        return out

    return site.render(
        "dashboard.html",
        call.caller,
        request=call.request,
        live=rows(live, lambda b: b.started_at or b.scheduled_at),
        scheduled=rows(scheduled, lambda b: b.scheduled_at),
        recent=rows(recent, lambda b: b.finished_at or b.created_at),
        zone=site.zone,
        refresh=LIVE_REFRESH if live else 0,
    )


def _safe_next(target: str) -> str:
    """Only our own admin pages are places to go after signing in (no open redirect)."""
    if target.startswith("/admin") and not target.startswith("//") and "\\" not in target:
        return target
    return "/admin/"
