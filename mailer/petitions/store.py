"""Petitions as organizers see them: create, refresh, find, list.

The CLI and the web app call these; a petition's words are read from the
alert template's ``petition.toml`` (:mod:`mailer.petitions.texts`) and kept
in the database, so a web process needs no template files.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from mailer.blasts import check_url
from mailer.config import Settings
from mailer.errors import InvalidState, NotFound
from mailer.lifecycle import audit
from mailer.petitions.texts import load_texts
from mailer.store import Database
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

    ``template`` defaults to ``name``; the target defaults to
    ``blast.default_cta_url``; public opt-ins go to list ``opt_in_list``
    (default ``petition-<slug>``).
    """
    name = name.strip()
    if not name:
        raise InvalidState("a petition needs a name")
    if not 0 < goal <= MAX_GOAL:
        raise InvalidState(f"--goal must be a number of signatures from 1 to {MAX_GOAL}")
    target = check_url(target_url or settings.blast.default_cta_url, "the target URL")
    template = (template or name).strip()
    texts = load_texts(settings.templates_path(), template)
    slug = slugify(slug or name)
    if not slug:
        raise InvalidState(f"cannot make a URL slug of {name!r}; give --slug")
    default_language = "en" if "en" in texts else next(iter(texts))
    with db.session() as session:
        if session.exec(select(Petition).where(Petition.name == name)).first() is not None:
            raise InvalidState(f"a petition named {name!r} exists already; choose another name")
        if session.exec(select(Petition).where(Petition.slug == slug)).first() is not None:
            raise InvalidState(f"the slug {slug!r} is taken; give another with --slug")
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


def refresh_texts(
    db: Database, settings: Settings, ref: str | int, *, actor: str = "cli"
) -> Petition:
    """Read the petition's ``petition.toml`` again (after an organizer edited it)."""
    with db.session() as session:
        petition = find_petition(session, ref)
        texts = load_texts(settings.templates_path(), petition.template)
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
