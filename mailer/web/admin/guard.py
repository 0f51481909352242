"""Who is asking, and may they: sessions, CSRF, roles, for the admin pages and the API.

Every admin and API handler is wrapped by :meth:`Guard.page` or :meth:`Guard.api`:

- the caller comes from the session cookie (pages, API) or from an
  ``Authorization: Bearer`` API token (API only);
- a form POST must carry the session's CSRF token in its ``csrf`` field, an
  API write through a browser session the same token in ``X-CSRF-Token``
  (token callers need none: browsers never send those tokens on their own);
- the caller's role must grant the handler's permission: a page answers 403,
  the API 403 JSON; no caller sends a page to the sign-in form and the API
  answers 401.

Handlers run in Starlette's thread pool, so database work never blocks the
event loop. Bodies are read by :mod:`mailer.web.common` (capped; one rule for
repeated fields and for bytes that are not UTF-8).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from mailer.accounts import Caller, Permission, session_caller, token_caller
from mailer.errors import BadInput
from mailer.inputs import json_object
from mailer.store import Database
from mailer.web.common import BodyError, Form, read_body, read_form

SESSION_COOKIE = "mailer_session"
LOGIN_CSRF_COOKIE = "mailer_login_csrf"
WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")


@dataclass
class Call:
    """One request as a handler sees it."""

    request: Request
    caller: Caller
    form: Form = field(default_factory=lambda: Form({}))
    json: Any = None

    def param(self, name: str) -> str:
        return str(self.request.path_params[name])

    def query(self, name: str, default: str = "") -> str:
        return self.request.query_params.get(name, default).strip()


Handler = Callable[[Call], Response]
#: Reads the body of a page's POST in place of :func:`read_form` (an upload).
BodyReader = Callable[[Request, Caller], Awaitable[Form]]


def same_token(given: str, expected: str) -> bool:
    """Equal and not empty, compared in constant time (as bytes: any text may be sent)."""
    return bool(given) and bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


FORBIDDEN_PAGE = Callable[[Request, Caller, str], Response]


@dataclass
class Guard:
    db: Database
    clock: Callable[[], datetime]
    forbidden_page: FORBIDDEN_PAGE

    def page(
        self,
        permission: Permission,
        handler: Handler,
        *,
        repeatable: Collection[str] = (),
        reader: BodyReader | None = None,
    ) -> Callable[[Request], Awaitable[Response]]:
        """An admin page: session cookie, CSRF on writes, role check.

        ``repeatable`` names the form fields that may be sent more than once.
        With ``reader`` (an upload) the role is checked before the body is
        read, and the reader itself must check the CSRF token before it
        stores anything; the token is checked again once the form is read.
        """

        async def endpoint(request: Request) -> Response:
            token = request.cookies.get(SESSION_COOKIE, "")
            caller = await run_in_threadpool(session_caller, self.db, token, now=self.clock())
            if caller is None:
                back = quote(
                    request.url.path + ("?" + request.url.query if request.url.query else "")
                )
                return RedirectResponse(f"/admin/login?next={back}", status_code=303)
            call = Call(request, caller)
            if reader is not None and not caller.may(permission):
                return self.forbidden_page(
                    request, caller, f"Your role ({caller.user.role}) may not do this."
                )
            if request.method in WRITE_METHODS:
                try:
                    if reader is not None:
                        call.form = await reader(request, caller)
                    else:
                        call.form = await read_form(request, repeatable=repeatable)
                except BodyError as exc:
                    return PlainTextResponse(exc.message, status_code=exc.status)
                if not same_token(call.form.get("csrf", ""), caller.csrf_token):
                    return self.forbidden_page(
                        request,
                        caller,
                        "The form's security token is missing or wrong. "
                        "Reload the page and try again.",
                    )
            if not caller.may(permission):
                return self.forbidden_page(
                    request, caller, f"Your role ({caller.user.role}) may not do this."
                )
            return await run_in_threadpool(handler, call)

        return endpoint

    def api(
        self, permission: Permission, handler: Handler
    ) -> Callable[[Request], Awaitable[Response]]:
        """A JSON API endpoint: bearer token or session (+ X-CSRF-Token on writes), role check."""

        async def endpoint(request: Request) -> Response:
            auth = request.headers.get("authorization", "")
            caller: Caller | None
            if auth.lower().startswith("bearer "):
                caller = await run_in_threadpool(
                    token_caller, self.db, auth[7:].strip(), now=self.clock()
                )
            else:
                token = request.cookies.get(SESSION_COOKIE, "")
                caller = await run_in_threadpool(session_caller, self.db, token, now=self.clock())
            if caller is None:
                return JSONResponse(
                    {"error": "sign in or send an API token (Authorization: Bearer ...)"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
            call = Call(request, caller)
            if not caller.may(permission):  # before the body is read
                return JSONResponse(
                    {"error": f"role {caller.user.role} may not do this"}, status_code=403
                )
            if request.method in WRITE_METHODS:
                if caller.csrf_token and not same_token(
                    request.headers.get("x-csrf-token", ""), caller.csrf_token
                ):
                    return JSONResponse({"error": "missing or wrong X-CSRF-Token"}, status_code=403)
                try:
                    body = await read_body(request)
                except BodyError as exc:
                    return JSONResponse({"error": exc.message}, status_code=exc.status)
                try:
                    call.json = json_object(body)
                except BadInput as exc:
                    return JSONResponse({"error": str(exc)}, status_code=400)
            return await run_in_threadpool(handler, call)

        return endpoint
