"""The send log: filtered, paged by key, exported as a streamed CSV."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute

from mailer import csvsafe
from mailer.accounts import Permission
from mailer.errors import BadInput, NotFound
from mailer.inputs import row_id, whole_number
from mailer.report import LOG_COLUMNS, delivery_log
from mailer.store import DeliveryState, find_blast
from mailer.web.admin.guard import Call
from mailer.web.admin.site import Site
from mailer.web.common import NO_STORE

PAGE_SIZE = 100


def routes(site: Site) -> list[BaseRoute]:
    return [
        site.page("GET", "/admin/blasts/{ref}/log", Permission.READ, send_log),
        site.page("GET", "/admin/blasts/{ref}/log.csv", Permission.READ, send_log_csv),
    ]


def _log_filters(site: Site, call: Call) -> tuple[dict[str, str], dict[str, Any]]:
    raw = {name: call.query(name) for name in ("state", "domain", "reply_code", "q")}
    args: dict[str, Any] = {"domain": raw["domain"], "address": raw["q"]}
    states = {str(s) for s in DeliveryState}
    if raw["state"] and raw["state"] not in states:
        raise NotFound(f"no delivery state {raw['state']!r}")
    args["state"] = DeliveryState(raw["state"]) if raw["state"] else None
    if raw["reply_code"]:
        try:
            args["reply_code"] = whole_number(raw["reply_code"], name="reply code", maximum=999)
        except BadInput as exc:
            raise NotFound(str(exc)) from None
    return raw, args


def send_log(site: Site, call: Call) -> Response:
    with site.db.session() as session:
        try:
            blast = find_blast(session, call.param("ref"))
        except NotFound as exc:
            return site.render(
                "message.html", call.caller, status=404, heading="No such blast", text=str(exc)
            )
    assert blast.id is not None
    try:
        raw, args = _log_filters(site, call)
    except NotFound as exc:
        raw, args, error = {}, None, str(exc)
    else:
        error = ""
    after = row_id(call.query("after", "0"))
    rows: list[dict[str, Any]] = []
    if args is not None:
        for row in delivery_log(site.db, blast.id, chunk=PAGE_SIZE + 1, after=after, **args):
            rows.append(row)
            if len(rows) > PAGE_SIZE:
                break
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    query = urlencode({k: v for k, v in raw.items() if v})
    return site.render(
        "log.html",
        call.caller,
        status=400 if error else 200,
        error=error,
        blast=blast,
        rows=rows,
        states=[str(s) for s in DeliveryState],
        filters={k: raw.get(k, "") for k in ("state", "domain", "reply_code", "q")},
        query=query,
        after=after,
        next_after=rows[-1]["delivery"] if more and rows else 0,
    )


def send_log_csv(site: Site, call: Call) -> Response:
    with site.db.session() as session:
        blast = find_blast(session, call.param("ref"))
    assert blast.id is not None
    try:
        _, args = _log_filters(site, call)
    except NotFound as exc:
        return Response(str(exc), status_code=400)
    blast_id = blast.id

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csvsafe.DictWriter(buffer, fieldnames=LOG_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for count, row in enumerate(delivery_log(site.db, blast_id, **args), 1):
            writer.writerow(row)
            if count % 500 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    filename = f"blast-{blast_id}-log.csv"
    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            **NO_STORE,
        },
    )
