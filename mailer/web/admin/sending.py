"""The studio's sending flow: alert, lists, segment and call to action, then a confirmation.

1. ``/admin/studio/send``: pick a stored alert, the lists, an optional
   segment and the call-to-action URL. The audience count follows the choices
   as they change (``/admin/static/studio.js`` asks ``/admin/studio/count``);
   without script the "Count" button posts the form and the page comes back
   with the count. "Continue" creates a draft blast, which pins the alert's
   newest revision (:func:`mailer.blasts.create_blast`).
2. ``/admin/studio/blasts/ID``: the confirmation. It shows the audience
   count, the pre-flight check's verdict (:func:`mailer.check.check_blast`)
   and whether this revision or this blast was test-sent, with a test-send
   form; then "Send now" or a time in the organizer's zone. Both schedule the
   blast (send now: one second ahead), so the running service starts it the
   way it starts any scheduled blast, within ``schedule.poll_interval``; both
   pass through the same check gate as the CLI (errors stop it unless the
   organizer ticks the override, which is audited).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlmodel import col, select
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute

from mailer.accounts import Permission
from mailer.alerts.sending import count_audience, tested_revisions, was_test_sent
from mailer.alerts.store import list_alerts, load_revision
from mailer.check import check_blast, gate
from mailer.errors import ConfigError, InvalidState, MailerError, NotFound
from mailer.schedule import planner
from mailer.schedule.times import show, zone
from mailer.send.audience import parse_segment
from mailer.store import BlastStatus, MailingList, blast_lists, find_blast
from mailer.web.admin import actions
from mailer.web.admin.guard import Call
from mailer.web.admin.site import Site
from mailer.web.common import NO_STORE

SEND_NOW_DELAY = timedelta(seconds=1)
JSON_HEADERS = {**NO_STORE, "X-Content-Type-Options": "nosniff"}


def routes(site: Site) -> list[BaseRoute]:
    read, write = Permission.READ, Permission.BLASTS
    return [
        site.page("GET", "/admin/studio/send", write, send_form),
        site.page("POST", "/admin/studio/send", write, send_post, repeatable=("lists",)),
        site.page("GET", "/admin/studio/count", read, count),
        site.page("GET", "/admin/studio/blasts/{ref}", read, confirm),
        site.page("POST", "/admin/studio/blasts/{ref}/test", write, confirm_test),
        site.page("POST", "/admin/studio/blasts/{ref}/send", write, start),
    ]


def _segment(text: str) -> dict[str, Any] | None:
    return parse_segment([part.strip() for part in text.split(",") if part.strip()])


def send_form(
    site: Site,
    call: Call,
    *,
    error: str = "",
    status: int = 200,
    counted: int | None = None,
) -> Response:
    with site.db.session() as session:
        lists = list(session.exec(select(MailingList.name).order_by(col(MailingList.name))))
    alerts = [a.name for a in list_alerts(site.db)]
    form: dict[str, str] = dict(call.form)
    if not form:
        form = {"alert": call.query("alert")[:200]}
    if not form.get("name") and form.get("alert"):
        local = site.clock().astimezone(zone(site.zone))
        form["name"] = f"{form['alert']} {local:%Y-%m-%d %H:%M}"
    return site.render(
        "studio_send.html",
        call.caller,
        status=status,
        request=call.request,
        error=error,
        alerts=alerts,
        lists=lists,
        form=form,
        form_lists=call.form.all("lists"),
        counted=counted,
        default_cta=site.settings.blast.default_cta_url,
    )


def send_post(site: Site, call: Call) -> Response:
    chosen = call.form.all("lists")
    if call.form.get("do") == "count":
        try:
            number = count_audience(site.db, chosen, _segment(call.form.get("segment", "")))
        except MailerError as exc:
            return send_form(site, call, error=str(exc), status=400)
        return send_form(site, call, counted=number)
    alert = call.form.get("alert", "").strip()
    if alert not in {a.name for a in list_alerts(site.db)}:
        return send_form(site, call, error="choose one of the alerts in the list", status=400)
    fields: dict[str, Any] = {
        "name": call.form.get("name", ""),
        "template": alert,
        "lists": chosen,
        "cta_url": call.form.get("cta_url", ""),
        "segment": call.form.get("segment", ""),
    }
    try:
        blast = actions.create(site.db, site.settings, call.caller.name, fields)
    except (MailerError, ConfigError) as exc:
        return send_form(site, call, error=str(exc), status=400)
    return site.back(
        f"/admin/studio/blasts/{blast.id}", f"Draft {blast.name!r} ready: check and confirm."
    )


def count(site: Site, call: Call) -> Response:
    """``{"count": N}`` for ``?lists=a&lists=b&segment=language=es``; ``{"error"}`` (400)."""
    chosen = [name[:200] for name in call.request.query_params.getlist("lists")[:500]]
    try:
        number = count_audience(site.db, chosen, _segment(call.query("segment")[:2000]))
    except MailerError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400, headers=JSON_HEADERS)
    return JSONResponse({"count": number}, headers=JSON_HEADERS)


def confirm(site: Site, call: Call, *, error: str = "", status: int = 200) -> Response:
    try:
        with site.db.session() as session:
            blast = find_blast(session, call.param("ref"))
            assert blast.id is not None
            list_names = [lst.name for lst in blast_lists(session, blast.id)]
    except NotFound as exc:
        return site.message(call.caller, 404, "No such blast", str(exc))
    revision = load_revision(site.db, blast.alert_revision_id) if blast.alert_revision_id else None
    try:
        problems = check_blast(site.db, site.settings, blast.id)
    except (MailerError, ConfigError) as exc:
        return site.message(call.caller, 400, "Cannot check this blast", str(exc))
    local = site.clock().astimezone(zone(site.zone)) + timedelta(minutes=5)
    return site.render(
        "studio_confirm.html",
        call.caller,
        status=status,
        request=call.request,
        error=error,
        blast=blast,
        revision=revision,
        list_names=list_names,
        audience=count_audience(site.db, list_names, blast.segment),
        problems=problems,
        errors=sum(1 for p in problems if p.is_error),
        tested=was_test_sent(
            site.db,
            revision.alert if revision else "",
            revision.number if revision else -1,
            blast.id,
        ),
        other_tests=tested_revisions(site.db, revision.alert) if revision else [],
        draft=blast.status in planner.SCHEDULABLE,
        scheduled_local=show(blast.scheduled_at, site.zone)
        if blast.status is BlastStatus.SCHEDULED
        else "",
        zone=site.zone,
        default_date=local.strftime("%Y-%m-%d"),
        default_time=local.strftime("%H:%M"),
    )


def confirm_test(site: Site, call: Call) -> Response:
    ref = call.param("ref")
    try:
        notice = "Test sent: " + actions.test_send(
            site.db, site.settings, call.caller.name, ref, call.form.get("to", "")
        )
    except NotFound as exc:
        return site.message(call.caller, 404, "No such blast", str(exc))
    except (MailerError, ConfigError) as exc:
        return confirm(site, call, error=f"No test sent: {exc}", status=400)
    return site.back(f"/admin/studio/blasts/{ref}", notice)


def start(site: Site, call: Call) -> Response:
    ref = call.param("ref")
    force = call.form.get("force") == "1"
    try:
        if call.form.get("do") == "now":
            notice = _send_now(site, call.caller.name, ref, force=force)
        else:
            notice = actions.schedule(
                site.db,
                site.settings,
                call.caller.name,
                ref,
                date=call.form.get("date", ""),
                time=call.form.get("time", ""),
                zone=call.form.get("zone", ""),
                force=force,
                now=site.clock(),
            )
    except NotFound as exc:
        return site.message(call.caller, 404, "No such blast", str(exc))
    except (MailerError, ConfigError) as exc:
        return confirm(site, call, error=str(exc), status=400)
    with site.db.session() as session:
        blast_id = find_blast(session, ref).id
    return site.back(f"/admin/blasts/{blast_id}", notice)


def _send_now(site: Site, actor: str, ref: str, *, force: bool) -> str:
    gate(site.db, site.settings, ref, force=force, actor=actor)
    now = site.clock()
    with site.db.session() as session:
        blast = find_blast(session, ref)
        if blast.status not in planner.SCHEDULABLE:
            raise InvalidState(f"blast {blast.name!r} is {blast.status}; it cannot be sent now")
        planner.schedule(session, blast, now + SEND_NOW_DELAY, actor=actor, now=now)
        return f"Blast {blast.name!r} starts now: the running service picks it up."
