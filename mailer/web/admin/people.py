"""Supporters, the suppression list and the admin's users."""

from __future__ import annotations

from sqlmodel import col, select
from starlette.responses import RedirectResponse, Response

from mailer import accounts
from mailer.errors import MailerError, NotFound
from mailer.inputs import row_id
from mailer.report import like_escape
from mailer.store import (
    Supporter,
    Suppression,
)
from mailer.store.models import UserRole
from mailer.supporters.columns import lookup_form
from mailer.supporters.history import find_supporters, supporter_history
from mailer.supporters.suppression import suppress_address
from mailer.web.admin import actions
from mailer.web.admin.guard import Call
from mailer.web.admin.site import Site

SUPPRESSIONS_SHOWN = 200


class PeoplePages(Site):
    # -- supporters ---------------------------------------------------------------------

    def supporters(self, call: Call) -> Response:
        q = call.query("q").lower()
        found: list[Supporter] = []
        if q:
            with self.db.session() as session:
                exact = session.exec(
                    select(Supporter).where(Supporter.email == lookup_form(q))
                ).first()
            if exact is not None and "notice" not in call.request.query_params:
                return RedirectResponse(f"/admin/supporters/{exact.id}", status_code=303)
            found = find_supporters(self.db, q)
        return self.render("supporters.html", call.caller, request=call.request, q=q, found=found)

    def supporter(self, call: Call) -> Response:
        raw = call.param("id")
        try:
            history = supporter_history(self.db, row_id(raw))
        except NotFound:
            return self.render(
                "message.html",
                call.caller,
                status=404,
                heading="No such supporter",
                text=f"no supporter {raw!r}",
            )
        return self.render("supporter.html", call.caller, request=call.request, **history)

    def unsubscribe(self, call: Call) -> Response:
        raw = call.param("id")
        try:
            notice = actions.unsubscribe(
                self.db,
                call.caller.name,
                row_id(raw),
                reason=call.form.get("reason", ""),
                now=self.clock(),
            )
        except MailerError as exc:
            return self.render(
                "message.html", call.caller, status=404, heading="Not done", text=str(exc)
            )
        return self.back(f"/admin/supporters/{raw}", notice)

    # -- suppressions -------------------------------------------------------------------

    def suppressions(self, call: Call, *, error: str = "", status: int = 200) -> Response:
        q = call.query("q").lower()
        query = select(Suppression).order_by(col(Suppression.email)).limit(SUPPRESSIONS_SHOWN)
        if q:
            prefix = like_escape(q)
            query = query.where(col(Suppression.email).like(f"{prefix}%", escape="\\"))
        with self.db.session() as session:
            rows = list(session.exec(query))
        return self.render(
            "suppressions.html",
            call.caller,
            status=status,
            request=call.request,
            error=error,
            q=q,
            rows=rows,
            limit=SUPPRESSIONS_SHOWN,
        )

    def suppress(self, call: Call) -> Response:
        try:
            with self.db.session() as session:
                added = suppress_address(
                    session,
                    call.form.get("email", ""),
                    reason=call.form.get("reason", "").strip()[:200],
                    actor=call.caller.name,
                    now=self.clock(),
                )
        except MailerError as exc:
            return self.suppressions(call, error=str(exc), status=400)
        notice = "Address suppressed." if added else "That address is suppressed already."
        return self.back("/admin/suppressions", notice)

    # -- users --------------------------------------------------------------------------

    def users(self, call: Call, *, error: str = "", status: int = 200) -> Response:
        return self.render(
            "users.html",
            call.caller,
            status=status,
            request=call.request,
            error=error,
            users=accounts.list_users(self.db),
            roles=[str(r) for r in UserRole],
            min_password=accounts.MIN_PASSWORD,
        )

    def add_user(self, call: Call) -> Response:
        try:
            role = UserRole(call.form.get("role", ""))
        except ValueError:
            return self.users(call, error="choose a role", status=400)
        try:
            user = accounts.add_user(
                self.db,
                call.form.get("name", ""),
                role,
                call.form.get("password", ""),
                actor=call.caller.name,
                now=self.clock(),
            )
        except MailerError as exc:
            return self.users(call, error=str(exc), status=400)
        return self.back("/admin/users", f"User {user.name} ({user.role}) added.")

    def set_disabled(self, call: Call) -> Response:
        name = call.param("name")
        if call.param("change") not in ("disable", "enable"):
            return self.users(call, error="no such change", status=404)
        disabled = call.param("change") == "disable"
        try:
            accounts.set_disabled(
                self.db,
                name,
                disabled,
                actor=call.caller.name,
                now=self.clock(),
                acting_id=call.caller.user.id,
            )
        except MailerError as exc:
            return self.users(call, error=str(exc), status=400)
        return self.back("/admin/users", f"User {name} {'disabled' if disabled else 'enabled'}.")
