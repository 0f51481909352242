"""The studio's writing pages: the alert list, a new alert from a statement, the editor
with a tab per language, and the revision history.

Every save is a new revision (:mod:`mailer.alerts.store`), written with the
signed-in user as author and audited there. The editor's form carries the
revision it was loaded from; a save made after someone else's is refused, and
the form comes back with the organizer's own text in it, so nothing typed is
lost. The editor also shows the check's findings of the language on screen,
each under the field it concerns (subject, preheader, body, text) with its line.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from starlette.responses import Response
from starlette.routing import BaseRoute

from mailer.accounts import Permission
from mailer.alerts.store import (
    LANGUAGE,
    LanguageText,
    Revision,
    diff,
    get_revision,
    history,
    list_alerts,
    translation_status,
)
from mailer.alerts.studio import Finding, check_revision, save_language, start_from_statement
from mailer.errors import ConfigError, MailerError, NotFound
from mailer.web.admin.guard import Call
from mailer.web.admin.site import Site

FIELDS = ("subject", "preheader", "body", "text")
STATEMENT_MAX = 60_000  # characters; the form reader caps the whole body at 64 KB


def routes(site: Site) -> list[BaseRoute]:
    read, write = Permission.READ, Permission.BLASTS
    return [
        site.page("GET", "/admin/studio", read, alert_list),
        site.page("GET", "/admin/studio/new", write, new_alert),
        site.page("POST", "/admin/studio/new", write, create_alert),
        site.page("GET", "/admin/studio/alerts/{name}", read, editor),
        site.page("POST", "/admin/studio/alerts/{name}", write, save),
        site.page("GET", "/admin/studio/alerts/{name}/history", read, revisions),
    ]


def alert_path(name: str, tail: str = "") -> str:
    """The URL path of alert ``name``'s page (``tail`` such as ``/preview``)."""
    return f"/admin/studio/alerts/{quote(name, safe='')}{tail}"


def alert_list(site: Site, call: Call) -> Response:
    return site.render(
        "studio_list.html",
        call.caller,
        request=call.request,
        alerts=list_alerts(site.db),
        alert_path=alert_path,
    )


def new_alert(site: Site, call: Call, *, error: str = "", status: int = 200) -> Response:
    return site.render(
        "studio_new.html", call.caller, status=status, error=error, form=dict(call.form)
    )


def create_alert(site: Site, call: Call) -> Response:
    name = call.form.get("name", "").strip()
    statement = call.form.get("statement", "")
    language = call.form.get("language", "en").strip() or "en"
    if len(statement) > STATEMENT_MAX:
        return new_alert(
            site, call, error=f"the statement is longer than {STATEMENT_MAX} characters", status=400
        )
    if not LANGUAGE.match(language):
        return new_alert(
            site, call, error=f"{language!r} is not a language code (like en or es)", status=400
        )
    if not statement.strip():
        return new_alert(site, call, error="paste the statement's text first", status=400)
    try:
        try:
            get_revision(site.db, name)
        except NotFound:
            pass
        else:
            return new_alert(
                site,
                call,
                error=f"an alert named {name!r} exists already; choose another name",
                status=400,
            )
        revision = start_from_statement(
            site.db, name, statement, author=call.caller.name, language=language, now=site.clock
        )
    except (MailerError, ConfigError) as exc:
        return new_alert(site, call, error=str(exc), status=400)
    return site.back(
        alert_path(revision.alert),
        f"Draft {revision.alert!r} saved from the statement. Edit it below.",
    )


def _by_part(findings: list[Finding], language: str) -> dict[str, list[Finding]]:
    """The findings about ``language`` by part ("" for the alert as a whole)."""
    out: dict[str, list[Finding]] = {part: [] for part in ("", *FIELDS)}
    for f in findings:
        if f.language in ("", language):
            out[f.part if f.part in FIELDS else ""].append(f)
    return out


