"""A blast's page (figures, charts, preview) and the forms that act on it."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from markupsafe import Markup
from sqlmodel import select
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute

from mailer.accounts import Permission
from mailer.assemble import composer_for
from mailer.compose.alert import Recipient
from mailer.errors import ConfigError, MailerError, NotFound
from mailer.report import blast_report, failure_breakdown, link_report, timeline
from mailer.schedule import planner
from mailer.schedule.times import show, zone
from mailer.store import Blast, BlastStatus, DeliveryState, MailingList, find_blast
from mailer.web.admin import actions
from mailer.web.admin.charts import bar_chart, timeline_chart
from mailer.web.admin.guard import Call
from mailer.web.admin.site import Site
from mailer.web.common import PREVIEW_HEADERS

BLAST_ACTION_LABELS = {
    BlastStatus.DRAFT: [],
    BlastStatus.SCHEDULED: [("unschedule", "Unschedule"), ("pause", "Pause"), ("cancel", "Cancel")],
    BlastStatus.SENDING: [("pause", "Pause"), ("cancel", "Cancel")],
    BlastStatus.PAUSED: [("resume", "Resume"), ("cancel", "Cancel")],
    BlastStatus.MISSED: [("cancel", "Cancel")],
    BlastStatus.DONE: [],
    BlastStatus.CANCELLED: [],
}


def routes(site: Site) -> list[BaseRoute]:
    read, blasts = Permission.READ, Permission.BLASTS
    return [
        site.page("GET", "/admin/blasts/new", blasts, new_blast),
        site.page("POST", "/admin/blasts", blasts, create_blast, repeatable=("lists",)),
        site.page("GET", "/admin/blasts/{ref}", read, blast_page),
        site.page("GET", "/admin/blasts/{ref}/preview.html", read, preview_html),
        site.page("POST", "/admin/blasts/{ref}/schedule", blasts, schedule),
        site.page("POST", "/admin/blasts/{ref}/test", blasts, test_send),
        site.page("POST", "/admin/blasts/{ref}/{action:str}", blasts, blast_action),
    ]


def new_blast(site: Site, call: Call, *, error: str = "", status: int = 200) -> Response:
    templates = (
        sorted(
            p.name
            for p in site.settings.templates_path().iterdir()
            if p.is_dir() and not p.name.startswith((".", "_")) and p.name != "layout"
        )
        if site.settings.templates_path().is_dir()
        else []
    )
    with site.db.session() as session:
        lists = list(session.exec(select(MailingList.name).order_by(MailingList.name)))
    return site.render(
        "new_blast.html",
        call.caller,
        status=status,
        error=error,
        templates=templates,
        lists=lists,
        form=dict(call.form),
        form_lists=call.form.all("lists"),
        default_cta=site.settings.blast.default_cta_url,
    )


def create_blast(site: Site, call: Call) -> Response:
    fields: dict[str, Any] = dict(call.form)
    fields["lists"] = call.form.all("lists")
    try:
        blast = actions.create(site.db, site.settings, call.caller.name, fields)
    except (MailerError, ConfigError) as exc:
        return new_blast(site, call, error=str(exc), status=400)
    return site.back(f"/admin/blasts/{blast.id}", f"Draft {blast.name!r} created.")


def blast_page(site: Site, call: Call, *, error: str = "", status: int = 200) -> Response:
    try:
        report = blast_report(site.db, call.param("ref"))
    except NotFound as exc:
        return site.render(
            "message.html", call.caller, status=404, heading="No such blast", text=str(exc)
        )
    blast_id = report["id"]
    with site.db.session() as session:
        blast = find_blast(session, blast_id)
    failures = failure_breakdown(site.db, blast_id)
    preview: dict[str, Any] = {}
    try:
        preview = _preview(site, blast)
    except (MailerError, ConfigError) as exc:
        preview = {"preview_error": f"No preview: {exc}"}
    local_now = site.clock().astimezone(zone(site.zone)) + timedelta(minutes=5)
    states = [str(s) for s in DeliveryState]
    shown = {"blast", "id", "status", "template", "lists", "blocked_by_domain", *states}
    return site.render(
        "blast.html",
        call.caller,
        status=status,
        request=call.request,
        error=error,
        report=report,
        states=states,
        extra=[(k, v) for k, v in report.items() if k not in shown],
        links=link_report(site.db, blast_id),
        timeline_svg=timeline_chart(
            timeline(site.db, blast_id), title=f"Sends and clicks of {blast.name}"
        ),
        failures=failures,
        codes_svg=bar_chart(
            [(str(r["reply_code"] or "no reply"), r["count"]) for r in failures["by_reply_code"]],
            title="Failures by reply code",
        ),
        domains_svg=bar_chart(
            [(r["domain"], r["count"]) for r in failures["by_domain"]],
            title="Failures by domain",
        ),
        scheduled_local=show(blast.scheduled_at, site.zone)
        if blast.status is BlastStatus.SCHEDULED
        else "",
        actions=BLAST_ACTION_LABELS.get(blast.status, []),
        schedulable=blast.status in planner.SCHEDULABLE,
        zone=site.zone,
        default_date=local_now.strftime("%Y-%m-%d"),
        default_time=local_now.strftime("%H:%M"),
        **preview,
    )


def _composed(site: Site, blast: Blast) -> Any:
    composer = composer_for(site.db, site.settings, blast)
    return composer.compose(0, Recipient(email="preview@example.org"))


def _preview(site: Site, blast: Blast) -> dict[str, Any]:
    composed = _composed(site, blast)
    parsed = email.message_from_bytes(composed.message.data, policy=email.policy.default)
    return {
        "preview_text": composed.alert.text,
        "preview_headers": [(k, str(v)) for k, v in parsed.items()],
    }


def preview_html(site: Site, call: Call) -> Response:
    with site.db.session() as session:
        blast = find_blast(session, call.param("ref"))
    try:
        html = _composed(site, blast).alert.html
    except (MailerError, ConfigError) as exc:
        html = f"<p>No preview: {Markup.escape(str(exc))}</p>"
    return HTMLResponse(
        html,
        headers=PREVIEW_HEADERS,
    )


def _act(site: Site, call: Call, work: Callable[[], str]) -> Response:
    ref = call.param("ref")
    try:
        notice = work()
    except (MailerError, ConfigError) as exc:
        return blast_page(site, call, error=str(exc), status=400)
    with site.db.session() as session:
        blast_id = find_blast(session, ref).id
    return site.back(f"/admin/blasts/{blast_id}", notice)


def blast_action(site: Site, call: Call) -> Response:
    return _act(
        site,
        call,
        lambda: actions.blast_action(
            site.db,
            call.caller.name,
            call.param("ref"),
            call.param("action"),
            now=site.clock(),
        ),
    )


def schedule(site: Site, call: Call) -> Response:
    return _act(
        site,
        call,
        lambda: actions.schedule(
            site.db,
            site.settings,
            call.caller.name,
            call.param("ref"),
            date=call.form.get("date", ""),
            time=call.form.get("time", ""),
            zone=call.form.get("zone", ""),
            force=call.form.get("force") == "1",
            now=site.clock(),
        ),
    )


def test_send(site: Site, call: Call) -> Response:
    return _act(
        site,
        call,
        lambda: (
            "Test sent: "
            + actions.test_send(
                site.db,
                site.settings,
                call.caller.name,
                call.param("ref"),
                call.form.get("to", ""),
            )
        ),
    )
