"""``/confirm/<token>``: a pending supporter confirms a public opt-in.

``GET`` shows a button and changes nothing (link scanners fetch every link of
a message); ``POST`` with the page's CSRF token confirms. The rules are in
:mod:`mailer.petitions.optin`; this module only answers: ``200`` with the
page, ``404`` for a token that is not ours, ``410`` once it has expired.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from mailer.compose.tokens import TokenSigner
from mailer.errors import TokenError
from mailer.petitions import optin
from mailer.store import Database, Supporter
from mailer.web.common import BodyError, read_form
from mailer.web.csrf import FIELD as CSRF_FIELD
from mailer.web.csrf import Csrf

Render = Callable[..., HTMLResponse]
MAX_BODY_BYTES = 4096


class ConfirmPages:
    def __init__(
        self,
        db: Database,
        signer: TokenSigner,
        csrf: Csrf,
        render: Render,
        *,
        expiry: timedelta,
        clock: Callable[[], datetime],
    ) -> None:
        self.db = db
        self.signer = signer
        self.csrf = csrf
        self.render = render
        self.expiry = expiry
        self.clock = clock

    def routes(self) -> list[Route]:
        return [
            Route("/confirm/{token}", self.page, methods=["GET"]),
            Route("/confirm/{token}", self.submit, methods=["POST"]),
        ]

    def _supporter_id(self, request: Request) -> int | None:
        try:
            supporter_id, _petition_id = self.signer.read_confirm(request.path_params["token"])
        except TokenError:
            return None
        return supporter_id

    def _answer(self, request: Request, state: optin.State, lang: str) -> Response:
        context: dict[str, Any] = {"lang": lang, "state": state, "form_action": request.url.path}
        cookie = ""
        if state == "pending":
            cookie, context["csrf_token"] = self.csrf.issue(request)
            context["csrf_field"] = CSRF_FIELD
        response = self.render("confirm.html", 410 if state == "expired" else 200, **context)
        if cookie:
            self.csrf.set_cookie(response, request, cookie)
        return response

    def _language(self, supporter_id: int) -> str:
        with self.db.session() as session:
            supporter = session.get(Supporter, supporter_id)
            return supporter.language if supporter and supporter.language == "es" else "en"

    def _state(self, supporter_id: int) -> tuple[optin.State, str]:
        with self.db.session() as session:
            state = optin.state_of(session, supporter_id, now=self.clock(), expiry=self.expiry)
        return state, self._language(supporter_id)

    def _confirm(self, supporter_id: int) -> tuple[optin.State, str]:
        lang = self._language(supporter_id)
        with self.db.session() as session:
            state = optin.confirm(session, supporter_id, now=self.clock(), expiry=self.expiry)
        return state, lang

    async def page(self, request: Request) -> Response:
        supporter_id = self._supporter_id(request)
        if supporter_id is None:
            return self.render("not_found.html", 404)
        state, lang = await run_in_threadpool(self._state, supporter_id)
        return self._answer(request, state, lang)

    async def submit(self, request: Request) -> Response:
        supporter_id = self._supporter_id(request)
        if supporter_id is None:
            return self.render("not_found.html", 404)
        try:
            form = await read_form(request, limit=MAX_BODY_BYTES)
        except BodyError as exc:
            return Response(exc.message, status_code=exc.status)
        token = form.get(CSRF_FIELD, "")
        if not self.csrf.valid(request, token):
            return self.render("petition_message.html", 403, lang="en", kind="csrf")
        state, lang = await run_in_threadpool(self._confirm, supporter_id)
        return self._answer(request, state, lang)
