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
from typing import Any

from markupsafe import escape
from sqlmodel import col, select
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from mailer import __version__
from mailer.accounts import Permission
from mailer.errors import ConfigError, MailerError, NotFound
from mailer.inputs import row_id, whole_number
from mailer.report import blast_report, delivery_log, failure_breakdown, link_report, timeline
from mailer.store import Blast, DeliveryState, find_blast
from mailer.supporters import history
from mailer.supporters.suppression import suppress_address
from mailer.web.admin import actions
from mailer.web.admin.guard import Call
from mailer.web.admin.site import Site
from mailer.web.common import API_DOCS_HEADERS

MAX_LIMIT = 1000


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    permission: Permission
    summary: str
    handler: str  # the name of its function here (and the operationId)
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


def list_blasts(site: Site, call: Call) -> Response:
    with site.db.session() as session:
        ids = [b for b in session.exec(select(Blast.id).order_by(col(Blast.id))) if b]
    return JSONResponse({"blasts": [blast_report(site.db, i) for i in ids]})


def create_blast(site: Site, call: Call) -> Response:
    blast = actions.create(site.db, site.settings, call.caller.name, call.json)
    return JSONResponse(blast_report(site.db, blast.id or 0), status_code=201)


def get_blast(site: Site, call: Call) -> Response:
    report = blast_report(site.db, call.param("ref"))
    blast_id = report["id"]
    return JSONResponse(
        {
            **report,
            "links": link_report(site.db, blast_id),
            "timeline": timeline(site.db, blast_id),
            "failures": failure_breakdown(site.db, blast_id),
        }
    )


def send_log(site: Site, call: Call) -> Response:
    with site.db.session() as session:
        blast = find_blast(session, call.param("ref"))
    assert blast.id is not None
    state = call.query("state")
    if state and state not in {str(s) for s in DeliveryState}:
        raise NotFound(f"no delivery state {state!r}")
    code, after, limit_text = (call.query(n) for n in ("reply_code", "after", "limit"))
    limit = min(whole_number(limit_text, name="limit") if limit_text else 100, MAX_LIMIT) or 1
    rows = []
    for row in delivery_log(
        site.db,
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
    return JSONResponse({"deliveries": rows, "next_after": rows[-1]["delivery"] if more else None})


def schedule(site: Site, call: Call) -> Response:
    body = call.json
    notice = actions.schedule(
        site.db,
        site.settings,
        call.caller.name,
        call.param("ref"),
        date=str(body.get("date", "")),
        time=str(body.get("time", "")),
        zone=str(body.get("zone", "")),
        force=bool(body.get("force", False)),
        now=site.clock(),
    )
    return JSONResponse({"result": notice, **blast_report(site.db, call.param("ref"))})


def test_send(site: Site, call: Call) -> Response:
    to = call.json.get("to", [])
    if isinstance(to, list):
        to = ",".join(str(a) for a in to)
    notice = actions.test_send(site.db, site.settings, call.caller.name, call.param("ref"), str(to))
    return JSONResponse({"result": notice})


def blast_action(site: Site, call: Call, action: str) -> Response:
    notice = actions.blast_action(
        site.db, call.caller.name, call.param("ref"), action, now=site.clock()
    )
    return JSONResponse({"result": notice, **blast_report(site.db, call.param("ref"))})


def find_supporters(site: Site, call: Call) -> Response:
    q = call.query("q")
    if not q:
        raise MailerError("give q, the start of an address")
    found = history.find_supporters(site.db, q)
    return JSONResponse({"supporters": [s.model_dump(mode="json") for s in found]})


def get_supporter(site: Site, call: Call) -> Response:
    raw = call.param("id")
    return JSONResponse(history.supporter_history(site.db, row_id(raw)))


def unsubscribe(site: Site, call: Call) -> Response:
    raw = call.param("id")
    notice = actions.unsubscribe(
        site.db,
        call.caller.name,
        row_id(raw),
        reason=str(call.json.get("reason", "")),
        now=site.clock(),
    )
    return JSONResponse({"result": notice})


def suppress(site: Site, call: Call) -> Response:
    with site.db.session() as session:
        added = suppress_address(
            session,
            str(call.json.get("email", "")),
            reason=str(call.json.get("reason", ""))[:200],
            actor=call.caller.name,
            now=site.clock(),
        )
    return JSONResponse({"added": added}, status_code=201 if added else 200)


HANDLERS: dict[str, Callable[[Site, Call], Response]] = {
    handler.__name__: handler
    for handler in (
        list_blasts,
        create_blast,
        get_blast,
        send_log,
        schedule,
        test_send,
        find_supporters,
        get_supporter,
        unsubscribe,
        suppress,
    )
}


def _endpoint(site: Site, name: str) -> Callable[[Call], Response]:
    """The handler ``name`` of :data:`ENDPOINTS`, its errors answered as JSON."""

    def run(call: Call) -> Response:
        try:
            if name in actions.BLAST_ACTIONS:
                return blast_action(site, call, name)
            return HANDLERS[name](site, call)
        except (MailerError, ConfigError) as exc:
            return _error(exc)

    return run


def routes(site: Site) -> list[BaseRoute]:
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
            headers=API_DOCS_HEADERS,
        )

    routes: list[BaseRoute] = [
        Route("/api/openapi.json", openapi, methods=["GET"]),
        Route("/api/docs", docs, methods=["GET"]),
    ]
    for ep in ENDPOINTS:
        endpoint = site.guard.api(ep.permission, _endpoint(site, ep.handler))
        routes.append(Route(ep.path, endpoint, methods=[ep.method]))
    return routes
