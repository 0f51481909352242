"""Alerts in the database: saving revisions, reading them back, and translation status.

Every save is a new :class:`~mailer.store.models.AlertRevision` with its texts
per language; nothing saved is changed afterwards, so a blast that pins a
revision always shows and sends exactly what it was created with. Two
organizers saving the same alert cannot overwrite each other silently: a save
names the revision it was based on, and is refused when another came since.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from mailer.errors import InvalidState, NotFound
from mailer.lifecycle import audit
from mailer.store import Database
from mailer.store.models import (
    Alert,
    AlertFile,
    AlertFormat,
    AlertRevision,
    AlertText,
    utcnow,
)

LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
NAME_MAX = 200


@dataclass(frozen=True)
class LanguageText:
    """What an alert says in one language.

    ``body`` is Markdown (or, for a folder revision, the folder's ``.html``);
    ``text`` is the plain-text override, "" to generate it from the body (or,
    for a folder revision, the folder's ``.txt``).
    """

    subject: str
    preheader: str
    body: str
    text: str = ""


@dataclass(frozen=True)
class Revision:
    """One saved revision of an alert, as read back from the database."""

    id: int
    alert: str
    number: int
    author: str
    created_at: datetime | None
    format: AlertFormat
    description: str
    default_language: str
    texts: dict[str, LanguageText]
    files: dict[str, str] = field(default_factory=dict)
    note: str = ""

    @property
    def languages(self) -> list[str]:
        """The default language first, then the others alphabetically."""
        others = sorted(lang for lang in self.texts if lang != self.default_language)
        return [self.default_language, *others] if self.default_language in self.texts else others

    def as_text(self) -> str:
        """The revision as one plain text, for diffs and review."""
        lines = [
            f"alert: {self.alert}",
            f"revision: {self.number}",
            f"format: {self.format}",
            f"description: {self.description}",
            f"default language: {self.default_language}",
        ]
        for lang in self.languages:
            t = self.texts[lang]
            lines += [
                "",
                f"[{lang}] subject: {t.subject}",
                f"[{lang}] preheader: {t.preheader}",
                f"[{lang}] body:",
                t.body.rstrip("\n"),
            ]
            if t.text:
                lines += [f"[{lang}] text:", t.text.rstrip("\n")]
        for path in sorted(self.files):
            lines += ["", f"[file {path}]", self.files[path].rstrip("\n")]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class AlertSummary:
    name: str
    description: str
    default_language: str
    revision: int
    languages: list[str]
    updated_at: datetime | None
    format: AlertFormat


def check_name(name: str) -> str:
    """An alert's name, stripped; refused when it could not also be a folder name."""
    name = name.strip()
    if (
        not name
        or len(name) > NAME_MAX
        or "/" in name
        or "\\" in name
        or name.startswith((".", "_"))
        or name == "layout"
        or any(ch.isspace() and ch != " " for ch in name)
    ):
        raise InvalidState(
            f"{name!r} is not an alert name: use up to {NAME_MAX} characters, no slashes, "
            "not starting with '.' or '_', and not 'layout'"
        )
    return name


def _check_texts(texts: Mapping[str, LanguageText], default_language: str) -> None:
    if not texts:
        raise InvalidState("an alert needs its text in at least one language")
    for lang in texts:
        if not LANGUAGE.match(lang):
            raise InvalidState(f"{lang!r} is not a language code (like en, es or pt-BR)")
    if default_language not in texts:
        raise InvalidState(
            f"the default language {default_language!r} has no text; "
            f"languages written: {', '.join(sorted(texts))}"
        )


def find_alert(session: Session, name: str) -> Alert:
    alert = session.exec(select(Alert).where(Alert.name == name.strip())).first()
    if alert is None:
        raise NotFound(f"no alert {name!r} in the database (`mailer template list` shows them)")
    return alert


def alert_exists(db: Database, name: str) -> bool:
    with db.session() as session:
        return session.exec(select(Alert.id).where(Alert.name == name.strip())).first() is not None


def save_revision(
    db: Database,
    name: str,
    texts: Mapping[str, LanguageText],
    *,
    author: str,
    description: str | None = None,
    default_language: str | None = None,
    format: AlertFormat = AlertFormat.MARKDOWN,
    files: Mapping[str, str] | None = None,
    based_on: int | None = None,
    note: str = "",
    now: Callable[[], datetime] = utcnow,
) -> Revision:
    """Save ``texts`` as the next revision of alert ``name`` (made when new).

    ``description`` and ``default_language`` default to the previous
    revision's. With ``based_on`` (the revision number the editor started
    from; 0 for a new alert) the save is refused when another revision was
    saved since, so nobody's edits are lost without notice. Writes the audit
    event ``alert.saved`` in the same transaction.
    """
    name = check_name(name)
    at = now()
    try:
        with db.session() as session:
            alert = session.exec(select(Alert).where(Alert.name == name)).first()
            latest = 0
            if alert is None:
                alert = Alert(
                    name=name,
                    description=description or "",
                    default_language=default_language or "en",
                    created_at=at,
                )
            else:
                assert alert.id is not None
                latest = _latest_number(session, alert.id)
            if based_on is not None and based_on != latest:
                raise InvalidState(
                    f"alert {name!r} is at revision {latest} now, not {based_on}: "
                    "someone saved it meanwhile; reload it and make your changes again"
                )
            if description is not None:
                alert.description = description
            if default_language is not None:
                alert.default_language = default_language
            _check_texts(texts, alert.default_language)
            alert.updated_at = at
            session.add(alert)
            session.flush()
            assert alert.id is not None
            revision = AlertRevision(
                alert_id=alert.id,
                number=latest + 1,
                author=author,
                created_at=at,
                format=format,
                description=alert.description,
                default_language=alert.default_language,
                note=note,
            )
            session.add(revision)
            session.flush()
            assert revision.id is not None
            for lang, t in texts.items():
                session.add(
                    AlertText(
                        revision_id=revision.id,
                        language=lang,
                        subject=t.subject,
                        preheader=t.preheader,
                        body=t.body,
                        text=t.text,
                    )
                )
            for path, content in (files or {}).items():
                session.add(AlertFile(revision_id=revision.id, path=path, content=content))
            audit(
                session,
                "alert.saved",
                actor=author,
                now=at,
                detail={
                    "alert": name,
                    "revision": revision.number,
                    "format": str(format),
                    "languages": sorted(texts),
                    "note": note,
                },
            )
            revision_id = revision.id
    except IntegrityError:
        raise InvalidState(
            f"alert {name!r} was saved by someone else at the same moment; save again"
        ) from None
    return load_revision(db, revision_id)


def _latest_number(session: Session, alert_id: int) -> int:
    found = session.exec(
        select(func.max(AlertRevision.number)).where(AlertRevision.alert_id == alert_id)
    ).one()
    return int(found or 0)


def load_revision(db: Database, revision_id: int) -> Revision:
    """The revision with database id ``revision_id`` (as a blast pins it)."""
    with db.session() as session:
        revision = session.get(AlertRevision, revision_id)
        if revision is None:
            raise NotFound(f"no alert revision with id {revision_id}")
        alert = session.get(Alert, revision.alert_id)
        assert alert is not None
        return _read(session, alert, revision)


def get_revision(db: Database, name: str, number: int | None = None) -> Revision:
    """Revision ``number`` of alert ``name`` (default: the newest)."""
    with db.session() as session:
        alert = find_alert(session, name)
        assert alert.id is not None
        wanted = number if number is not None else _latest_number(session, alert.id)
        revision = session.exec(
            select(AlertRevision).where(
                AlertRevision.alert_id == alert.id, AlertRevision.number == wanted
            )
        ).first()
        if revision is None:
            raise NotFound(f"alert {alert.name!r} has no revision {wanted}")
        return _read(session, alert, revision)


def _read(session: Session, alert: Alert, revision: AlertRevision) -> Revision:
    assert revision.id is not None
    texts = {
        t.language: LanguageText(t.subject, t.preheader, t.body, t.text)
        for t in session.exec(
            select(AlertText)
            .where(AlertText.revision_id == revision.id)
            .order_by(col(AlertText.language))
        )
    }
    files = {
        f.path: f.content
        for f in session.exec(select(AlertFile).where(AlertFile.revision_id == revision.id))
    }
    return Revision(
        id=revision.id,
        alert=alert.name,
        number=revision.number,
        author=revision.author,
        created_at=revision.created_at,
        format=revision.format,
        description=revision.description,
        default_language=revision.default_language,
        texts=texts,
        files=files,
        note=revision.note,
    )


def history(db: Database, name: str) -> list[Revision]:
    """Every revision of alert ``name``, oldest first."""
    with db.session() as session:
        alert = find_alert(session, name)
        revisions = session.exec(
            select(AlertRevision)
            .where(AlertRevision.alert_id == alert.id)
            .order_by(col(AlertRevision.number))
        ).all()
        return [_read(session, alert, r) for r in revisions]


def list_alerts(db: Database) -> list[AlertSummary]:
    """Every alert with its newest revision's number and languages, by name."""
    out = []
    with db.session() as session:
        for alert in session.exec(select(Alert).order_by(col(Alert.name))):
            assert alert.id is not None
            number = _latest_number(session, alert.id)
            revision = session.exec(
                select(AlertRevision).where(
                    AlertRevision.alert_id == alert.id, AlertRevision.number == number
                )
            ).first()
            languages = list(
                session.exec(
                    select(AlertText.language)
                    .where(AlertText.revision_id == (revision.id if revision else -1))
                    .order_by(col(AlertText.language))
                )
            )
            out.append(
                AlertSummary(
                    name=alert.name,
                    description=alert.description,
                    default_language=alert.default_language,
                    revision=number,
                    languages=languages,
                    updated_at=alert.updated_at,
                    format=revision.format if revision else AlertFormat.MARKDOWN,
                )
            )
    return out


def diff(db: Database, name: str, old: int, new: int) -> str:
    """A unified diff between two revisions of alert ``name``."""
    a, b = get_revision(db, name, old), get_revision(db, name, new)
    return "".join(
        difflib.unified_diff(
            a.as_text().splitlines(keepends=True),
            b.as_text().splitlines(keepends=True),
            fromfile=f"{name} revision {old}",
            tofile=f"{name} revision {new}",
        )
    )


@dataclass(frozen=True)
class TranslationStatus:
    """Where one language stands against the default language.

    ``state`` is ``default`` (the default language itself), ``current``,
    ``out-of-date`` (the default language changed in a later revision than
    this language last did) or ``missing`` (no text in the newest revision).
    """

    language: str
    state: str
    changed_in: int | None  # the revision that last changed this language's text
    default_changed_in: int | None  # the revision that last changed the default language's


def translation_status(
    db: Database, name: str, wanted: Iterable[str] = ()
) -> list[TranslationStatus]:
    """Each language of alert ``name`` (and each of ``wanted``), default language first.

    A language is missing when a ``wanted`` one, or one an earlier revision
    had, has no text in the newest revision.
    """
    revisions = history(db, name)
    last_changed: dict[str, int] = {}
    previous: dict[str, LanguageText] = {}
    for revision in revisions:
        for lang, text in revision.texts.items():
            if previous.get(lang) != text:
                last_changed[lang] = revision.number
        previous = revision.texts
    newest = revisions[-1]
    default = newest.default_language
    default_changed = last_changed.get(default)
    languages = list(newest.languages)
    for lang in sorted(set(last_changed) | set(wanted)):
        if lang not in languages:
            languages.append(lang)
    out = []
    for lang in languages:
        if lang not in newest.texts:
            state = "missing"
        elif lang == default:
            state = "default"
        elif default_changed is not None and default_changed > last_changed[lang]:
            state = "out-of-date"
        else:
            state = "current"
        out.append(
            TranslationStatus(
                language=lang,
                state=state,
                changed_in=last_changed.get(lang) if lang in newest.texts else None,
                default_changed_in=default_changed,
            )
        )
    return out
