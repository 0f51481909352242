"""The admin pages under ``/admin``: sign-in, dashboard, blast, send log, supporters, users.

Pages are rendered on the server from Jinja templates in
``mailer/web/templates/admin/``; the only other file is our own stylesheet.
Figures come from :mod:`mailer.report`, actions from
:mod:`mailer.web.admin.actions` (the same code the CLI runs). After an
action the browser is sent back (303) to the page with a short notice.
"""

from __future__ import annotations

import csv
import email
import email.policy
import io
import secrets
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment
from markupsafe import Markup
from sqlmodel import col, desc, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Route

from mailer import accounts
from mailer.accounts import Caller, Permission, sign_in, start_session
from mailer.blasts import composer_for, find_blast
from mailer.compose.alert import Recipient
from mailer.config import Settings
from mailer.errors import ConfigError, MailerError, NotFound
from mailer.report import (
    LOG_COLUMNS,
    blast_report,
    delivery_log,
    failure_breakdown,
    like_escape,
    link_report,
    timeline,
)
from mailer.schedule.times import show, zone
from mailer.store import (
    Blast,
    BlastStatus,
    Click,
    Database,
    Delivery,
    DeliveryState,
    Event,
    Link,
    MailingList,
    Membership,
    Supporter,
    Suppression,
)
from mailer.store.models import UserRole
from mailer.supporters.suppression import suppress_address
from mailer.web.admin import actions
from mailer.web.admin.charts import bar_chart, timeline_chart
from mailer.web.admin.guard import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Call,
    Guard,
    TooLarge,
    parse_form,
    read_body,
    same_token,
)

STATIC = Path(__file__).resolve().parents[1] / "static"
PAGE_SIZE = 100
LIVE_REFRESH = 5  # seconds between reloads of the dashboard while something sends
RECENT = 20
SUPPRESSIONS_SHOWN = 200
# Admin pages: nothing from elsewhere, no scripts, not framed by other sites.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; frame-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
# The message preview: the alert's own inline styles and remote images, no scripts,
# and only inside our own blast page (which also sandboxes it).
PREVIEW_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "frame-ancestors 'self'; base-uri 'none'; form-action 'none'"
)
HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": CSP,
}
BLAST_ACTION_LABELS = {
    BlastStatus.DRAFT: [],
    BlastStatus.SCHEDULED: [("unschedule", "Unschedule"), ("pause", "Pause"), ("cancel", "Cancel")],
    BlastStatus.SENDING: [("pause", "Pause"), ("cancel", "Cancel")],
    BlastStatus.PAUSED: [("resume", "Resume"), ("cancel", "Cancel")],
    BlastStatus.MISSED: [("cancel", "Cancel")],
    BlastStatus.DONE: [],
    BlastStatus.CANCELLED: [],
}


