"""Supporters (find, look at, unsubscribe) and the suppression list."""

from __future__ import annotations

from sqlmodel import col, select
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute

from mailer.accounts import Permission
from mailer.errors import MailerError, NotFound
from mailer.inputs import row_id
from mailer.report import like_escape
from mailer.store import Supporter, Suppression
from mailer.supporters.columns import lookup_form
from mailer.supporters.history import find_supporters, supporter_history
from mailer.supporters.suppression import suppress_address
from mailer.web.admin import actions
from mailer.web.admin.guard import Call
from mailer.web.admin.site import Site

SUPPRESSIONS_SHOWN = 200


def routes(site: Site) -> list[BaseRoute]:
    read, manage = Permission.READ, Permission.MANAGE
    return [
        site.page("GET", "/admin/supporters", read, supporters),
        site.page("GET", "/admin/supporters/{id}", read, supporter),
        site.page("POST", "/admin/supporters/{id}/unsubscribe", manage, unsubscribe),
        site.page("GET", "/admin/suppressions", manage, suppressions),
        site.page("POST", "/admin/suppressions", manage, suppress),
    ]


# -- supporters ---------------------------------------------------------------------


def supporters(site: Site, call: Call) -> Response:
    q = call.query("q").lower()
    found: list[Supporter] = []
    if q:
        with site.db.session() as session:
            exact = session.exec(select(Supporter).where(Supporter.email == lookup_form(q))).first()
        if exact is not None and "notice" not in call.request.query_params:
            return RedirectResponse(f"/admin/supporters/{exact.id}", status_code=303)
        found = find_supporters(site.db, q)
    return site.render("supporters.html", call.caller, request=call.request, q=q, found=found)


def supporter(site: Site, call: Call) -> Response:
    raw = call.param("id")
    try:
        history = supporter_history(site.db, row_id(raw))
    except NotFound:
        return site.render(
            "message.html",
            call.caller,
            status=404,
            heading="No such supporter",
            text=f"no supporter {raw!r}",
        )
    return site.render("supporter.html", call.caller, request=call.request, **history)


def unsubscribe(site: Site, call: Call) -> Response:
    raw = call.param("id")
    try:
        notice = actions.unsubscribe(
            site.db,
            call.caller.name,
            row_id(raw),
            reason=call.form.get("reason", ""),
            now=site.clock(),
        )
    except MailerError as exc:
        return site.render(
            "message.html", call.caller, status=404, heading="Not done", text=str(exc)
        )
    return site.back(f"/admin/supporters/{raw}", notice)


# -- suppressions -------------------------------------------------------------------


def suppressions(site: Site, call: Call, *, error: str = "", status: int = 200) -> Response:
    q = call.query("q").lower()
    query = select(Suppression).order_by(col(Suppression.email)).limit(SUPPRESSIONS_SHOWN)
    if q:
        prefix = like_escape(q)
        query = query.where(col(Suppression.email).like(f"{prefix}%", escape="\\"))
    with site.db.session() as session:
        rows = list(session.exec(query))
    return site.render(
        "suppressions.html",
        call.caller,
        status=status,
        request=call.request,
        error=error,
        q=q,
        rows=rows,
        limit=SUPPRESSIONS_SHOWN,
    )


def suppress(site: Site, call: Call) -> Response:
    try:
        with site.db.session() as session:
            added = suppress_address(
                session,
                call.form.get("email", ""),
                reason=call.form.get("reason", "").strip()[:200],
                actor=call.caller.name,
                now=site.clock(),
            )
    except MailerError as exc:
        return suppressions(site, call, error=str(exc), status=400)
    notice = "Address suppressed." if added else "That address is suppressed already."
    return site.back("/admin/suppressions", notice)
