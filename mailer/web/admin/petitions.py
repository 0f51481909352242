"""Petitions in the browser: list, create, edit, link to a blast (no ``petition.toml``).

The words of a petition (title, intro, suggested message, and optionally who
the target is) are typed per language, for each language the public pages
speak; a language left wholly empty is left out. Everything is stored by
:mod:`mailer.petitions.store`, the module behind ``mailer petition``.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import col, select
from starlette.responses import Response
from starlette.routing import BaseRoute

from mailer.accounts import Permission
from mailer.errors import MailerError, NotFound
from mailer.petitions.store import (
    LINKABLE,
    MAX_GOAL,
    check_texts,
    find_petition,
    link_blast,
    list_petitions,
    new_petition,
    update_petition,
)
from mailer.petitions.texts import KEYS, MAX_TEXT, OPTIONAL_KEYS
from mailer.store import Blast
from mailer.store.models import Petition
from mailer.web.admin.guard import Call
from mailer.web.admin.site import Site
from mailer.web.common import LANGUAGES

FIELDS = (*KEYS, *OPTIONAL_KEYS)


def routes(site: Site) -> list[BaseRoute]:
    read, write = Permission.READ, Permission.BLASTS
    return [
        site.page("GET", "/admin/petitions", read, petitions),
        site.page("GET", "/admin/petitions/new", write, new_form),
        site.page("POST", "/admin/petitions", write, create),
        site.page("GET", "/admin/petitions/{id}", write, edit_form),
        site.page("POST", "/admin/petitions/{id}", write, update),
        site.page("POST", "/admin/petitions/{id}/link", write, link),
    ]


def petitions(site: Site, call: Call) -> Response:
    return site.render(
        "petitions.html", call.caller, request=call.request, petitions=list_petitions(site.db)
    )


def _texts(call: Call) -> dict[str, dict[str, str]]:
    """The per-language fields of the posted form (``en_title``, ``es_message``...)."""
    return {
        language: {key: call.form.get(f"{language}_{key}", "") for key in FIELDS}
        for language in LANGUAGES
    }


def _goal(call: Call) -> int:
    raw = call.form.get("goal", "").strip().replace(",", "")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12:
        raise MailerError(f"the goal must be a number of signatures from 1 to {MAX_GOAL}")
    return int(raw)


def _form(
    site: Site,
    call: Call,
    *,
    values: dict[str, Any],
    petition: Petition | None = None,
    error: str = "",
    status: int = 200,
) -> Response:
    blasts: list[tuple[int | None, str]] = []
    if petition is not None:
        with site.db.session() as session:
            blasts = [
                (b.id, b.name)
                for b in session.exec(
                    select(Blast).where(col(Blast.status).in_(LINKABLE)).order_by(col(Blast.id))
                )
            ]
    return site.render(
        "petition_form.html",
        call.caller,
        status=status,
        request=call.request,
        error=error,
        petition=petition,
        values=values,
        languages=LANGUAGES,
        fields=FIELDS,
        max_text=MAX_TEXT,
        max_goal=MAX_GOAL,
        blasts=blasts,
        default_target=site.settings.blast.default_cta_url,
    )


def new_form(site: Site, call: Call) -> Response:
    return _form(site, call, values={})


def create(site: Site, call: Call) -> Response:
    values = dict(call.form)
    try:
        petition = new_petition(
            site.db,
            site.settings,
            name=call.form.get("name", ""),
            goal=_goal(call),
            texts=check_texts(_texts(call)),
            target_url=call.form.get("target_url", "").strip() or None,
            slug=call.form.get("slug", "").strip() or None,
            actor=call.caller.name,
            now=site.clock,
        )
    except MailerError as exc:
        return _form(site, call, values=values, error=str(exc), status=400)
    return site.back(f"/admin/petitions/{petition.id}", f"Petition {petition.name!r} created.")


def _petition(site: Site, call: Call) -> Petition | None:
    raw = call.param("id")
    if not raw.isdigit():
        return None
    with site.db.session() as session:
        try:
            return find_petition(session, int(raw))
        except NotFound:
            return None


def _missing(site: Site, call: Call) -> Response:
    return site.message(call.caller, 404, "No such petition", f"no petition {call.param('id')!r}")


def edit_form(site: Site, call: Call) -> Response:
    petition = _petition(site, call)
    if petition is None:
        return _missing(site, call)
    values: dict[str, Any] = {
        "name": petition.name,
        "goal": str(petition.goal),
        "target_url": petition.target_url,
    }
    for language, texts in petition.texts.items():
        for key in FIELDS:
            values[f"{language}_{key}"] = texts.get(key, "")
    return _form(site, call, values=values, petition=petition)


def update(site: Site, call: Call) -> Response:
    petition = _petition(site, call)
    if petition is None:
        return _missing(site, call)
    try:
        update_petition(
            site.db,
            petition.id or 0,
            name=call.form.get("name", ""),
            goal=_goal(call),
            target_url=call.form.get("target_url", "").strip(),
            texts=check_texts(_texts(call)),
            actor=call.caller.name,
            now=site.clock,
        )
    except MailerError as exc:
        return _form(
            site, call, values=dict(call.form), petition=petition, error=str(exc), status=400
        )
    return site.back(f"/admin/petitions/{petition.id}", "Petition saved.")


def link(site: Site, call: Call) -> Response:
    petition = _petition(site, call)
    if petition is None:
        return _missing(site, call)
    blast_ref = call.form.get("blast", "").strip()
    try:
        if not blast_ref.isdigit():
            raise MailerError("choose a blast")
        blast = link_blast(
            site.db, petition.id or 0, blast_ref, actor=call.caller.name, now=site.clock
        )
    except MailerError as exc:
        return site.back(f"/admin/petitions/{petition.id}", f"Not linked: {exc}")
    return site.back(
        f"/admin/petitions/{petition.id}", f"Blast {blast.name!r} now leads to this petition."
    )