class AdminPages:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        pages: Environment,
        clock: Callable[[], datetime],
    ) -> None:
        self.db = db
        self.settings = settings
        self.pages = pages
        self.clock = clock
        self.secure = settings.web.base_url.startswith("https://")
        self.zone = settings.schedule.timezone
        self.guard = Guard(db, clock, self.forbidden)

    # -- rendering ----------------------------------------------------------------------

    def render(
        self,
        template: str,
        caller: Caller | None,
        *,
        status: int = 200,
        request: Request | None = None,
        **context: Any,
    ) -> HTMLResponse:
        notice = request.query_params.get("notice", "")[:300] if request else ""
        html = self.pages.get_template(f"admin/{template}").render(
            organization_name=self.settings.organization.name,
            caller=caller,
            csrf=caller.csrf_token if caller else "",
            can_blasts=bool(caller and caller.may(Permission.BLASTS)),
            can_manage=bool(caller and caller.may(Permission.MANAGE)),
            notice=context.pop("notice", notice),
            show=lambda moment: show(moment, self.zone),
            **context,
        )
        return HTMLResponse(html, status_code=status, headers=HEADERS)

    def forbidden(self, request: Request, caller: Caller, text: str) -> Response:
        return self.render(
            "message.html", caller, status=403, heading="Not allowed", text=text, request=None
        )

    def back(self, path: str, notice: str) -> Response:
        return RedirectResponse(f"{path}?{urlencode({'notice': notice})}", status_code=303)

    # -- sign in and out ----------------------------------------------------------------

    def _cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/",
            httponly=True,
            samesite="strict" if name == LOGIN_CSRF_COOKIE else "lax",
            secure=self.secure,
        )

    def login_form(self, request: Request, *, error: str = "", status: int = 200) -> Response:
        token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
        response = self.render(
            "login.html",
            None,
            status=status,
            login_csrf=token,
            next=_safe_next(request.query_params.get("next", "/admin/")),
            name="",
            error=error,
        )
        self._cookie(response, LOGIN_CSRF_COOKIE, token, 3600)
        return response

    async def login(self, request: Request) -> Response:
        try:
            form, _ = parse_form(await read_body(request))
        except TooLarge:
            return Response("form too large", status_code=413)
        if not same_token(form.get("csrf", ""), request.cookies.get(LOGIN_CSRF_COOKIE, "")):
            return self.login_form(
                request,
                error="The sign-in form expired or came from elsewhere; try again.",
                status=403,
            )
        result = await run_in_threadpool(
            sign_in, self.db, form.get("name", ""), form.get("password", ""), now=self.clock()
        )
        if result.user is None:
            if result.locked_until is not None:
                wait = max(int((result.locked_until - self.clock()).total_seconds()), 1)
                error = f"Too many failed sign-ins for this name; try again in {wait} seconds."
                return self.login_form(request, error=error, status=429)
            return self.login_form(request, error="Wrong name or password.", status=401)
        token, _ = await run_in_threadpool(start_session, self.db, result.user, now=self.clock())
        response = RedirectResponse(_safe_next(form.get("next", "/admin/")), status_code=303)
        self._cookie(
            response, SESSION_COOKIE, token, int(accounts.SESSION_LIFETIME.total_seconds())
        )
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
        return response

    def logout(self, call: Call) -> Response:
        accounts.end_session(
            self.db,
            call.request.cookies.get(SESSION_COOKIE, ""),
            actor=call.caller.name,
            now=self.clock(),
        )
        response = RedirectResponse("/admin/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, secure=self.secure)
        return response

    # -- dashboard ----------------------------------------------------------------------

    def dashboard(self, call: Call) -> Response:
        with self.db.session() as session:
            live = session.exec(
                select(Blast)
                .where(col(Blast.status).in_((BlastStatus.SENDING, BlastStatus.PAUSED)))
                .order_by(col(Blast.id))
            ).all()
            scheduled = session.exec(
                select(Blast)
                .where(Blast.status == BlastStatus.SCHEDULED)
                .order_by(col(Blast.scheduled_at))
            ).all()
            recent = session.exec(
                select(Blast)
                .where(
                    col(Blast.status).not_in(
                        (BlastStatus.SENDING, BlastStatus.PAUSED, BlastStatus.SCHEDULED)
                    )
                )
                .order_by(desc(col(Blast.id)))
                .limit(RECENT)
            ).all()

        def rows(blasts: Any, when: Callable[[Blast], datetime | None]) -> list[dict[str, Any]]:
            out = []
            for blast in blasts:
                report = blast_report(self.db, blast.id)
                pending = sum(report.get(s, 0) for s in ("queued", "sending", "deferred"))
                moment = when(blast)
                out.append(
                    {
                        "report": report,
                        "done": report["recipients"] - pending,
                        "when": show(moment, self.zone) if moment else "after the original",
                    }
                )
            return out

        return self.render(
            "dashboard.html",
            call.caller,
            request=call.request,
            live=rows(live, lambda b: b.started_at or b.scheduled_at),
            scheduled=rows(scheduled, lambda b: b.scheduled_at),
            recent=rows(recent, lambda b: b.finished_at or b.created_at),
            zone=self.zone,
            refresh=LIVE_REFRESH if live else 0,
        )

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

    # -- the send log -------------------------------------------------------------------

    def _log_filters(self, call: Call) -> tuple[dict[str, str], dict[str, Any]]:
        raw = {name: call.query(name) for name in ("state", "domain", "reply_code", "q")}
        args: dict[str, Any] = {"domain": raw["domain"], "address": raw["q"]}
        states = {str(s) for s in DeliveryState}
        if raw["state"] and raw["state"] not in states:
            raise NotFound(f"no delivery state {raw['state']!r}")
        args["state"] = DeliveryState(raw["state"]) if raw["state"] else None
        if raw["reply_code"]:
            if not raw["reply_code"].isdigit():
                raise NotFound(f"reply code {raw['reply_code']!r} is not a number")
            args["reply_code"] = int(raw["reply_code"])
        return raw, args

    def send_log(self, call: Call) -> Response:
        with self.db.session() as session:
            try:
                blast = find_blast(session, call.param("ref"))
            except NotFound as exc:
                return self.render(
                    "message.html", call.caller, status=404, heading="No such blast", text=str(exc)
                )
        assert blast.id is not None
        try:
            raw, args = self._log_filters(call)
        except NotFound as exc:
            raw, args, error = {}, None, str(exc)
        else:
            error = ""
        after = int(call.query("after", "0")) if call.query("after", "0").isdigit() else 0
        rows: list[dict[str, Any]] = []
        if args is not None:
            for row in delivery_log(self.db, blast.id, chunk=PAGE_SIZE + 1, after=after, **args):
                rows.append(row)
                if len(rows) > PAGE_SIZE:
                    break
        more = len(rows) > PAGE_SIZE
        rows = rows[:PAGE_SIZE]
        query = urlencode({k: v for k, v in raw.items() if v})
        return self.render(
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

    def send_log_csv(self, call: Call) -> Response:
        with self.db.session() as session:
            blast = find_blast(session, call.param("ref"))
        assert blast.id is not None
        try:
            _, args = self._log_filters(call)
        except NotFound as exc:
            return Response(str(exc), status_code=400)
        blast_id = blast.id

        def lines() -> Iterator[str]:
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=LOG_COLUMNS, lineterminator="\n")
            writer.writeheader()
            for count, row in enumerate(delivery_log(self.db, blast_id, **args), 1):
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
                "Cache-Control": "no-store",
            },
        )

    # -- supporters ---------------------------------------------------------------------

    def supporters(self, call: Call) -> Response:
        q = call.query("q").lower()
        found: list[Supporter] = []
        if q:
            with self.db.session() as session:
                exact = session.exec(select(Supporter).where(Supporter.email == q)).first()
                if exact is not None and "notice" not in call.request.query_params:
                    return RedirectResponse(f"/admin/supporters/{exact.id}", status_code=303)
                prefix = like_escape(q)
                found = list(
                    session.exec(
                        select(Supporter)
                        .where(col(Supporter.email).like(f"{prefix}%", escape="\\"))
                        .order_by(col(Supporter.email))
                        .limit(50)
                    )
                )
        return self.render("supporters.html", call.caller, request=call.request, q=q, found=found)

    def supporter(self, call: Call) -> Response:
        raw = call.param("id")
        with self.db.session() as session:
            person = session.get(Supporter, int(raw)) if raw.isdigit() else None
            if person is None:
                return self.render(
                    "message.html",
                    call.caller,
                    status=404,
                    heading="No such supporter",
                    text=f"no supporter {raw!r}",
                )
            lists = list(
                session.exec(
                    select(MailingList.name)
                    .join(Membership, col(Membership.list_id) == MailingList.id)
                    .where(Membership.supporter_id == person.id)
                    .order_by(MailingList.name)
                )
            )
            deliveries: list[dict[str, Any]] = [
                {
                    "blast_id": d.blast_id,
                    "blast": name,
                    "state": str(d.state),
                    "reply_code": d.reply_code,
                    "reply_text": d.reply_text,
                    "sent_at": d.sent_at,
                    "clicks": 0,
                    "id": d.id,
                }
                for d, name in session.exec(
                    select(Delivery, Blast.name)
                    .join(Blast, col(Blast.id) == Delivery.blast_id)
                    .where(Delivery.supporter_id == person.id)
                    .order_by(desc(col(Delivery.id)))
                    .limit(200)
                )
            ]
            clicks: list[dict[str, Any]] = [
                {
                    "at": c.clicked_at,
                    "blast": name,
                    "url": url,
                    "flagged": c.suspected_bot,
                    "delivery": c.delivery_id,
                }
                for c, name, url in session.exec(
                    select(Click, Blast.name, Link.url)
                    .join(Delivery, col(Delivery.id) == Click.delivery_id)
                    .join(Blast, col(Blast.id) == Click.blast_id)
                    .join(Link, col(Link.id) == Click.link_id)
                    .where(Delivery.supporter_id == person.id)
                    .order_by(desc(col(Click.id)))
                    .limit(200)
                )
            ]
            events = list(
                session.exec(
                    select(Event)
                    .where(Event.supporter_id == person.id)
                    .order_by(desc(col(Event.id)))
                    .limit(200)
                )
            )
        per_delivery: dict[int, int] = {}
        for c in clicks:
            if not c["flagged"]:
                per_delivery[c["delivery"]] = per_delivery.get(c["delivery"], 0) + 1
        for d in deliveries:
            d["clicks"] = per_delivery.get(d["id"], 0)
        return self.render(
            "supporter.html",
            call.caller,
            request=call.request,
            supporter=person,
            lists=lists,
            deliveries=deliveries,
            clicks=clicks,
            events=events,
        )

    def unsubscribe(self, call: Call) -> Response:
        raw = call.param("id")
        try:
            notice = actions.unsubscribe(
                self.db,
                call.caller.name,
                int(raw) if raw.isdigit() else 0,
                reason=call.form.get("reason", ""),
                now=self.clock(),
            )
        except MailerError as exc:
            return self.render(
                "message.html", call.caller, status=404, heading="Not done", text=str(exc)
            )
        return self.back(f"/admin/supporters/{raw}", notice)

    # -- suppressions -------------------------------------------------------------------

    def suppressions(self, call: Call, *, error: str = "", status: int = 200) -> Response:
        q = call.query("q").lower()
        query = select(Suppression).order_by(col(Suppression.email)).limit(SUPPRESSIONS_SHOWN)
        if q:
            prefix = like_escape(q)
            query = query.where(col(Suppression.email).like(f"{prefix}%", escape="\\"))
        with self.db.session() as session:
            rows = list(session.exec(query))
        return self.render(
            "suppressions.html",
            call.caller,
            status=status,
            request=call.request,
            error=error,
            q=q,
            rows=rows,
            limit=SUPPRESSIONS_SHOWN,
        )

    def suppress(self, call: Call) -> Response:
        try:
            with self.db.session() as session:
                added = suppress_address(
                    session,
                    call.form.get("email", ""),
                    reason=call.form.get("reason", "").strip()[:200],
                    actor=call.caller.name,
                    now=self.clock(),
                )
        except MailerError as exc:
            return self.suppressions(call, error=str(exc), status=400)
        notice = "Address suppressed." if added else "That address is suppressed already."
        return self.back("/admin/suppressions", notice)

    # -- users --------------------------------------------------------------------------

    def users(self, call: Call, *, error: str = "", status: int = 200) -> Response:
        return self.render(
            "users.html",
            call.caller,
            status=status,
            request=call.request,
            error=error,
            users=accounts.list_users(self.db),
            roles=[str(r) for r in UserRole],
            min_password=accounts.MIN_PASSWORD,
        )

    def add_user(self, call: Call) -> Response:
        try:
            role = UserRole(call.form.get("role", ""))
        except ValueError:
            return self.users(call, error="choose a role", status=400)
        try:
            user = accounts.add_user(
                self.db,
                call.form.get("name", ""),
                role,
                call.form.get("password", ""),
                actor=call.caller.name,
                now=self.clock(),
            )
        except MailerError as exc:
            return self.users(call, error=str(exc), status=400)
        return self.back("/admin/users", f"User {user.name} ({user.role}) added.")

    def set_disabled(self, call: Call) -> Response:
        name = call.param("name")
        if name == call.caller.name:
            return self.users(call, error="you cannot disable yourself", status=400)
        if call.param("change") not in ("disable", "enable"):
            return self.users(call, error="no such change", status=404)
        disabled = call.param("change") == "disable"
        try:
            accounts.set_disabled(self.db, name, disabled, actor=call.caller.name, now=self.clock())
        except MailerError as exc:
            return self.users(call, error=str(exc), status=400)
        return self.back("/admin/users", f"User {name} {'disabled' if disabled else 'enabled'}.")

    # -- routes -------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        page = self.guard.page
        read, blasts, manage = Permission.READ, Permission.BLASTS, Permission.MANAGE

        def css(request: Request) -> Response:
            return FileResponse(STATIC / "admin.css", media_type="text/css")

        def home(request: Request) -> Response:
            return RedirectResponse("/admin/", status_code=307)

        return [
            Route("/admin", home, methods=["GET"]),
            Route("/admin/static/admin.css", css, methods=["GET"]),
            Route("/admin/login", self.login_form, methods=["GET"]),
            Route("/admin/login", self.login, methods=["POST"]),
            Route("/admin/logout", page(read, self.logout), methods=["POST"]),
            Route("/admin/", page(read, self.dashboard), methods=["GET"]),
            Route("/admin/blasts/new", page(blasts, self.new_blast), methods=["GET"]),
            Route("/admin/blasts", page(blasts, self.create_blast), methods=["POST"]),
            Route("/admin/blasts/{ref}", page(read, self.blast_page), methods=["GET"]),
            Route(
                "/admin/blasts/{ref}/preview.html", page(read, self.preview_html), methods=["GET"]
            ),
            Route("/admin/blasts/{ref}/log", page(read, self.send_log), methods=["GET"]),
            Route("/admin/blasts/{ref}/log.csv", page(read, self.send_log_csv), methods=["GET"]),
            Route("/admin/blasts/{ref}/schedule", page(blasts, self.schedule), methods=["POST"]),
            Route("/admin/blasts/{ref}/test", page(blasts, self.test_send), methods=["POST"]),
            Route(
                "/admin/blasts/{ref}/{action:str}",
                page(blasts, self.blast_action),
                methods=["POST"],
            ),
            Route("/admin/supporters", page(read, self.supporters), methods=["GET"]),
            Route("/admin/supporters/{id}", page(read, self.supporter), methods=["GET"]),
            Route(
                "/admin/supporters/{id}/unsubscribe",
                page(manage, self.unsubscribe),
                methods=["POST"],
            ),
            Route("/admin/suppressions", page(manage, self.suppressions), methods=["GET"]),
            Route("/admin/suppressions", page(manage, self.suppress), methods=["POST"]),
            Route("/admin/users", page(manage, self.users), methods=["GET"]),
            Route("/admin/users", page(manage, self.add_user), methods=["POST"]),
            Route(
                "/admin/users/{name}/{change:str}",
                page(manage, self.set_disabled),
                methods=["POST"],
            ),
        ]


def _safe_next(target: str) -> str:
    """Only our own admin pages are places to go after signing in (no open redirect)."""
    if target.startswith("/admin") and not target.startswith("//") and "\\" not in target:
        return target
    return "/admin/"
