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

# The message preview: the alert's own inline styles and remote images, no scripts,
# and only inside our own blast page (which also sandboxes it).
PREVIEW_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)
BLAST_ACTION_LABELS = {
    BlastStatus.DRAFT: [],
    BlastStatus.SCHEDULED: [("unschedule", "Unschedule"), ("pause", "Pause"), ("cancel", "Cancel")],
    BlastStatus.SENDING: [("pause", "Pause"), ("cancel", "Cancel")],
    BlastStatus.PAUSED: [("resume", "Resume"), ("cancel", "Cancel")],
    BlastStatus.MISSED: [("cancel", "Cancel")],
    BlastStatus.DONE: [],
    BlastStatus.CANCELLED: [],
}


class BlastPages(Site):
    # -- blasts -------------------------------------------------------------------------

    def new_blast(self, call: Call, *, error: str = "", status: int = 200) -> Response:
        templates = (
            sorted(
                p.name
                for p in self.settings.templates_path().iterdir()
                if p.is_dir() and not p.name.startswith((".", "_")) and p.name != "layout"
            )
            if self.settings.templates_path().is_dir()
            else []
        )
        with self.db.session() as session:
            lists = list(session.exec(select(MailingList.name).order_by(MailingList.name)))
        return self.render(
            "new_blast.html",
            call.caller,
            status=status,
            error=error,
            templates=templates,
            lists=lists,
            form=call.form,
            form_lists=call.multi.get("lists", []),
            default_cta=self.settings.blast.default_cta_url,
        )

    def create_blast(self, call: Call) -> Response:
        fields: dict[str, Any] = dict(call.form)
        fields["lists"] = call.multi.get("lists", [])
        try:
            blast = actions.create(self.db, self.settings, call.caller.name, fields)
        except (MailerError, ConfigError) as exc:
            return self.new_blast(call, error=str(exc), status=400)
        return self.back(f"/admin/blasts/{blast.id}", f"Draft {blast.name!r} created.")

    def blast_page(self, call: Call, *, error: str = "", status: int = 200) -> Response:
        try:
            report = blast_report(self.db, call.param("ref"))
        except NotFound as exc:
            return self.render(
                "message.html", call.caller, status=404, heading="No such blast", text=str(exc)
            )
        blast_id = report["id"]
        with self.db.session() as session:
            blast = find_blast(session, blast_id)
        failures = failure_breakdown(self.db, blast_id)
        preview: dict[str, Any] = {}
        try:
            preview = self._preview(blast)
        except (MailerError, ConfigError) as exc:
            preview = {"preview_error": f"No preview: {exc}"}
        local_now = self.clock().astimezone(zone(self.zone)) + timedelta(minutes=5)
        states = [str(s) for s in DeliveryState]
        shown = {"blast", "id", "status", "template", "lists", *states}
        return self.render(
            "blast.html",
            call.caller,
            status=status,
            request=call.request,
            error=error,
            report=report,
            states=states,
            extra=[(k, v) for k, v in report.items() if k not in shown],
            links=link_report(self.db, blast_id),
            timeline_svg=timeline_chart(
                timeline(self.db, blast_id), title=f"Sends and clicks of {blast.name}"
            ),
            failures=failures,
            codes_svg=bar_chart(
                [
                    (str(r["reply_code"] or "no reply"), r["count"])
                    for r in failures["by_reply_code"]
                ],
                title="Failures by reply code",
            ),
            domains_svg=bar_chart(
                [(r["domain"], r["count"]) for r in failures["by_domain"]],
                title="Failures by domain",
            ),
            scheduled_local=show(blast.scheduled_at, self.zone)
            if blast.status is BlastStatus.SCHEDULED
            else "",
            actions=BLAST_ACTION_LABELS.get(blast.status, []),
            schedulable=blast.status in planner.SCHEDULABLE,
            zone=self.zone,
            default_date=local_now.strftime("%Y-%m-%d"),
            default_time=local_now.strftime("%H:%M"),
            **preview,
        )

    def _composed(self, blast: Blast) -> Any:
        composer = composer_for(self.db, self.settings, blast)
        return composer.compose(0, Recipient(email="preview@example.org"))

    def _preview(self, blast: Blast) -> dict[str, Any]:
        composed = self._composed(blast)
        parsed = email.message_from_bytes(composed.message.data, policy=email.policy.default)
        return {
            "preview_text": composed.alert.text,
            "preview_headers": [(k, str(v)) for k, v in parsed.items()],
        }

    def preview_html(self, call: Call) -> Response:
        with self.db.session() as session:
            blast = find_blast(session, call.param("ref"))
        try:
            html = self._composed(blast).alert.html
        except (MailerError, ConfigError) as exc:
            html = f"<p>No preview: {Markup.escape(str(exc))}</p>"
        return HTMLResponse(
            html,
            headers={
                "Cache-Control": "no-store",
                "Content-Security-Policy": PREVIEW_CSP,
                "X-Content-Type-Options": "nosniff",
            },
        )

    def _act(self, call: Call, work: Callable[[], str]) -> Response:
        ref = call.param("ref")
        try:
            notice = work()
        except (MailerError, ConfigError) as exc:
            return self.blast_page(call, error=str(exc), status=400)
        with self.db.session() as session:
            blast_id = find_blast(session, ref).id
        return self.back(f"/admin/blasts/{blast_id}", notice)

    def blast_action(self, call: Call) -> Response:
        return self._act(
            call,
            lambda: actions.blast_action(
                self.db,
                call.caller.name,
                call.param("ref"),
                call.param("action"),
                now=self.clock(),
            ),
        )

    def schedule(self, call: Call) -> Response:
        return self._act(
            call,
            lambda: actions.schedule(
                self.db,
                self.settings,
                call.caller.name,
                call.param("ref"),
                date=call.form.get("date", ""),
                time=call.form.get("time", ""),
                zone=call.form.get("zone", ""),
                force=call.form.get("force") == "1",
                now=self.clock(),
            ),
        )

    def test_send(self, call: Call) -> Response:
        return self._act(
            call,
            lambda: (
                "Test sent: "
                + actions.test_send(
                    self.db,
                    self.settings,
                    call.caller.name,
                    call.param("ref"),
                    call.form.get("to", ""),
                )
            ),
        )
