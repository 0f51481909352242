"""Bounces in the admin: who was stopped by bounces and why, refusals by domain, and undo.

Reading is open to every role; undoing a rule's or a time range's stops is
for admins (it changes supporters' status), and each supporter brought back
gets its ``supporter.bounce_undone`` event, as ``mailer bounces review --undo``
writes. The functions are :mod:`mailer.inbound.review`'s and
:func:`mailer.report.blocked_by_domain`, the ones the CLI calls.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from starlette.responses import Response
from starlette.routing import BaseRoute

from mailer.accounts import Permission
from mailer.inbound.review import Selection, stopped_by_bounces, undo_bounces
from mailer.report import blocked_by_domain
from mailer.schedule.times import zone
from mailer.web.admin.guard import Call
from mailer.web.admin.site import Site

SHOWN = 500  # rows of stopped supporters on one page
BLOCKED_DAYS = 7  # the refusals table covers this many days back


def routes(site: Site) -> list[BaseRoute]:
    return [
        site.page("GET", "/admin/bounces", Permission.READ, review),
        site.page("POST", "/admin/bounces/undo", Permission.MANAGE, undo),
    ]


def _day(text: str, tz: str) -> datetime | None:
    """The start of day ``text`` (YYYY-MM-DD) in the organization's zone; None when empty."""
    text = text.strip()
    if not text:
        return None
    try:
        day = datetime.strptime(text, "%Y-%m-%d")
    except ValueError:
        raise ValueError(f"{text!r} is not a date; write it as YYYY-MM-DD") from None
    return day.replace(tzinfo=zone(tz))


def _selection(site: Site, rule: str, since: str, until: str) -> Selection:
    start, end = _day(since, site.zone), _day(until, site.zone)
    return Selection(
        rule=rule.strip()[:100],
        since=start,
        until=end + timedelta(days=1) if end is not None else None,
    )


def review(site: Site, call: Call, *, error: str = "", status: int = 200) -> Response:
    args = {name: call.query(name)[:100] for name in ("rule", "since", "until")}
    try:
        selection = _selection(site, **args)
    except ValueError as exc:
        error, status, selection = str(exc), 400, Selection()
    stopped = stopped_by_bounces(site.db, selection)
    week_ago = site.clock() - timedelta(days=BLOCKED_DAYS)
    return site.render(
        "bounces.html",
        call.caller,
        status=status,
        request=call.request,
        error=error,
        stopped=stopped[-SHOWN:][::-1],
        total=len(stopped),
        shown=SHOWN,
        filters=args,
        blocked=blocked_by_domain(site.db, since=week_ago),
        blocked_days=BLOCKED_DAYS,
    )


def undo(site: Site, call: Call) -> Response:
    form = call.form
    try:
        selection = _selection(
            site, form.get("rule", ""), form.get("since", ""), form.get("until", "")
        )
        brought_back = undo_bounces(site.db, selection, actor=call.caller.name, now=site.clock())
    except ValueError as exc:
        return review(site, call, error=str(exc), status=400)
    count = len(brought_back)
    return site.back("/admin/bounces", f"{count} supporter(s) made active again; each is recorded.")
