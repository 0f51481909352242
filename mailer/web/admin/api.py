"""The JSON API under ``/api``: the admin pages' reads and actions, for scripts.

Authentication: ``Authorization: Bearer <token>`` (``mailer user token NAME``
prints one), or the admin's session cookie with ``X-CSRF-Token`` on writes.
Roles as on the pages. Errors are ``{"error": "..."}`` with 400, 401, 403 or
404. The schema is at ``/api/openapi.json`` (built from :data:`ENDPOINTS`,
which the routes are made from too, so the two cannot drift) and readable at
``/api/docs``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from markupsafe import escape
from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from mailer import __version__
from mailer.accounts import Permission
from mailer.blasts import find_blast
from mailer.config import Settings
from mailer.errors import ConfigError, MailerError, NotFound
from mailer.inputs import row_id, whole_number
from mailer.report import blast_report, delivery_log, failure_breakdown, link_report, timeline
from mailer.store import Blast, Database, DeliveryState
from mailer.supporters.history import find_supporters, supporter_history
from mailer.supporters.suppression import suppress_address
from mailer.web.admin import actions
from mailer.web.admin.guard import Call, Guard

MAX_LIMIT = 1000


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    permission: Permission
    summary: str
    handler: str  # AdminApi method name
    query: tuple[tuple[str, str, str], ...] = ()  # (name, type, description)
    body: dict[str, Any] | None = None  # JSON schema of the request body


_BLAST_REF = "id or name of the blast"
ENDPOINTS = (
    Endpoint("GET", "/api/blasts", Permission.READ, "Every blast with its figures", "list_blasts"),
    Endpoint(
        "POST",
        "/api/blasts",
        Permission.BLASTS,
        "Create a draft blast",
        "create_blast",
        body={
            "type": "object",
            "required": ["name", "template", "lists"],
            "properties": {
                "name": {"type": "string"},
                "template": {"type": "string"},
                "lists": {"type": "array", "items": {"type": "string"}},
                "cta_url": {"type": "string"},
                "segment": {"type": "array", "items": {"type": "string"}},
            },
        },
    ),
    Endpoint(
        "GET",
        "/api/blasts/{ref}",
        Permission.READ,
        "A blast's report, clicks per link, timeline and failures",
        "get_blast",
    ),
    Endpoint(
        "GET",
        "/api/blasts/{ref}/log",
        Permission.READ,
        "A page of the blast's send log (keyset: pass next_after as after)",
        "send_log",
        query=(
            ("state", "string", "delivery state"),
            ("domain", "string", "recipient domain"),
            ("reply_code", "integer", "SMTP reply code"),
            ("q", "string", "addresses starting with this"),
            ("after", "integer", "delivery id to start after"),
            ("limit", "integer", f"rows per page, at most {MAX_LIMIT}"),
        ),
    ),
    Endpoint(
        "POST",
        "/api/blasts/{ref}/schedule",
        Permission.BLASTS,
        "Schedule the blast at a wall-clock time in a time zone",
        "schedule",
        body={
            "type": "object",
            "required": ["date", "time"],
            "properties": {
                "date": {"type": "string", "example": "2026-12-01"},
                "time": {"type": "string", "example": "09:00"},
                "zone": {"type": "string", "example": "America/Chicago"},
                "force": {"type": "boolean"},
            },
        },
    ),
    Endpoint(
        "POST",
        "/api/blasts/{ref}/test",
        Permission.BLASTS,
        "Send [TEST] copies to seed addresses",
        "test_send",
        body={
            "type": "object",
            "required": ["to"],
            "properties": {"to": {"type": "array", "items": {"type": "string"}}},
        },
    ),
    *(
        Endpoint(
            "POST",
            f"/api/blasts/{{ref}}/{action}",
            Permission.BLASTS,
            f"{action.capitalize()} the blast",
            action,
        )
        for action in actions.BLAST_ACTIONS
    ),
    Endpoint(
        "GET",
        "/api/supporters",
        Permission.READ,
        "Supporters whose address starts with q",
        "find_supporters",
        query=(("q", "string", "start of the address"),),
    ),
    Endpoint(
        "GET",
        "/api/supporters/{id}",
        Permission.READ,
        "A supporter: lists, status, deliveries, clicks and history",
        "get_supporter",
    ),
    Endpoint(
        "POST",
        "/api/suppressions",
        Permission.MANAGE,
        "Put an address on the suppression list",
        "suppress",
        body={
            "type": "object",
            "required": ["email"],
            "properties": {"email": {"type": "string"}, "reason": {"type": "string"}},
        },
    ),
    Endpoint(
        "POST",
        "/api/supporters/{id}/unsubscribe",
        Permission.MANAGE,
        "Unsubscribe a supporter on their behalf",
        "unsubscribe",
        body={"type": "object", "properties": {"reason": {"type": "string"}}},
    ),
)


def openapi_schema() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for ep in ENDPOINTS:
        parameters: list[dict[str, Any]] = []
        for name in ("ref", "id"):
            if "{" + name + "}" in ep.path:
                parameters.append(
                    {
                        "name": name,
                        "in": "path",
                        "required": True,
                        "description": _BLAST_REF if name == "ref" else "supporter id",
                        "schema": {"type": "string"},
                    }
                )
        for name, typ, description in ep.query:
            parameters.append(
                {"name": name, "in": "query", "description": description, "schema": {"type": typ}}
            )
        operation: dict[str, Any] = {
            "summary": ep.summary,
            "operationId": ep.handler,
            "description": f"Needs a role with the {ep.permission} permission.",
            "parameters": parameters,
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {}}},
                "400": {"description": "Bad input or an action that does not fit the state"},
                "401": {"description": "No valid token or session"},
                "403": {"description": "The role does not allow it, or the CSRF token is wrong"},
                "404": {"description": "No such blast or supporter"},
            },
        }
        if ep.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": ep.body}},
            }
        paths.setdefault(ep.path, {})[ep.method.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {"title": "mailer admin API", "version": __version__},
        "components": {
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "mailer_session"},
            }
        },
        "security": [{"token": []}, {"session": []}],
        "paths": paths,
    }


def _error(exc: Exception) -> JSONResponse:
    status = 404 if isinstance(exc, NotFound) else 400
    return JSONResponse({"error": str(exc)}, status_code=status)


class AdminApi:
    def __init__(
        self, db: Database, settings: Settings, guard: Guard, clock: Callable[[], datetime]
    ) -> None:
        self.db = db
        self.settings = settings
        self.guard = guard
        self.clock = clock

    def list_blasts(self, call: Call) -> Response:
        with self.db.session() as session:
            ids = [b for b in session.exec(select(Blast.id).order_by(col(Blast.id))) if b]
        return JSONResponse({"blasts": [blast_report(self.db, i) for i in ids]})

    def create_blast(self, call: Call) -> Response:
        blast = actions.create(self.db, self.settings, call.caller.name, call.json)
        return JSONResponse(blast_report(self.db, blast.id or 0), status_code=201)

    def get_blast(self, call: Call) -> Response:
        report = blast_report(self.db, call.param("ref"))
        blast_id = report["id"]
        return JSONResponse(
            {
                **report,
                "links": link_report(self.db, blast_id),
                "timeline": timeline(self.db, blast_id),
                "failures": failure_breakdown(self.db, blast_id),
            }
        )

    def send_log(self, call: Call) -> Response:
        with self.db.session() as session:
            blast = find_blast(session, call.param("ref"))
        assert blast.id is not None
        state = call.query("state")
        if state and state not in {str(s) for s in DeliveryState}:
            raise NotFound(f"no delivery state {state!r}")
        code, after, limit_text = (call.query(n) for n in ("reply_code", "after", "limit"))
        limit = min(whole_number(limit_text, name="limit") if limit_text else 100, MAX_LIMIT) or 1
        rows = []
        for row in delivery_log(
            self.db,
            blast.id,
            state=DeliveryState(state) if state else None,
            domain=call.query("domain"),
            reply_code=whole_number(code, name="reply_code", maximum=999) if code else None,
            address=call.query("q"),
            after=whole_number(after, name="after") if after else 0,
            chunk=limit + 1,
        ):
            rows.append(row)
            if len(rows) > limit:
                break
        more = len(rows) > limit
        rows = rows[:limit]
        return JSONResponse(
            {"deliveries": rows, "next_after": rows[-1]["delivery"] if more else None}
        )

    def schedule(self, call: Call) -> Response:
        body = call.json
        notice = actions.schedule(
            self.db,
            self.settings,
            call.caller.name,
            call.param("ref"),
            date=str(body.get("date", "")),
            time=str(body.get("time", "")),
            zone=str(body.get("zone", "")),
            force=bool(body.get("force", False)),
            now=self.clock(),
        )
        return JSONResponse({"result": notice, **blast_report(self.db, call.param("ref"))})

    def test_send(self, call: Call) -> Response:
        to = call.json.get("to", [])
        if isinstance(to, list):
            to = ",".join(str(a) for a in to)
        notice = actions.test_send(
            self.db, self.settings, call.caller.name, call.param("ref"), str(to)
        )
        return JSONResponse({"result": notice})

    def _action(self, action: str) -> Callable[[Call], Response]:
        def run(call: Call) -> Response:
            notice = actions.blast_action(
                self.db, call.caller.name, call.param("ref"), action, now=self.clock()
            )
            return JSONResponse({"result": notice, **blast_report(self.db, call.param("ref"))})

        return run

    def find_supporters(self, call: Call) -> Response:
        q = call.query("q")
        if not q:
            raise MailerError("give q, the start of an address")
        found = find_supporters(self.db, q)
        return JSONResponse({"supporters": [s.model_dump(mode="json") for s in found]})

    def get_supporter(self, call: Call) -> Response:
        raw = call.param("id")
        return JSONResponse(supporter_history(self.db, row_id(raw)))

    def unsubscribe(self, call: Call) -> Response:
        raw = call.param("id")
        notice = actions.unsubscribe(
            self.db,
            call.caller.name,
            row_id(raw),
            reason=str(call.json.get("reason", "")),
            now=self.clock(),
        )
        return JSONResponse({"result": notice})

    def suppress(self, call: Call) -> Response:
        with self.db.session() as session:
            added = suppress_address(
                session,
                str(call.json.get("email", "")),
                reason=str(call.json.get("reason", ""))[:200],
                actor=call.caller.name,
                now=self.clock(),
            )
        return JSONResponse({"added": added}, status_code=201 if added else 200)

    def _wrap(self, handler: Callable[[Call], Response]) -> Callable[[Call], Response]:
        def run(call: Call) -> Response:
            try:
                return handler(call)
            except (MailerError, ConfigError) as exc:
                return _error(exc)

        return run

    def routes(self) -> list[BaseRoute]:
        schema = openapi_schema()

        def openapi(request: Request) -> Response:
            return JSONResponse(schema)

        def docs(request: Request) -> Response:
            items = "".join(
                f"<li><code>{escape(ep.method)} {escape(ep.path)}</code> — {escape(ep.summary)} "
                f"<small>({escape(ep.permission)})</small></li>"
                for ep in ENDPOINTS
            )
            return HTMLResponse(
                '<!doctype html><html lang="en"><head><meta charset="utf-8">'
                '<meta name="viewport" content="width=device-width, initial-scale=1">'
                '<title>mailer admin API</title><link rel="stylesheet" '
                'href="/admin/static/admin.css"></head><body><main><h1>mailer admin API</h1>'
                "<p>Send <code>Authorization: Bearer TOKEN</code> "
                "(<code>mailer user token NAME</code> prints one). The schema: "
                '<a href="/api/openapi.json">/api/openapi.json</a>.</p>'
                f"<ul>{items}</ul></main></body></html>",
                headers={"Content-Security-Policy": "default-src 'none'; style-src 'self'"},
            )

        routes: list[BaseRoute] = [
            Route("/api/openapi.json", openapi, methods=["GET"]),
            Route("/api/docs", docs, methods=["GET"]),
        ]
        for ep in ENDPOINTS:
            if ep.handler in actions.BLAST_ACTIONS:
                handler = self._action(ep.handler)
            else:
                handler = getattr(self, ep.handler)
            routes.append(
                Route(
                    ep.path, self.guard.api(ep.permission, self._wrap(handler)), methods=[ep.method]
                )
            )
        return routes
