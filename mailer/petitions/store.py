"""Petitions as organizers see them: create, edit, link to a blast, refresh, find, list.

The CLI and the web app call these. A petition's words are read from the
alert template's ``petition.toml`` (:mod:`mailer.petitions.texts`) or typed
in the web admin, and kept in the database either way, so a web process
needs no template files.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from mailer.alerts.resolve import petition_texts
from mailer.blasts import check_url
from mailer.config import Settings
from mailer.errors import InvalidState, NotFound
from mailer.lifecycle import audit
from mailer.petitions.texts import KEYS, MAX_TEXT, OPTIONAL_KEYS
from mailer.store import Blast, BlastStatus, Database, find_blast
from mailer.store.models import Petition, Signature, utcnow

_SLUG_DROP = re.compile(r"[^a-z0-9]+")
MAX_GOAL = 100_000_000


def slugify(text: str) -> str:
    """``"Executive Orders!"`` -> ``"executive-orders"`` (ASCII letters, digits, dashes)."""
    return _SLUG_DROP.sub("-", text.lower()).strip("-")[:100].strip("-")


def find_petition(session: Session, ref: str | int) -> Petition:
    """The petition with id ``ref`` (digits), name or slug ``ref``."""
    text = str(ref).strip()
    found = None
    if text.isdigit():
        found = session.get(Petition, int(text))
    if found is None:
        found = session.exec(select(Petition).where(Petition.name == text)).first()
    if found is None:
        found = session.exec(select(Petition).where(Petition.slug == text)).first()
    if found is None:
        raise NotFound(
            f"no petition {text!r} (give its id, name or slug; `mailer petition list` shows them)"
        )
    return found


def create_petition(
    db: Database,
    settings: Settings,
    *,
    name: str,
    goal: int,
    target_url: str | None = None,
    template: str | None = None,
    slug: str | None = None,
    opt_in_list: str | None = None,
    actor: str = "cli",
    now: Callable[[], datetime] = utcnow,
) -> Petition:
    """Create petition ``name`` with its words from ``template``'s ``petition.toml``.

    ``template`` (default ``name``) is a stored alert, whose newest revision
    keeps the ``petition.toml`` of the folder it was imported from, or else a
    template folder, as for a blast
    (:func:`mailer.alerts.resolve.petition_texts`). The target defaults to
    ``blast.default_cta_url``; public opt-ins go to list ``opt_in_list``
    (default ``petition-<slug>``).
    """
    if not name.strip():
        raise InvalidState("a petition needs a name")
    if not 0 < goal <= MAX_GOAL:
        raise InvalidState(f"--goal must be a number of signatures from 1 to {MAX_GOAL}")
    template = (template or name).strip()
    texts = petition_texts(db, settings, template)
    return new_petition(
        db,
        settings,
        name=name,
        goal=goal,
        texts=texts,
        target_url=target_url,
        template=template,
        slug=slug,
        opt_in_list=opt_in_list,
        actor=actor,
        now=now,
    )


def check_texts(texts: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Per-language texts typed in the admin, checked as ``petition.toml`` is.

    A language whose fields are all empty is left out; one with some filled
    needs every one of :data:`~mailer.petitions.texts.KEYS`. Raises
    :class:`InvalidState` naming the language and the field.
    """
    checked: dict[str, dict[str, str]] = {}
    for language, fields in texts.items():
        values = {key: (fields.get(key) or "").strip() for key in (*KEYS, *OPTIONAL_KEYS)}
        if not any(values.values()):
            continue
        entry: dict[str, str] = {}
        for key in KEYS:
            if not values[key]:
                raise InvalidState(f"{language}: the {key} is empty; fill it in or clear them all")
            if len(values[key]) > MAX_TEXT:
                raise InvalidState(f"{language}: the {key} is longer than {MAX_TEXT} characters")
            entry[key] = values[key]
        for key in OPTIONAL_KEYS:
            if len(values[key]) > 200:
                raise InvalidState(f"{language}: the {key} is longer than 200 characters")
            if values[key]:
                entry[key] = values[key]
        checked[language] = entry
    if not checked:
        raise InvalidState("a petition needs its title, intro and message in at least one language")
    return checked


def _checked_fields(name: str, goal: int, target: str) -> tuple[str, str]:
    name = " ".join(name.split())
    if not name:
        raise InvalidState("a petition needs a name")
    if len(name) > 200:
        raise InvalidState("a petition's name has at most 200 characters")
    if not 0 < goal <= MAX_GOAL:
        raise InvalidState(f"the goal must be a number of signatures from 1 to {MAX_GOAL}")
    return name, check_url(target, "the target URL")


