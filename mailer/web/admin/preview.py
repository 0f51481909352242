"""The studio's preview page: an alert as a recipient gets it, its check, and a test send.

The page shows the subject, preheader, the text part and the HTML part twice,
at desktop width and at 375 px, each in an ``<iframe sandbox>`` whose source
(``.../frame.html``) is served with :data:`~mailer.web.common.PREVIEW_HEADERS`
(no scripts, no forms, framed only by our own pages). The recipient is a
sample one or a real supporter picked by address; the language and revision
are chosen in the same form. The check's findings are listed with their
language, part and line, and the test-send form mails the same revision to
the organizer's own addresses.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from markupsafe import Markup
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute

from mailer.accounts import Permission
from mailer.alerts.sending import parse_addresses, send_alert_test, was_test_sent
from mailer.alerts.store import LANGUAGE, get_revision, translation_status
from mailer.alerts.studio import preview
from mailer.errors import ConfigError, MailerError, NotFound
from mailer.web.admin.guard import Call
from mailer.web.admin.site import Site
from mailer.web.admin.studio import alert_path, page_findings
from mailer.web.common import PREVIEW_HEADERS


def routes(site: Site) -> list[BaseRoute]:
    read, write = Permission.READ, Permission.BLASTS
    return [
        site.page("GET", "/admin/studio/alerts/{name}/preview", read, preview_page),
        site.page("GET", "/admin/studio/alerts/{name}/frame.html", read, frame),
        site.page("POST", "/admin/studio/alerts/{name}/test", write, test_send),
    ]


def _choice(call: Call) -> dict[str, str]:
    """The preview's choices from the query: language, revision, supporter, CTA URL."""
    lang = call.query("lang")[:40]
    rev = call.query("rev")[:10]
    return {
        "lang": lang if LANGUAGE.match(lang) else "",
        "rev": rev if rev.isdigit() else "",
        "email": call.query("email")[:320],
    }


def preview_page(site: Site, call: Call, *, error: str = "", status: int = 200) -> Response:
    name = call.param("name")
    choice = _choice(call)
    try:
        revision = get_revision(site.db, name, int(choice["rev"]) if choice["rev"] else None)
    except NotFound as exc:
        return site.message(call.caller, 404, "No such alert", str(exc))
    language = choice["lang"] or revision.default_language
    rendered: Any = None
    problem = ""
    try:
        rendered = preview(
            site.db,
            site.settings,
            name,
            language=language,
            number=revision.number,
            supporter_email=choice["email"] or None,
        )
    except (MailerError, ConfigError) as exc:
        problem = str(exc)
    findings = page_findings(site, name, language, number=revision.number)
    query = urlencode({k: v for k, v in {**choice, "lang": language}.items() if v})
    return site.render(
        "studio_preview.html",
        call.caller,
        status=status,
        request=call.request,
        error=error,
        revision=revision,
        language=language,
        choice=choice,
        rendered=rendered,
        problem=problem,
        findings=findings,
        errors=sum(1 for f in findings if f.is_error),
        statuses=translation_status(site.db, name),
        frame_src=alert_path(name, "/frame.html") + (f"?{query}" if query else ""),
        was_tested=was_test_sent(site.db, revision.alert, revision.number),
        alert_path=alert_path,
        test_to=call.form.get("to", ""),
    )


def frame(site: Site, call: Call) -> Response:
    choice = _choice(call)
    try:
        html = preview(
            site.db,
            site.settings,
            call.param("name"),
            language=choice["lang"] or None,
            number=int(choice["rev"]) if choice["rev"] else None,
            supporter_email=choice["email"] or None,
        ).html
    except (MailerError, ConfigError) as exc:
        html = f"<p>No preview: {Markup.escape(str(exc))}</p>"
    return HTMLResponse(html, headers=PREVIEW_HEADERS)


def test_send(site: Site, call: Call) -> Response:
    name = call.param("name")
    rev = call.form.get("rev", "")
    lang = call.form.get("lang", "")
    try:
        addresses = parse_addresses(call.form.get("to", ""))
        results = send_alert_test(
            site.db,
            site.settings,
            name,
            addresses,
            actor=call.caller.name,
            number=int(rev) if rev.isdigit() else None,
            language=lang if LANGUAGE.match(lang) else None,
        )
    except NotFound as exc:
        return site.message(call.caller, 404, "No such alert", str(exc))
    except (MailerError, ConfigError) as exc:
        return preview_page(site, call, error=f"No test sent: {exc}", status=400)
    outcome = "; ".join(f"{address}: {o.code} {o.text}" for address, o in results)
    return _back_with(site, name, lang, rev, f"Test sent: {outcome}")


def _back_with(site: Site, name: str, lang: str, rev: str, notice: str) -> Response:
    """Back (303) to the preview of the same language and revision, showing ``notice`` once."""
    params = {}
    if LANGUAGE.match(lang):
        params["lang"] = lang
    if rev.isdigit():
        params["rev"] = rev
    return site.back(alert_path(name, "/preview") + "?" + urlencode(params), notice[:300])
