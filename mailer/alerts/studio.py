"""What the studio's pages do with a stored alert: draft, save, preview and check it.

Each function here is what a page calls; the CLI calls the same ones. A
preview renders exactly what a recipient would get (subject, preheader, HTML
in the layout, text part) for a sample recipient or a real supporter, with
the links as written (not yet tracked). A check renders every language with
and without a first name and reports each finding with the language, the part
(subject, preheader, body, text) and, when known, the line of the text the
organizer wrote, so a page can show it next to that text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from sqlmodel import select

from mailer.alerts.compiled import RevisionProblem, compiled_revisions
from mailer.alerts.statement import Draft, draft_from_statement
from mailer.alerts.store import (
    LanguageText,
    Revision,
    get_revision,
    save_revision,
    translation_status,
)
from mailer.check import ABSOLUTE_URL, GMAIL_CLIP_BYTES, SUBJECT_MAX
from mailer.compose import links
from mailer.compose.alert import Recipient
from mailer.compose.templates import RenderedAlert, sample_context
from mailer.config import Settings
from mailer.errors import NotFound, TemplateProblem
from mailer.store import Database, Supporter
from mailer.store.models import utcnow


@dataclass(frozen=True)
class Finding:
    """One thing a check found; ``language``, ``part`` and ``line`` say where."""

    severity: str  # "error" or "warning"
    code: str
    message: str
    language: str = ""
    part: str = ""  # "subject", "preheader", "body", "text" or ""
    line: int | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == "error"


def start_from_statement(
    db: Database,
    name: str,
    statement: str,
    *,
    author: str,
    language: str = "en",
    description: str = "",
    now: Callable[[], datetime] = utcnow,
) -> Revision:
    """Save a draft made from a pasted ``statement`` as a new alert (revision 1)."""
    draft: Draft = draft_from_statement(statement, language=language)
    return save_revision(
        db,
        name,
        {language: draft.as_text()},
        author=author,
        description=description or draft.subject,
        default_language=language,
        based_on=0,
        note="started from a statement",
        now=now,
    )


def _context(settings: Settings, recipient: Recipient, cta_url: str) -> dict[str, object]:
    base = settings.web.base_url.rstrip("/")
    return sample_context(
        supporter=recipient.as_context(),
        organization={
            "name": settings.organization.name,
            "postal_address": settings.organization.postal_address,
        },
        sender={"name": settings.sender.name, "address": settings.sender.address},
        cta_url=cta_url,
        unsubscribe_url=f"{base}/u/preview",
    )


def sample_recipient(language: str, first_name: str = "Alex") -> Recipient:
    return Recipient(
        email="alex@example.org", first_name=first_name, last_name="Sample", language=language
    )


def preview(
    db: Database,
    settings: Settings,
    name: str,
    *,
    language: str | None = None,
    number: int | None = None,
    supporter_email: str | None = None,
    cta_url: str | None = None,
) -> RenderedAlert:
    """Alert ``name`` (revision ``number``, default the newest) as one recipient gets it.

    The recipient is the supporter with ``supporter_email`` (in their own
    language unless ``language`` is given) or a sample one. Raises
    :class:`~mailer.errors.TemplateProblem` (a ``RevisionProblem`` naming
    language, part and line) when it does not render.
    """
    revision = get_revision(db, name, number)
    if supporter_email:
        with db.session() as session:
            found = session.exec(
                select(Supporter).where(Supporter.email == supporter_email.strip().lower())
            ).first()
        if found is None:
            raise NotFound(f"no supporter {supporter_email!r}")
        recipient = Recipient.of(found)
        if language:
            recipient = replace(recipient, language=language)
    else:
        recipient = sample_recipient(language or revision.default_language)
    template = compiled_revisions.get(settings.templates_path(), revision)
    context = _context(settings, recipient, cta_url or settings.blast.default_cta_url)
    return template.render(context, recipient.language)


def _finding(problem: TemplateProblem, language: str) -> Finding:
    if isinstance(problem, RevisionProblem):
        return Finding(
            "error", "template", str(problem), problem.language, problem.part, problem.line
        )
    return Finding("error", "template", str(problem), language)


def check_revision(
    db: Database,
    settings: Settings,
    name: str,
    *,
    number: int | None = None,
    wanted_languages: Iterable[str] = (),
) -> list[Finding]:
    """Everything wrong with alert ``name`` (revision ``number``), errors first.

    Renders each language with and without a first name, then looks at what
    came out: subject empty or long, HTML over Gmail's clipping size, no link
    to the call to action, links that are not absolute, no footer (unsubscribe
    link and postal address) in either part; and at translations
    missing (of ``wanted_languages`` or dropped since an earlier revision) or
    out of date. `mailer check BLAST` does the full check of a blast made from
    the alert, with its real recipients and headers.
    """
    revision = get_revision(db, name, number)
    found: dict[tuple[str, str, str], Finding] = {}

    def add(f: Finding) -> None:
        found.setdefault((f.code, f.language, f.message), f)

    try:
        template = compiled_revisions.get(settings.templates_path(), revision)
    except TemplateProblem as exc:
        add(_finding(exc, revision.default_language))
        return _sorted(found)
    cta = settings.blast.default_cta_url
    for lang in revision.languages:
        for first_name in ("Alex", ""):
            context = _context(settings, sample_recipient(lang, first_name), cta)
            try:
                rendered = template.render(context, lang)
            except TemplateProblem as exc:
                add(_finding(exc, lang))
                continue
            _look_at(rendered, cta, lang, add)
            _footer(rendered, settings.organization.postal_address, lang, add)
    for status in translation_status(db, name, wanted_languages):
        if status.state == "missing":
            add(
                Finding(
                    "warning",
                    "translation-missing",
                    f"no {status.language} text: those supporters get "
                    f"the {revision.default_language} one",
                    status.language,
                )
            )
        elif status.state == "out-of-date":
            add(
                Finding(
                    "warning",
                    "translation-out-of-date",
                    f"the {status.language} text was last changed in revision "
                    f"{status.changed_in}, the {revision.default_language} one in "
                    f"{status.default_changed_in}",
                    status.language,
                )
            )
    return _sorted(found)


def _footer(
    rendered: RenderedAlert, postal_address: str, lang: str, add: Callable[[Finding], None]
) -> None:
    """The footer the law asks for: an unsubscribe link and the postal address, in both parts.

    The shared layout adds them; a plain-text override or an edited layout can lose them.
    """
    postal = postal_address.split("\n")[0].strip()
    for part, label, body in (("body", "HTML", rendered.html), ("text", "text", rendered.text)):
        if "/u/preview" not in body:
            add(
                Finding(
                    "error",
                    "unsubscribe-missing",
                    f"the {label} part has no unsubscribe link (the layout's footer is missing)",
                    lang,
                    part,
                )
            )
        if postal and postal not in body:
            add(
                Finding(
                    "error",
                    "postal-address-missing",
                    f"the {label} part lacks the postal address (the layout's footer is missing)",
                    lang,
                    part,
                )
            )


def _look_at(rendered: RenderedAlert, cta: str, lang: str, add: Callable[[Finding], None]) -> None:
    if not rendered.subject.strip():
        add(Finding("error", "subject-empty", "the subject is empty", lang, "subject"))
    elif len(rendered.subject) > SUBJECT_MAX:
        add(
            Finding(
                "warning",
                "subject-long",
                f"the subject has {len(rendered.subject)} characters; inboxes cut it at about "
                f"{SUBJECT_MAX}",
                lang,
                "subject",
            )
        )
    if not rendered.text.strip():
        add(Finding("error", "text-part-empty", "the plain-text part is empty", lang, "text"))
    size = len(rendered.html.encode("utf-8"))
    if size > GMAIL_CLIP_BYTES:
        add(
            Finding(
                "error",
                "too-big",
                f"the HTML part is {size // 1024} KB; Gmail clips at 102 KB",
                lang,
                "body",
            )
        )
    urls = links.html_links(rendered.html) + links.text_links(rendered.text)
    if cta not in urls:
        add(
            Finding(
                "error",
                "cta-missing",
                "the alert never links the call to action (a line `=> [label]` makes a button)",
                lang,
                "body",
            )
        )
    for url in urls:
        if url.startswith(("mailto:", "tel:")) or "/u/preview" in url:
            continue
        if not ABSOLUTE_URL.match(url):
            add(
                Finding(
                    "error",
                    "link-not-absolute",
                    f"{url!r} is not an absolute URL: it cannot be tracked",
                    lang,
                    "body",
                )
            )


def _sorted(found: Mapping[tuple[str, str, str], Finding]) -> list[Finding]:
    return sorted(found.values(), key=lambda f: (not f.is_error, f.code, f.language, f.message))


def save_language(
    db: Database,
    name: str,
    language: str,
    text: LanguageText,
    *,
    author: str,
    based_on: int,
    now: Callable[[], datetime] = utcnow,
) -> Revision:
    """Save one language's text (an edit tab, or a language added) as the next revision,
    the other languages as they were in revision ``based_on``."""
    current = get_revision(db, name)
    texts = dict(current.texts)
    texts[language] = text
    return save_revision(
        db,
        name,
        texts,
        author=author,
        based_on=based_on,
        format=current.format,
        files=current.files,
        note=f"{language} edited",
        now=now,
    )