def editor(
    site: Site,
    call: Call,
    *,
    error: str = "",
    status: int = 200,
    typed: dict[str, str] | None = None,
) -> Response:
    name = call.param("name")
    try:
        revision = get_revision(site.db, name)
    except NotFound as exc:
        return site.message(call.caller, 404, "No such alert", str(exc))
    language = (typed or {}).get("lang") or call.query("lang") or revision.default_language
    if not LANGUAGE.match(language):
        return site.message(
            call.caller, 400, "Not a language", f"{language[:20]!r} is not a language code"
        )
    new_language = language not in revision.texts
    shown = revision.texts.get(language) or revision.texts[revision.default_language]
    values: dict[str, Any] = {f: getattr(shown, f) for f in FIELDS}
    stale_from = 0
    if typed is not None:
        values.update({f: typed.get(f, "") for f in FIELDS})
        sent = typed.get("based_on", "")
        if sent.isdigit() and int(sent) != revision.number:
            stale_from = int(sent)
    findings = page_findings(site, name, language)
    statuses = translation_status(site.db, name)
    return site.render(
        "studio_edit.html",
        call.caller,
        status=status,
        request=call.request,
        error=error,
        revision=revision,
        language=language,
        new_language=new_language,
        values=values,
        based_on=revision.number,
        stale_from=stale_from,
        statuses=statuses,
        missing=[s.language for s in statuses if s.state in ("missing", "out-of-date")],
        findings=_by_part(findings, language),
        errors=sum(1 for f in findings if f.is_error),
        warnings=sum(1 for f in findings if not f.is_error),
        alert_path=alert_path,
    )


def save(site: Site, call: Call) -> Response:
    name = call.param("name")
    typed = {k: call.form.get(k, "") for k in ("lang", "based_on", *FIELDS)}
    language = typed["lang"].strip()
    typed["lang"] = language
    if not LANGUAGE.match(language):
        typed["lang"] = ""
        return editor(
            site,
            call,
            error=f"{language[:20]!r} is not a language code (like en, es or pt-BR)",
            status=400,
            typed=typed,
        )
    if not typed["based_on"].isdigit():
        return editor(
            site, call, error="the form lacks the revision it was loaded from", status=400
        )
    text = LanguageText(
        subject=typed["subject"].replace("\r\n", "\n").replace("\n", " ").strip(),
        preheader=typed["preheader"].replace("\r\n", "\n").replace("\n", " ").strip(),
        body=typed["body"].replace("\r\n", "\n"),
        text=typed["text"].replace("\r\n", "\n"),
    )
    try:
        revision = save_language(
            site.db,
            name,
            language,
            text,
            author=call.caller.name,
            based_on=int(typed["based_on"]),
            now=site.clock,
        )
    except NotFound as exc:
        return site.message(call.caller, 404, "No such alert", str(exc))
    except (MailerError, ConfigError) as exc:
        return editor(
            site,
            call,
            error=f"Not saved: {exc}. Your text is still in the form below.",
            status=409 if "meanwhile" in str(exc) or "same moment" in str(exc) else 400,
            typed=typed,
        )
    return site.back(
        alert_path(name) + f"?lang={quote(language)}",
        f"Saved as revision {revision.number} ({language}).",
    )


def revisions(site: Site, call: Call) -> Response:
    name = call.param("name")
    try:
        found: list[Revision] = history(site.db, name)
    except NotFound as exc:
        return site.message(call.caller, 404, "No such alert", str(exc))
    newest = found[-1].number
    old, new = call.query("old"), call.query("new")
    shown_diff = ""
    if old.isdigit() and new.isdigit():
        try:
            shown_diff = diff(site.db, name, int(old), int(new)) or "(no change)"
        except NotFound as exc:
            shown_diff = str(exc)
    return site.render(
        "studio_history.html",
        call.caller,
        request=call.request,
        name=name,
        revisions=list(reversed(found)),
        newest=newest,
        diff=shown_diff,
        old=old,
        new=new,
        alert_path=alert_path,
    )


def page_findings(
    site: Site, name: str, language: str, *, number: int | None = None
) -> list[Finding]:
    """The check of ``name`` (revision ``number``, the newest by default) in ``language``
    for a studio page; a check that cannot run at all is one error finding."""
    try:
        return check_revision(
            site.db, site.settings, name, number=number, wanted_languages=[language]
        )
    except (MailerError, ConfigError) as exc:
        return [Finding("error", "check", str(exc))]