def new_petition(
    db: Database,
    settings: Settings,
    *,
    name: str,
    goal: int,
    texts: dict[str, dict[str, str]],
    target_url: str | None = None,
    template: str = "",
    slug: str | None = None,
    opt_in_list: str | None = None,
    actor: str = "cli",
    now: Callable[[], datetime] = utcnow,
) -> Petition:
    """Create petition ``name`` with ``texts`` (``{language: {title, intro, message}}``).

    ``template`` names the folder its texts came from ("" when they were
    written in the admin). The target defaults to ``blast.default_cta_url``;
    public opt-ins go to list ``opt_in_list`` (default ``petition-<slug>``).
    """
    name, target = _checked_fields(name, goal, target_url or settings.blast.default_cta_url)
    slug = slugify(slug or name)
    if not slug:
        raise InvalidState(f"cannot make a URL slug of {name!r}; give one")
    default_language = "en" if "en" in texts else next(iter(texts))
    with db.session() as session:
        if session.exec(select(Petition).where(Petition.name == name)).first() is not None:
            raise InvalidState(f"a petition named {name!r} exists already; choose another name")
        if session.exec(select(Petition).where(Petition.slug == slug)).first() is not None:
            raise InvalidState(f"the slug {slug!r} is taken; give another")
        petition = Petition(
            name=name,
            slug=slug,
            template=template,
            target_url=target,
            goal=goal,
            texts=texts,
            default_language=default_language,
            opt_in_list=(opt_in_list or f"petition-{slug}").strip(),
            created_at=now(),
        )
        session.add(petition)
        session.flush()
        audit(
            session,
            "petition.created",
            actor=actor,
            now=now(),
            detail={
                "petition": petition.id,
                "name": name,
                "slug": slug,
                "template": template,
                "target_url": target,
                "goal": goal,
            },
        )
    return petition


def update_petition(
    db: Database,
    ref: str | int,
    *,
    name: str,
    goal: int,
    target_url: str,
    texts: dict[str, dict[str, str]],
    actor: str,
    now: Callable[[], datetime] = utcnow,
) -> Petition:
    """Change a petition's name, goal, target and texts (its slug, the public URL, stays)."""
    name, target = _checked_fields(name, goal, target_url)
    with db.session() as session:
        petition = find_petition(session, ref)
        other = session.exec(select(Petition).where(Petition.name == name)).first()
        if other is not None and other.id != petition.id:
            raise InvalidState(f"a petition named {name!r} exists already; choose another name")
        changed: dict[str, Any] = {
            key: value
            for key, value in (("name", name), ("goal", goal), ("target_url", target))
            if getattr(petition, key) != value
        }
        petition.name, petition.goal, petition.target_url = name, goal, target
        if texts != petition.texts:
            changed["languages"] = sorted(texts)
            petition.texts = texts
            if petition.default_language not in texts:
                petition.default_language = "en" if "en" in texts else next(iter(texts))
        session.add(petition)
        audit(
            session,
            "petition.updated",
            actor=actor,
            now=now(),
            detail={"petition": petition.id, **changed},
        )
    return petition


#: A blast may be linked to a petition (or unlinked) until it starts sending.
LINKABLE = (BlastStatus.DRAFT, BlastStatus.SCHEDULED, BlastStatus.MISSED)


def link_blast(
    db: Database,
    ref: str | int,
    blast_ref: str,
    *,
    actor: str,
    now: Callable[[], datetime] = utcnow,
) -> Blast:
    """Link the blast ``blast_ref`` (id or name) to petition ``ref``: its call to action
    then leads each recipient to their action page. Only before it starts sending."""
    with db.session() as session:
        petition = find_petition(session, ref)
        blast = find_blast(session, blast_ref)
        if blast.status not in LINKABLE:
            raise InvalidState(
                f"blast {blast.name!r} is {blast.status}; only a blast that has not started "
                "sending can be linked to a petition"
            )
        blast.petition_id = petition.id
        session.add(blast)
        audit(
            session,
            "blast.petition_linked",
            actor=actor,
            now=now(),
            blast_id=blast.id,
            detail={"petition": petition.id, "name": petition.name},
        )
    return blast


def refresh_texts(
    db: Database, settings: Settings, ref: str | int, *, actor: str = "cli"
) -> Petition:
    """Read the petition's ``petition.toml`` again (after an organizer edited it, or
    imported a new revision of the stored alert it came from)."""
    with db.session() as session:
        petition = find_petition(session, ref)
        if not petition.template:
            raise InvalidState(
                f"petition {petition.name!r} was written in the web admin; edit it there "
                "(it has no petition.toml to read)"
            )
        texts = petition_texts(db, settings, petition.template)
        petition.texts = texts
        session.add(petition)
        audit(
            session,
            "petition.texts_refreshed",
            actor=actor,
            now=utcnow(),
            detail={"petition": petition.id, "languages": sorted(texts)},
        )
    return petition


def signature_count(session: Session, petition_id: int) -> int:
    return session.exec(
        select(func.count()).select_from(Signature).where(Signature.petition_id == petition_id)
    ).one()


def list_petitions(db: Database) -> list[dict[str, Any]]:
    """Every petition with its number of signatures, oldest first."""
    with db.session() as session:
        counts = dict(
            session.exec(
                select(Signature.petition_id, func.count()).group_by(col(Signature.petition_id))
            ).all()
        )
        petitions = session.exec(select(Petition).order_by(col(Petition.id))).all()
    return [
        {
            "id": p.id,
            "name": p.name,
            "slug": p.slug,
            "goal": p.goal,
            "signatures": counts.get(p.id or 0, 0),
            "target_url": p.target_url,
            "languages": sorted(p.texts),
        }
        for p in petitions
    ]
