"""The admin's users: list, add, disable and enable (admins only)."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import BaseRoute

from mailer import accounts
from mailer.accounts import Permission
from mailer.errors import MailerError
from mailer.store.models import UserRole
from mailer.web.admin.guard import Call
from mailer.web.admin.site import Site


def routes(site: Site) -> list[BaseRoute]:
    manage = Permission.MANAGE
    return [
        site.page("GET", "/admin/users", manage, users),
        site.page("POST", "/admin/users", manage, add_user),
        site.page("POST", "/admin/users/{name}/{change:str}", manage, set_disabled),
    ]


def users(site: Site, call: Call, *, error: str = "", status: int = 200) -> Response:
    return site.render(
        "users.html",
        call.caller,
        status=status,
        request=call.request,
        error=error,
        users=accounts.list_users(site.db),
        roles=[str(r) for r in UserRole],
        min_password=accounts.MIN_PASSWORD,
    )


def add_user(site: Site, call: Call) -> Response:
    try:
        role = UserRole(call.form.get("role", ""))
    except ValueError:
        return users(site, call, error="choose a role", status=400)
    try:
        user = accounts.add_user(
            site.db,
            call.form.get("name", ""),
            role,
            call.form.get("password", ""),
            actor=call.caller.name,
            now=site.clock(),
        )
    except MailerError as exc:
        return users(site, call, error=str(exc), status=400)
    return site.back("/admin/users", f"User {user.name} ({user.role}) added.")


def set_disabled(site: Site, call: Call) -> Response:
    name = call.param("name")
    if call.param("change") not in ("disable", "enable"):
        return users(site, call, error="no such change", status=404)
    disabled = call.param("change") == "disable"
    try:
        accounts.set_disabled(
            site.db,
            name,
            disabled,
            actor=call.caller.name,
            now=site.clock(),
            acting_id=call.caller.user.id,
        )
    except MailerError as exc:
        return users(site, call, error=str(exc), status=400)
    return site.back("/admin/users", f"User {name} {'disabled' if disabled else 'enabled'}.")
